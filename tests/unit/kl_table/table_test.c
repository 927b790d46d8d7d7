/*
 * table_test.c - meta.k8s.io/v1 Tables, cells as kube-apiserver prints them.
 */
#include <jansson.h>
#include <time.h>

#include "tests/kubelite/table.h"
#include "tests/unit/unit.h"

/* 2024-05-01T12:00:00Z */
#define NOW ((time_t)1714564800)

static json_t *J(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);

    if (!j)
        fprintf(stderr, "  bad fixture JSON: %s (line %d)\n", err.text, err.line);
    REQUIRE(j);
    return j;
}

/* Compact JSON of v; the previous result is freed on the next call. */
static const char *dump(const json_t *v)
{
    static char *last;

    free(last);
    last = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    return last ? last : "(null)";
}

static const char *cells(const json_t *table, size_t row)
{
    return dump(json_object_get(json_array_get(json_object_get(table, "rows"), row), "cells"));
}

/* "Name:0,Ready:0,..." from the column definitions. */
static const char *columns(const json_t *table)
{
    static char out[1024];
    const json_t *c;
    size_t i, w = 0;

    out[0] = '\0';
    json_array_foreach(json_object_get(table, "columnDefinitions"), i, c)
    {
        w += (size_t)snprintf(out + w, sizeof(out) - w, "%s%s:%s:%lld", i ? "," : "",
                              json_string_value(json_object_get(c, "name")),
                              json_string_value(json_object_get(c, "type")),
                              (long long)json_integer_value(json_object_get(c, "priority")));
    }
    return out;
}

static json_t *build1(const char *group, const char *resource, const char *obj_json,
                      const char *include)
{
    json_t *items = json_pack("[o]", J(obj_json));
    json_t *t;

    REQUIRE(items);
    t = table_build(group, resource, NULL, items, NULL, include, NOW);
    json_decref(items);
    REQUIRE(t);
    return t;
}

static void t_human_duration(void)
{
    static const struct {
        long long d;
        const char *want;
    } cases[] = {
        {-100, "<invalid>"},
        {-2, "<invalid>"},
        {-1, "0s"},
        {0, "0s"},
        {59, "59s"},
        {119, "119s"},
        {120, "2m"},
        {121, "2m1s"},
        {312, "5m12s"},
        {599, "9m59s"},
        {600, "10m"},
        {659, "10m"},
        {10799, "179m"},
        {10800, "3h"},
        {11520, "3h12m"},
        {28799, "7h59m"},
        {28800, "8h"},
        {172799, "47h"},
        {172800, "2d"},
        {190800, "2d5h"},
        {691199, "7d23h"},
        {691200, "8d"},
        {63071999, "729d"},
        {63072000, "2y"},
        {63158400, "2y1d"},
        {94608000, "3y"},
        {252287999, "7y364d"},
        {252288000, "8y"},
        {3153600000LL, "100y"},
    };
    char out[32];

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        table_human_duration(cases[i].d, out, sizeof(out));
        if (strcmp(out, cases[i].want) != 0)
            fprintf(stderr, "  d=%lld\n", cases[i].d);
        CHECK_STR(out, cases[i].want);
    }
    /* truncates instead of overflowing */
    table_human_duration(11520, out, 3);
    CHECK_STR(out, "3h");
}

static const char *POD_RUNNING =
    "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"web-7d4b9\","
    "\"namespace\":\"default\",\"uid\":\"u1\",\"resourceVersion\":\"42\","
    "\"creationTimestamp\":\"2024-05-01T08:48:00Z\",\"labels\":{\"app\":\"web\"}},"
    "\"spec\":{\"nodeName\":\"node-1\",\"containers\":[{\"name\":\"app\",\"image\":\"nginx\"},"
    "{\"name\":\"sidecar\",\"image\":\"envoy\"}]},"
    "\"status\":{\"phase\":\"Running\",\"podIP\":\"10.244.0.7\",\"podIPs\":[{\"ip\":"
    "\"10.244.0.7\"}],\"conditions\":[{\"type\":\"Ready\",\"status\":\"False\"}],"
    "\"containerStatuses\":[{\"name\":\"app\",\"ready\":true,\"restartCount\":0,"
    "\"state\":{\"running\":{\"startedAt\":\"2024-05-01T08:48:05Z\"}}},"
    "{\"name\":\"sidecar\",\"ready\":false,\"restartCount\":1,"
    "\"state\":{\"running\":{\"startedAt\":\"2024-05-01T11:55:01Z\"}},"
    "\"lastState\":{\"terminated\":{\"exitCode\":137,\"reason\":\"OOMKilled\","
    "\"finishedAt\":\"2024-05-01T11:55:00Z\"}}}]}}";

static void t_pod_table(void)
{
    json_t *t = build1("", "pods", POD_RUNNING, NULL);
    const json_t *row = json_array_get(json_object_get(t, "rows"), 0);

    CHECK_STR(dump(json_object_get(t, "kind")), "\"Table\"");
    CHECK_STR(dump(json_object_get(t, "apiVersion")), "\"meta.k8s.io/v1\"");
    CHECK_STR(dump(json_object_get(t, "metadata")), "{}");
    CHECK_STR(columns(t), "Name:string:0,Ready:string:0,Status:string:0,Restarts:string:0,"
                          "Age:string:0,IP:string:1,Node:string:1,Nominated Node:string:1,"
                          "Readiness Gates:string:1");
    CHECK_STR(
        dump(json_object_get(json_array_get(json_object_get(t, "columnDefinitions"), 0), "format")),
        "\"name\"");
    CHECK_STR(
        dump(json_object_get(json_array_get(json_object_get(t, "columnDefinitions"), 1), "format")),
        "\"\"");
    CHECK_STR(cells(t, 0), "[\"web-7d4b9\",\"1/2\",\"Running\",\"1 (5m ago)\",\"3h12m\","
                           "\"10.244.0.7\",\"node-1\",\"<none>\",\"<none>\"]");
    /* default includeObject is Metadata: PartialObjectMetadata with the full metadata */
    CHECK_STR(dump(json_object_get(row, "object")),
              "{\"kind\":\"PartialObjectMetadata\",\"apiVersion\":\"meta.k8s.io/v1\","
              "\"metadata\":{\"name\":\"web-7d4b9\",\"namespace\":\"default\",\"uid\":\"u1\","
              "\"resourceVersion\":\"42\",\"creationTimestamp\":\"2024-05-01T08:48:00Z\","
              "\"labels\":{\"app\":\"web\"}}}");
    CHECK(json_object_get(row, "conditions") == NULL);
    json_decref(t);
}

