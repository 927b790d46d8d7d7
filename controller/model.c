/*
 * model.c - the mesh model: object digests, per-namespace records, and the dependency
 * marking that makes recompilation incremental (what each kind of change dirties is listed
 * at each *_changed() function).
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "ca/ca.h"
#include "conf/jbuild.h"
#include "core/diag.h"
#include "controller/controller_int.h"

/* ---- hash: two independent 64-bit lanes (FNV-1a and a multiply-rotate mix) --------------- */

void controller__hash_init(struct chash *h)
{
    h->a = 1469598103934665603ULL;
    h->b = 0x9e3779b97f4a7c15ULL;
}

void controller__hash_add(struct chash *h, const void *p, size_t n)
{
    const unsigned char *c = p;
    uint64_t a = h->a, b = h->b;
    size_t i;
    for (i = 0; i < n; i++) {
        a ^= c[i];
        a *= 1099511628211ULL;
        b = (b ^ c[i]) * 0xff51afd7ed558ccdULL;
        b = (b << 31) | (b >> 33);
    }
    h->a = a;
    h->b = b;
}

static int hash_cb(const char *buffer, size_t size, void *data)
{
    controller__hash_add(data, buffer, size);
    return 0;
}

int controller__hash_json(struct chash *h, const json_t *v)
{
    return json_dump_callback(v, hash_cb, h, JSON_COMPACT | JSON_ENCODE_ANY) ? -ENOMEM : 0;
}

/* ---- JSON helpers ------------------------------------------------------------------------- */

const char *controller__jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

json_t *controller__jget(const json_t *o, const char *path)
{
    char part[128];
    const char *p = path;
    json_t *cur = (json_t *)o;

    while (cur && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof(part))
            return NULL;
        memcpy(part, p, n);
        part[n] = '\0';
        cur = json_object_get(cur, part);
        p += n + (dot ? 1 : 0);
    }
    return cur;
}

long long controller__jint(const json_t *o, const char *key, long long def)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (long long)json_integer_value(v) : def;
}

static bool str_in(const json_t *arr, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i,
                       v) if (json_is_string(v) && !strcmp(json_string_value(v), s)) return true;
    return false;
}

bool controller__selector_match(const json_t *sel, const json_t *labels)
{
    const char *k;
    json_t *v, *exprs;
    size_t i;

    if (!json_is_object(sel))
        return false;
    json_object_foreach((json_t *)json_object_get(sel, "matchLabels"), k, v)
    {
        const char *have = controller__jstr(labels, k);
        if (!have || !json_is_string(v) || strcmp(have, json_string_value(v)) != 0)
            return false;
    }
    exprs = json_object_get(sel, "matchExpressions");
    json_array_foreach(exprs, i, v)
    {
        const char *key = controller__jstr(v, "key"), *op = controller__jstr(v, "operator");
        const char *have = key ? controller__jstr(labels, key) : NULL;
        json_t *vals = json_object_get(v, "values");
        if (!key || !op)
            return false;
        if (!strcmp(op, "In")) {
            if (!have || !str_in(vals, have))
                return false;
        } else if (!strcmp(op, "NotIn")) {
            if (have && str_in(vals, have))
                return false;
        } else if (!strcmp(op, "Exists")) {
            if (!have)
                return false;
        } else if (!strcmp(op, "DoesNotExist")) {
            if (have)
                return false;
        } else {
            return false;
        }
    }
    return true;
}

bool controller__map_selects(const json_t *sel, const json_t *labels)
{
    const char *k;
    json_t *v;
    if (!json_is_object(sel) || !json_object_size(sel))
        return false;
    json_object_foreach((json_t *)sel, k, v)
    {
        const char *have = controller__jstr(labels, k);
        if (!have || !json_is_string(v) || strcmp(have, json_string_value(v)) != 0)
            return false;
    }
    return true;
}

long long controller__duration_ms(const char *s)
{
    long long total = 0;
    if (!s || !*s)
        return -1;
    while (*s) {
        long long n = 0, mul;
        int digits = 0;
        while (isdigit((unsigned char)*s)) {
            if (++digits > 9)
                return -1;
            n = n * 10 + (*s++ - '0');
        }
        if (!digits)
            return -1;
        if (s[0] == 'm' && s[1] == 's') {
            mul = 1;
            s += 2;
        } else if (s[0] == 's') {
            mul = 1000;
            s++;
        } else if (s[0] == 'm') {
            mul = 60000;
            s++;
        } else if (s[0] == 'h') {
            mul = 3600000;
            s++;
        } else {
            return -1;
        }
        total += n * mul;
        if (total > 2147483647LL)
            return -1;
    }
    return total;
}

long long controller__quantity_milli(const json_t *v)
{
    const char *s, *p;
    long long ip = 0, frac = 0, fdiv = 1, mul = 1000;
    int digits = 0;

    if (json_is_integer(v)) {
        long long i = (long long)json_integer_value(v);
        return i < 0 || i > 1000000000LL ? -1 : i * 1000;
    }
    s = json_string_value(v);
    if (!s || !*s)
        return -1;
    for (p = s; isdigit((unsigned char)*p); p++, digits++) {
        if (digits > 12)
            return -1;
        ip = ip * 10 + (*p - '0');
    }
    if (*p == '.') {
        p++;
        for (; isdigit((unsigned char)*p); p++, digits++) {
            if (fdiv < 1000000000LL) {
                frac = frac * 10 + (*p - '0');
                fdiv *= 10;
            }
        }
    }
    if (!digits)
        return -1;
    if (!strcmp(p, ""))
        mul = 1000;
    else if (!strcmp(p, "m"))
        mul = 1;
    else if (!strcmp(p, "k"))
        mul = 1000000;
    else if (!strcmp(p, "M"))
        mul = 1000000000;
    else if (!strcmp(p, "Ki"))
        mul = 1024000;
    else if (!strcmp(p, "Mi"))
        mul = 1048576000;
    else
        return -1;
    if (ip > 1000000000LL / (mul ? mul : 1) + 1)
        return -1;
    /* round the fractional part to millis of the unit */
    return ip * mul + (frac * mul + fdiv / 2) / fdiv;
}

/*
 * The peer's certificate subject as HAProxy 2.6 prints it with ssl_c_s_dn (OpenSSL's one-line
 * form): the CA writes O=<td>, OU=<ns>, CN=ca_identity_subject_cn() (docs/ca.md).
 */
char *controller__peer_match_string(const char *trust_domain, const char *ns, const char *sa)
{
    struct ca_identity id = {trust_domain, ns, sa, NULL, NULL};
    char cn[CA_CN_MAX + 1];
    char *s = NULL;
    if (ca_identity_subject_cn(&id, cn))
        return NULL;
    if (asprintf(&s, "/O=%s/OU=%s/CN=%s", trust_domain, ns, cn) < 0)
        return NULL;
    return s;
}

/* ---- model basics ------------------------------------------------------------------------- */

int mesh_mode_parse(const char *s, enum mesh_mode *out)
{
    if (!s)
        return -EINVAL;
    if (!strcmp(s, "all-authenticated"))
        *out = MESH_MODE_ALL_AUTHENTICATED;
    else if (!strcmp(s, "deny"))
        *out = MESH_MODE_DENY;
    else if (!strcmp(s, "permissive"))
        *out = MESH_MODE_PERMISSIVE;
    else
        return -EINVAL;
    return 0;
}

const char *mesh_mode_name(enum mesh_mode mode)
{
    switch (mode) {
    case MESH_MODE_DENY:
        return "deny";
    case MESH_MODE_PERMISSIVE:
        return "permissive";
    case MESH_MODE_ALL_AUTHENTICATED:
    default:
        return "all-authenticated";
    }
}

int mesh_outbound_scope_parse(const char *s, enum mesh_outbound_scope *out)
{
    if (!s)
        return -EINVAL;
    if (!strcmp(s, "mesh"))
        *out = MESH_OUTBOUND_MESH;
    else if (!strcmp(s, "admitted"))
        *out = MESH_OUTBOUND_ADMITTED;
    else
        return -EINVAL;
    return 0;
}

const char *mesh_outbound_scope_name(enum mesh_outbound_scope scope)
{
    return scope == MESH_OUTBOUND_ADMITTED ? "admitted" : "mesh";
}

int mesh_model_new(const struct mesh_config *cfg, struct mesh_model **out)
{
    struct mesh_model *m = calloc(1, sizeof(*m));
    int rc = -ENOMEM;

    if (!m)
        return -ENOMEM;
    m->trust_domain = strdup(cfg && cfg->trust_domain ? cfg->trust_domain : "cluster.local");
    m->bundle_cm = strdup(cfg && cfg->trust_bundle_cm ? cfg->trust_bundle_cm : "weft-root-ca");
    m->bundle_key = strdup(cfg && cfg->trust_bundle_key ? cfg->trust_bundle_key : "ca.crt");
    m->mode = cfg ? cfg->mode : MESH_MODE_ALL_AUTHENTICATED;
    m->scope = cfg ? cfg->outbound_scope : MESH_OUTBOUND_MESH;
    if (!m->trust_domain || !m->bundle_cm || !m->bundle_key)
        goto out;
    *out = m;
    m = NULL;
    rc = 0;
out:
    mesh_model_free(m);
    return rc;
}

