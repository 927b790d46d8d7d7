{{/*
Helpers of the weft chart. Object names are fixed (weftd, weft-webhook, weft-injector): weftd
and the injected proxies find each other by these names.
*/}}

{{/* helm.sh/chart label value. */}}
{{- define "weft.chart" -}}
{{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* Labels that select weftd's pods (immutable in the Deployment: never change them). */}}
{{- define "weft.selectorLabels" -}}
app.kubernetes.io/name: weftd
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels on every object of the chart. */}}
{{- define "weft.labels" -}}
helm.sh/chart: {{ include "weft.chart" . }}
{{ include "weft.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: weft
{{- end -}}

{{/* An image reference from {repository, tag, digest}; the tag defaults to appVersion. */}}
{{- define "weft.image" -}}
{{- $img := index . 0 -}}
{{- $root := index . 1 -}}
{{- if $img.digest -}}
{{ $img.repository }}@{{ $img.digest }}
{{- else -}}
{{ $img.repository }}:{{ $img.tag | default $root.Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/*
"true" when weft-proxy is injected as a native sidecar, else "false". nativeSidecars auto: the
API server must be >= 1.29, and so must every node's kubelet that a lookup finds (kubelets may
lag the API server by three minor versions, and a kubelet < 1.29 never starts a pod with a
native sidecar). Without cluster access (helm template) the lookup finds nothing.
*/}}
{{- define "weft.nativeSidecars" -}}
{{- $v := toString .Values.nativeSidecars -}}
{{- if eq $v "true" -}}
true
{{- else if eq $v "false" -}}
false
{{- else -}}
{{- $ok := semverCompare ">=1.29.0-0" .Capabilities.KubeVersion.Version -}}
{{- $nodes := lookup "v1" "Node" "" "" -}}
{{- range $n := (get (default dict $nodes) "items" | default list) -}}
{{- $kv := regexFind "[0-9]+\\.[0-9]+\\.[0-9]+" (dig "status" "nodeInfo" "kubeletVersion" "" $n) -}}
{{- if and $kv (semverCompare "<1.29.0-0" $kv) -}}
{{- $ok = false -}}
{{- end -}}
{{- end -}}
{{- ternary "true" "false" $ok -}}
{{- end -}}
{{- end -}}

{{/* Checks of value combinations that the schema cannot express. */}}
{{- define "weft.validate" -}}
{{- if and .Values.ca.userCASecret (eq .Values.ca.userCASecret .Values.ca.secretName) -}}
{{- fail (printf "ca.userCASecret %q must differ from ca.secretName: weftd writes ca.secretName and only reads ca.userCASecret" .Values.ca.userCASecret) -}}
{{- end -}}
{{- end -}}