static void t_pod_statuses(void)
{
    json_t *t;

    /* waiting reason wins; restarts without lastState have no "ago" */
    t = build1("", "pods",
               "{\"metadata\":{\"name\":\"p\",\"creationTimestamp\":\"2024-05-01T11:59:30Z\"},"
               "\"spec\":{\"containers\":[{\"name\":\"a\"},{\"name\":\"b\"}]},"
               "\"status\":{\"phase\":\"Running\",\"containerStatuses\":["
               "{\"name\":\"a\",\"ready\":true,\"restartCount\":0,\"state\":{\"running\":{}}},"
               "{\"name\":\"b\",\"ready\":false,\"restartCount\":4,"
               "\"state\":{\"waiting\":{\"reason\":\"CrashLoopBackOff\"}}}]}}",
               NULL);
    CHECK_STR(cells(t, 0), "[\"p\",\"1/2\",\"CrashLoopBackOff\",\"4\",\"30s\",\"<none>\","
                           "\"<none>\",\"<none>\",\"<none>\"]");
    json_decref(t);

    /* pending, nothing reported yet; readiness gates counted */
    t = build1("", "pods",
               "{\"metadata\":{\"name\":\"p\",\"creationTimestamp\":\"2024-05-01T12:00:00Z\"},"
               "\"spec\":{\"containers\":[{\"name\":\"a\"}],\"readinessGates\":["
               "{\"conditionType\":\"x/one\"},{\"conditionType\":\"x/two\"}]},"
               "\"status\":{\"phase\":\"Pending\",\"nominatedNodeName\":\"n2\",\"conditions\":["
               "{\"type\":\"x/one\",\"status\":\"True\"},{\"type\":\"x/two\",\"status\":"
               "\"False\"}]}}",
               NULL);
    CHECK_STR(cells(t, 0), "[\"p\",\"0/1\",\"Pending\",\"0\",\"0s\",\"<none>\",\"<none>\","
                           "\"n2\",\"1/2\"]");
    json_decref(t);

    /* deletionTimestamp on a running pod */
    t = build1("", "pods",
               "{\"metadata\":{\"name\":\"p\",\"creationTimestamp\":\"2024-04-29T12:00:00Z\","
               "\"deletionTimestamp\":\"2024-05-01T12:00:30Z\"},"
               "\"spec\":{\"containers\":[{\"name\":\"a\"}]},"
               "\"status\":{\"phase\":\"Running\",\"containerStatuses\":["
               "{\"name\":\"a\",\"ready\":true,\"restartCount\":0,\"state\":{\"running\":{}}}]}}",
               NULL);
    CHECK_STR(cells(t, 0), "[\"p\",\"1/1\",\"Terminating\",\"0\",\"2d\",\"<none>\",\"<none>\","
                           "\"<none>\",\"<none>\"]");
    json_decref(t);

    /* a completed pod carries the Completed row condition */
    t = build1("", "pods",
               "{\"metadata\":{\"name\":\"job-x\",\"creationTimestamp\":\"2024-05-01T11:00:00Z\"},"
               "\"spec\":{\"containers\":[{\"name\":\"a\"}]},"
               "\"status\":{\"phase\":\"Succeeded\",\"containerStatuses\":[{\"name\":\"a\","
               "\"ready\":false,\"restartCount\":0,\"state\":{\"terminated\":{\"exitCode\":0,"
               "\"reason\":\"Completed\"}}}]}}",
               NULL);
    CHECK_STR(cells(t, 0), "[\"job-x\",\"0/1\",\"Completed\",\"0\",\"60m\",\"<none>\",\"<none>\","
                           "\"<none>\",\"<none>\"]");
    CHECK_STR(dump(json_object_get(json_array_get(json_object_get(t, "rows"), 0), "conditions")),
              "[{\"type\":\"Completed\",\"status\":\"True\",\"reason\":\"Succeeded\","
              "\"message\":\"The pod has completed successfully.\"}]");
    json_decref(t);

    /* init containers: still running, failed with exit code, restartable sidecar counted */
    t = build1("", "pods",
               "{\"metadata\":{\"name\":\"p\"},\"spec\":{\"initContainers\":[{\"name\":\"i1\"},"
               "{\"name\":\"i2\"}],\"containers\":[{\"name\":\"a\"}]},"
               "\"status\":{\"phase\":\"Pending\",\"initContainerStatuses\":["
               "{\"name\":\"i1\",\"restartCount\":0,\"state\":{\"terminated\":{\"exitCode\":0}}},"
               "{\"name\":\"i2\",\"restartCount\":2,\"state\":{\"running\":{}}}]}}",
               NULL);
    CHECK_STR(cells(t, 0), "[\"p\",\"0/1\",\"Init:1/2\",\"2\",\"<unknown>\",\"<none>\","
                           "\"<none>\",\"<none>\",\"<none>\"]");
    json_decref(t);
    t = build1("", "pods",
               "{\"metadata\":{\"name\":\"p\"},\"spec\":{\"initContainers\":[{\"name\":\"i1\"}],"
               "\"containers\":[{\"name\":\"a\"}]},"
               "\"status\":{\"phase\":\"Pending\",\"initContainerStatuses\":["
               "{\"name\":\"i1\",\"restartCount\":0,\"state\":{\"terminated\":{\"exitCode\":3}}}"
               "]}}",
               NULL);
    CHECK_STR(cells(t, 0), "[\"p\",\"0/1\",\"Init:ExitCode:3\",\"0\",\"<unknown>\",\"<none>\","
                           "\"<none>\",\"<none>\",\"<none>\"]");
    json_decref(t);
    t = build1("", "pods",
               "{\"metadata\":{\"name\":\"p\"},\"spec\":{\"initContainers\":[{\"name\":\"proxy\","
               "\"restartPolicy\":\"Always\"}],\"containers\":[{\"name\":\"a\"}]},"
               "\"status\":{\"phase\":\"Running\",\"conditions\":[{\"type\":\"Initialized\","
               "\"status\":\"True\"}],\"initContainerStatuses\":[{\"name\":\"proxy\","
               "\"ready\":true,\"started\":true,\"restartCount\":1,\"state\":{\"running\":{}}}],"
               "\"containerStatuses\":[{\"name\":\"a\",\"ready\":true,\"restartCount\":0,"
               "\"state\":{\"running\":{}}}]}}",
               NULL);
    CHECK_STR(cells(t, 0), "[\"p\",\"2/2\",\"Running\",\"1\",\"<unknown>\",\"<none>\","
                           "\"<none>\",\"<none>\",\"<none>\"]");
    json_decref(t);
}