char *controller__key(const char *a, const char *b)
{
    char *s = NULL;
    if (asprintf(&s, "%s/%s", a, b) < 0)
        return NULL;
    return s;
}

char *controller__spiffe(const struct mesh_model *m, const char *ns, const char *sa)
{
    char *s = NULL;
    if (asprintf(&s, "spiffe://%s/ns/%s/sa/%s", m->trust_domain, ns, sa) < 0)
        return NULL;
    return s;
}

void controller__mark(struct map *set, const char *key, struct mesh_model *m)
{
    /* A failed insert loses a dirty mark; resolve() then misses one recompute. Record it as
     * pending everything instead would need memory too; log-free best effort is documented. */
    if (map_put(set, key, MARK) == 0)
        m->pending = true;
}

struct m_nsc *controller__nsc(struct mesh_model *m, const char *ns, bool create)
{
    struct m_nsc *c = map_get(&m->nss, ns);
    if (c || !create)
        return c;
    c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->name = strdup(ns);
    if (!c->name || map_put(&m->nss, ns, c) < 0) {
        free(c->name);
        free(c);
        return NULL;
    }
    return c;
}

struct m_cr *controller__split_get(struct m_nsc *c, bool smi, const char *name)
{
    char k[300];
    snprintf(k, sizeof(k), "%c/%s", smi ? 's' : 'w', name);
    return map_get(&c->splits, k);
}

static void cr_free(struct m_cr *c)
{
    if (!c)
        return;
    free(c->ns);
    free(c->name);
    free(c->created);
    free(c->invalid);
    json_decref(c->d);
    free(c);
}

/*
 * Pods, Services and EndpointSlices open with the same head (model.h): ns, name, key "ns/name"
 * and the digest d. head_set names a new record (on -ENOMEM what it set is left to the record's
 * free function); head_release frees the head of a record being freed.
 */
static int head_set(char **ns, char **name, char **key, const char *in_ns, const char *in_name)
{
    *ns = strdup(in_ns);
    *name = strdup(in_name);
    *key = controller__key(in_ns, in_name);
    return *ns && *name && *key ? 0 : -ENOMEM;
}

static void head_release(char *ns, char *name, char *key, json_t *d)
{
    free(ns);
    free(name);
    free(key);
    json_decref(d);
}

static void pod_free(struct m_pod *p)
{
    if (!p)
        return;
    head_release(p->ns, p->name, p->key, p->d);
    json_decref(p->inbound);
    free(p);
}

static void svc_free(struct m_svc *s)
{
    if (!s)
        return;
    head_release(s->ns, s->name, s->key, s->d);
    json_decref(s->reach);
    json_decref(s->block);
    map_release(&s->callers);
    free(s);
}

static void slice_free(struct m_slice *s)
{
    if (!s)
        return;
    head_release(s->ns, s->name, s->key, s->d);
    free(s);
}

static void ident_free(struct m_ident *id)
{
    if (!id)
        return;
    free(id->key);
    free(id->ns);
    free(id->sa);
    free(id->spiffe);
    map_release(&id->pods);
    map_release(&id->outset);
    json_decref(id->outbound);
    free(id);
}

static void nsc_free(struct m_nsc *c)
{
    if (!c)
        return;
    MAP_FOREACH(&c->slices, s)
    slice_free(s->val);
    MAP_FOREACH(&c->splits, s)
    cr_free(s->val);
    MAP_FOREACH(&c->aps, s)
    cr_free(s->val);
    MAP_FOREACH(&c->rps, s)
    cr_free(s->val);
    MAP_FOREACH(&c->rgs, s)
    cr_free(s->val);
    map_release(&c->pods);
    map_release(&c->svcs);
    map_release(&c->slices);
    map_release(&c->sas);
    map_release(&c->splits);
    map_release(&c->aps);
    map_release(&c->rps);
    map_release(&c->rgs);
    map_release(&c->idents);
    MAP_FOREACH(&c->podrefs, s)
    {
        map_release(s->val);
        free(s->val);
    }
    map_release(&c->podrefs);
    json_decref(c->labels);
    free(c->name);
    free(c);
}

static void idx_release(struct map *idx)
{
    MAP_FOREACH(idx, s)
    {
        map_release(s->val);
        free(s->val);
    }
    map_release(idx);
}

void mesh_model_free(struct mesh_model *m)
{
    if (!m)
        return;
    MAP_FOREACH(&m->pods, s)
    pod_free(s->val);
    MAP_FOREACH(&m->svcs, s)
    svc_free(s->val);
    MAP_FOREACH(&m->idents, s)
    ident_free(s->val);
    MAP_FOREACH(&m->nss, s)
    nsc_free(s->val);
    map_release(&m->pods);
    map_release(&m->svcs);
    map_release(&m->idents);
    map_release(&m->nss);
    map_release(&m->reach_all);
    map_release(&m->reach_scan);
    idx_release(&m->reach_ns);
    idx_release(&m->reach_sa);
    map_release(&m->d_pods);
    map_release(&m->d_blocks);
    map_release(&m->d_reach);
    free(m->trust_domain);
    free(m->bundle_cm);
    free(m->bundle_key);
    free(m);
}

json_t *mesh_model_stats(const struct mesh_model *m)
{
    static const char *const names[MK__COUNT] = {
        "Namespace",    "Service",         "EndpointSlice", "ServiceAccount", "Pod",
        "TrafficSplit", "SMITrafficSplit", "AccessPolicy",  "RetryPolicy",    "HTTPRouteGroup"};
    static const enum mk order[MK__COUNT] = {MK_NAMESPACE, MK_SERVICE, MK_SLICE, MK_SA, MK_POD,
                                             MK_TS,        MK_SMITS,   MK_AP,    MK_RP, MK_RG};
    struct jbuild b = JBUILD_INIT;
    json_t *o = jbuild_new(&b, json_object());
    size_t i;

    for (i = 0; i < MK__COUNT; i++)
        jbuild_set(&b, o, names[i], json_integer((json_int_t)m->counts[order[i]]));
    jbuild_set(&b, o, "identities", json_integer((json_int_t)m->idents.n));
    return jbuild_end(&b, &o) ? NULL : o;
}

/* ---- digests ------------------------------------------------------------------------------ */

static bool has_proxy(const json_t *spec)
{
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(spec, "containers"), i, c)
    {
        const char *n = controller__jstr(c, "name");
        if (n && !strcmp(n, "weft-proxy"))
            return true;
    }
    json_array_foreach(json_object_get(spec, "initContainers"), i, c)
    {
        const char *n = controller__jstr(c, "name"), *rp = controller__jstr(c, "restartPolicy");
        if (n && !strcmp(n, "weft-proxy") && rp && !strcmp(rp, "Always"))
            return true;
    }
    return false;
}

static int cmp_port_obj(const void *a, const void *b)
{
    long long pa = controller__jint(*(json_t *const *)a, "port", 0);
    long long pb = controller__jint(*(json_t *const *)b, "port", 0);
    return pa < pb ? -1 : pa > pb;
}

/* Sort an array of {"port":n,...} objects by port, in place (a failure goes to b). */
static void sort_ports(struct jbuild *b, json_t *arr)
{
    size_t n = json_array_size(arr), i;
    json_t **v;
    if (n < 2)
        return;
    v = malloc(n * sizeof(*v));
    if (!v) {
        jbuild_fail(b, -ENOMEM);
        return;
    }
    for (i = 0; i < n; i++)
        v[i] = json_incref(json_array_get(arr, i));
    qsort(v, n, sizeof(*v), cmp_port_obj);
    json_array_clear(arr);
    for (i = 0; i < n; i++)
        jbuild_append(b, arr, v[i]);
    free(v);
}

static bool is_tcp(const json_t *port)
{
    const char *p = controller__jstr(port, "protocol");
    return !p || !strcmp(p, "TCP");
}

