/*
 * render.c - a proxy configuration document (docs/proxy-config.md) to HAProxy 2.6 configuration,
 * mechanically: no policy logic here, only translation. docs/agent.md describes the output.
 *
 * Layout:
 *   weft_inbound  (15006, TLS with client certificates required): one ACL set per document port
 *                 (dst_port, the port the peer dialled before the REDIRECT); tcp ports decide
 *                 with tcp-request content rules, http ports switch to HTTP and decide with
 *                 http-request rules; then one backend per port to the app on the pod's IP, from
 *                 127.0.0.6 (::6), which weft-init does not redirect.
 *                 In permissive mode 15006 is plain TCP first: a TLS ClientHello is handed to
 *                 that frontend (weft_inbound_tls, a unix socket, PROXY v2 header), plaintext
 *                 goes to the app where the port admits it (inbound_plaintext()), through
 *                 weft_inbound_tls's plaintext bind on grpc ports (their calls counted).
 *   weft_outbound (127.0.0.1:15001): the original destination "ip:port" looked up in a map to a
 *                 backend name; http services switch to HTTP (route matches); anything not in
 *                 the map passes through to its original destination.
 *   weft_metrics  (15090): the Prometheus exporter.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "agent/agent.h"
#include "ca/ca.h"

/*
 * The access log (--access-log decisions, the default): an HTTP request the app answered below
 * 500 is not logged; denials, audited requests, errors HAProxy answers itself (503, 504) and the
 * app's 5xx are. `--access-log all` logs every request. docs/agent.md, "Access log".
 */
#define ACCESS_LOG_QUIET "http-response set-log-level silent"

#define PROXY_PORTS "15001 15006 15020 15090"
/* permissive mode: the mutual-TLS frontend's unix socket in the run directory; HAProxy binds
 * "<path>.<pid>.tmp" first, hence the slack under sun_path's 108 bytes */
#define INBOUND_TLS_SOCK "inbound-tls.sock"
/* permissive mode: weft_inbound_tls's plaintext bind for grpc ports (plaintext_h2c()); the same
 * length as INBOUND_TLS_SOCK, which the run directory's length check uses */
#define INBOUND_H2C_SOCK "inbound-h2c.sock"
#define INBOUND_SOCK_SLACK 16
/* permissive mode: how long the inbound port waits for a client's first bytes */
#define PERMISSIVE_INSPECT "1s"

struct rctx {
    const struct agent_render_opts *o;
    struct agent_render_out *out;
    struct buf *c; /* the configuration being written */
    const char *ns, *td, *pod_ip;
    bool v6;
    bool permissive; /* mode permissive: plaintext next to mutual TLS */
    struct diag *diag;
    int rc;
    int seq;   /* unique ACL numbers */
    int tries; /* unique inner listeners of whole-request timeouts */
};

static void fail(struct rctx *x, int rc, const char *fmt, ...) PRINTF_LIKE(3, 4);
static void fail(struct rctx *x, int rc, const char *fmt, ...)
{
    va_list ap;

    if (x->rc)
        return;
    x->rc = rc;
    va_start(ap, fmt);
    diag_vset(x->diag, fmt, ap);
    va_end(ap);
}

static void emit(struct rctx *x, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void emit(struct rctx *x, const char *fmt, ...)
{
    va_list ap;
    int rc;

    if (x->rc)
        return;
    va_start(ap, fmt);
    {
        va_list ap2;
        int n;

        va_copy(ap2, ap);
        n = vsnprintf(NULL, 0, fmt, ap2);
        va_end(ap2);
        rc = n < 0 ? -EINVAL : buf_reserve(x->c, (size_t)n + 1);
        if (rc == 0) {
            vsnprintf(x->c->p + x->c->len, (size_t)n + 1, fmt, ap);
            x->c->len += (size_t)n;
        }
    }
    va_end(ap);
    if (rc < 0)
        fail(x, rc, "out of memory");
}

/*
 * A HAProxy argument holding any text: single-quoted (no escapes, no ${} expansion inside),
 * a quote as '\''. Control characters cannot be written: refused.
 */
static void emit_q(struct rctx *x, const char *path, const char *s)
{
    for (const char *p = s; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            fail(x, ERR_INVALID,
                 "%s: control characters cannot be written to HAProxy's configuration", path);
            return;
        }
    }
    emit(x, "'");
    for (const char *p = s; *p; p++) {
        if (*p == '\'')
            emit(x, "'\\''");
        else
            emit(x, "%c", *p);
    }
    emit(x, "'");
}

/* The document's POSIX ERE, quoted and anchored: it matches the whole value, as the document says.
 */
static void emit_re(struct rctx *x, const char *path, const char *val)
{
    size_t n = strlen(val) + sizeof("^()$");
    char *re = malloc(n);

    if (!re) {
        fail(x, -ENOMEM, "out of memory");
        return;
    }
    snprintf(re, n, "^(%s)$", val);
    emit_q(x, path, re);
    free(re);
}

/* Kubernetes names go into HAProxy object names: [a-z0-9.-] only. */
static bool name_ok(const char *s)
{
    if (!s || !*s || strlen(s) > 253)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
            return false;
    return true;
}

static int ip_family(const char *ip)
{
    unsigned char b[16];

    if (!ip)
        return 0;
    if (inet_pton(AF_INET, ip, b) == 1)
        return AF_INET;
    if (inet_pton(AF_INET6, ip, b) == 1)
        return AF_INET6;
    return 0;
}

static const char *str_at(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static int port_at(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);

    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65535)
        return 0;
    return (int)json_integer_value(v);
}

/*
 * The document's protocol of a port (docs/proxy-config.md): tcp, server-first and
 * server-first-plaintext are opaque TCP, the others carry HTTP requests; http2 and grpc are
 * HTTP/2 (h2 with ALPN between the sidecars, h2c to the app).
 */
enum proto { P_BAD, P_TCP, P_SERVER_FIRST, P_SERVER_FIRST_PLAIN, P_HTTP, P_HTTP2, P_GRPC };
#define PROTO_WANT "protocol http, http2, grpc, tcp, server-first or server-first-plaintext"

static enum proto proto_at(const json_t *o)
{
    static const char *const names[] = {"",     "tcp",   "server-first", "server-first-plaintext",
                                        "http", "http2", "grpc"};
    const char *p = str_at(o, "protocol");

    for (size_t i = 1; p && i < ARRAY_LEN(names); i++)
        if (strcmp(p, names[i]) == 0)
            return (enum proto)i;
    return P_BAD;
}

static bool proto_http(enum proto p)
{
    return p >= P_HTTP;
}

static bool proto_h2(enum proto p)
{
    return p == P_HTTP2 || p == P_GRPC;
}

/*
 * gRPC's status, counted by the agent (docs/agent.md, "gRPC status codes"). HAProxy 2.6's sample
 * fetches read headers, not trailers, where gRPC sends grpc-status after the messages: a Lua
 * filter (agent_grpc_lua in grpc.c, <run_dir>/grpc.lua, loaded only when the document has a grpc
 * port) on each grpc port's backend reads it at the end of the response into txn.weft_grpc
 * ("0".."16", "unknown"). Header time already keeps a Trailers-Only answer's code other than 0
 * (GRPC_VAR), so that such a failed call stays logged if the filter did not run. Each grpc backend
 * names its series in txn.weft_gsvc ("<namespace>/<service>"). Every response of a grpc port is
 * logged to the agent's log pipe: at level debug when it is an HTTP answer below 500 with no
 * failure known at header time (the stdout target takes info and above, so that --access-log
 * decisions stays quiet for calls that succeed; the filter raises a code other than 0 to info).
 */
/* (the formats holding it also hold %B and %Tt, which make HAProxy write the line at the end of
 * the answer: without a field of the end it is written at the response's headers, before the
 * filter has read the trailers; tests/e2e/t0460-grpc-filter.sh) */
#define GRPC_LOG(dir) " grpc=%[var(txn.weft_grpc)] grpc_call=" dir "/%[var(txn.weft_gsvc)]"
#define GRPC_VAR                                                                                   \
    "    http-response set-var(txn.weft_grpc) res.fhdr(grpc-status) if { res.fhdr(grpc-status) "   \
    "-m found } !{ res.fhdr(grpc-status) -m str 0 }\n"