static void t_service_table(void)
{
    json_t *t;

    t = build1("", "services",
               "{\"metadata\":{\"name\":\"web\",\"creationTimestamp\":\"2024-04-26T12:00:00Z\"},"
               "\"spec\":{\"type\":\"NodePort\",\"clusterIP\":\"10.96.0.10\",\"clusterIPs\":["
               "\"10.96.0.10\"],\"ports\":[{\"port\":80,\"protocol\":\"TCP\"},{\"port\":443,"
               "\"nodePort\":30443,\"protocol\":\"TCP\"}],\"selector\":{\"tier\":\"fe\","
               "\"app\":\"web\"}}}",
               NULL);
    CHECK_STR(columns(t), "Name:string:0,Type:string:0,Cluster-IP:string:0,External-IP:string:0,"
                          "Port(s):string:0,Age:string:0,Selector:string:1");
    CHECK_STR(cells(t, 0), "[\"web\",\"NodePort\",\"10.96.0.10\",\"<none>\","
                           "\"80/TCP,443:30443/TCP\",\"5d\",\"app=web,tier=fe\"]");
    json_decref(t);

    /* headless, no ports, no selector; protocol defaults to TCP */
    t = build1("", "services", "{\"metadata\":{\"name\":\"h\"},\"spec\":{\"clusterIP\":\"None\"}}",
               NULL);
    CHECK_STR(cells(t, 0), "[\"h\",\"ClusterIP\",\"None\",\"<none>\",\"<none>\",\"<unknown>\","
                           "\"<none>\"]");
    json_decref(t);
    t = build1("", "services",
               "{\"metadata\":{\"name\":\"x\"},\"spec\":{\"ports\":[{\"port\":53,"
               "\"protocol\":\"UDP\"},{\"port\":8080}],\"externalIPs\":[\"1.2.3.4\","
               "\"5.6.7.8\"]}}",
               NULL);
    CHECK_STR(cells(t, 0), "[\"x\",\"ClusterIP\",\"<none>\",\"1.2.3.4,5.6.7.8\","
                           "\"53/UDP,8080/TCP\",\"<unknown>\",\"<none>\"]");
    json_decref(t);

    /* load balancers: pending, then sorted unique ingress addresses plus external IPs */
    t = build1("", "services",
               "{\"metadata\":{\"name\":\"lb\"},\"spec\":{\"type\":\"LoadBalancer\","
               "\"clusterIPs\":[\"10.96.1.1\"],\"ports\":[{\"port\":80,\"nodePort\":31000,"
               "\"protocol\":\"TCP\"}]}}",
               NULL);
    CHECK_STR(cells(t, 0), "[\"lb\",\"LoadBalancer\",\"10.96.1.1\",\"<pending>\","
                           "\"80:31000/TCP\",\"<unknown>\",\"<none>\"]");
    json_decref(t);
    t = build1("", "services",
               "{\"metadata\":{\"name\":\"lb\"},\"spec\":{\"type\":\"LoadBalancer\","
               "\"externalIPs\":[\"9.9.9.9\"]},\"status\":{\"loadBalancer\":{\"ingress\":["
               "{\"ip\":\"3.3.3.3\"},{\"hostname\":\"a.example.com\"},{\"ip\":\"3.3.3.3\"}]}}}",
               NULL);
    CHECK_STR(cells(t, 0), "[\"lb\",\"LoadBalancer\",\"<none>\","
                           "\"3.3.3.3,a.example.com,9.9.9.9\",\"<none>\",\"<unknown>\","
                           "\"<none>\"]");
    json_decref(t);
    t = build1("", "services",
               "{\"metadata\":{\"name\":\"ext\"},\"spec\":{\"type\":\"ExternalName\","
               "\"externalName\":\"db.example.com\"}}",
               NULL);
    CHECK_STR(cells(t, 0), "[\"ext\",\"ExternalName\",\"<none>\",\"db.example.com\",\"<none>\","
                           "\"<unknown>\",\"<none>\"]");
    json_decref(t);
}