static json_t *pod_digest(const json_t *obj)
{
    const json_t *spec = json_object_get(obj, "spec");
    const char *sa = controller__jstr(spec, "serviceAccountName");
    const char *ip = controller__jstr(controller__jget(obj, "status"), "podIP");
    const char *phase = controller__jstr(controller__jget(obj, "status"), "phase");
    json_t *labels = controller__jget(obj, "metadata.labels");
    bool meshed =
        has_proxy(spec) && !(phase && (!strcmp(phase, "Succeeded") || !strcmp(phase, "Failed")));
    struct jbuild b = JBUILD_INIT;
    json_t *d, *ports = jbuild_new(&b, json_array()), *c, *p;
    size_t i, j;

    json_array_foreach(json_object_get(spec, "containers"), i, c)
    {
        const char *n = controller__jstr(c, "name");
        if (n && !strcmp(n, "weft-proxy"))
            continue;
        json_array_foreach(json_object_get(c, "ports"), j, p)
        {
            long long cp = controller__jint(p, "containerPort", 0);
            const char *pn = controller__jstr(p, "name");
            if (!is_tcp(p) || cp < 1 || cp > 65535)
                continue;
            jbuild_append(&b, ports,
                          json_pack("{s:s,s:I}", "name", pn ? pn : "", "port", (json_int_t)cp));
        }
    }
    sort_ports(&b, ports);
    if (jbuild_end(&b, &ports))
        return NULL;
    /* "o" steals: jansson releases labels and ports when the pack fails */
    d = json_pack("{s:s,s:s?,s:o,s:b,s:o}", "sa", sa && *sa ? sa : "default", "ip", ip, "labels",
                  jbuild_new(&b, json_is_object(labels) ? json_deep_copy(labels) : json_object()),
                  "meshed", meshed, "ports", ports);
    return jbuild_end(&b, &d) ? NULL : d;
}

static json_t *svc_digest(const json_t *obj)
{
    const json_t *spec = json_object_get(obj, "spec");
    const char *cip = controller__jstr(spec, "clusterIP");
    const char *type = controller__jstr(spec, "type");
    json_t *sel = json_object_get(spec, "selector"), *p, *d, *ports;
    bool headless = cip && !strcmp(cip, "None");
    struct jbuild b = JBUILD_INIT;
    size_t i;

    ports = jbuild_new(&b, json_array());
    if (!(type && !strcmp(type, "ExternalName"))) {
        json_array_foreach(json_object_get(spec, "ports"), i, p)
        {
            long long port = controller__jint(p, "port", 0);
            json_t *tp = json_object_get(p, "targetPort");
            const char *name = controller__jstr(p, "name");
            if (!is_tcp(p) || port < 1 || port > 65535)
                continue;
            if (!json_is_integer(tp) && !(json_is_string(tp) && *json_string_value(tp)))
                tp = NULL;
            if (json_is_string(tp) &&
                strspn(json_string_value(tp), "0123456789") == strlen(json_string_value(tp)))
                tp = NULL; /* numeric strings are not valid port names; use the port */
            jbuild_append(
                &b, ports,
                json_pack("{s:s,s:I,s:o,s:s?}", "name", name ? name : "", "port", (json_int_t)port,
                          "targetPort",
                          jbuild_new(&b, tp ? json_deep_copy(tp) : json_integer((json_int_t)port)),
                          "appProtocol", controller__jstr(p, "appProtocol")));
        }
    }
    sort_ports(&b, ports);
    if (jbuild_end(&b, &ports))
        return NULL;
    d = json_pack("{s:s?,s:b,s:o*,s:o}", "clusterIP", headless || !cip || !*cip ? NULL : cip,
                  "headless", headless, "selector",
                  json_is_object(sel) && json_object_size(sel) ? jbuild_new(&b, json_deep_copy(sel))
                                                               : NULL,
                  "ports", ports);
    return jbuild_end(&b, &d) ? NULL : d;
}

static int cmp_ep(const void *a, const void *b)
{
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    return strcmp(controller__jstr(x, "ip"), controller__jstr(y, "ip"));
}

static json_t *slice_digest(const json_t *obj)
{
    const char *svc =
        controller__jstr(controller__jget(obj, "metadata.labels"), "kubernetes.io/service-name");
    const char *at = controller__jstr(obj, "addressType");
    struct jbuild b = JBUILD_INIT;
    json_t *ports = jbuild_new(&b, json_array()), *eps = jbuild_new(&b, json_array()), *p, *e, *d;
    json_t **v = NULL;
    size_t i, n;

    if (b.rc)
        goto fail;
    if (!at || !strcmp(at, "IPv4") || !strcmp(at, "IPv6")) {
        json_array_foreach(json_object_get(obj, "ports"), i, p)
        {
            long long port = controller__jint(p, "port", 0);
            const char *name = controller__jstr(p, "name");
            if (!is_tcp(p) || port < 1 || port > 65535)
                continue;
            jbuild_append(
                &b, ports,
                json_pack("{s:s,s:I}", "name", name ? name : "", "port", (json_int_t)port));
        }
        json_array_foreach(json_object_get(obj, "endpoints"), i, e)
        {
            const char *ip = json_string_value(json_array_get(json_object_get(e, "addresses"), 0));
            json_t *ready = controller__jget(e, "conditions.ready");
            json_t *tr = json_object_get(e, "targetRef");
            const char *kind = controller__jstr(tr, "kind");
            const char *pod = kind && !strcmp(kind, "Pod") ? controller__jstr(tr, "name") : NULL;
            if (!ip)
                continue;
            jbuild_append(
                &b, eps,
                json_pack("{s:s,s:b,s:s?}", "ip", ip, "ready", !json_is_false(ready), "pod", pod));
        }
    }
    n = json_array_size(eps);
    if (n > 1) {
        v = malloc(n * sizeof(*v));
        if (!v)
            goto fail;
        for (i = 0; i < n; i++)
            v[i] = json_incref(json_array_get(eps, i));
        qsort(v, n, sizeof(*v), cmp_ep);
        json_array_clear(eps);
        for (i = 0; i < n; i++)
            jbuild_append(&b, eps, v[i]);
        free(v);
    }
    if (b.rc)
        goto fail;
    d = json_pack("{s:s?,s:o,s:o}", "service", svc, "ports", ports, "endpoints", eps);
    return jbuild_end(&b, &d) ? NULL : d;
fail:
    json_decref(ports);
    json_decref(eps);
    return NULL;
}

/* ---- custom resources: normalize and validate ------------------------------------------- */

static void vset(struct diag *v, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void vset(struct diag *v, const char *fmt, ...)
{
    va_list ap;
    if (v->text[0])
        return; /* keep the first problem */
    va_start(ap, fmt);
    diag_vset(v, fmt, ap);
    va_end(ap);
}

/*
 * A regular expression the proxies will accept: HAProxy 2.6 (Debian's, USE_PCRE2) compiles
 * `-m reg` patterns with PCRE2 and no options, so the same call decides here. On failure *why
 * holds PCRE2's message and the offset, such as "quantifier does not follow a repeatable item
 * at offset 2".
 */
static bool regex_ok(const char *re, char *why, size_t n)
{
    int err;
    PCRE2_SIZE off;
    pcre2_code *c = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED, 0, &err, &off, NULL);
    PCRE2_UCHAR msg[160];

    if (c) {
        pcre2_code_free(c);
        return true;
    }
    if (pcre2_get_error_message(err, msg, sizeof(msg)) < 0)
        snprintf((char *)msg, sizeof(msg), "error %d", err);
    snprintf(why, n, "%s at offset %zu", (const char *)msg, (size_t)off);
    return false;
}

static bool printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

/*
 * The norm_* functions below return NULL when their input is invalid (v says why) or memory ran
 * out (b records it): callers skip a NULL, and the parse_* function ends with jbuild_end.
 */

/* A path match {type,value} normalized; NULL (and v set) when invalid. */
static json_t *norm_path(struct jbuild *b, const json_t *p, const char *where, struct diag *v)
{
    const char *type = controller__jstr(p, "type"), *val = controller__jstr(p, "value");
    if (!type)
        type = "PathPrefix";
    if (!val || !*val || !printable(val)) {
        vset(v, "%s.value: a non-empty printable value is required", where);
        return NULL;
    }
    if (!strcmp(type, "RegularExpression")) {
        char why[200];

        if (!regex_ok(val, why, sizeof(why))) {
            vset(v, "%s.value: %s is not a valid regular expression (%s)", where, val, why);
            return NULL;
        }
    } else if (!strcmp(type, "Exact") || !strcmp(type, "PathPrefix")) {
        if (val[0] != '/') {
            vset(v, "%s.value: %s must start with \"/\"", where, val);
            return NULL;
        }
    } else {
        vset(v, "%s.type: %s is not one of Exact, PathPrefix, RegularExpression", where, type);
        return NULL;
    }
    return jbuild_new(b, json_pack("{s:s,s:s}", "type", type, "value", val));
}

static json_t *norm_headers(struct jbuild *b, const json_t *hs, const char *where, struct diag *v)
{
    json_t *out = jbuild_new(b, json_array()), *h;
    size_t i;
    if (!out)
        return NULL;
    json_array_foreach(hs, i, h)
    {
        const char *name = controller__jstr(h, "name"), *type = controller__jstr(h, "type");
        const char *val = controller__jstr(h, "value");
        char lname[257], why[200];
        size_t k;
        if (!type)
            type = "Exact";
        if (!name || !*name || strlen(name) >= sizeof(lname)) {
            vset(v, "%s[%zu].name: a header name is required", where, i);
            goto fail;
        }
        for (k = 0; name[k]; k++)
            lname[k] = (char)tolower((unsigned char)name[k]);
        lname[k] = '\0';
        if (!strcmp(type, "Present")) {
            if (val) {
                vset(v, "%s[%zu].value: must be empty for type Present", where, i);
                goto fail;
            }
            jbuild_append(b, out, json_pack("{s:s,s:s}", "name", lname, "type", type));
            continue;
        }
        if (strcmp(type, "Exact") != 0 && strcmp(type, "RegularExpression") != 0) {
            vset(v, "%s[%zu].type: %s is not one of Exact, RegularExpression, Present", where, i,
                 type);
            goto fail;
        }
        if (!val || !printable(val)) {
            vset(v, "%s[%zu].value: required for type %s", where, i, type);
            goto fail;
        }
        if (!strcmp(type, "RegularExpression") && !regex_ok(val, why, sizeof(why))) {
            vset(v, "%s[%zu].value: %s is not a valid regular expression (%s)", where, i, val, why);
            goto fail;
        }
        jbuild_append(b, out,
                      json_pack("{s:s,s:s,s:s}", "name", lname, "type", type, "value", val));
    }
    return out;
fail:
    json_decref(out);
    return NULL;
}