/* the quiet rule's condition on a frontend with grpc ports: grpc answers are logged at debug */
#define GRPC_LOGGED " !{ var(txn.weft_grpc) -m found } !{ var(txn.weft_gsvc) -m found }"
#define GRPC_DEBUG " !{ var(txn.weft_grpc) -m found } { var(txn.weft_gsvc) -m found }"
#define GRPC_FILTER "weft-grpc"

/* A grpc port's backend: its series named, the Trailers-Only code kept, the status filter. */
static void emit_grpc_backend(struct rctx *x, const char *series)
{
    emit(x,
         "    http-request set-var(txn.weft_gsvc) str(%s)\n" GRPC_VAR "    filter lua." GRPC_FILTER
         "\n",
         series);
}

/* ---- identities ---- */

/*
 * A SPIFFE ID (exact) or prefix to the subject string HAProxy's ssl_c_s_dn returns, or its
 * prefix. Exact: spiffe://<td>/ns/<ns>/sa/<sa> -> /O=<td>/OU=<ns>/CN=<cn>. Prefixes:
 * spiffe://<td>/ns/<ns>/ or .../ns/<ns>/sa/ -> "/O=<td>/OU=<ns>/CN=", spiffe://<td>/ ->
 * "/O=<td>/". Anything else has no subject encoding (a partial service-account name: the CN may
 * be hashed): refused.
 */
static bool id_to_subject(const char *id, bool prefix, char *out, size_t len)
{
    char td[65], ns[64], sa[254];
    const char *p, *s;
    size_t n;

    if (strncmp(id, "spiffe://", 9) != 0)
        return false;
    p = id + 9;
    s = strchr(p, '/');
    if (!s || (n = (size_t)(s - p)) == 0 || n >= sizeof(td))
        return false;
    memcpy(td, p, n);
    td[n] = '\0';
    p = s + 1;
    if (prefix && *p == '\0') {
        snprintf(out, len, "/O=%s/", td);
        return true;
    }
    if (strncmp(p, "ns/", 3) != 0)
        return false;
    p += 3;
    s = strchr(p, '/');
    if (!s || (n = (size_t)(s - p)) == 0 || n >= sizeof(ns))
        return false;
    memcpy(ns, p, n);
    ns[n] = '\0';
    p = s + 1;
    if (prefix && (*p == '\0' || strcmp(p, "sa/") == 0)) {
        struct ca_identity cid = {td, ns, "x", NULL, NULL};
        char cn[CA_CN_MAX + 1];

        if (ca_identity_subject_cn(&cid, cn) < 0) /* validates td and ns */
            return false;
        snprintf(out, len, "/O=%s/OU=%s/CN=", td, ns);
        return true;
    }
    if (prefix || strncmp(p, "sa/", 3) != 0 || strlen(p + 3) >= sizeof(sa))
        return false;
    snprintf(sa, sizeof(sa), "%s", p + 3);
    {
        struct ca_identity cid = {td, ns, sa, NULL, NULL};
        char cn[CA_CN_MAX + 1];

        if (ca_identity_subject_cn(&cid, cn) < 0)
            return false;
        snprintf(out, len, "/O=%s/OU=%s/CN=%s", td, ns, cn);
    }
    return true;
}

/* The subject CN an endpoint's certificate carries (what sni/verifyhost check). */
static bool id_to_cn(const char *id, char *out, size_t len)
{
    char subj[512];
    const char *cn;

    if (!id_to_subject(id, false, subj, sizeof(subj)))
        return false;
    cn = strstr(subj, "/CN=");
    snprintf(out, len, "%s", cn + 4);
    return true;
}

/*
 * ACL <name> matching the peers object at path; *any set for {"any": true}. Empty peers match
 * nobody (always_false).
 */
static void acl_peers(struct rctx *x, const char *name, const json_t *peers, const char *path,
                      bool *any)
{
    const json_t *ids = json_object_get(peers, "ids"), *pre = json_object_get(peers, "prefixes");
    size_t i, lines = 0;
    const json_t *v;

    *any = json_is_true(json_object_get(peers, "any"));
    if (*any)
        return;
    if (!json_is_object(peers) || (ids && !json_is_array(ids)) || (pre && !json_is_array(pre))) {
        fail(x, ERR_INVALID, "%s: want {\"any\": true} or {\"ids\": [...], \"prefixes\": [...]}",
             path);
        return;
    }
    for (int k = 0; k < 2; k++) {
        json_array_foreach(k ? pre : ids, i, v)
        {
            char subj[512];
            const char *id = json_string_value(v);

            if (!id || !id_to_subject(id, k == 1, subj, sizeof(subj))) {
                fail(x, ERR_INVALID,
                     "%s.%s[%zu]: %s%s%s cannot be encoded as a certificate subject%s", path,
                     k ? "prefixes" : "ids", i, id ? "\"" : "", id ? id : "not a string",
                     id ? "\"" : "",
                     k ? " prefix (want spiffe://<td>/, spiffe://<td>/ns/<ns>/ or "
                         "spiffe://<td>/ns/<ns>/sa/)"
                       : " (want spiffe://<td>/ns/<ns>/sa/<sa>)");
                return;
            }
            emit(x, "    acl %s var(sess.weft_peer) -m %s ", name, k ? "beg" : "str");
            emit_q(x, path, subj);
            emit(x, "\n");
            lines++;
        }
    }
    if (lines == 0)
        emit(x, "    acl %s always_false\n", name);
}

/* ---- L7 conditions ---- */

/* One path match {type, value} as ACL lines named name. */
static void acl_path(struct rctx *x, const char *name, const json_t *p, const char *path)
{
    const char *type = str_at(p, "type"), *val = str_at(p, "value");

    if (!type || !val || val[0] == '\0') {
        fail(x, ERR_INVALID, "%s: want {\"type\", \"value\"}", path);
        return;
    }
    if (strcmp(type, "Exact") == 0) {
        emit(x, "    acl %s path -m str ", name);
        emit_q(x, path, val);
        emit(x, "\n");
    } else if (strcmp(type, "PathPrefix") == 0) {
        /* element-wise: /api matches /api and /api/x, not /apix */
        size_t n = strlen(val);
        char *slash = malloc(n + 2);

        if (!slash) {
            fail(x, -ENOMEM, "out of memory");
            return;
        }
        while (n > 1 && val[n - 1] == '/')
            n--;
        memcpy(slash, val, n);
        slash[n] = '\0';
        if (strcmp(slash, "/") == 0) {
            emit(x, "    acl %s path -m beg /\n", name);
        } else {
            emit(x, "    acl %s path -m str ", name);
            emit_q(x, path, slash);
            emit(x, "\n    acl %s path -m beg ", name);
            slash[n] = '/';
            slash[n + 1] = '\0';
            emit_q(x, path, slash);
            emit(x, "\n");
        }
        free(slash);
    } else if (strcmp(type, "RegularExpression") == 0) {
        emit(x, "    acl %s path -m reg ", name);
        emit_re(x, path, val);
        emit(x, "\n");
    } else {
        fail(x, ERR_INVALID, "%s.type: \"%s\" is not Exact, PathPrefix or RegularExpression", path,
             type);
    }
}

/* One header match {name, type, value}; appends its ACL name to cond. */
static void acl_header(struct rctx *x, const char *name, const json_t *h, const char *path)
{
    const char *hn = str_at(h, "name"), *type = str_at(h, "type"), *val = str_at(h, "value");

    if (!hn || !*hn || !type) {
        fail(x, ERR_INVALID, "%s: want {\"name\", \"type\"[, \"value\"]}", path);
        return;
    }
    for (const char *p = hn; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("!#$%&'*+-.^_`|~", *p))) {
            fail(x, ERR_INVALID, "%s.name: \"%s\" is not an HTTP header name", path, hn);
            return;
        }
    }
    if (strcmp(type, "Present") == 0) {
        emit(x, "    acl %s req.fhdr(%s) -m found\n", name, hn);
        return;
    }
    if (!val) {
        fail(x, ERR_INVALID, "%s.value: missing", path);
        return;
    }
    if (strcmp(type, "Exact") == 0) {
        emit(x, "    acl %s req.fhdr(%s) -m str ", name, hn);
        emit_q(x, path, val);
    } else if (strcmp(type, "RegularExpression") == 0) {
        emit(x, "    acl %s req.fhdr(%s) -m reg ", name, hn);
        emit_re(x, path, val);
    } else {
        fail(x, ERR_INVALID, "%s.type: \"%s\" is not Exact, RegularExpression or Present", path,
             type);
        return;
    }
    emit(x, "\n");
}