static void t_deployment_replicaset(void)
{
    json_t *t;

    t = build1("apps", "deployments",
               "{\"metadata\":{\"name\":\"web\",\"creationTimestamp\":\"2024-05-01T11:54:48Z\"},"
               "\"spec\":{\"replicas\":3,\"selector\":{\"matchLabels\":{\"app\":\"web\"},"
               "\"matchExpressions\":[{\"key\":\"tier\",\"operator\":\"In\",\"values\":[\"fe\","
               "\"be\"]}]},\"template\":{\"spec\":{\"containers\":[{\"name\":\"app\",\"image\":"
               "\"nginx:1.25\"},{\"name\":\"proxy\",\"image\":\"envoy:v1.30\"}]}}},"
               "\"status\":{\"replicas\":3,\"readyReplicas\":2,\"updatedReplicas\":3,"
               "\"availableReplicas\":2}}",
               NULL);
    CHECK_STR(columns(t), "Name:string:0,Ready:string:0,Up-to-date:string:0,Available:string:0,"
                          "Age:string:0,Containers:string:1,Images:string:1,Selector:string:1");
    CHECK_STR(cells(t, 0), "[\"web\",\"2/3\",3,2,\"5m12s\",\"app,proxy\","
                           "\"nginx:1.25,envoy:v1.30\",\"app=web,tier in (be,fe)\"]");
    json_decref(t);

    /* a fresh deployment without status; replicas default to 1; a bad selector */
    t = build1("apps", "deployments",
               "{\"metadata\":{\"name\":\"new\"},\"spec\":{\"selector\":{\"matchExpressions\":"
               "[{\"key\":\"a\",\"operator\":\"Bogus\"}]}}}",
               NULL);
    CHECK_STR(cells(t, 0), "[\"new\",\"0/1\",0,0,\"<unknown>\",\"\",\"\",\"<invalid>\"]");
    json_decref(t);

    t = build1("apps", "replicasets",
               "{\"metadata\":{\"name\":\"web-7d4b9\",\"creationTimestamp\":"
               "\"2024-05-01T11:00:00Z\"},\"spec\":{\"replicas\":2,\"selector\":{\"matchLabels\":"
               "{\"app\":\"web\",\"pod-template-hash\":\"7d4b9\"}},\"template\":{\"spec\":"
               "{\"containers\":[{\"name\":\"app\",\"image\":\"nginx\"}]}}},"
               "\"status\":{\"replicas\":2,\"readyReplicas\":1}}",
               NULL);
    CHECK_STR(columns(t), "Name:string:0,Desired:integer:0,Current:integer:0,Ready:integer:0,"
                          "Age:string:0,Containers:string:1,Images:string:1,Selector:string:1");
    CHECK_STR(cells(t, 0), "[\"web-7d4b9\",2,2,1,\"60m\",\"app\",\"nginx\","
                           "\"app=web,pod-template-hash=7d4b9\"]");
    json_decref(t);
}

static void t_secret_configmap_sa_ns(void)
{
    json_t *t;

    t = build1("", "secrets",
               "{\"metadata\":{\"name\":\"sh.helm.release.v1.web.v1\",\"creationTimestamp\":"
               "\"2024-05-01T11:59:00Z\"},\"type\":\"helm.sh/release.v1\",\"data\":{\"release\":"
               "\"SDRzSQ==\"}}",
               NULL);
    CHECK_STR(columns(t), "Name:string:0,Type:string:0,Data:string:0,Age:string:0");
    CHECK_STR(cells(t, 0), "[\"sh.helm.release.v1.web.v1\",\"helm.sh/release.v1\",1,\"60s\"]");
    json_decref(t);
    t = build1("", "secrets",
               "{\"metadata\":{\"name\":\"s\"},\"data\":{\"a\":\"\"},\"stringData\":{\"a\":\"x\","
               "\"b\":\"y\"}}",
               NULL);
    CHECK_STR(cells(t, 0), "[\"s\",\"Opaque\",2,\"<unknown>\"]");
    json_decref(t);

    t = build1("", "configmaps",
               "{\"metadata\":{\"name\":\"kube-root-ca.crt\",\"creationTimestamp\":"
               "\"2024-04-30T12:00:00Z\"},\"data\":{\"ca.crt\":\"x\",\"b\":\"y\"},"
               "\"binaryData\":{\"c\":\"AA==\"}}",
               NULL);
    CHECK_STR(columns(t), "Name:string:0,Data:string:0,Age:string:0");
    CHECK_STR(cells(t, 0), "[\"kube-root-ca.crt\",3,\"24h\"]");
    json_decref(t);
    t = build1("", "configmaps", "{\"metadata\":{\"name\":\"empty\"}}", NULL);
    CHECK_STR(cells(t, 0), "[\"empty\",0,\"<unknown>\"]");
    json_decref(t);

    t = build1("", "serviceaccounts",
               "{\"metadata\":{\"name\":\"default\",\"creationTimestamp\":"
               "\"2024-05-01T11:58:00Z\"}}",
               NULL);
    CHECK_STR(cells(t, 0), "[\"default\",0,\"2m\"]");
    json_decref(t);

    t = build1("", "namespaces",
               "{\"metadata\":{\"name\":\"weft-system\",\"creationTimestamp\":"
               "\"2024-05-01T11:58:30+00:00\"},\"status\":{\"phase\":\"Terminating\"}}",
               NULL);
    CHECK_STR(columns(t), "Name:string:0,Status:string:0,Age:string:0");
    CHECK_STR(cells(t, 0), "[\"weft-system\",\"Terminating\",\"90s\"]");
    json_decref(t);
}