/* A TrafficSplit match {path?, headers?, method?} normalized. */
static json_t *norm_match(struct jbuild *b, const json_t *mt, const char *where, struct diag *v)
{
    json_t *out = jbuild_new(b, json_object()), *x;
    const char *method = controller__jstr(mt, "method");
    char w[128];

    if (!out)
        return NULL;
    if (json_object_get(mt, "path")) {
        snprintf(w, sizeof(w), "%s.path", where);
        if (!(x = norm_path(b, json_object_get(mt, "path"), w, v)))
            goto fail;
        jbuild_set(b, out, "path", x);
    }
    if (json_array_size(json_object_get(mt, "headers"))) {
        snprintf(w, sizeof(w), "%s.headers", where);
        if (!(x = norm_headers(b, json_object_get(mt, "headers"), w, v)))
            goto fail;
        jbuild_set(b, out, "headers", x);
    }
    if (method)
        jbuild_set(b, out, "method", json_string(method));
    return out;
fail:
    json_decref(out);
    return NULL;
}

/* The apex of an SMI split: "name" or "name.<ns>[.svc[.<domain>]]". */
static char *smi_apex(const char *svc, const char *ns, struct diag *v)
{
    const char *dot = strchr(svc, '.');
    size_t nl = strlen(ns);
    if (!dot)
        return strdup(svc);
    if (strncmp(dot + 1, ns, nl) == 0 && (dot[1 + nl] == '\0' || dot[1 + nl] == '.'))
        return strndup(svc, (size_t)(dot - svc));
    vset(v, "spec.service: %s is not in namespace %s (cross-namespace splits are not supported)",
         svc, ns);
    return NULL;
}

static json_t *parse_split(const json_t *obj, bool smi, const char *ns, struct diag *v)
{
    const json_t *spec = json_object_get(obj, "spec");
    const char *svc = controller__jstr(spec, "service");
    char *apex = NULL;
    json_t *d = NULL, *bs = NULL, *ms = NULL, *refs = NULL, *b;
    long long sum = 0, port = controller__jint(spec, "port", 0);
    struct jbuild jb = JBUILD_INIT;
    size_t i, j;

    bs = jbuild_new(&jb, json_array());
    if (!bs)
        goto out;
    if (!svc || !*svc) {
        vset(v, "spec.service: required");
    } else if (smi) {
        apex = smi_apex(svc, ns, v);
    } else {
        apex = strdup(svc);
    }
    if (port < 0 || port > 65535 || (json_object_get(spec, "port") && port == 0))
        vset(v, "spec.port: must be 1..65535");
    if (smi)
        port = 0;
    if (!json_array_size(json_object_get(spec, "backends")))
        vset(v, "spec.backends: at least one backend is required");
    if (json_array_size(json_object_get(spec, "backends")) > 16)
        vset(v, "spec.backends: at most 16 backends");
    json_array_foreach(json_object_get(spec, "backends"), i, b)
    {
        const char *bsvc = controller__jstr(b, "service");
        json_t *wv = json_object_get(b, "weight");
        long long w = smi ? controller__quantity_milli(wv)
                          : (json_is_integer(wv) ? controller__jint(b, "weight", -1) : -1);
        if (!smi && w >= 0)
            w = w > 1000000 ? -1 : w * 1000;
        if (!bsvc || !*bsvc) {
            vset(v, "spec.backends[%zu].service: required", i);
            continue;
        }
        if (w < 0) {
            vset(v, "spec.backends[%zu].weight: must be %s", i,
                 smi ? "a non-negative quantity" : "an integer 0..1000000");
            continue;
        }
        /* the backends accepted so far (a skipped one left no entry) */
        for (j = 0; j < json_array_size(bs); j++)
            if (!strcmp(controller__jstr(json_array_get(bs, j), "service"), bsvc))
                vset(v, "spec.backends[%zu].service: %s is listed twice", i, bsvc);
        sum += w;
        jbuild_append(&jb, bs, json_pack("{s:s,s:I}", "service", bsvc, "w", (json_int_t)w));
    }
    if (json_array_size(bs) && sum == 0)
        vset(v, "spec.backends: the weights sum to 0; at least one must be positive");
    if (!smi && json_array_size(json_object_get(spec, "matches"))) {
        json_t *mt;
        ms = jbuild_new(&jb, json_array());
        if (!ms)
            goto out;
        json_array_foreach(json_object_get(spec, "matches"), i, mt)
        {
            char w[64];
            json_t *n;
            snprintf(w, sizeof(w), "spec.matches[%zu]", i);
            if ((n = norm_match(&jb, mt, w, v)))
                jbuild_append(&jb, ms, n);
        }
    }
    if (smi && json_array_size(json_object_get(spec, "matches"))) {
        json_t *r;
        refs = jbuild_new(&jb, json_array());
        if (!refs)
            goto out;
        json_array_foreach(json_object_get(spec, "matches"), i, r)
        {
            const char *k = controller__jstr(r, "kind"), *n = controller__jstr(r, "name");
            if (!k || !n) {
                vset(v, "spec.matches[%zu]: kind and name are required", i);
                continue;
            }
            jbuild_append(&jb, refs, json_pack("{s:s,s:s}", "kind", k, "name", n));
        }
    }
    if (svc && *svc && !apex && !v->text[0])
        jbuild_fail(&jb, -ENOMEM); /* the copy of the apex */
    if (!jb.rc)
        d = json_pack("{s:s?,s:I,s:O,s:O*,s:O*}", "apex", apex, "port", (json_int_t)port,
                      "backends", bs, "matches", ms, "refs", refs);
out:
    if (jbuild_end(&jb, &d))
        d = NULL;
    free(apex);
    json_decref(bs);
    json_decref(ms);
    json_decref(refs);
    return d;
}

static json_t *norm_from(struct jbuild *b, const json_t *from, const char *ns, struct diag *v)
{
    json_t *out = jbuild_new(b, json_array()), *f;
    size_t i;
    if (!out)
        return NULL;
    json_array_foreach(from, i, f)
    {
        json_t *sa = json_object_get(f, "serviceAccount"),
               *sel = json_object_get(f, "namespaceSelector");
        const char *nsn = controller__jstr(f, "namespace");
        json_t *sp = json_object_get(f, "spiffeID");
        int kinds = !!sa + !!nsn + !!sel + !!sp;
        if (kinds != 1) {
            vset(v,
                 "spec.from[%zu]: exactly one of serviceAccount, namespace, namespaceSelector, "
                 "spiffeID is required",
                 i);
            continue;
        }
        if (sa) {
            const char *n = controller__jstr(sa, "name"), *sns = controller__jstr(sa, "namespace");
            char *k;
            if (!n || !*n) {
                vset(v, "spec.from[%zu].serviceAccount.name: required", i);
                continue;
            }
            k = controller__key(sns && *sns ? sns : ns, n);
            if (!k) {
                jbuild_fail(b, -ENOMEM);
                goto fail;
            }
            jbuild_append(b, out, json_pack("{s:s}", "sa", k));
            free(k);
        } else if (nsn) {
            jbuild_append(b, out, json_pack("{s:s}", "ns", nsn));
        } else if (sel) {
            jbuild_append(b, out, json_pack("{s:o}", "nssel", jbuild_new(b, json_deep_copy(sel))));
        } else {
            const char *t = controller__jstr(sp, "type"), *val = controller__jstr(sp, "value");
            if (!val || strncmp(val, "spiffe://", 9) != 0 || !printable(val)) {
                vset(v, "spec.from[%zu].spiffeID.value: must start with spiffe://", i);
                continue;
            }
            if (t && !strcmp(t, "Prefix"))
                jbuild_append(b, out, json_pack("{s:s}", "prefix", val));
            else if (!t || !strcmp(t, "Exact"))
                jbuild_append(b, out, json_pack("{s:s}", "id", val));
            else
                vset(v, "spec.from[%zu].spiffeID.type: %s is not one of Exact, Prefix", i, t);
        }
    }
    return out;
fail:
    json_decref(out);
    return NULL;
}