/* Append " acl" to a condition. */
static void cond_add(struct rctx *x, struct buf *cond, const char *acl)
{
    if (!x->rc && buf_printf(cond, " %s", acl) < 0)
        fail(x, -ENOMEM, "out of memory");
}

/*
 * An access rule's l7 list (any entry matches: "or"), each entry methods AND paths (any) AND
 * every header. Writes the ACLs and appends to alts one condition per entry (ACL names
 * separated by spaces, without the leading port/peer ACLs). No l7: one empty alternative.
 */
static void l7_alternatives(struct rctx *x, const json_t *l7, const char *path, json_t *alts)
{
    size_t i;
    const json_t *r;

    if (!l7 || json_array_size(l7) == 0) {
        json_array_append_new(alts, json_string(""));
        return;
    }
    json_array_foreach(l7, i, r)
    {
        struct buf cond;
        char p[256], acl[64];
        const json_t *methods = json_object_get(r, "methods"), *paths = json_object_get(r, "paths"),
                     *headers = json_object_get(r, "headers"), *v;
        size_t j;
        int id = ++x->seq;

        buf_init(&cond);
        snprintf(p, sizeof(p), "%s.l7[%zu]", path, i);
        if (json_array_size(methods)) {
            snprintf(acl, sizeof(acl), "l7_%d_m", id);
            emit(x, "    acl %s method", acl);
            json_array_foreach(methods, j, v)
            {
                const char *m = json_string_value(v);

                if (!m || !*m || strspn(m, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != strlen(m)) {
                    fail(x, ERR_INVALID, "%s.methods[%zu]: not an HTTP method", p, j);
                    break;
                }
                emit(x, " %s", m);
            }
            emit(x, "\n");
            cond_add(x, &cond, acl);
        }
        if (json_array_size(paths)) {
            snprintf(acl, sizeof(acl), "l7_%d_p", id);
            json_array_foreach(paths, j, v)
            {
                char pp[300];

                snprintf(pp, sizeof(pp), "%s.paths[%zu]", p, j);
                acl_path(x, acl, v, pp);
            }
            cond_add(x, &cond, acl);
        }
        json_array_foreach(headers, j, v)
        {
            char hp[300];

            snprintf(hp, sizeof(hp), "%s.headers[%zu]", p, j);
            snprintf(acl, sizeof(acl), "l7_%d_h%zu", id, j);
            acl_header(x, acl, v, hp);
            cond_add(x, &cond, acl);
        }
        json_array_append_new(alts, json_string(cond.p ? cond.p : ""));
        buf_release(&cond);
    }
}

/* "if A B alt1 or A B alt2 ..." for prefix "A B". */
static void emit_if(struct rctx *x, const char *prefix, const json_t *alts)
{
    size_t i;
    const json_t *a;

    emit(x, " if");
    json_array_foreach(alts, i, a)
    {
        emit(x, "%s %s%s", i ? " or" : "", prefix, json_string_value(a));
    }
    emit(x, "\n");
}

/* The decision's variable txn.weft_denied with the policy's <namespace>/<name> (a tcp
 * connection is one transaction, an http request another): the log line carries it and the
 * agent counts it (access.c). The caller ends the line with the same condition as the deny's. */
static void emit_denied_var(struct rctx *x, bool http, const char *policy)
{
    emit(x, "    %s set-var(txn.weft_denied) str(%s/%s)",
         http ? "http-request" : "tcp-request content", x->ns, policy);
}

static void emit_deny_403(struct rctx *x, const char *policy)
{
    /* double-quoted for the body's "\n": names are [a-z0-9.-], nothing to escape */
    emit(x,
         "    http-request deny deny_status 403 content-type text/plain string "
         "\"denied by the mesh: %s/%s\\n\" hdr x-weft-denied \"%s/%s\"",
         x->ns, policy, x->ns, policy);
}

/* ---- inbound ---- */

static void inbound_port(struct rctx *x, const json_t *l, size_t idx, bool http)
{
    static const char *const kinds[3] = {"deny", "audit", "allow"};
    int port = port_at(l, "port");
    const char *dflt = str_at(l, "default");
    char path[64], pacl[32];

    snprintf(path, sizeof(path), "inbound[%zu]", idx);
    snprintf(pacl, sizeof(pacl), "in_%d", port);
    for (int k = 0; k < 3 && !x->rc; k++) {
        const json_t *rules = json_object_get(l, kinds[k]), *r;
        size_t i;

        if (rules && !json_is_array(rules)) {
            fail(x, ERR_INVALID, "%s.%s: must be a list", path, kinds[k]);
            return;
        }
        json_array_foreach(rules, i, r)
        {
            char rp[128], peer[64], prefix[128];
            const char *policy = str_at(r, "policy");
            bool any = false;
            json_t *alts = json_array();

            if (!alts) {
                fail(x, -ENOMEM, "out of memory");
                return;
            }
            snprintf(rp, sizeof(rp), "%s.%s[%zu]", path, kinds[k], i);
            if (!name_ok(policy)) {
                fail(x, ERR_INVALID, "%s.policy: missing or not a Kubernetes name", rp);
                json_decref(alts);
                return;
            }
            snprintf(peer, sizeof(peer), "peer_%d", ++x->seq);
            {
                char pp[160];

                snprintf(pp, sizeof(pp), "%s.peers", rp);
                acl_peers(x, peer, json_object_get(r, "peers"), pp, &any);
            }
            snprintf(prefix, sizeof(prefix), "%s%s%s", pacl, any ? "" : " ", any ? "" : peer);
            if (http) {
                l7_alternatives(x, json_object_get(r, "l7"), rp, alts);
                if (k == 0) {
                    emit_denied_var(x, true, policy);
                    emit_if(x, prefix, alts);
                    emit_deny_403(x, policy);
                } else if (k == 1) {
                    emit(x,
                         "    http-request set-var(txn.weft_audit) "
                         "str(),concat(,txn.weft_audit,;%s/%s)",
                         x->ns, policy);
                } else {
                    emit(x, "    http-request allow");
                }
            } else {
                /* on tcp ports L7 conditions are not checked: deny/audit apply to every
                 * connection of the peers (the compiler marks them l7Ignored); allow rules with
                 * l7 are left out by the compiler */
                json_array_append_new(alts, json_string(""));
                if (k == 0) {
                    emit_denied_var(x, false, policy);
                    emit_if(x, prefix, alts);
                    emit(x, "    tcp-request content reject");
                } else if (k == 1) {
                    emit(x,
                         "    tcp-request content set-var(txn.weft_audit) "
                         "str(),concat(,txn.weft_audit,;%s/%s)",
                         x->ns, policy);
                } else {
                    emit(x, "    tcp-request content accept");
                }
            }
            emit_if(x, prefix, alts);
            json_decref(alts);
        }
    }
    if (!dflt || (strcmp(dflt, "deny") != 0 && strcmp(dflt, "allow-authenticated") != 0 &&
                  strcmp(dflt, "allow-any") != 0)) {
        fail(x, ERR_INVALID, "%s.default: want deny, allow-authenticated or allow-any", path);
        return;
    }
    /* allow-any: plaintext clients are admitted before TLS (render_inbound); over TLS it is
     * any mesh peer, as allow-authenticated */
    if (strcmp(dflt, "allow-any") == 0 && !x->permissive) {
        fail(x, ERR_INVALID, "%s.default: allow-any is for mode permissive only", path);
        return;
    }
    if (strcmp(dflt, "deny") == 0) {
        emit_denied_var(x, http, "default");
        emit(x, " if %s\n", pacl);
        if (http) {
            emit_deny_403(x, "default");
            emit(x, " if %s\n", pacl);
        } else {
            emit(x, "    tcp-request content reject if %s\n", pacl);
        }
    } else {
        emit(x, "    %s if %s\n", http ? "http-request allow" : "tcp-request content accept", pacl);
    }
}

/* A port admits plaintext clients in permissive mode when its default is allow-any and no Deny
 * names every peer (plaintext clients have no identity to check the others against). */
static bool plaintext_port(const json_t *l)
{
    const json_t *r;
    size_t i;

    if (!str_at(l, "default") || strcmp(str_at(l, "default"), "allow-any") != 0)
        return false;
    json_array_foreach(json_object_get(l, "deny"), i, r)
    {
        if (json_is_true(json_object_get(json_object_get(r, "peers"), "any")))
            return false;
    }
    return true;
}

/*
 * A port whose plaintext clients (permissive mode) are parsed as HTTP rather than forwarded as
 * TCP: a grpc port that admits plaintext. Its plaintext connections go to weft_inbound_tls's
 * plaintext bind (INBOUND_H2C_SOCK) and from there to the port's backend, where the gRPC status
 * filter counts their calls (direction inbound) as those of mesh peers. Who is admitted does
 * not change: weft_inbound has decided that (plaintext_port) before the hand-over. http and
 * http2 ports stay TCP for plaintext clients: nothing is counted per request there, and
 * parsing would put HAProxy's HTTP limits on clients outside the mesh for no gain.
 */
static bool plaintext_h2c(const struct rctx *x, const json_t *l)
{
    return x->permissive && proto_at(l) == P_GRPC && plaintext_port(l);
}

/* the inbound listener's share of the process's connections */
static int inbound_maxconn(const struct agent_render_opts *o)
{
    return o->maxconn - o->maxconn / 4;
}

/*
 * The inbound listener is what every pod of the cluster reaches, and HAProxy 2.6 bounds a TLS
 * handshake only by `timeout client` (its `timeout client-hs` came after 2.6): a peer that connects
 * and sends nothing holds its connection for that long (an hour, for long-lived streams). So
 * connections are counted per peer address before the handshake, and a peer past peer_maxconn
 * is closed at once; the listener takes 3/4 of maxconn, which keeps outbound calls and the
 * metrics port working while it is full. The table's entries leave 60 s after their peer's last
 * connection; a full table tracks no new peer (fails open).
 */
static void inbound_bounds(struct rctx *x)
{
    emit(x,
         "    maxconn %d\n"
         "    # at most %d connections per peer address, counted before the TLS handshake\n"
         "    stick-table type ipv6 size 16k expire 60s store conn_cur\n"
         "    tcp-request connection track-sc0 src\n"
         "    tcp-request connection reject if { sc0_conn_cur gt %d }\n",
         inbound_maxconn(x->o), x->o->peer_maxconn, x->o->peer_maxconn);
}

/*
 * Permissive mode: the inbound port first tells TLS from plaintext by the first bytes
 * (req.ssl_hello_type, waiting up to PERMISSIVE_INSPECT for them). A TLS ClientHello goes to
 * the mutual-TLS frontend (weft_inbound_tls) on a unix socket in the run directory, with the
 * original addresses in a PROXY v2 header, so dst_port and the source are the peer's as before.
 * Plaintext goes straight to the app on the port it dialled, where the port admits it
 * (plaintext_port; ports the document does not name admit it: the mode's default). A client that
 * sends nothing (a server-first protocol) is taken for plaintext once the delay has passed,
 * except on ports declared server-first: those are mutual TLS only, taken the moment the
 * caller's sidecar's ClientHello arrives (no wait: it opens with it), and a plaintext client
 * (which sends nothing, or not a ClientHello) is closed after the delay or at its first bytes;
 * server-first-plaintext ports go to the app at once, plaintext from every caller (their
 * sidecars do not originate TLS there), where the port admits plaintext, else are closed.
 * Plaintext of grpc ports that admit it goes to weft_inbound_tls's plaintext bind instead
 * (plaintext_h2c: their list h2c, " <port>..."), on a second unix socket with the same PROXY v2
 * header. Returns false on error.
 */
static bool inbound_plaintext(struct rctx *x, const json_t *inbound, const struct buf *h2c)
{
    struct buf closed, first, plain, plain_closed;
    const json_t *l;
    size_t i;

    if (strlen(x->o->run_dir) + sizeof("/" INBOUND_TLS_SOCK) + INBOUND_SOCK_SLACK > 108) {
        fail(x, ERR_INVALID,
             "options: the run directory's path is too long for the unix socket "
             "%s/" INBOUND_TLS_SOCK " (permissive mode)",
             x->o->run_dir);
        return false;
    }
    buf_init(&closed);
    buf_init(&first);
    buf_init(&plain);
    buf_init(&plain_closed);
    json_array_foreach(inbound, i, l)
    {
        enum proto pr = proto_at(l);
        struct buf *b = pr == P_SERVER_FIRST         ? &first
                        : pr == P_SERVER_FIRST_PLAIN ? (plaintext_port(l) ? &plain : &plain_closed)
                        : !plaintext_port(l)         ? &closed
                                                     : NULL;

        if (b && buf_printf(b, " %d", port_at(l, "port")) < 0)
            fail(x, -ENOMEM, "out of memory");
    }
    emit(x,
         "\nfrontend weft_inbound\n"
         "    # permissive: TLS to weft_inbound_tls, plaintext to the app where admitted\n"
         "    bind :%d\n",
         x->o->inbound_port);
    inbound_bounds(x);
    emit(x, "    log-format \"%%ci:%%cp plaintext port=%%[dst_port] %%b %%B %%Tt %%ts\"\n"
            "    tcp-request inspect-delay " PERMISSIVE_INSPECT "\n"
            "    tcp-request content reject if { dst_port " PROXY_PORTS " }\n");
    if (first.len)
        emit(x,
             "    # server-first ports: mutual TLS only, taken as soon as the ClientHello comes\n"
             "    acl server_first dst_port%s\n",
             first.p);
    if (plain_closed.len)
        emit(x, "    tcp-request content reject if { dst_port%s }\n", plain_closed.p);
    if (plain.len)
        emit(x,
             "    # server-first-plaintext ports: plaintext without waiting\n"
             "    tcp-request content accept if { dst_port%s }\n",
             plain.p);
    emit(x, "    tcp-request content set-log-level silent if { req.ssl_hello_type 1 }\n"
            "    tcp-request content accept if { req.ssl_hello_type 1 }\n");
    /* a plaintext client of a server-first port waits for a banner and sends nothing: closed
     * when the delay has passed (or at its first bytes), not left waiting */
    if (first.len)
        emit(x, "    tcp-request content reject if server_first\n");
    if (closed.len)
        emit(x, "    tcp-request content reject if { dst_port%s }\n", closed.p);
    if (first.len)
        emit(x, "    use_backend weft_in_tls if server_first\n");
    emit(x, "    use_backend weft_in_tls if { req.ssl_hello_type 1 }\n");
    if (h2c->len)
        emit(x, "    use_backend weft_in_h2c if { dst_port%s }\n", h2c->p);
    emit(x,
         "    default_backend weft_in_other\n"
         "\nbackend weft_in_tls\n"
         "    server tls %s/" INBOUND_TLS_SOCK " send-proxy-v2\n",
         x->o->run_dir);
    if (h2c->len)
        emit(x,
             "\nbackend weft_in_h2c\n"
             "    # plaintext of grpc ports: parsed by weft_inbound_tls, calls counted\n"
             "    server h2c %s/" INBOUND_H2C_SOCK " send-proxy-v2\n",
             x->o->run_dir);
    buf_release(&closed);
    buf_release(&first);
    buf_release(&plain);
    buf_release(&plain_closed);
    return !x->rc;
}

/* An inbound grpc port's backend; its series is "<namespace>/<the port's Services joined by
 * +>" (one Service, usually), "<namespace>/port-<port>" when the document names none. */
static void grpc_inbound_backend(struct rctx *x, const json_t *l)
{
    struct buf series;
    const json_t *v;
    size_t i;

    int n = 0, rc;

    buf_init(&series);
    rc = buf_printf(&series, "%s/", x->ns);
    json_array_foreach(json_object_get(l, "services"), i, v)
    {
        if (!rc && name_ok(json_string_value(v)))
            rc = buf_printf(&series, "%s%s", n++ ? "+" : "", json_string_value(v));
    }
    if (!rc && n == 0)
        rc = buf_printf(&series, "port-%d", port_at(l, "port"));
    if (rc < 0)
        fail(x, -ENOMEM, "out of memory");
    else
        emit_grpc_backend(x, series.p);
    buf_release(&series);
}

/* The agent's log pipe (AGENT_LOG_FD, inherited from the agent): lines cut at
 * AGENT_LOG_LINE_MAX bytes with their '\n', so that each is one atomic write. */
#define AGENT_LOG_TARGET                                                                           \
    "log fd@" AGENT_STR(AGENT_LOG_FD) " len " AGENT_STR(AGENT_LOG_LINE_MAX) " format raw local0"

static void render_inbound(struct rctx *x, const json_t *inbound, const char *mode)
{
    size_t i;
    const json_t *l;
    struct buf known, h2c;
    const char *src = x->v6 ? "[" AGENT_INBOUND_SRC6 "]:0" : AGENT_INBOUND_SRC4;
    bool any_http = false, any_h2 = false, any_grpc = false;
    /* HTTP/2 ports: callers' sidecars offer h2 by ALPN (others offer none and get HTTP/1.1) */
    const char *alpn;

    buf_init(&known);
    buf_init(&h2c);
    json_array_foreach(inbound, i, l)
    {
        any_http |= proto_http(proto_at(l));
        any_h2 |= proto_h2(proto_at(l));
        any_grpc |= proto_at(l) == P_GRPC;
        if (plaintext_h2c(x, l) && buf_printf(&h2c, " %d", port_at(l, "port")) < 0)
            fail(x, -ENOMEM, "out of memory");
    }
    alpn = any_h2 ? " alpn h2,http/1.1" : "";
    if (x->permissive) {
        if (!inbound_plaintext(x, inbound, &h2c)) {
            buf_release(&known);
            buf_release(&h2c);
            return;
        }
        emit(x,
             "\nfrontend weft_inbound_tls\n"
             "    bind %s/" INBOUND_TLS_SOCK " mode 600 accept-proxy ssl crt %s ca-file %s "
             "verify required%s\n",
             x->o->run_dir, x->o->cert_file, x->o->ca_file, alpn);
        /* plaintext_h2c: h2c (prior knowledge) is recognised by its preface once the port's
         * rule switches the connection to HTTP; no identity (ssl_c_s_dn fails: sess.weft_peer
         * stays unset, so only rules of any peer match, and the log's subject is "-") */
        if (h2c.len)
            emit(x,
                 "    # plaintext callers of grpc ports, from weft_inbound: calls counted\n"
                 "    bind %s/" INBOUND_H2C_SOCK " mode 600 accept-proxy\n",
                 x->o->run_dir);
        emit(x, "    maxconn %d\n", inbound_maxconn(x->o));
    } else {
        emit(x,
             "\nfrontend weft_inbound\n"
             "    bind :%d ssl crt %s ca-file %s verify required%s\n",
             x->o->inbound_port, x->o->cert_file, x->o->ca_file, alpn);
        inbound_bounds(x);
    }
    /* the peer's certificate subject, formatted once per connection for the peers' ACLs
     * (acl_peers()): tcp-request content and http-request rules run again for every request
     * of a keep-alive connection, and ssl_c_s_dn formats the subject anew each time; the
     * certificate cannot change within a connection (no renegotiation) */
    emit(x, "    tcp-request session set-var(sess.weft_peer) ssl_c_s_dn\n");
    /* every decision is logged, to stdout and to the agent's log pipe (it counts them:
     * weft_agent_access_decisions_total), connections without data included (a tcp port's
     * reject happens before the peer's first byte) */
    emit(x,
         "    log global\n"
         "    " AGENT_LOG_TARGET " %s\n"
         "    no option dontlognull\n",
         any_grpc ? "debug" : "info");
    /* HTTP settings only where some port switches to HTTP (else HAProxy warns) */
    if (any_http)
        emit(x,
             "    option idle-close-on-response\n"
             "    log-format \"%%ci:%%cp %%[ssl_c_s_dn] port=%%[dst_port] %%b %%ST %%B %%Tt "
             "%%ts%s denied=%%[var(txn.weft_denied)] audit=%%[var(txn.weft_audit),regsub(^;,)]\"\n",
             any_grpc ? GRPC_LOG("inbound") : "");
    else
        emit(x, "    log-format \"%%ci:%%cp %%[ssl_c_s_dn] port=%%[dst_port] %%b %%B %%Tt %%ts "
                "denied=%%[var(txn.weft_denied)] audit=%%[var(txn.weft_audit),regsub(^;,)]\"\n");
    emit(x, "    tcp-request content reject if { dst_port " PROXY_PORTS " }\n");
    /* the plaintext bind serves the ports weft_inbound hands to it, and no other */
    if (h2c.len)
        emit(x, "    tcp-request content reject if !{ ssl_fc } !{ dst_port%s }\n", h2c.p);
    json_array_foreach(inbound, i, l)
    {
        int port = port_at(l, "port");

        if (!port || proto_at(l) == P_BAD) {
            fail(x, ERR_INVALID, "inbound[%zu]: want a port 1-65535 and " PROTO_WANT, i);
            break;
        }
        if (proto_at(l) == P_SERVER_FIRST_PLAIN && !x->permissive) {
            fail(x, ERR_INVALID, "inbound[%zu]: server-first-plaintext is for mode permissive only",
                 i);
            break;
        }
        for (size_t j = 0; j < i; j++) {
            if (port_at(json_array_get(inbound, j), "port") == port) {
                fail(x, ERR_INVALID, "inbound[%zu].port: %d is listed twice", i, port);
                break;
            }
        }
        emit(x, "    acl in_%d dst_port %d\n", port, port);
        if (buf_printf(&known, " %d", port) < 0)
            fail(x, -ENOMEM, "out of memory");
    }
    if (x->rc) {
        buf_release(&known);
        buf_release(&h2c);
        return;
    }
    /* tcp ports decide at once; http ports switch to HTTP and decide per request */
    json_array_foreach(inbound, i, l)
    {
        if (!proto_http(proto_at(l)))
            inbound_port(x, l, i, false);
    }
    json_array_foreach(inbound, i, l)
    {
        if (proto_http(proto_at(l)))
            emit(x, "    tcp-request content switch-mode http if in_%d\n", port_at(l, "port"));
    }
    /* ports the document does not name: the mode decides (all-authenticated: any mesh peer) */
    if (strcmp(mode, "deny") == 0) {
        emit_denied_var(x, false, "default");
        if (known.len)
            emit(x,
                 " unless { dst_port%s }\n    tcp-request content reject unless { dst_port%s }\n",
                 known.p, known.p);
        else
            emit(x, "\n    tcp-request content reject\n");
    }
    json_array_foreach(inbound, i, l)
    {
        if (proto_http(proto_at(l)))
            inbound_port(x, l, i, true);
    }
    /* decisions (a deny answers from HAProxy: no http-response rule runs) stay logged */
    if (any_http && !x->o->access_log_all)
        emit(x,
             "    " ACCESS_LOG_QUIET " if { status lt 500 } !{ var(txn.weft_audit) -m found }%s\n",
             any_grpc ? GRPC_LOGGED : "");
    if (any_grpc && !x->o->access_log_all)
        emit(x, "    http-response set-log-level debug if { status lt 500 } !{ var(txn.weft_audit) "
                "-m found }" GRPC_DEBUG "\n");
    json_array_foreach(inbound, i, l)
    {
        emit(x, "    use_backend in_%d if in_%d\n", port_at(l, "port"), port_at(l, "port"));
    }
    emit(x, "    default_backend weft_in_other\n");
    json_array_foreach(inbound, i, l)
    {
        int port = port_at(l, "port");
        enum proto pr = proto_at(l);

        emit(x, "\nbackend in_%d\n    mode %s\n", port, proto_http(pr) ? "http" : "tcp");
        if (pr == P_GRPC)
            grpc_inbound_backend(x, l);
        /* HTTP/2 ports: h2c to the app (prior knowledge, as gRPC servers expect) */
        emit(x,
             x->v6 ? "    server app [%s]:%d source %s%s\n" : "    server app %s:%d source %s%s\n",
             x->pod_ip, port, src, proto_h2(pr) ? " proto h2" : "");
    }
    emit(x,
         "\nbackend weft_in_other\n"
         "    # the original destination: this pod's IP and the port the peer dialled\n"
         "    server app 0.0.0.0:0 source %s\n",
         src);
    buf_release(&known);
    buf_release(&h2c);
}

/* ---- outbound ---- */

/*
 * A server the runtime API can change: its weight (`set server ... weight`), or the whole server
 * (`add server <backend>/<server> <addr> weight <w> <args>`, `del server`). `line` is the
 * configuration line as written (without its newline): the driver compares configurations
 * without these lines.
 */
static void runtime_server(struct rctx *x, const char *backend, const char *server, int weight,
                           const char *addr, const char *args, const char *line)
{
    json_t *item =
        json_pack("{s:s,s:s,s:s,s:i,s:s,s:s,s:s}", "kind", "server", "backend", backend, "server",
                  server, "weight", weight, "addr", addr, "args", args, "line", line);

    if (!item || json_array_append_new(x->out->runtime, item) < 0)
        fail(x, -ENOMEM, "out of memory");
}

/* FNV-1a, 32 bits: a short tag of an endpoint's identity for its server name. */
static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

/*
 * One server line for an endpoint {ip, port, identity, ready, weight} of a port of protocol pr:
 * ALPN h2 over mutual TLS or h2c without identity for HTTP/2, no TLS at all for
 * server-first-plaintext. The server is named
 * <ip>_<port>, with _<tag of the identity's name> when it has one: an endpoint whose identity
 * changes is another server (removed and added through the runtime API: `verifyhost` cannot
 * change on a running server).
 */
static void server_line(struct rctx *x, const char *backend, const json_t *e, const char *path,
                        bool fixed_weight, enum proto pr)
{
    bool h2 = proto_h2(pr);
    /* server-first-plaintext: no TLS towards any endpoint (permissive mode only) */
    const char *ip = str_at(e, "ip"),
               *id = pr == P_SERVER_FIRST_PLAIN ? NULL : str_at(e, "identity");
    int port = port_at(e, "port"), fam = ip_family(ip);
    const json_t *w = json_object_get(e, "weight");
    int weight = fixed_weight ? 1 : (int)json_integer_value(w);
    char name[96], cn[CA_CN_MAX + 1], addr[80], args[1600] = "", line[1900];
    bool ready = json_is_true(json_object_get(e, "ready"));

    if (!fam || !port) {
        fail(x, ERR_INVALID, "%s: want an IP address and a port 1-65535", path);
        return;
    }
    if (!fixed_weight && (!json_is_integer(w) || weight < 0 || weight > 256)) {
        fail(x, ERR_INVALID, "%s.weight: want 0-256", path);
        return;
    }
    if (!ready)
        weight = 0;
    snprintf(addr, sizeof(addr), fam == AF_INET6 ? "[%s]:%d" : "%s:%d", ip, port);
    if (id) {
        if (!id_to_cn(id, cn, sizeof(cn))) {
            fail(x, ERR_INVALID, "%s.identity: \"%s\" is not spiffe://<td>/ns/<ns>/sa/<sa>", path,
                 id);
            return;
        }
        snprintf(name, sizeof(name), "%s_%d_%08x", ip, port, fnv1a(cn));
        /* mutual TLS: our certificate, the peer verified against the bundle, and its name
         * checked (in 2.6 sni overrides verifyhost: both say the same) */
        snprintf(args, sizeof(args),
                 " ssl crt %s ca-file %s verify required sni str(%s) verifyhost %s%s",
                 x->o->cert_file, x->o->ca_file, cn, cn, h2 ? " alpn h2" : "");
    } else {
        snprintf(name, sizeof(name), "%s_%d", ip, port);
        /* an HTTP/2 port of an app outside the mesh: h2c, as its own clients speak it */
        if (h2)
            snprintf(args, sizeof(args), " proto h2");
    }
    snprintf(line, sizeof(line), "    server %s %s weight %d%s", name, addr, weight, args);
    emit(x, "%s\n", line);
    runtime_server(x, backend, name, weight, addr, args[0] ? args + 1 : "", line);
}

/* The document's retryOn names (docs/crds.md) to HAProxy 2.6's retry-on keywords. */
static const char *retry_keyword(const char *c)
{
    static const char *const map[][2] = {
        {"connect-failure", "conn-failure"},
        {"empty-response", "empty-response"},
        {"junk-response", "junk-response"},
        {"response-timeout", "response-timeout"},
        {"0rtt-rejected", "0rtt-rejected"},
        {"401", "401"},
        {"403", "403"},
        {"404", "404"},
        {"408", "408"},
        {"425", "425"},
        {"500", "500"},
        {"501", "501"},
        {"502", "502"},
        {"503", "503"},
        {"504", "504"},
    };

    for (size_t i = 0; i < ARRAY_LEN(map); i++)
        if (strcmp(map[i][0], c) == 0)
            return map[i][1];
    return NULL;
}

/*
 * The head of the backend `name` that the port's traffic is sent to; *servers receives the name
 * of the backend the servers go in. Usually the same. But 2.6's `timeout server` applies per
 * try, so an http port with retries and a whole-request `timeoutMs` gets two layers: `name`
 * bounds the whole request (`timeout server <timeoutMs>`, 504 when it expires) and forwards to
 * an inner listener on a Unix socket of the run directory, whose backend `<name>_try` holds the
 * retries, the per-try timeout and the servers.
 */
static void backend_head(struct rctx *x, const char *name, bool http, const json_t *p,
                         const char *series, char *servers, size_t servers_len)
{
    const json_t *retry = json_object_get(p, "retry");
    const json_t *tmo = json_object_get(p, "timeoutMs");
    long per_try = (long)json_integer_value(json_object_get(retry, "perTryTimeoutMs"));
    long whole = json_is_integer(tmo) ? (long)json_integer_value(tmo) : 0;
    const char *what = name; /* for messages: the port's backend */

    snprintf(servers, servers_len, "%s", name);
    if (http && whole > 0 && json_integer_value(json_object_get(retry, "attempts")) > 0) {
        char sock[160];

        if (snprintf(sock, sizeof(sock), "%s/try%d.sock", x->o->run_dir, ++x->tries) >= 108) {
            fail(x, ERR_UNSUPPORTED,
                 "%s: the run directory's path is too long for a Unix socket (the "
                 "whole-request timeout's inner listener)",
                 name);
            return;
        }
        /* gRPC: HTTP/2 between the layers too. Over HTTP/1.1 a Trailers-Only answer (the
         * status in the headers, no message) reaches the caller with empty trailers, which gRPC
         * clients read as UNKNOWN (seen with HAProxy 2.6.12: NOT_FOUND became UNKNOWN) */
        const char *h2 = proto_at(p) == P_GRPC ? " proto h2" : "";

        snprintf(servers, servers_len, "%s_try", name);
        emit(x,
             "\nbackend %s\n    mode http\n    # the whole request, all tries included\n"
             "    timeout server %ldms\n    server whole unix@%s%s\n",
             name, whole, sock, h2);
        if (proto_at(p) == P_GRPC) /* where the caller's log line sees it */
            emit_grpc_backend(x, series);
        emit(x,
             "\nfrontend weft_%s\n    mode http\n    bind unix@%s mode 600%s\n    no log\n"
             "    default_backend %s\n",
             servers, sock, h2, servers);
        name = servers;
    }
    emit(x, "\nbackend %s\n    mode %s\n    balance roundrobin\n", name, http ? "http" : "tcp");
    if (proto_at(p) == P_GRPC && name == what)
        emit_grpc_backend(x, series);
    if (http)
        emit(x, "    http-reuse always\n");
    if (retry) {
        const json_t *on = json_object_get(retry, "retryOn"), *v;
        size_t i;
        json_int_t attempts = json_integer_value(json_object_get(retry, "attempts"));

        if (attempts < 0 || attempts > 100) {
            fail(x, ERR_INVALID, "%s: retry.attempts: want 0-100", what);
            return;
        }
        /* every retry to another server where there is one (2.6's default redispatches on the
         * last retry only: a per-try timeout would hit the same hanging endpoint again) */
        emit(x, "    retries %lld\n    option redispatch 1\n", (long long)attempts);
        /* non-idempotent methods (POST, PATCH, CONNECT, others) are retried only when the
         * connection failed (the request never left): a 503 or a timeout after the request was
         * sent is not retried, since the app may have acted on it */
        if (http && attempts > 0)
            emit(x, "    http-request disable-l7-retry unless { method GET HEAD OPTIONS TRACE PUT "
                    "DELETE }\n");
        if (http && json_array_size(on)) {
            emit(x, "    retry-on");
            json_array_foreach(on, i, v)
            {
                const char *c = json_string_value(v), *kw = c ? retry_keyword(c) : NULL;

                if (!kw) {
                    fail(x, ERR_INVALID,
                         "%s: retry.retryOn[%zu]: \"%s\" is not a condition HAProxy "
                         "2.6 can retry on",
                         what, i, c ? c : "(not a string)");
                    return;
                }
                emit(x, " %s", kw);
            }
            emit(x, "\n");
        }
    }
    /* a per-try timeout is HAProxy's server timeout; the whole-request timeout is used when
     * there is none (with retries, the outer layer above bounds all tries) */
    if (per_try > 0)
        emit(x, "    timeout server %ldms\n", per_try);
    else if (json_is_integer(tmo) && json_integer_value(tmo) > 0)
        emit(x, "    timeout server %lldms\n", (long long)json_integer_value(tmo));
}

static void map_line(struct rctx *x, const char *ip, int port, const char *value)
{
    if (!x->rc && buf_printf(&x->out->outbound_map, "%s:%d %s\n", ip, port, value) < 0)
        fail(x, -ENOMEM, "out of memory");
}

/* Route match {path, headers, method}: ACLs, and the condition as " a b c". */
static void route_match(struct rctx *x, const json_t *m, const char *path, struct buf *cond)
{
    int id = ++x->seq;
    char acl[64];
    const json_t *p = json_object_get(m, "path"), *h = json_object_get(m, "headers"), *v;
    const char *method = str_at(m, "method");
    size_t i;

    if (p) {
        char pp[300];

        snprintf(pp, sizeof(pp), "%s.path", path);
        snprintf(acl, sizeof(acl), "rt_%d_p", id);
        acl_path(x, acl, p, pp);
        cond_add(x, cond, acl);
    }
    json_array_foreach(h, i, v)
    {
        char hp[300];

        snprintf(hp, sizeof(hp), "%s.headers[%zu]", path, i);
        snprintf(acl, sizeof(acl), "rt_%d_h%zu", id, i);
        acl_header(x, acl, v, hp);
        cond_add(x, cond, acl);
    }
    if (method) {
        if (!*method || strspn(method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != strlen(method)) {
            fail(x, ERR_INVALID, "%s.method: not an HTTP method", path);
            return;
        }
        snprintf(acl, sizeof(acl), "rt_%d_m", id);
        emit(x, "    acl %s method %s\n", acl, method);
        cond_add(x, cond, acl);
    }
}

static void render_outbound(struct rctx *x, const json_t *outbound)
{
    size_t i, j, k;
    const json_t *svc, *p, *r;
    struct buf backends, rules;
    struct buf *conf = x->c;
    bool any_grpc = false;

    buf_init(&backends);
    buf_init(&rules);
    json_array_foreach(outbound, i, svc)
    {
        json_array_foreach(json_object_get(svc, "ports"), j, p)
        {
            any_grpc |= proto_at(p) == P_GRPC;
        }
    }
    emit(x, "\nfrontend weft_outbound\n    bind 127.0.0.1:%d\n", x->o->outbound_port);
    if (x->o->ipv6)
        emit(x, "    bind [::1]:%d\n", x->o->outbound_port);
    emit(x,
         "    maxconn %d\n"
         "    option idle-close-on-response\n"
         "    log-format \"%%ci:%%cp -> %%[dst]:%%[dst_port] %%b/%%s %%ST %%B %%Tt%s\"\n"
         "    # the original destination port, once per connection (content rules run again\n"
         "    # for every request of a keep-alive connection)\n"
         "    tcp-request session set-var(sess.weft_dport) dst_port\n"
         "    # never loop into our own listeners\n"
         "    tcp-request content reject if { dst_port " PROXY_PORTS
         " } { dst 127.0.0.0/8 ::1 %s }\n"
         "    tcp-request content set-var(sess.weft_svc) "
         "dst,concat(:,sess.weft_dport),map(%s/outbound.map)\n"
         "    tcp-request content switch-mode http if { var(sess.weft_svc) -m beg oh_ }\n",
         x->o->maxconn, any_grpc ? GRPC_LOG("outbound") : "", x->pod_ip, x->o->run_dir);
    /* grpc answers to the agent, which counts them (all of them: see GRPC_LOG) */
    if (any_grpc)
        emit(x, "    log global\n"
                "    " AGENT_LOG_TARGET " debug\n");

    /* backends go after the frontend: write them to a side buffer */
    json_array_foreach(outbound, i, svc)
    {
        const char *name = str_at(svc, "service"), *sns = str_at(svc, "namespace");
        const char *cip = str_at(svc, "clusterIP");
        bool headless = json_is_true(json_object_get(svc, "headless"));
        char path[64];

        snprintf(path, sizeof(path), "outbound[%zu]", i);
        if (!name_ok(name) || !name_ok(sns)) {
            fail(x, ERR_INVALID, "%s: service and namespace must be Kubernetes names", path);
            break;
        }
        if (!headless && !ip_family(cip)) {
            fail(x, ERR_INVALID, "%s.clusterIP: not an IP address", path);
            break;
        }
        json_array_foreach(json_object_get(svc, "ports"), j, p)
        {
            int port = port_at(p, "port");
            enum proto pr = proto_at(p);
            bool http = proto_http(pr);
            const json_t *routes = json_object_get(p, "routes");
            char base[300], pp[96], series[520];

            snprintf(pp, sizeof(pp), "%s.ports[%zu]", path, j);
            if (!port || pr == P_BAD) {
                fail(x, ERR_INVALID, "%s: want a port 1-65535 and " PROTO_WANT, pp);
                break;
            }
            if (pr == P_SERVER_FIRST_PLAIN && !x->permissive) {
                fail(x, ERR_INVALID, "%s: server-first-plaintext is for mode permissive only", pp);
                break;
            }
            snprintf(base, sizeof(base), "o%c_%s_%s_%d", http ? 'h' : 't', sns, name, port);
            snprintf(series, sizeof(series), "%s/%s", sns, name);
            x->c = &backends;
            if (headless) {
                /* each endpoint is dialled directly: originate mTLS with its identity */
                const json_t *e;

                json_array_foreach(json_object_get(p, "endpoints"), k, e)
                {
                    char be[400], sbe[420], ep[128];

                    snprintf(ep, sizeof(ep), "%s.endpoints[%zu]", pp, k);
                    snprintf(be, sizeof(be), "%s_%s", base, str_at(e, "ip") ? str_at(e, "ip") : "");
                    for (char *c = be; *c; c++)
                        if (*c == ':')
                            *c = '.';
                    backend_head(x, be, http, p, series, sbe, sizeof(sbe));
                    server_line(x, sbe, e, ep, true, pr);
                    if (!ip_family(str_at(e, "ip")) || !port_at(e, "port")) {
                        fail(x, ERR_INVALID, "%s: want an IP address and a port", ep);
                        break;
                    }
                    map_line(x, str_at(e, "ip"), port_at(e, "port"), be);
                }
                x->c = conf;
                continue;
            }
            if (!json_is_array(routes) || json_array_size(routes) == 0) {
                fail(x, ERR_INVALID, "%s.routes: want at least one route", pp);
                x->c = conf;
                break;
            }
            map_line(x, cip, port, base);
            json_array_foreach(routes, k, r)
            {
                char be[340], sbe[360], rp[128];
                const json_t *b, *e, *m = json_object_get(r, "match");
                size_t bi, ei;
                bool single = json_array_size(routes) == 1 && !m;

                snprintf(rp, sizeof(rp), "%s.routes[%zu]", pp, k);
                if (single)
                    snprintf(be, sizeof(be), "%s", base);
                else
                    snprintf(be, sizeof(be), "%s_r%zu", base, k);
                if (m && !http) {
                    fail(x, ERR_INVALID, "%s.match: matches apply to http ports only", rp);
                    break;
                }
                if (m && k + 1 == json_array_size(routes)) {
                    fail(x, ERR_INVALID,
                         "%s: the last route must have no match (it takes what "
                         "no other route matches)",
                         rp);
                    break;
                }
                x->c = &backends;
                backend_head(x, be, http, p, series, sbe, sizeof(sbe));
                json_array_foreach(json_object_get(r, "backends"), bi, b)
                {
                    json_array_foreach(json_object_get(b, "endpoints"), ei, e)
                    {
                        char ep[200];

                        snprintf(ep, sizeof(ep), "%s.backends[%zu].endpoints[%zu]", rp, bi, ei);
                        server_line(x, sbe, e, ep, false, pr);
                    }
                }
                if (!single) {
                    struct buf cond;

                    buf_init(&cond);
                    x->c = conf;
                    if (m) {
                        route_match(x, m, rp, &cond);
                    }
                    x->c = &rules;
                    emit(x, "    use_backend %s if { var(sess.weft_svc) -m str %s }%s\n", be, base,
                         cond.p ? cond.p : "");
                    buf_release(&cond);
                }
                x->c = conf;
            }
        }
        x->c = conf;
        if (x->rc)
            break;
    }
    x->c = conf;
    if (rules.len)
        emit(x, "%s", rules.p);
    if (!x->o->access_log_all) {
        emit(x, "    " ACCESS_LOG_QUIET " if { status lt 500 }%s\n", any_grpc ? GRPC_LOGGED : "");
        if (any_grpc)
            emit(x, "    http-response set-log-level debug if { status lt 500 }" GRPC_DEBUG "\n");
    }
    emit(x, "    use_backend %%[var(sess.weft_svc)] if { var(sess.weft_svc) -m found }\n"
            "    default_backend weft_passthrough\n");
    if (backends.len)
        emit(x, "%s", backends.p);
    emit(x, "\nbackend weft_passthrough\n"
            "    # not in the document: to the original destination, unchanged\n"
            "    server orig 0.0.0.0:0\n");
    buf_release(&backends);
    buf_release(&rules);
}

/* ---- the document ---- */

/* Whether some inbound or outbound port is a grpc port (the status filter is loaded then). */
static bool doc_has_grpc(const json_t *doc)
{
    const json_t *l, *svc, *p;
    size_t i, j;

    json_array_foreach(json_object_get(doc, "inbound"), i, l)
    {
        if (proto_at(l) == P_GRPC)
            return true;
    }
    json_array_foreach(json_object_get(doc, "outbound"), i, svc)
    {
        json_array_foreach(json_object_get(svc, "ports"), j, p)
        {
            if (proto_at(p) == P_GRPC)
                return true;
        }
    }
    return false;
}

int agent_render(const json_t *doc, const struct agent_render_opts *o, struct agent_render_out *out,
                 struct diag *diag)
{
    struct rctx x = {.o = o, .out = out, .diag = diag};
    const json_t *proxy = json_object_get(doc, "proxy"), *ident = json_object_get(doc, "identity");
    const json_t *inbound = json_object_get(doc, "inbound"),
                 *outbound = json_object_get(doc, "outbound");
    const json_t *sv = json_object_get(doc, "schemaVersion");
    const char *mode = str_at(doc, "mode"), *pod = str_at(proxy, "pod");

    memset(out, 0, sizeof(*out));
    buf_init(&out->config);
    buf_init(&out->outbound_map);
    out->runtime = json_array();
    x.c = &out->config;
    if (!out->runtime) {
        fail(&x, -ENOMEM, "out of memory");
        goto out;
    }
    {
        const char *paths[3] = {o->run_dir, o->cert_file, o->ca_file};

        for (int i = 0; i < 3; i++) {
            if (!paths[i] || !*paths[i] || strpbrk(paths[i], " \t\n\r'\"#\\$")) {
                fail(&x, -EINVAL,
                     "options: file paths must be set and hold no blanks, quotes, "
                     "'#', '\\' or '$'");
                goto out;
            }
        }
    }
    if (!json_is_object(doc)) {
        fail(&x, ERR_INVALID, "the document is not a JSON object");
        goto out;
    }
    if (!json_is_integer(sv) || json_integer_value(sv) != 1) {
        fail(&x, ERR_UNSUPPORTED, "schemaVersion: this agent renders version 1 only");
        goto out;
    }
    x.ns = str_at(proxy, "namespace");
    x.td = str_at(ident, "trustDomain");
    x.pod_ip = str_at(proxy, "ip");
    if (!name_ok(x.ns) || !name_ok(pod)) {
        fail(&x, ERR_INVALID, "proxy: namespace and pod must be Kubernetes names");
        goto out;
    }
    if (!x.pod_ip) {
        fail(&x, ERR_INVALID, "proxy.ip: the pod has no IP yet");
        goto out;
    }
    if (!ip_family(x.pod_ip)) {
        fail(&x, ERR_INVALID, "proxy.ip: \"%s\" is not an IP address", x.pod_ip);
        goto out;
    }
    x.v6 = ip_family(x.pod_ip) == AF_INET6;
    if (!mode ||
        (strcmp(mode, "all-authenticated") && strcmp(mode, "deny") && strcmp(mode, "permissive"))) {
        fail(&x, ERR_INVALID, "mode: want all-authenticated, deny or permissive");
        goto out;
    }
    x.permissive = strcmp(mode, "permissive") == 0;
    if (!json_is_array(inbound) || !json_is_array(outbound)) {
        fail(&x, ERR_INVALID, "inbound and outbound must be lists");
        goto out;
    }

    emit(&x,
         "# HAProxy configuration for %s/%s, rendered by weft-agent from its configuration "
         "document (schemaVersion 1). Do not edit: it is rewritten on every change.\n"
         "global\n"
         "    master-worker\n"
         "    stats socket %s/admin.sock mode 600 level admin expose-fd listeners\n"
         "    stats timeout 30s\n"
         "    hard-stop-after %ds\n"
         "    mworker-max-reloads %d\n"
         "    maxconn %d\n"
         "    nbthread 1\n"
         "    log stdout format raw local0 info\n"
         "%s%s%s"
         "    tune.ssl.cachesize 1000\n"
         "    httpclient.ssl.verify none\n"
         "    ssl-server-verify required\n"
         "    ssl-default-bind-options ssl-min-ver TLSv1.2\n"
         "    ssl-default-server-options ssl-min-ver TLSv1.2\n"
         "\ndefaults\n"
         "    mode tcp\n"
         "    log global\n"
         "    option dontlognull\n"
         "    timeout connect 5s\n"
         "    timeout client 1h\n"
         "    timeout server 1h\n"
         "    timeout client-fin 30s\n"
         "    timeout tunnel 1h\n"
         "    timeout http-request 30s\n"
         "    timeout http-keep-alive 60s\n"
         "\nfrontend weft_metrics\n"
         "    mode http\n"
         "    bind :%d\n"
         "    maxconn 64\n"
         "    # any pod reaches it: 8 connections per peer address (a scraper needs one)\n"
         "    stick-table type ipv6 size 1k expire 60s store conn_cur\n"
         "    tcp-request connection track-sc0 src\n"
         "    tcp-request connection reject if { sc0_conn_cur gt 8 }\n"
         "    no log\n"
         "    http-request use-service prometheus-exporter if { path /metrics }\n"
         "    http-request return status 404 content-type text/plain string \"not found\\n\"\n",
         x.ns, pod, o->run_dir, o->hard_stop_after_s, o->max_reloads, o->maxconn,
         /* the gRPC status filter, only where a grpc port needs it */
         doc_has_grpc(doc) ? "    lua-load " : "", doc_has_grpc(doc) ? o->run_dir : "",
         doc_has_grpc(doc) ? "/" AGENT_GRPC_LUA "\n" : "", o->metrics_port);
    render_inbound(&x, inbound, mode);
    render_outbound(&x, outbound);
    if (!x.rc) {
        json_t *items[3] = {
            json_pack("{s:s,s:s}", "kind", "ssl-cert", "file", o->cert_file),
            json_pack("{s:s,s:s}", "kind", "ca-file", "file", o->ca_file),
            json_pack("{s:s,s:s+}", "kind", "map", "file", o->run_dir, "/outbound.map"),
        };

        for (int i = 0; i < 3; i++) {
            if (!items[i] || json_array_insert_new(out->runtime, (size_t)i, items[i]) < 0) {
                fail(&x, -ENOMEM, "out of memory");
                for (int j = i + 1; j < 3; j++)
                    json_decref(items[j]);
                break;
            }
        }
    }
out:
    if (x.rc)
        agent_render_out_release(out);
    return x.rc;
}

void agent_render_out_release(struct agent_render_out *out)
{
    if (!out)
        return;
    buf_release(&out->config);
    buf_release(&out->outbound_map);
    json_decref(out->runtime);
    out->runtime = NULL;
}

void agent_render_opts_init(struct agent_render_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->run_dir = "/var/lib/weft";
    o->cert_file = "/var/lib/weft/pod.pem";
    o->ca_file = "/var/lib/weft/bundle.pem";
    o->inbound_port = 15006;
    o->outbound_port = 15001;
    o->metrics_port = 15090;
    o->maxconn = 4096;
    o->peer_maxconn = 512;
    /* long-lived connections (WebSockets, streams, gRPC streaming) outlive a reload on the old
     * worker: an hour, and at most 25 later reloads (so at most 25 old workers at once) */
    o->hard_stop_after_s = 3600;
    o->max_reloads = 25;
}