static void t_misc_builtins(void)
{
    json_t *t;

    t = build1("discovery.k8s.io", "endpointslices",
               "{\"metadata\":{\"name\":\"web-abcde\",\"creationTimestamp\":"
               "\"2024-05-01T11:00:00Z\"},\"addressType\":\"IPv4\",\"ports\":[{\"name\":\"http\","
               "\"port\":80,\"protocol\":\"TCP\"},{\"name\":\"grpc\"},{}],\"endpoints\":["
               "{\"addresses\":[\"10.0.0.1\"]},{\"addresses\":[\"10.0.0.2\",\"10.0.0.3\"]},"
               "{\"addresses\":[\"10.0.0.4\"]},{\"addresses\":[\"10.0.0.5\"]}]}",
               NULL);
    CHECK_STR(columns(t), "Name:string:0,AddressType:string:0,Ports:string:0,"
                          "Endpoints:string:0,Age:string:0");
    CHECK_STR(cells(t, 0), "[\"web-abcde\",\"IPv4\",\"80,grpc,*\","
                           "\"10.0.0.1,10.0.0.2,10.0.0.3 + 2 more...\",\"60m\"]");
    json_decref(t);
    t = build1("discovery.k8s.io", "endpointslices",
               "{\"metadata\":{\"name\":\"e\"},\"addressType\":\"IPv6\"}", NULL);
    CHECK_STR(cells(t, 0), "[\"e\",\"IPv6\",\"<unset>\",\"<unset>\",\"<unknown>\"]");
    json_decref(t);

    t = build1("coordination.k8s.io", "leases",
               "{\"metadata\":{\"name\":\"weft-controller\",\"creationTimestamp\":"
               "\"2024-05-01T11:59:50Z\"},\"spec\":{\"holderIdentity\":\"weft-0_abc\"}}",
               NULL);
    CHECK_STR(cells(t, 0), "[\"weft-controller\",\"weft-0_abc\",\"10s\"]");
    json_decref(t);

    t = build1("admissionregistration.k8s.io", "mutatingwebhookconfigurations",
               "{\"metadata\":{\"name\":\"weft-injector\"},\"webhooks\":[{\"name\":\"a\"},"
               "{\"name\":\"b\"}]}",
               NULL);
    CHECK_STR(columns(t), "Name:string:0,Webhooks:integer:0,Age:string:0");
    CHECK_STR(cells(t, 0), "[\"weft-injector\",2,\"<unknown>\"]");
    json_decref(t);
    t = build1("admissionregistration.k8s.io", "validatingwebhookconfigurations",
               "{\"metadata\":{\"name\":\"v\"}}", NULL);
    CHECK_STR(cells(t, 0), "[\"v\",0,\"<unknown>\"]");
    json_decref(t);

    t = build1("rbac.authorization.k8s.io", "clusterrolebindings",
               "{\"metadata\":{\"name\":\"weft\",\"creationTimestamp\":\"2024-05-01T11:00:00Z\"},"
               "\"roleRef\":{\"apiGroup\":\"rbac.authorization.k8s.io\",\"kind\":\"ClusterRole\","
               "\"name\":\"weft-controller\"},\"subjects\":[{\"kind\":\"ServiceAccount\","
               "\"name\":\"weft\",\"namespace\":\"weft-system\"},{\"kind\":\"User\",\"name\":"
               "\"alice\"},{\"kind\":\"User\",\"name\":\"bob\"},{\"kind\":\"Group\",\"name\":"
               "\"ops\"}]}",
               NULL);
    CHECK_STR(columns(t), "Name:string:0,Role:string:0,Age:string:0,Users:string:1,"
                          "Groups:string:1,ServiceAccounts:string:1");
    CHECK_STR(cells(t, 0), "[\"weft\",\"ClusterRole/weft-controller\",\"60m\",\"alice, bob\","
                           "\"ops\",\"weft-system/weft\"]");
    json_decref(t);
    t = build1("rbac.authorization.k8s.io", "rolebindings",
               "{\"metadata\":{\"name\":\"rb\"},\"roleRef\":{\"kind\":\"Role\",\"name\":\"r\"}}",
               NULL);
    CHECK_STR(cells(t, 0), "[\"rb\",\"Role/r\",\"<unknown>\",\"\",\"\",\"\"]");
    json_decref(t);
}

static void t_events(void)
{
    json_t *t;

    t = build1("", "events",
               "{\"metadata\":{\"name\":\"web-7d4b9.17c\",\"namespace\":\"default\"},"
               "\"involvedObject\":{\"kind\":\"Pod\",\"name\":\"web-7d4b9\",\"fieldPath\":"
               "\"spec.containers{app}\"},\"reason\":\"Pulled\",\"message\":\"  Container image "
               "pulled \\n\",\"source\":{\"component\":\"kubelet\",\"host\":\"node-1\"},"
               "\"firstTimestamp\":\"2024-05-01T11:00:00Z\",\"lastTimestamp\":"
               "\"2024-05-01T11:58:00Z\",\"count\":3,\"type\":\"Normal\"}",
               NULL);
    CHECK_STR(columns(t), "Last Seen:string:0,Type:string:0,Reason:string:0,Object:string:0,"
                          "Subobject:string:1,Source:string:1,Message:string:0,"
                          "First Seen:string:1,Count:string:1,Name:string:1");
    CHECK_STR(cells(t, 0), "[\"2m\",\"Normal\",\"Pulled\",\"pod/web-7d4b9\","
                           "\"spec.containers{app}\",\"kubelet, node-1\","
                           "\"Container image pulled\",\"60m\",3,\"web-7d4b9.17c\"]");
    json_decref(t);

    /* new-style: eventTime only, count defaults to 1, reportingComponent as source */
    t = build1("", "events",
               "{\"metadata\":{\"name\":\"e\"},\"involvedObject\":{\"kind\":\"Node\"},"
               "\"reason\":\"Ready\",\"eventTime\":\"2024-05-01T11:59:58.123456Z\","
               "\"reportingComponent\":\"weft\",\"reportingInstance\":\"weft-0\","
               "\"type\":\"Warning\",\"message\":\"m\"}",
               NULL);
    CHECK_STR(cells(t, 0), "[\"1s\",\"Warning\",\"Ready\",\"node\",\"\",\"weft, weft-0\",\"m\","
                           "\"1s\",1,\"e\"]");
    json_decref(t);

    /* series overrides last seen and count */
    t = build1("", "events",
               "{\"metadata\":{\"name\":\"e\"},\"involvedObject\":{\"kind\":\"Pod\",\"name\":"
               "\"p\"},\"reason\":\"BackOff\",\"eventTime\":\"2024-05-01T10:00:00.000000Z\","
               "\"series\":{\"count\":7,\"lastObservedTime\":\"2024-05-01T11:59:00.000000Z\"}}",
               NULL);
    CHECK_STR(cells(t, 0), "[\"60s\",\"\",\"BackOff\",\"pod/p\",\"\",\"\",\"\",\"120m\",7,\"e\"]");
    json_decref(t);

    /* events.k8s.io/v1 field names */
    t = build1("events.k8s.io", "events",
               "{\"metadata\":{\"name\":\"e\"},\"regarding\":{\"kind\":\"Deployment\",\"name\":"
               "\"web\"},\"reason\":\"ScalingReplicaSet\",\"note\":\"Scaled up\","
               "\"reportingController\":\"deployment-controller\",\"eventTime\":"
               "\"2024-05-01T11:59:00.000000Z\",\"type\":\"Normal\"}",
               NULL);
    CHECK_STR(cells(t, 0), "[\"60s\",\"Normal\",\"ScalingReplicaSet\",\"deployment/web\",\"\","
                           "\"deployment-controller\",\"Scaled up\",\"60s\",1,\"e\"]");
    json_decref(t);
}