static json_t *norm_rules(struct jbuild *b, const json_t *rules, struct diag *v)
{
    json_t *out = jbuild_new(b, json_array()), *r;
    size_t i, j;
    if (!out)
        return NULL;
    json_array_foreach(rules, i, r)
    {
        json_t *o = jbuild_new(b, json_object()), *x, *p;
        char w[96];
        if (!o)
            break;
        jbuild_append(b, out, json_incref(o)); /* o stays ours until the end of the turn */
        if (json_array_size(json_object_get(r, "methods")))
            jbuild_set(b, o, "methods", json_deep_copy(json_object_get(r, "methods")));
        if (json_array_size(json_object_get(r, "paths"))) {
            x = jbuild_new(b, json_array());
            jbuild_set_ref(b, o, "paths", x);
            json_array_foreach(json_object_get(r, "paths"), j, p)
            {
                json_t *n;
                snprintf(w, sizeof(w), "spec.rules[%zu].paths[%zu]", i, j);
                if ((n = norm_path(b, p, w, v)))
                    jbuild_append(b, x, n);
            }
            json_decref(x);
        }
        if (json_array_size(json_object_get(r, "headers"))) {
            snprintf(w, sizeof(w), "spec.rules[%zu].headers", i);
            if ((x = norm_headers(b, json_object_get(r, "headers"), w, v)))
                jbuild_set(b, o, "headers", x);
        }
        json_decref(o);
    }
    return out;
}

static json_t *parse_ap(const json_t *obj, const char *ns, struct diag *v)
{
    const json_t *spec = json_object_get(obj, "spec");
    json_t *tr = json_object_get(spec, "targetRef"), *sel = json_object_get(spec, "selector");
    const char *action = controller__jstr(spec, "action");
    json_t *target = NULL, *from = NULL, *rules = NULL, *ports = NULL, *d = NULL, *p;
    struct jbuild b = JBUILD_INIT;
    size_t i;

    if (!!tr == !!sel) {
        vset(v, "spec: exactly one of targetRef and selector is required");
    } else if (tr) {
        const char *k = controller__jstr(tr, "kind"), *n = controller__jstr(tr, "name");
        if (k && !strcmp(k, "Service")) {
            if (!n || !*n)
                vset(v, "spec.targetRef.name: required for kind Service");
            else
                target = jbuild_new(&b, json_pack("{s:s,s:s}", "kind", "Service", "name", n));
        } else if (k && !strcmp(k, "Namespace")) {
            if (n && strcmp(n, ns) != 0)
                vset(v, "spec.targetRef.name: a policy can only target its own namespace (%s)", ns);
            else
                target = jbuild_new(&b, json_pack("{s:s,s:s}", "kind", "Namespace", "name", ns));
        } else {
            vset(v, "spec.targetRef.kind: %s is not one of Service, Namespace", k ? k : "\"\"");
        }
    } else {
        target = jbuild_new(&b, json_pack("{s:s,s:o}", "kind", "Selector", "selector",
                                          jbuild_new(&b, json_deep_copy(sel))));
    }
    if (!action || (strcmp(action, "Allow") && strcmp(action, "Deny") && strcmp(action, "Audit")))
        vset(v, "spec.action: must be one of Allow, Deny, Audit");
    if (json_object_get(spec, "ports")) {
        ports = jbuild_new(&b, json_array());
        if (!ports)
            goto out;
        json_array_foreach(json_object_get(spec, "ports"), i, p)
        {
            long long n = json_is_integer(p) ? (long long)json_integer_value(p) : 0;
            if (n < 1 || n > 65535)
                vset(v, "spec.ports[%zu]: must be 1..65535", i);
            else
                jbuild_append(&b, ports, json_integer((json_int_t)n));
        }
    }
    if (json_object_get(spec, "from") &&
        !(from = norm_from(&b, json_object_get(spec, "from"), ns, v)))
        goto out;
    if (json_array_size(json_object_get(spec, "rules")) &&
        !(rules = norm_rules(&b, json_object_get(spec, "rules"), v)))
        goto out;
    if (!b.rc)
        d = json_pack("{s:O*,s:O*,s:s?,s:O*,s:O*}", "target", target, "ports", ports, "action",
                      action, "from", from, "rules", rules);
out:
    if (jbuild_end(&b, &d))
        d = NULL;
    json_decref(target);
    json_decref(from);
    json_decref(rules);
    json_decref(ports);
    return d;
}

static const char *const retry_on_ok[] = {"connect-failure",
                                          "empty-response",
                                          "junk-response",
                                          "response-timeout",
                                          "0rtt-rejected",
                                          "401",
                                          "403",
                                          "404",
                                          "408",
                                          "425",
                                          "500",
                                          "501",
                                          "502",
                                          "503",
                                          "504"};

static json_t *parse_rp(const json_t *obj, struct diag *v)
{
    const json_t *spec = json_object_get(obj, "spec"), *tr = json_object_get(spec, "targetRef");
    const char *kind = controller__jstr(tr, "kind"), *name = controller__jstr(tr, "name");
    const char *pt = controller__jstr(spec, "perTryTimeout"),
               *to = controller__jstr(spec, "timeout");
    long long port = controller__jint(tr, "port", 0), att = controller__jint(spec, "attempts", -1);
    long long ptms = pt ? controller__duration_ms(pt) : 0,
              toms = to ? controller__duration_ms(to) : 0;
    struct jbuild b = JBUILD_INIT;
    json_t *ro = jbuild_new(&b, json_array()), *x, *d;
    size_t i, k;

    if (!ro)
        return NULL;
    if (kind && strcmp(kind, "Service") != 0)
        vset(v, "spec.targetRef.kind: only Service is supported");
    if (!name || !*name)
        vset(v, "spec.targetRef.name: required");
    if (port < 0 || port > 65535)
        vset(v, "spec.targetRef.port: must be 1..65535");
    if (att < 0 || att > 10)
        vset(v, "spec.attempts: must be an integer 0..10");
    if (ptms < 0)
        vset(v, "spec.perTryTimeout: %s is not a duration like 500ms, 2s or 1m30s", pt);
    if (toms < 0)
        vset(v, "spec.timeout: %s is not a duration like 500ms, 2s or 1m30s", to);
    if (ptms > 0 && toms > 0 && ptms > toms)
        vset(v, "spec.perTryTimeout: %s exceeds spec.timeout %s", pt, to);
    for (k = 0; k < ARRAY_LEN(retry_on_ok); k++) {
        /* canonical order, duplicates dropped */
        json_array_foreach(json_object_get(spec, "retryOn"), i, x)
        {
            if (json_is_string(x) && !strcmp(json_string_value(x), retry_on_ok[k])) {
                jbuild_append(&b, ro, json_string(retry_on_ok[k]));
                break;
            }
        }
    }
    json_array_foreach(json_object_get(spec, "retryOn"), i, x)
    {
        const char *s = json_string_value(x);
        bool ok = false;
        for (k = 0; s && k < ARRAY_LEN(retry_on_ok); k++)
            ok = ok || !strcmp(s, retry_on_ok[k]);
        if (!ok)
            vset(v, "spec.retryOn[%zu]: %s is not a condition HAProxy 2.6 can retry on", i,
                 s ? s : "(non-string)");
    }
    if (!json_array_size(ro))
        jbuild_append(&b, ro, json_string("connect-failure"));
    if (jbuild_end(&b, &ro))
        return NULL;
    d = json_pack("{s:s?,s:I,s:I,s:I,s:I,s:o}", "service", name, "port", (json_int_t)port,
                  "attempts", (json_int_t)(att < 0 ? 0 : att), "perTryTimeoutMs",
                  (json_int_t)(ptms > 0 ? ptms : 0), "timeoutMs", (json_int_t)(toms > 0 ? toms : 0),
                  "retryOn", ro);
    return jbuild_end(&b, &d) ? NULL : d;
}