static void t_default_convertor(void)
{
    json_t *t;

    /* built-in kinds without a printer: Name and Created At (RFC 3339, UTC) */
    t = build1("rbac.authorization.k8s.io", "clusterroles",
               "{\"metadata\":{\"name\":\"admin\",\"creationTimestamp\":"
               "\"2024-05-01T10:30:00.5+01:30\"}}",
               NULL);
    CHECK_STR(columns(t), "Name:string:0,Created At:date:0");
    CHECK_STR(cells(t, 0), "[\"admin\",\"2024-05-01T09:00:00Z\"]");
    json_decref(t);
    t = build1("apiextensions.k8s.io", "customresourcedefinitions",
               "{\"metadata\":{\"name\":\"routes.weft.io\"}}", NULL);
    CHECK_STR(columns(t), "Name:string:0,Created At:date:0");
    CHECK_STR(cells(t, 0), "[\"routes.weft.io\",\"0001-01-01T00:00:00Z\"]");
    json_decref(t);
    t = build1("", "nodes",
               "{\"metadata\":{\"name\":\"n\",\"creationTimestamp\":"
               "\"2024-01-02T03:04:05Z\"}}",
               NULL);
    CHECK_STR(cells(t, 0), "[\"n\",\"2024-01-02T03:04:05Z\"]");
    json_decref(t);
    /* NULL group is the core group */
    t = build1(NULL, "pods", "{\"metadata\":{\"name\":\"p\"}}", NULL);
    CHECK_STR(cells(t, 0), "[\"p\",\"0/0\",\"\",\"0\",\"<unknown>\",\"<none>\",\"<none>\","
                           "\"<none>\",\"<none>\"]");
    json_decref(t);
}

static const char *ROUTE =
    "{\"apiVersion\":\"weft.io/v1\",\"kind\":\"Route\",\"metadata\":{\"name\":\"r1\","
    "\"namespace\":\"default\",\"creationTimestamp\":\"2024-05-01T09:00:00Z\"},"
    "\"spec\":{\"host\":\"web.example.com\",\"weights\":[10,90],\"replicas\":3,\"ratio\":0.25,"
    "\"paused\":false,\"backends\":[{\"service\":\"a\",\"weight\":10},{\"service\":\"b\","
    "\"weight\":90}],\"meta\":{\"z\":1,\"a\":\"x\"},\"big\":1500000.0,\"nothing\":null},"
    "\"status\":{\"conditions\":[{\"type\":\"Accepted\",\"status\":\"True\"},{\"type\":"
    "\"Ready\",\"status\":\"False\",\"lastTransitionTime\":\"2024-05-01T11:55:00Z\"}]}}";

static void t_crd_columns(void)
{
    json_t *cols = J("[{\"name\":\"Host\",\"type\":\"string\",\"jsonPath\":\".spec.host\"},"
                     "{\"name\":\"Ready\",\"type\":\"string\",\"jsonPath\":"
                     "\".status.conditions[?(@.type==\\\"Ready\\\")].status\","
                     "\"description\":\"Ready condition\"},"
                     "{\"name\":\"Weights\",\"type\":\"string\",\"jsonPath\":\".spec.weights\","
                     "\"priority\":1},"
                     "{\"name\":\"Backend\",\"type\":\"string\",\"jsonPath\":"
                     "\".spec.backends[*].service\"},"
                     "{\"name\":\"Replicas\",\"type\":\"integer\",\"jsonPath\":\".spec.replicas\","
                     "\"format\":\"int32\"},"
                     "{\"name\":\"Ratio\",\"type\":\"number\",\"jsonPath\":\".spec.ratio\"},"
                     "{\"name\":\"Paused\",\"type\":\"boolean\",\"jsonPath\":\".spec.paused\"},"
                     "{\"name\":\"Since\",\"type\":\"date\",\"jsonPath\":"
                     "\".status.conditions[?(@.type=='Ready')].lastTransitionTime\"},"
                     "{\"name\":\"Missing\",\"type\":\"string\",\"jsonPath\":\".status.nope\"},"
                     "{\"name\":\"Meta\",\"type\":\"string\",\"jsonPath\":\".spec.meta\"},"
                     "{\"name\":\"Big\",\"type\":\"string\",\"jsonPath\":\".spec.big\"},"
                     "{\"name\":\"Null\",\"type\":\"string\",\"jsonPath\":\".spec.nothing\"},"
                     "{\"name\":\"WrongType\",\"type\":\"integer\",\"jsonPath\":\".spec.host\"},"
                     "{\"name\":\"Age\",\"type\":\"date\",\"jsonPath\":"
                     "\".metadata.creationTimestamp\"}]");
    json_t *items = json_pack("[o]", J(ROUTE));
    json_t *meta = J("{\"resourceVersion\":\"77\",\"continue\":\"tok\"}");
    json_t *t = table_build("weft.io", "routes", cols, items, meta, "Object", NOW);
    const json_t *defs, *row;

    REQUIRE(t);
    CHECK_STR(columns(t), "Name:string:0,Host:string:0,Ready:string:0,Weights:string:1,"
                          "Backend:string:0,Replicas:integer:0,Ratio:number:0,Paused:boolean:0,"
                          "Since:date:0,Missing:string:0,Meta:string:0,Big:string:0,"
                          "Null:string:0,WrongType:integer:0,Age:date:0");
    /* kube uses the first JSONPath result and prints lists and maps as JSON */
    CHECK_STR(cells(t, 0), "[\"r1\",\"web.example.com\",\"False\",\"[10,90]\",\"a\",3,0.25,false,"
                           "\"5m\",null,\"{\\\"a\\\":\\\"x\\\",\\\"z\\\":1}\",\"1.5e+06\","
                           "\"<no value>\",null,\"3h\"]");
    defs = json_object_get(t, "columnDefinitions");
    CHECK_STR(dump(json_array_get(defs, 1)),
              "{\"name\":\"Host\",\"type\":\"string\",\"format\":\"\",\"description\":\"Custom "
              "resource definition column (in JSONPath format): .spec.host\",\"priority\":0}");
    CHECK_STR(dump(json_object_get(json_array_get(defs, 2), "description")), "\"Ready condition\"");
    CHECK_STR(dump(json_object_get(json_array_get(defs, 5), "format")), "\"int32\"");
    CHECK_STR(dump(json_object_get(t, "metadata")), "{\"resourceVersion\":\"77\","
                                                    "\"continue\":\"tok\"}");
    /* includeObject=Object: the object itself */
    row = json_array_get(json_object_get(t, "rows"), 0);
    CHECK(json_object_get(row, "object") == json_array_get(items, 0));
    json_decref(t);
    json_decref(items);
    json_decref(cols);
    json_decref(meta);
}