/* HTTPRouteGroup: matches[{name, pathRegex, methods, headers}] into TrafficSplit matches. */
static json_t *parse_rg(const json_t *obj, struct diag *v)
{
    struct jbuild b = JBUILD_INIT;
    json_t *out = jbuild_new(&b, json_array()), *mt;
    size_t i, j;
    if (!out)
        return NULL;
    json_array_foreach(controller__jget(obj, "spec.matches"), i, mt)
    {
        const char *re = controller__jstr(mt, "pathRegex");
        json_t *methods = json_object_get(mt, "methods"), *hs = json_object_get(mt, "headers");
        json_t *headers = jbuild_new(&b, json_array()), *base = jbuild_new(&b, json_object()), *mm;
        const char *k;
        json_t *hv;
        bool any = !json_array_size(methods);
        if (!headers || !base) {
            json_decref(headers);
            json_decref(base);
            break;
        }
        if (re && *re) {
            char why[200];

            if (!regex_ok(re, why, sizeof(why)))
                vset(v, "spec.matches[%zu].pathRegex: %s is not a valid regular expression (%s)", i,
                     re, why);
            jbuild_set(&b, base, "path",
                       json_pack("{s:s,s:s}", "type", "RegularExpression", "value", re));
        }
        /* headers: a map (v1alpha2+) or a list of one-entry maps (v1alpha1) */
        if (json_is_object(hs))
            hs = jbuild_new(&b, json_pack("[O]", hs));
        else
            json_incref(hs);
        json_array_foreach(hs, j, hv)
        {
            json_t *val;
            json_object_foreach(hv, k, val)
            {
                char lname[257];
                size_t c;
                for (c = 0; k[c] && c + 1 < sizeof(lname); c++)
                    lname[c] = (char)tolower((unsigned char)k[c]);
                lname[c] = '\0';
                char why[200] = "not a string";

                if (!json_is_string(val) || !regex_ok(json_string_value(val), why, sizeof(why)))
                    vset(v, "spec.matches[%zu].headers.%s: not a valid regular expression (%s)", i,
                         k, why);
                else
                    jbuild_append(&b, headers,
                                  json_pack("{s:s,s:s,s:s}", "name", lname, "type",
                                            "RegularExpression", "value", json_string_value(val)));
            }
        }
        json_decref(hs);
        if (json_array_size(headers))
            jbuild_set_ref(&b, base, "headers", headers);
        json_decref(headers);
        json_array_foreach(methods, j, mm) if (json_is_string(mm) &&
                                               !strcmp(json_string_value(mm), "*")) any = true;
        if (any) {
            jbuild_append(&b, out, base);
            continue;
        }
        json_array_foreach(methods, j, mm)
        {
            json_t *c = jbuild_new(&b, json_deep_copy(base));
            if (c && json_is_string(mm))
                jbuild_set_ref(&b, c, "method", mm);
            if (c)
                jbuild_append(&b, out, c);
        }
        json_decref(base);
    }
    return jbuild_end(&b, &out) ? NULL : out;
}

/* ---- kind recognition --------------------------------------------------------------------- */

static bool group_is(const char *api_version, const char *group)
{
    size_t n = strlen(group);
    return api_version && !strncmp(api_version, group, n) && api_version[n] == '/';
}

static int kind_of_obj(const json_t *obj, enum mk *out)
{
    const char *av = controller__jstr(obj, "apiVersion"), *k = controller__jstr(obj, "kind");
    if (!av || !k)
        return ERR_UNSUPPORTED;
    if (!strcmp(av, "v1")) {
        if (!strcmp(k, "Namespace"))
            *out = MK_NAMESPACE;
        else if (!strcmp(k, "Service"))
            *out = MK_SERVICE;
        else if (!strcmp(k, "Pod"))
            *out = MK_POD;
        else if (!strcmp(k, "ServiceAccount"))
            *out = MK_SA;
        else
            return ERR_UNSUPPORTED;
    } else if (group_is(av, "discovery.k8s.io") && !strcmp(k, "EndpointSlice")) {
        *out = MK_SLICE;
    } else if (group_is(av, "mesh.weft.dev")) {
        if (!strcmp(k, "TrafficSplit"))
            *out = MK_TS;
        else if (!strcmp(k, "AccessPolicy"))
            *out = MK_AP;
        else if (!strcmp(k, "RetryPolicy"))
            *out = MK_RP;
        else
            return ERR_UNSUPPORTED;
    } else if (group_is(av, "split.smi-spec.io") && !strcmp(k, "TrafficSplit")) {
        *out = MK_SMITS;
    } else if (group_is(av, "specs.smi-spec.io") && !strcmp(k, "HTTPRouteGroup")) {
        *out = MK_RG;
    } else {
        return ERR_UNSUPPORTED;
    }
    return 0;
}

int controller__kind_of_name(const char *kind, enum mk *out)
{
    static const struct {
        const char *name;
        enum mk k;
    } t[] = {{"Namespace", MK_NAMESPACE},
             {"Service", MK_SERVICE},
             {"EndpointSlice", MK_SLICE},
             {"EndpointSlice.discovery.k8s.io", MK_SLICE},
             {"Pod", MK_POD},
             {"ServiceAccount", MK_SA},
             {"TrafficSplit", MK_TS},
             {"TrafficSplit.mesh.weft.dev", MK_TS},
             {"TrafficSplit.split.smi-spec.io", MK_SMITS},
             {"AccessPolicy", MK_AP},
             {"AccessPolicy.mesh.weft.dev", MK_AP},
             {"RetryPolicy", MK_RP},
             {"RetryPolicy.mesh.weft.dev", MK_RP},
             {"HTTPRouteGroup", MK_RG},
             {"HTTPRouteGroup.specs.smi-spec.io", MK_RG}};
    size_t i;
    for (i = 0; kind && i < ARRAY_LEN(t); i++) {
        if (!strcmp(kind, t[i].name)) {
            *out = t[i].k;
            return 0;
        }
    }
    return ERR_UNSUPPORTED;
}

/* ---- dependency marking ------------------------------------------------------------------- */

/* The pod's own inputs moved: its inbound section is recompiled too. */
static void mark_pod(struct mesh_model *m, struct m_pod *p)
{
    json_decref(p->inbound);
    p->inbound = NULL;
    controller__mark(&m->d_pods, p->key, m);
}

static void mark_ident_pods(struct mesh_model *m, struct m_ident *id)
{
    MAP_FOREACH(&id->pods, s)
    controller__mark(&m->d_pods, s->key, m);
}

static void mark_svc(struct mesh_model *m, const char *ns, const char *name, bool block, bool reach)
{
    char *k = controller__key(ns, name);
    if (!k)
        return;
    if (block)
        controller__mark(&m->d_blocks, k, m);
    if (reach)
        controller__mark(&m->d_reach, k, m);
    free(k);
}

/* Pods of ns that a Service selector (plain map) selects. */
static void mark_selected_pods(struct mesh_model *m, struct m_nsc *c, const json_t *sel)
{
    if (!json_is_object(sel) || !json_object_size(sel))
        return;
    MAP_FOREACH(&c->pods, s)
    {
        struct m_pod *p = s->val;
        if (controller__map_selects(sel, json_object_get(p->d, "labels")))
            mark_pod(m, p);
    }
}

/* Apexes of the splits in c that list svc as a backend (or have it as apex). */
static void mark_split_apexes_using(struct mesh_model *m, struct m_nsc *c, const char *svc)
{
    MAP_FOREACH(&c->splits, s)
    {
        struct m_cr *t = s->val;
        const char *apex = controller__jstr(t->d, "apex");
        json_t *b;
        size_t i;
        bool uses = apex && !strcmp(apex, svc);
        json_array_foreach(json_object_get(t->d, "backends"), i, b) uses =
            uses || !strcmp(controller__jstr(b, "service"), svc);
        if (uses && apex)
            mark_svc(m, c->name, apex, true, true);
    }
}

static void mark_ap_targets(struct mesh_model *m, struct m_nsc *c, const struct m_cr *ap)
{
    const char *kind = controller__jstr(controller__jget(ap->d, "target"), "kind");
    const char *name = controller__jstr(controller__jget(ap->d, "target"), "name");
    MAP_FOREACH(&c->pods, s)
    {
        if (controller__ap_targets_pod(m, ap, s->val))
            mark_pod(m, s->val);
    }
    /* reach: the services whose caller rule can include this policy (in the scope "mesh"
     * every caller may call every meshed Service: policies change no caller rule) */
    if (m->scope == MESH_OUTBOUND_MESH)
        return;
    MAP_FOREACH(&c->svcs, s)
    {
        struct m_svc *sv = s->val;
        if (!kind || strcmp(kind, "Service") != 0 || (name && !strcmp(name, sv->name)))
            controller__mark(&m->d_reach, sv->key, m);
    }
}

/* ---- identities --------------------------------------------------------------------------- */

static struct m_ident *ident_get(struct mesh_model *m, const char *ns, const char *sa)
{
    char *k = controller__key(ns, sa);
    struct m_ident *id = NULL;
    struct m_nsc *c = controller__nsc(m, ns, true);

    if (!k || !c)
        goto out;
    id = map_get(&m->idents, k);
    if (id)
        goto out;
    id = calloc(1, sizeof(*id));
    if (!id)
        goto out;
    id->key = k;
    k = NULL;
    id->ns = strdup(ns);
    id->sa = strdup(sa);
    id->spiffe = controller__spiffe(m, ns, sa);
    id->fresh = true;
    if (!id->ns || !id->sa || !id->spiffe || map_put(&m->idents, id->key, id) < 0) {
        ident_free(id);
        id = NULL;
        goto out;
    }
    if (map_put(&c->idents, id->key, id) < 0) {
        map_del(&m->idents, id->key);
        ident_free(id);
        id = NULL;
        goto out;
    }
    m->pending = true;
out:
    free(k);
    return id;
}

static void ident_drop_pod(struct mesh_model *m, struct m_pod *p)
{
    struct m_ident *id = p->ident;
    struct m_nsc *c;
    if (!id)
        return;
    p->ident = NULL;
    map_del(&id->pods, p->key);
    if (id->pods.n)
        return;
    controller__ident_unlink(m, id);
    c = controller__nsc(m, id->ns, false);
    if (c)
        map_del(&c->idents, id->key);
    map_del(&m->idents, id->key);
    ident_free(id);
}

static int ident_add_pod(struct mesh_model *m, struct m_pod *p)
{
    struct m_ident *id = ident_get(m, p->ns, controller__jstr(p->d, "sa"));
    if (!id)
        return -ENOMEM;
    if (map_put(&id->pods, p->key, p) < 0) {
        if (!id->pods.n) {
            struct m_nsc *c = controller__nsc(m, id->ns, false);
            if (c)
                map_del(&c->idents, id->key);
            map_del(&m->idents, id->key);
            ident_free(id);
        }
        return -ENOMEM;
    }
    p->ident = id;
    return 0;
}

/* Services whose slices list pod `name` as an endpoint: their blocks and meshed flag. */
static void mark_svcs_of_pod(struct mesh_model *m, struct m_nsc *c, const char *name)
{
    struct map *sub = map_get(&c->podrefs, name);
    if (!sub)
        return;
    MAP_FOREACH(sub, s)
    {
        mark_svc(m, c->name, s->key, true, true);
        mark_split_apexes_using(m, c, s->key);
    }
}

/* Count (delta +1/-1) the references of a slice digest's endpoints to their pods. */
static int podrefs_update(struct m_nsc *c, const json_t *d, int delta)
{
    const char *svc = controller__jstr(d, "service");
    json_t *e;
    size_t i;
    if (!svc)
        return 0;
    json_array_foreach(json_object_get(d, "endpoints"), i, e)
    {
        const char *pn = controller__jstr(e, "pod");
        struct map *sub;
        uintptr_t n;
        if (!pn)
            continue;
        sub = map_get(&c->podrefs, pn);
        if (!sub && delta > 0) {
            sub = calloc(1, sizeof(*sub));
            if (!sub || map_put(&c->podrefs, pn, sub) < 0) {
                free(sub);
                return -ENOMEM;
            }
        }
        if (!sub)
            continue;
        n = (uintptr_t)map_get(sub, svc);
        if (delta > 0) {
            if (map_put(sub, svc, (void *)(n + 1)) < 0)
                return -ENOMEM;
        } else if (n > 1) {
            IGNORE_RESULT(map_put(sub, svc, (void *)(n - 1))); /* replaces: cannot fail */
        } else {
            map_del(sub, svc);
            if (!sub->n) {
                map_release(sub);
                free(map_del(&c->podrefs, pn));
            }
        }
    }
    return 0;
}

/* ---- upsert / delete per kind ------------------------------------------------------------- */

/*
 * Pod: its own document when anything in its digest moved; when its service account or
 * meshed flag moved, also the outbound blocks of the services whose endpoints it backs (their
 * endpoint identities) and their meshed flags.
 */
static int pod_changed(struct mesh_model *m, struct m_nsc *c, struct m_pod *old, json_t *nd,
                       const char *name)
{
    struct m_pod *p = old;
    bool was_meshed = old && old->meshed,
         meshed = nd && json_is_true(json_object_get(nd, "meshed"));
    bool id_moved;
    int rc = 0;

    if (old && nd && json_equal(old->d, nd)) {
        json_decref(nd);
        return 0;
    }
    id_moved =
        was_meshed != meshed ||
        (old && nd && strcmp(controller__jstr(old->d, "sa"), controller__jstr(nd, "sa")) != 0);
    if (!p) {
        p = calloc(1, sizeof(*p));
        if (!p)
            goto nomem;
        if (head_set(&p->ns, &p->name, &p->key, c->name, name) < 0 ||
            map_put(&m->pods, p->key, p) < 0)
            goto nomem_free;
        if (map_put(&c->pods, p->name, p) < 0) {
            map_del(&m->pods, p->key);
            goto nomem_free;
        }
        m->counts[MK_POD]++;
    }
    if (was_meshed || meshed)
        mark_pod(m, p);
    if (id_moved || !nd)
        mark_svcs_of_pod(m, c, p->name);
    if (id_moved || !nd)
        ident_drop_pod(m, p);
    if (!nd) {
        map_del(&c->pods, p->name);
        map_del(&m->pods, p->key);
        m->counts[MK_POD]--;
        pod_free(p);
        return 0;
    }
    json_decref(p->d);
    p->d = nd;
    p->meshed = meshed;
    if (meshed && !p->ident)
        rc = ident_add_pod(m, p);
    return rc;
nomem_free:
    pod_free(p);
nomem:
    json_decref(nd);
    return -ENOMEM;
}

/*
 * Service: its block and caller rule; the pods either selector selects (inbound protocol hints
 * and Service-targeted policies); the apexes of splits that use it.
 */
static int svc_changed(struct mesh_model *m, struct m_nsc *c, struct m_svc *old, json_t *nd,
                       const char *name)
{
    struct m_svc *s = old;

    if (old && nd && json_equal(old->d, nd)) {
        json_decref(nd);
        return 0;
    }
    if (old)
        mark_selected_pods(m, c, json_object_get(old->d, "selector"));
    if (nd)
        mark_selected_pods(m, c, json_object_get(nd, "selector"));
    mark_split_apexes_using(m, c, name);
    if (!nd) {
        controller__svc_unlink(m, s);
        map_del(&m->d_blocks, s->key);
        map_del(&m->d_reach, s->key);
        map_del(&c->svcs, s->name);
        map_del(&m->svcs, s->key);
        m->counts[MK_SERVICE]--;
        svc_free(s);
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s)
            goto nomem;
        s->reach = json_false();
        if (head_set(&s->ns, &s->name, &s->key, c->name, name) < 0 ||
            map_put(&m->svcs, s->key, s) < 0) {
            svc_free(s);
            goto nomem;
        }
        if (map_put(&c->svcs, s->name, s) < 0) {
            map_del(&m->svcs, s->key);
            svc_free(s);
            goto nomem;
        }
        m->counts[MK_SERVICE]++;
    }
    json_decref(s->d);
    s->d = nd;
    controller__mark(&m->d_blocks, s->key, m);
    controller__mark(&m->d_reach, s->key, m);
    return 0;
nomem:
    json_decref(nd);
    return -ENOMEM;
}

/* EndpointSlice: the blocks and meshed flags of its service (before and after) and of the
 * apexes that use it as a backend. */
static int slice_changed(struct mesh_model *m, struct m_nsc *c, struct m_slice *old, json_t *nd,
                         const char *name)
{
    struct m_slice *s = old;
    const char *osvc = old ? controller__jstr(old->d, "service") : NULL;
    const char *nsvc = nd ? controller__jstr(nd, "service") : NULL;

    if (old && nd && json_equal(old->d, nd)) {
        json_decref(nd);
        return 0;
    }
    if (osvc) {
        mark_svc(m, c->name, osvc, true, true);
        mark_split_apexes_using(m, c, osvc);
    }
    if (nsvc) {
        mark_svc(m, c->name, nsvc, true, true);
        mark_split_apexes_using(m, c, nsvc);
    }
    if (old)
        IGNORE_RESULT(podrefs_update(c, old->d, -1));
    if (!nd) {
        map_del(&c->slices, s->name);
        m->counts[MK_SLICE]--;
        slice_free(s);
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s)
            goto nomem;
        if (head_set(&s->ns, &s->name, &s->key, c->name, name) < 0 ||
            map_put(&c->slices, s->name, s) < 0) {
            slice_free(s);
            goto nomem;
        }
        m->counts[MK_SLICE]++;
    }
    json_decref(s->d);
    s->d = nd;
    return podrefs_update(c, nd, +1);
nomem:
    json_decref(nd);
    return -ENOMEM;
}

/* What a custom resource change dirties, for the old or the new version. */
static void cr_mark(struct mesh_model *m, struct m_nsc *c, const struct m_cr *cr)
{
    const char *apex, *svc;
    json_t *r;
    size_t i;

    switch (cr->kind) {
    case MK_TS:
    case MK_SMITS:
        if ((apex = controller__jstr(cr->d, "apex")))
            mark_svc(m, c->name, apex, true, true);
        break;
    case MK_AP:
        mark_ap_targets(m, c, cr);
        break;
    case MK_RP:
        if ((svc = controller__jstr(cr->d, "service")))
            mark_svc(m, c->name, svc, true, false);
        break;
    case MK_RG:
        /* the SMI splits that reference this route group */
        MAP_FOREACH(&c->splits, s)
        {
            struct m_cr *t = s->val;
            json_array_foreach(json_object_get(t->d, "refs"), i, r)
            {
                if (!strcmp(controller__jstr(r, "name"), cr->name) &&
                    (apex = controller__jstr(t->d, "apex")))
                    mark_svc(m, c->name, apex, true, false);
            }
        }
        break;
    default:
        break;
    }
}

static struct map *cr_map(struct m_nsc *c, enum mk kind)
{
    switch (kind) {
    case MK_TS:
    case MK_SMITS:
        return &c->splits;
    case MK_AP:
        return &c->aps;
    case MK_RP:
        return &c->rps;
    default:
        return &c->rgs;
    }
}