static void t_crd_default_columns(void)
{
    json_t *items = json_pack("[o]", J(ROUTE)), *empty = json_array();
    json_t *t;

    REQUIRE(items && empty);
    /* no printer columns: Name and Age (a date column) */
    t = table_build("weft.io", "routes", NULL, items, NULL, NULL, NOW);
    REQUIRE(t);
    CHECK_STR(columns(t), "Name:string:0,Age:date:0");
    CHECK_STR(cells(t, 0), "[\"r1\",\"3h\"]");
    json_decref(t);
    t = table_build("weft.io", "routes", empty, items, NULL, NULL, NOW);
    REQUIRE(t);
    CHECK_STR(columns(t), "Name:string:0,Age:date:0");
    json_decref(t);
    json_decref(items);
    json_decref(empty);
}

static void t_crd_date_cells(void)
{
    json_t *cols = J("[{\"name\":\"T\",\"type\":\"date\",\"jsonPath\":\".t\"}]");
    json_t *items = J("[{\"metadata\":{\"name\":\"a\"},\"t\":\"\"},"
                      "{\"metadata\":{\"name\":\"b\"},\"t\":\"yesterday\"},"
                      "{\"metadata\":{\"name\":\"c\"},\"t\":5},"
                      "{\"metadata\":{\"name\":\"d\"},\"t\":\"2024-05-01T12:00:05Z\"},"
                      "{\"metadata\":{\"name\":\"e\"},\"t\":\"2024-05-01T11:59:59.999Z\"}]");
    json_t *t = table_build("example.com", "things", cols, items, NULL, "None", NOW);

    REQUIRE(t);
    CHECK_STR(cells(t, 0), "[\"a\",\"<unknown>\"]");
    CHECK_STR(cells(t, 1), "[\"b\",\"<invalid>\"]");
    CHECK_STR(cells(t, 2), "[\"c\",null]");
    CHECK_STR(cells(t, 3), "[\"d\",\"<invalid>\"]");
    /* 0.001s ago truncates to 0s */
    CHECK_STR(cells(t, 4), "[\"e\",\"0s\"]");
    /* includeObject=None: no object member */
    CHECK(json_object_get(json_array_get(json_object_get(t, "rows"), 0), "object") == NULL);
    json_decref(t);
    json_decref(cols);
    json_decref(items);
}

static void t_include_object_and_empty(void)
{
    json_t *items = json_array(), *t;
    json_t *meta = J("{\"resourceVersion\":\"5\"}");

    REQUIRE(items);
    t = table_build("", "configmaps", NULL, items, meta, NULL, NOW);
    REQUIRE(t);
    CHECK_STR(dump(t), "{\"kind\":\"Table\",\"apiVersion\":\"meta.k8s.io/v1\",\"metadata\":"
                       "{\"resourceVersion\":\"5\"},\"columnDefinitions\":[{\"name\":\"Name\","
                       "\"type\":\"string\",\"format\":\"name\",\"description\":\"Name must be "
                       "unique within a namespace. Is required when creating resources, although "
                       "some resources may allow a client to request the generation of an "
                       "appropriate name automatically. Name is primarily intended for creation "
                       "idempotence and configuration definition. Cannot be updated. More info: "
                       "https://kubernetes.io/docs/concepts/overview/working-with-objects/"
                       "names#names\",\"priority\":0},{\"name\":\"Data\",\"type\":\"string\","
                       "\"format\":\"\",\"description\":\"Data contains the configuration "
                       "data.\",\"priority\":0},{\"name\":\"Age\",\"type\":\"string\",\"format\":"
                       "\"\",\"description\":\"CreationTimestamp is a timestamp representing the "
                       "server time when this object was created. It is not guaranteed to be set "
                       "in happens-before order across separate operations. Clients may not set "
                       "this value. It is represented in RFC3339 form and is in UTC.\\n\\n"
                       "Populated by the system. Read-only. Null for lists. More info: "
                       "https://git.k8s.io/community/contributors/devel/sig-architecture/"
                       "api-conventions.md#metadata\",\"priority\":0}],\"rows\":[]}");
    /* the table's metadata is a copy */
    json_object_set_new(meta, "resourceVersion", json_string("6"));
    CHECK_STR(dump(json_object_get(t, "metadata")), "{\"resourceVersion\":\"5\"}");
    json_decref(t);
    json_decref(meta);
    json_decref(items);

    /* an object without metadata still gets a PartialObjectMetadata */
    t = build1("", "configmaps", "{\"data\":{}}", "Metadata");
    CHECK_STR(dump(json_object_get(json_array_get(json_object_get(t, "rows"), 0), "object")),
              "{\"kind\":\"PartialObjectMetadata\",\"apiVersion\":\"meta.k8s.io/v1\","
              "\"metadata\":{}}");
    CHECK_STR(cells(t, 0), "[\"\",0,\"<unknown>\"]");
    json_decref(t);
}