static void cr_mapkey(enum mk kind, const char *name, char *out, size_t n)
{
    if (kind == MK_TS || kind == MK_SMITS)
        snprintf(out, n, "%c/%s", kind == MK_SMITS ? 's' : 'w', name);
    else
        snprintf(out, n, "%s", name);
}

/* nw == NULL: delete. Status-only fields (generation) never dirty proxies. */
static int cr_changed(struct mesh_model *m, struct m_nsc *c, enum mk kind, struct m_cr *nw,
                      const char *name)
{
    char k[320];
    struct map *map = cr_map(c, kind);
    struct m_cr *old;
    bool same;

    cr_mapkey(kind, name, k, sizeof(k));
    old = map_get(map, k);
    if (!old && !nw)
        return ERR_NOTFOUND;
    same = old && nw && json_equal(old->d, nw->d) &&
           !strcmp(old->created ? old->created : "", nw->created ? nw->created : "") &&
           !old->invalid == !nw->invalid && (!old->invalid || !strcmp(old->invalid, nw->invalid));
    if (nw && map_put(map, k, nw) < 0) {
        cr_free(nw);
        return -ENOMEM;
    }
    if (!nw)
        map_del(map, k);
    if (!same) {
        if (old)
            cr_mark(m, c, old);
        if (nw)
            cr_mark(m, c, nw);
    }
    if (!old)
        m->counts[kind]++;
    if (!nw)
        m->counts[kind]--;
    cr_free(old);
    return 0;
}

static int cr_parse(struct mesh_model *m, enum mk kind, const json_t *obj, const char *ns,
                    const char *name, struct m_cr **out)
{
    struct m_cr *cr = calloc(1, sizeof(*cr));
    struct diag v = {0, ""};
    const char *created = controller__jstr(controller__jget(obj, "metadata"), "creationTimestamp");

    (void)m;
    if (!cr)
        return -ENOMEM;
    cr->kind = kind;
    cr->gen = controller__jint(json_object_get(obj, "metadata"), "generation", 0);
    cr->ns = strdup(ns);
    cr->name = strdup(name);
    cr->created = strdup(created ? created : "");
    switch (kind) {
    case MK_TS:
    case MK_SMITS:
        cr->d = parse_split(obj, kind == MK_SMITS, ns, &v);
        break;
    case MK_AP:
        cr->d = parse_ap(obj, ns, &v);
        break;
    case MK_RP:
        cr->d = parse_rp(obj, &v);
        break;
    default:
        cr->d = parse_rg(obj, &v);
        break;
    }
    if (v.text[0])
        cr->invalid = strdup(v.text);
    if (!cr->ns || !cr->name || !cr->created || !cr->d || (v.text[0] && !cr->invalid)) {
        cr_free(cr);
        return -ENOMEM;
    }
    *out = cr;
    return 0;
}

/*
 * Namespace labels: in the outbound scope "admitted", identities of the namespace recompute
 * their outbound sets (namespace selectors in caller rules); pods targeted by policies whose
 * namespaceSelector result for this namespace flips.
 */
static int ns_changed(struct mesh_model *m, const char *name, const json_t *labels, bool del)
{
    struct m_nsc *c = controller__nsc(m, name, !del);
    json_t *old, *nl = NULL;

    if (!c)
        return del ? ERR_NOTFOUND : -ENOMEM;
    if (del && !c->labels)
        return ERR_NOTFOUND;
    if (!del) {
        nl = json_is_object(labels) ? json_deep_copy(labels) : json_object();
        if (!nl)
            return -ENOMEM;
    }
    old = c->labels;
    if (!old)
        m->counts[MK_NAMESPACE]++;
    if (del)
        m->counts[MK_NAMESPACE]--;
    if (old && nl && json_equal(old, nl)) {
        json_decref(nl);
        return 0;
    }
    c->labels = nl;
    /* (in the scope "mesh" caller rules are "anyone": no outbound set depends on labels) */
    if (m->scope == MESH_OUTBOUND_ADMITTED)
        MAP_FOREACH(&c->idents, s)
        {
            struct m_ident *id = s->val;
            controller__ident_unlink(m, id);
            id->fresh = true;
            m->pending = true;
            mark_ident_pods(m, id);
        }
    MAP_FOREACH(&m->nss, ns)
    {
        struct m_nsc *pc = ns->val;
        MAP_FOREACH(&pc->aps, a)
        {
            struct m_cr *ap = a->val;
            json_t *f;
            size_t i;
            bool flips = false;
            json_array_foreach(json_object_get(ap->d, "from"), i, f)
            {
                json_t *sel = json_object_get(f, "nssel");
                if (sel && controller__selector_match(sel, old ? old : json_null()) !=
                               controller__selector_match(sel, nl ? nl : json_null()))
                    flips = true;
            }
            if (flips)
                mark_ap_targets(m, pc, ap);
        }
    }
    json_decref(old);
    return 0;
}

static int sa_changed(struct mesh_model *m, struct m_nsc *c, const char *name, bool del)
{
    if (del) {
        if (!map_del(&c->sas, name))
            return ERR_NOTFOUND;
        m->counts[MK_SA]--;
        return 0;
    }
    if (map_get(&c->sas, name))
        return 0;
    if (map_put(&c->sas, name, MARK) < 0)
        return -ENOMEM;
    m->counts[MK_SA]++;
    return 0;
}

int mesh_model_upsert(struct mesh_model *m, const json_t *obj)
{
    const json_t *md = json_object_get(obj, "metadata");
    const char *name = controller__jstr(md, "name"), *ns = controller__jstr(md, "namespace");
    struct m_nsc *c;
    enum mk kind;
    json_t *d;
    struct m_cr *cr = NULL;
    int rc;

    rc = kind_of_obj(obj, &kind);
    if (rc < 0)
        return rc;
    if (!name || !*name)
        return ERR_INVALID;
    if (kind == MK_NAMESPACE)
        return ns_changed(m, name, controller__jget(obj, "metadata.labels"), false);
    if (!ns || !*ns)
        return ERR_INVALID;
    c = controller__nsc(m, ns, true);
    if (!c)
        return -ENOMEM;
    switch (kind) {
    case MK_POD:
        if (!(d = pod_digest(obj)))
            return -ENOMEM;
        return pod_changed(m, c, map_get(&c->pods, name), d, name);
    case MK_SERVICE:
        if (!(d = svc_digest(obj)))
            return -ENOMEM;
        return svc_changed(m, c, map_get(&c->svcs, name), d, name);
    case MK_SLICE:
        if (!(d = slice_digest(obj)))
            return -ENOMEM;
        return slice_changed(m, c, map_get(&c->slices, name), d, name);
    case MK_SA:
        return sa_changed(m, c, name, false);
    default:
        rc = cr_parse(m, kind, obj, ns, name, &cr);
        if (rc < 0)
            return rc;
        return cr_changed(m, c, kind, cr, name);
    }
}

int mesh_model_delete(struct mesh_model *m, const char *kind, const char *ns, const char *name)
{
    struct m_nsc *c;
    enum mk k;
    void *o;
    int rc = controller__kind_of_name(kind, &k);

    if (rc < 0)
        return rc;
    if (!name)
        return ERR_NOTFOUND;
    if (k == MK_NAMESPACE)
        return ns_changed(m, name, NULL, true);
    c = ns ? controller__nsc(m, ns, false) : NULL;
    if (!c)
        return ERR_NOTFOUND;
    switch (k) {
    case MK_POD:
        if (!(o = map_get(&c->pods, name)))
            return ERR_NOTFOUND;
        return pod_changed(m, c, o, NULL, name);
    case MK_SERVICE:
        if (!(o = map_get(&c->svcs, name)))
            return ERR_NOTFOUND;
        return svc_changed(m, c, o, NULL, name);
    case MK_SLICE:
        if (!(o = map_get(&c->slices, name)))
            return ERR_NOTFOUND;
        return slice_changed(m, c, o, NULL, name);
    case MK_SA:
        return sa_changed(m, c, name, true);
    default:
        return cr_changed(m, c, k, NULL, name);
    }
}

int mesh_model_dirty_proxies(struct mesh_model *m, json_t **out)
{
    const char **keys = NULL;
    size_t n = 0, i;
    json_t *arr = NULL;
    int rc = controller__resolve(m);

    if (rc < 0)
        return rc;
    keys = map_sorted_keys(&m->d_pods, &n, &rc);
    if (rc < 0)
        return rc;
    arr = json_array();
    if (!arr) {
        rc = -ENOMEM;
        goto out;
    }
    for (i = 0; i < n; i++) {
        if (json_array_append_new(arr, json_string(keys[i])) < 0) {
            rc = -ENOMEM;
            goto out;
        }
    }
    free(keys);
    keys = NULL;
    map_release(&m->d_pods);
    *out = arr;
    arr = NULL;
out:
    free(keys);
    json_decref(arr);
    return rc;
}