/* table_jsonpath(obj, path) as compact JSON, "(null)" for no result. */
static const char *jp(const json_t *obj, const char *path)
{
    json_t *r = table_jsonpath(obj, path);
    const char *s = dump(r);

    json_decref(r);
    return s;
}

static void t_jsonpath(void)
{
    json_t *o = J("{\"metadata\":{\"name\":\"x\",\"annotations\":{\"example.com/a\":\"v\"}},"
                  "\"spec\":{\"list\":[{\"n\":\"a\",\"v\":1,\"on\":true},{\"n\":\"b\",\"v\":2},"
                  "{\"n\":\"c\",\"v\":3,\"on\":false}],\"nums\":[5,6,7,8],\"s\":\"str\","
                  "\"deep\":{\"name\":\"inner\",\"x\":{\"name\":\"innermost\"}}}}");

    CHECK_STR(jp(o, ".metadata.name"), "\"x\"");
    CHECK_STR(jp(o, "{.metadata.name}"), "\"x\"");
    CHECK_STR(jp(o, " { .metadata.name } "), "\"x\"");
    CHECK_STR(jp(o, "$.metadata.name"), "\"x\"");
    CHECK_STR(jp(o, ".spec.nums[0]"), "5");
    CHECK_STR(jp(o, ".spec.nums[-1]"), "8");
    CHECK_STR(jp(o, ".spec.nums[1:3]"), "[6,7]");
    CHECK_STR(jp(o, ".spec.nums[::2]"), "[5,7]");
    CHECK_STR(jp(o, ".spec.nums[*]"), "[5,6,7,8]");
    CHECK_STR(jp(o, ".spec.list[*].n"), "[\"a\",\"b\",\"c\"]");
    CHECK_STR(jp(o, ".spec.list[*].on"), "[true,false]");
    CHECK_STR(jp(o, ".spec.list[?(@.n==\"b\")].v"), "2");
    CHECK_STR(jp(o, ".spec.list[?(@.n=='c')].v"), "3");
    CHECK_STR(jp(o, ".spec.list[?(@.v > 1)].n"), "[\"b\",\"c\"]");
    CHECK_STR(jp(o, ".spec.list[?(@.v!=2)].n"), "[\"a\",\"c\"]");
    CHECK_STR(jp(o, ".spec.list[?(@.on)].n"), "[\"a\",\"c\"]");
    CHECK_STR(jp(o, ".spec.list[?(@.on==true)].n"), "\"a\"");
    CHECK_STR(jp(o, ".metadata.annotations['example.com/a']"), "\"v\"");
    CHECK_STR(jp(o, ".metadata.annotations.example\\.com/a"), "\"v\"");
    CHECK_STR(jp(o, ".spec.deep..name"), "[\"inner\",\"innermost\"]");
    CHECK_STR(jp(o, ".spec.deep.*.name"), "\"innermost\"");
    CHECK_STR(jp(o, ".spec.nums"), "[5,6,7,8]");
    /* a whole subtree is returned by reference */
    {
        json_t *r = table_jsonpath(o, ".spec");
        CHECK(r == json_object_get(o, "spec"));
        json_decref(r);
    }

    /* no result */
    CHECK_STR(jp(o, ".metadata.missing"), "(null)");
    CHECK_STR(jp(o, ".metadata.name.deeper"), "(null)");
    CHECK_STR(jp(o, ".spec.list[?(@.n==\"zzz\")].v"), "(null)");
    CHECK_STR(jp(o, ".spec.list[?(@.nope==\"a\")].v"), "(null)");
    /* errors in kube's evaluator: out of range, not a list, type mismatch, bad syntax */
    CHECK_STR(jp(o, ".spec.nums[4]"), "(null)");
    CHECK_STR(jp(o, ".spec.nums[-5]"), "(null)");
    CHECK_STR(jp(o, ".spec.s[0]"), "(null)");
    CHECK_STR(jp(o, ".spec.s[?(@.a==1)]"), "(null)");
    CHECK_STR(jp(o, ".spec.list[?(@.v==\"1\")].n"), "(null)");
    CHECK_STR(jp(o, ".spec.nums[0,1]"), "(null)");
    CHECK_STR(jp(o, ".spec.nums[x]"), "(null)");
    CHECK_STR(jp(o, ".spec.nums[0"), "(null)");
    CHECK_STR(jp(o, ".spec.list[?(@.n==\"b\""), "(null)");
    CHECK_STR(jp(o, "spec.s"), "(null)");
    CHECK_STR(jp(o, "{.spec.s"), "(null)");
    CHECK_STR(jp(o, "{.a}{.b}"), "(null)");
    CHECK_STR(jp(NULL, ".a"), "(null)");
    CHECK_STR(jp(o, NULL), "(null)");
    json_decref(o);
}

UNIT_MAIN(UNIT(t_human_duration), UNIT(t_pod_table), UNIT(t_pod_statuses), UNIT(t_service_table),
          UNIT(t_deployment_replicaset), UNIT(t_secret_configmap_sa_ns), UNIT(t_misc_builtins),
          UNIT(t_events), UNIT(t_default_convertor), UNIT(t_crd_columns),
          UNIT(t_crd_default_columns), UNIT(t_crd_date_cells), UNIT(t_include_object_and_empty),
          UNIT(t_jsonpath))
