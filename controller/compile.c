/*
 * compile.c - from the model to per-proxy documents: caller rules and outbound sets (resolve),
 * outbound service blocks (routes, weighted backends, endpoints, retries), inbound listeners
 * with compiled access rules, the per-pod document and its digest, and resource status.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/jbuild.h"
#include "controller/controller_int.h"

/* ---- weights ------------------------------------------------------------------------------ */

int controller__weights(size_t nb, const long long *W, const long long *n, int *w,
                        long long *achieved_ppm)
{
    double smax = 0, sumw = 0, best_err = INFINITY;
    int best_t = 0, t;
    size_t b;

    if (nb == 0 || nb > 64)
        return -EINVAL;
    for (b = 0; b < nb; b++) {
        if (W[b] < 0 || n[b] < 0)
            return -EINVAL;
        if (n[b] > 0 && W[b] > 0) {
            double s = (double)W[b] / (double)n[b];
            sumw += (double)W[b];
            if (s > smax)
                smax = s;
        }
    }
    if (smax > 0) {
        for (t = 1; t <= 256; t++) {
            double k = t / smax, tot = 0, err = 0;
            int cand[64];
            for (b = 0; b < nb; b++) {
                if (n[b] > 0 && W[b] > 0) {
                    double x = k * (double)W[b] / (double)n[b];
                    int r = (int)floor(x + 0.5);
                    cand[b] = r < 1 ? 1 : r > 256 ? 256 : r;
                } else {
                    cand[b] = 0;
                }
                tot += (double)cand[b] * (double)n[b];
            }
            for (b = 0; b < nb; b++) {
                double req = n[b] > 0 ? (double)W[b] / sumw : 0;
                double got = (double)cand[b] * (double)n[b] / tot;
                err += fabs(got - req);
            }
            if (err < best_err - 1e-12) {
                best_err = err;
                best_t = t;
            }
        }
    }
    {
        double k = best_t ? best_t / smax : 0, tot = 0;
        for (b = 0; b < nb; b++) {
            if (best_t && n[b] > 0 && W[b] > 0) {
                int r = (int)floor(k * (double)W[b] / (double)n[b] + 0.5);
                w[b] = r < 1 ? 1 : r > 256 ? 256 : r;
            } else {
                w[b] = 0;
            }
            tot += (double)w[b] * (double)n[b];
        }
        for (b = 0; b < nb; b++)
            achieved_ppm[b] =
                tot > 0 ? (long long)floor((double)w[b] * (double)n[b] * 1e6 / tot + 0.5) : 0;
    }
    return 0;
}

/* ---- policy targeting and caller rules ---------------------------------------------------- */

bool controller__ap_targets_pod(struct mesh_model *m, const struct m_cr *ap, const struct m_pod *p)
{
    const json_t *t = json_object_get(ap->d, "target");
    const char *kind = controller__jstr(t, "kind");
    const json_t *labels = json_object_get(p->d, "labels");

    if (ap->invalid || !kind || strcmp(ap->ns, p->ns) != 0)
        return false;
    if (!strcmp(kind, "Namespace"))
        return true;
    if (!strcmp(kind, "Selector"))
        return controller__selector_match(json_object_get(t, "selector"), labels);
    {
        char *k = controller__key(ap->ns, controller__jstr(t, "name"));
        struct m_svc *s = k ? map_get(&m->svcs, k) : NULL;
        free(k);
        return s && controller__map_selects(json_object_get(s->d, "selector"), labels);
    }
}

bool controller__from_match(struct mesh_model *m, const json_t *e, const char *ns, const char *sa,
                            const char *spiffe)
{
    const char *v;
    const json_t *sel;

    if ((v = controller__jstr(e, "sa"))) {
        size_t nl = strlen(ns);
        return !strncmp(v, ns, nl) && v[nl] == '/' && !strcmp(v + nl + 1, sa);
    }
    if ((v = controller__jstr(e, "ns")))
        return !strcmp(v, ns);
    if ((sel = json_object_get(e, "nssel"))) {
        struct m_nsc *c = controller__nsc(m, ns, false);
        return c && c->labels && controller__selector_match(sel, c->labels);
    }
    if ((v = controller__jstr(e, "id")))
        return !strcmp(v, spiffe);
    if ((v = controller__jstr(e, "prefix")))
        return !strncmp(spiffe, v, strlen(v));
    return false;
}

static bool reach_match(struct mesh_model *m, const json_t *reach, const struct m_ident *id)
{
    size_t i;
    json_t *e;
    if (json_is_true(reach))
        return true;
    json_array_foreach(reach, i,
                       e) if (controller__from_match(m, e, id->ns, id->sa, id->spiffe)) return true;
    return false;
}

/*
 * A Service is meshed when an endpoint of it is a meshed pod, or it is the apex of a valid
 * split. Its caller rule (who gets it in their outbound) is everyone in the outbound scope
 * "mesh"; in the scope "admitted" it is the union of the "from" of the valid Allow policies
 * that apply to it (Service target by name, Namespace target, or a selector matching the
 * Service's selector taken as a label set); with none, everyone unless the mode is deny.
 */
static int svc_reach(struct mesh_model *m, struct m_svc *s, bool *meshed, json_t **reach)
{
    struct m_nsc *c = controller__nsc(m, s->ns, false);
    const json_t *sel = json_object_get(s->d, "selector");
    const char **keys = NULL;
    size_t n = 0, i, j;
    bool any_allow = false, anyone = false;
    json_t *r = json_array(), *e;
    int rc = 0;

    *meshed = false;
    if (!r)
        return -ENOMEM;
    if (!c)
        goto done;
    MAP_FOREACH(&c->slices, x)
    {
        struct m_slice *sl = x->val;
        const char *sv = controller__jstr(sl->d, "service");
        if (*meshed || !sv || strcmp(sv, s->name) != 0)
            continue;
        json_array_foreach(json_object_get(sl->d, "endpoints"), i, e)
        {
            const char *pn = controller__jstr(e, "pod");
            struct m_pod *p = pn ? map_get(&c->pods, pn) : NULL;
            if (p && p->meshed) {
                *meshed = true;
                break;
            }
        }
    }
    MAP_FOREACH(&c->splits, x)
    {
        struct m_cr *t = x->val;
        const char *apex = controller__jstr(t->d, "apex");
        if (!t->invalid && apex && !strcmp(apex, s->name))
            *meshed = true;
    }
    if (m->scope == MESH_OUTBOUND_MESH) {
        anyone = true;
        goto done;
    }
    keys = map_sorted_keys(&c->aps, &n, &rc);
    if (rc < 0)
        goto fail;
    for (i = 0; i < n; i++) {
        struct m_cr *ap = map_get(&c->aps, keys[i]);
        const json_t *t = json_object_get(ap->d, "target");
        const char *kind = controller__jstr(t, "kind");
        const char *act = controller__jstr(ap->d, "action");
        bool applies;
        if (ap->invalid || !act || strcmp(act, "Allow") != 0)
            continue;
        if (!strcmp(kind, "Service"))
            applies = !strcmp(controller__jstr(t, "name"), s->name);
        else if (!strcmp(kind, "Namespace"))
            applies = true;
        else
            applies = sel && controller__selector_match(json_object_get(t, "selector"), sel);
        if (!applies)
            continue;
        any_allow = true;
        if (!json_object_get(ap->d, "from"))
            anyone = true;
        json_array_foreach(json_object_get(ap->d, "from"), j, e)
        {
            bool dup = false;
            size_t q;
            json_t *have;
            json_array_foreach(r, q, have) dup = dup || json_equal(have, e);
            if (!dup && json_array_append(r, e) < 0)
                goto nomem;
        }
    }
done:
    free(keys);
    if (!any_allow || anyone) {
        json_decref(r);
        r = json_boolean(anyone || m->mode != MESH_MODE_DENY);
    }
    *reach = r;
    return 0;
nomem:
    rc = -ENOMEM;
fail:
    free(keys);
    json_decref(r);
    return rc;
}

static struct map *idx_sub(struct map *idx, const char *key, bool create)
{
    struct map *sub = map_get(idx, key);
    if (sub || !create)
        return sub;
    sub = calloc(1, sizeof(*sub));
    if (!sub || map_put(idx, key, sub) < 0) {
        free(sub);
        return NULL;
    }
    return sub;
}

/* Add (add=true) or remove a meshed service from the reach indexes of its caller rule. */
static int reach_index(struct mesh_model *m, struct m_svc *s, const json_t *reach, bool add)
{
    json_t *e;
    size_t i;
    const char *v;
    bool scan = false;

    if (json_is_true(reach))
        return add ? map_put(&m->reach_all, s->key, s) : (map_del(&m->reach_all, s->key), 0);
    json_array_foreach(reach, i, e)
    {
        struct map *idx = NULL;
        if ((v = controller__jstr(e, "sa")))
            idx = &m->reach_sa;
        else if ((v = controller__jstr(e, "ns")))
            idx = &m->reach_ns;
        if (!idx) {
            scan = true;
            continue;
        }
        if (add) {
            struct map *sub = idx_sub(idx, v, true);
            if (!sub || map_put(sub, s->key, s) < 0)
                return -ENOMEM;
        } else {
            struct map *sub = idx_sub(idx, v, false);
            if (sub) {
                map_del(sub, s->key);
                if (!sub->n) {
                    map_release(sub);
                    free(map_del(idx, v));
                }
            }
        }
    }
    if (scan)
        return add ? map_put(&m->reach_scan, s->key, s) : (map_del(&m->reach_scan, s->key), 0);
    return 0;
}

static void ident_stale(struct mesh_model *m, struct m_ident *id)
{
    json_decref(id->outbound);
    id->outbound = NULL;
    MAP_FOREACH(&id->pods, p)
    controller__mark(&m->d_pods, p->key, m);
}

static int link_(struct mesh_model *m, struct m_svc *s, struct m_ident *id)
{
    if (map_put(&s->callers, id->key, id) < 0)
        return -ENOMEM;
    if (map_put(&id->outset, s->key, s) < 0) {
        map_del(&s->callers, id->key);
        return -ENOMEM;
    }
    ident_stale(m, id);
    return 0;
}

static void unlink_(struct mesh_model *m, struct m_svc *s, struct m_ident *id)
{
    map_del(&s->callers, id->key);
    map_del(&id->outset, s->key);
    ident_stale(m, id);
}

void controller__svc_unlink(struct mesh_model *m, struct m_svc *s)
{
    if (s->meshed)
        reach_index(m, s, s->reach, false);
    MAP_FOREACH(&s->callers, x)
    {
        struct m_ident *id = x->val;
        map_del(&id->outset, s->key);
        ident_stale(m, id);
    }
    map_release(&s->callers);
}

void controller__ident_unlink(struct mesh_model *m, struct m_ident *id)
{
    MAP_FOREACH(&id->outset, x)
    {
        struct m_svc *s = x->val;
        map_del(&s->callers, id->key);
    }
    map_release(&id->outset);
    ident_stale(m, id);
}

/* Re-evaluate one identity's membership in s's callers. */
static int reach_eval(struct mesh_model *m, struct m_svc *s, struct m_ident *id)
{
    bool want = s->meshed && reach_match(m, s->reach, id);
    bool have = map_get(&s->callers, id->key) != NULL;
    if (id->fresh || want == have)
        return 0;
    if (want)
        return link_(m, s, id);
    unlink_(m, s, id);
    return 0;
}

static int reach_update(struct mesh_model *m, struct m_svc *s)
{
    bool meshed;
    json_t *reach = NULL, *e;
    const char **old = NULL;
    size_t n = 0, i;
    int rc = svc_reach(m, s, &meshed, &reach);

    if (rc < 0)
        return rc;
    if (meshed == s->meshed && json_equal(reach, s->reach)) {
        json_decref(reach);
        return 0;
    }
    old = map_sorted_keys(&s->callers, &n, &rc);
    if (rc < 0)
        goto out;
    if (s->meshed)
        reach_index(m, s, s->reach, false);
    json_decref(s->reach);
    s->reach = reach;
    reach = NULL;
    s->meshed = meshed;
    if (meshed && (rc = reach_index(m, s, s->reach, true)) < 0)
        goto out;
    /* previous callers first (they may drop out), then the candidates of the new rule */
    for (i = 0; i < n; i++) {
        struct m_ident *id = map_get(&m->idents, old[i]);
        if (id && (rc = reach_eval(m, s, id)) < 0)
            goto out;
    }
    if (!meshed)
        goto out;
    if (json_is_true(s->reach)) {
        MAP_FOREACH(&m->idents, x)
        if ((rc = reach_eval(m, s, x->val)) < 0)
            goto out;
        goto out;
    }
    json_array_foreach(s->reach, i, e)
    {
        const char *v;
        if ((v = controller__jstr(e, "sa"))) {
            struct m_ident *id = map_get(&m->idents, v);
            if (id && (rc = reach_eval(m, s, id)) < 0)
                goto out;
        } else if ((v = controller__jstr(e, "ns"))) {
            struct m_nsc *c = controller__nsc(m, v, false);
            if (c)
                MAP_FOREACH(&c->idents, x)
            if ((rc = reach_eval(m, s, x->val)) < 0)
                goto out;
        } else {
            MAP_FOREACH(&m->idents, x)
            if ((rc = reach_eval(m, s, x->val)) < 0)
                goto out;
            goto out;
        }
    }
out:
    free(old);
    json_decref(reach);
    return rc;
}

static int fresh_try(struct mesh_model *m, struct m_ident *id, struct map *set)
{
    if (!set)
        return 0;
    MAP_FOREACH(set, x)
    {
        struct m_svc *s = x->val;
        if (!map_get(&id->outset, s->key) && reach_match(m, s->reach, id)) {
            if (map_put(&s->callers, id->key, id) < 0 || map_put(&id->outset, s->key, s) < 0)
                return -ENOMEM;
        }
    }
    return 0;
}

static int ident_fill(struct mesh_model *m, struct m_ident *id)
{
    int rc;
    if ((rc = fresh_try(m, id, &m->reach_all)) < 0 ||
        (rc = fresh_try(m, id, map_get(&m->reach_ns, id->ns))) < 0 ||
        (rc = fresh_try(m, id, map_get(&m->reach_sa, id->key))) < 0 ||
        (rc = fresh_try(m, id, &m->reach_scan)) < 0)
        return rc;
    id->fresh = false;
    ident_stale(m, id);
    return 0;
}

static int block_compile(struct mesh_model *m, struct m_svc *s, json_t **out);

int controller__resolve(struct mesh_model *m)
{
    const char **keys = NULL;
    size_t n = 0, i;
    int rc = 0;

    if (!m->pending)
        return 0;
    /* 1. caller rules and meshed flags */
    keys = map_sorted_keys(&m->d_reach, &n, &rc);
    if (rc < 0)
        return rc;
    for (i = 0; i < n; i++) {
        struct m_svc *s = map_get(&m->svcs, keys[i]);
        if (s && (rc = reach_update(m, s)) < 0)
            goto out;
    }
    free(keys);
    keys = NULL;
    map_release(&m->d_reach);
    /* 2. new identities (and those whose namespace labels changed) */
    MAP_FOREACH(&m->idents, x)
    {
        struct m_ident *id = x->val;
        if (id->fresh && (rc = ident_fill(m, id)) < 0)
            goto out;
    }
    /* 3. outbound blocks already compiled and now dirty */
    keys = map_sorted_keys(&m->d_blocks, &n, &rc);
    if (rc < 0)
        goto out;
    for (i = 0; i < n; i++) {
        struct m_svc *s = map_get(&m->svcs, keys[i]);
        json_t *b = NULL;
        struct chash h;
        if (!s || !s->block)
            continue;
        if ((rc = block_compile(m, s, &b)) < 0)
            goto out;
        controller__hash_init(&h);
        if ((rc = controller__hash_json(&h, b)) < 0) {
            json_decref(b);
            goto out;
        }
        if (h.a == s->block_hash.a && h.b == s->block_hash.b) {
            json_decref(b);
            continue;
        }
        json_decref(s->block);
        s->block = b;
        s->block_hash = h;
        MAP_FOREACH(&s->callers, x)
        ident_stale(m, x->val);
    }
    map_release(&m->d_blocks);
    m->pending = false;
out:
    free(keys);
    return rc;
}

/* ---- splits and retries ------------------------------------------------------------------- */

static int cmp_cr_age(const void *a, const void *b)
{
    const struct m_cr *x = *(const struct m_cr *const *)a, *y = *(const struct m_cr *const *)b;
    int c = strcmp(x->created, y->created);
    if (c)
        return c;
    c = strcmp(x->name, y->name);
    if (c)
        return c;
    return (int)x->kind - (int)y->kind; /* mesh.weft.dev before SMI */
}

/*
 * The valid splits of apex in age order with their verdicts: accepted[i] true, or the index
 * of the older accepted split it overlaps in beaten_by[i]. Caller frees *out.
 */
static int splits_for_apex(struct mesh_model *m, const char *ns, const char *apex,
                           const struct m_cr ***out, size_t *count, int **beaten_by)
{
    struct m_nsc *c = controller__nsc(m, ns, false);
    const struct m_cr **v = NULL;
    int *bb = NULL;
    size_t n = 0, i, j;

    *out = NULL;
    *count = 0;
    *beaten_by = NULL;
    if (!c)
        return 0;
    v = malloc((c->splits.n + 1) * sizeof(*v));
    bb = malloc((c->splits.n + 1) * sizeof(*bb));
    if (!v || !bb) {
        free(v);
        free(bb);
        return -ENOMEM;
    }
    MAP_FOREACH(&c->splits, x)
    {
        struct m_cr *t = x->val;
        const char *a = controller__jstr(t->d, "apex");
        if (!t->invalid && a && !strcmp(a, apex))
            v[n++] = t;
    }
    qsort(v, n, sizeof(*v), cmp_cr_age);
    for (i = 0; i < n; i++) {
        long long pi = controller__jint(v[i]->d, "port", 0);
        bb[i] = -1;
        for (j = 0; j < i; j++) {
            long long pj = controller__jint(v[j]->d, "port", 0);
            if (bb[j] == -1 && (pi == 0 || pj == 0 || pi == pj)) {
                bb[i] = (int)j;
                break;
            }
        }
    }
    *out = v;
    *count = n;
    *beaten_by = bb;
    return 0;
}

const struct m_cr *controller__split_for(struct mesh_model *m, const char *ns, const char *apex,
                                         int port)
{
    const struct m_cr **v = NULL, *win = NULL;
    int *bb = NULL;
    size_t n = 0, i;

    if (splits_for_apex(m, ns, apex, &v, &n, &bb) < 0)
        return NULL;
    for (i = 0; i < n && !win; i++) {
        long long p = controller__jint(v[i]->d, "port", 0);
        if (bb[i] == -1 && (p == 0 || p == port))
            win = v[i];
    }
    free(v);
    free(bb);
    return win;
}

/* The retry policy for ns/svc:port: port-specific ones first, then the oldest. */
static const struct m_cr *retry_for(struct mesh_model *m, const char *ns, const char *svc, int port,
                                    const struct m_cr *self, const struct m_cr **beater)
{
    struct m_nsc *c = controller__nsc(m, ns, false);
    const struct m_cr *best = NULL;
    if (beater)
        *beater = NULL;
    if (!c)
        return NULL;
    MAP_FOREACH(&c->rps, x)
    {
        const struct m_cr *r = x->val;
        long long p = controller__jint(r->d, "port", 0);
        const char *s = controller__jstr(r->d, "service");
        if (r->invalid || !s || strcmp(s, svc) != 0)
            continue;
        if (self) {
            /* conflict check: same service and same port value, older wins */
            long long sp = controller__jint(self->d, "port", 0);
            if (r != self && p == sp && cmp_cr_age(&r, &self) < 0 &&
                (!*beater || cmp_cr_age(&r, beater) < 0))
                *beater = r;
            continue;
        }
        if (p != 0 && p != port)
            continue;
        if (!best) {
            best = r;
            continue;
        }
        {
            long long bp = controller__jint(best->d, "port", 0);
            if ((p != 0 && bp == 0) || ((p != 0) == (bp != 0) && cmp_cr_age(&r, &best) < 0))
                best = r;
        }
    }
    return best;
}

/* ---- outbound blocks ---------------------------------------------------------------------- */

/*
 * A Service port's protocol for the document (docs/proxy-config.md, "protocol"): from its
 * appProtocol, else from its name (the word itself or the word and "-"). Any other appProtocol
 * is plain tcp. server-first-plaintext is for mode permissive; the compiler makes it
 * server-first in the other modes (proto_in_mode()).
 */
static const char *proto_of(const char *app, const char *name)
{
    static const struct {
        const char *word, *proto;
        bool by_name; /* also recognised as a port name or name prefix */
    } words[] = {
        {"http", "http", true},
        {"http2", "http2", true},
        {"h2c", "http2", true},
        {"kubernetes.io/h2c", "http2", false},
        {"grpc", "grpc", true},
        {"mysql", "server-first", true},
        {"smtp", "server-first", true},
        {"ftp", "server-first", true},
        {"pop3", "server-first", true},
        {"imap", "server-first", true},
        {"mesh.weft.dev/server-first", "server-first", false},
        {"mesh.weft.dev/server-first-plaintext", "server-first-plaintext", false},
    };
    size_t i;
    if (app && *app) {
        for (i = 0; i < ARRAY_LEN(words); i++)
            if (!strcasecmp(app, words[i].word))
                return words[i].proto;
        return "tcp";
    }
    for (i = 0; name && i < ARRAY_LEN(words); i++) {
        size_t n = strlen(words[i].word);
        if (words[i].by_name && !strncmp(name, words[i].word, n) &&
            (name[n] == '\0' || name[n] == '-'))
            return words[i].proto;
    }
    return "tcp";
}

/* A protocol as the document carries it in mode `mode`: plaintext exists in permissive only. */
static const char *proto_in_mode(const char *proto, enum mesh_mode mode)
{
    if (!strcmp(proto, "server-first-plaintext") && mode != MESH_MODE_PERMISSIVE)
        return "server-first";
    return proto;
}

/* http, http2 and grpc ports carry HTTP requests (routes, matches and L7 rules apply). */
static bool proto_http(const char *proto)
{
    return !strcmp(proto, "http") || !strcmp(proto, "http2") || !strcmp(proto, "grpc");
}

static const json_t *svc_port_by_number(const struct m_svc *s, long long port)
{
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(s->d, "ports"), i,
                       p) if (controller__jint(p, "port", 0) == port) return p;
    return NULL;
}

/* Endpoints of service s for its port sp: [{ip, port, identity, ready}] sorted, deduplicated.
 * *ready gets the count of ready ones. */
static json_t *endpoints_of(struct mesh_model *m, const struct m_svc *s, const json_t *sp,
                            long long *ready)
{
    struct m_nsc *c = controller__nsc(m, s->ns, false);
    const char *pname = controller__jstr(sp, "name");
    json_t *out = json_array();
    const char **keys = NULL;
    size_t n = 0, i, j, k;
    int rc = 0;

    *ready = 0;
    if (!out || !c)
        return out;
    keys = map_sorted_keys(&c->slices, &n, &rc);
    if (rc < 0)
        goto fail;
    for (i = 0; i < n; i++) {
        struct m_slice *sl = map_get(&c->slices, keys[i]);
        const char *sv = controller__jstr(sl->d, "service");
        json_t *p, *e;
        long long port = 0;
        if (!sv || strcmp(sv, s->name) != 0)
            continue;
        json_array_foreach(json_object_get(sl->d, "ports"), j, p)
        {
            if (!strcmp(controller__jstr(p, "name"), pname ? pname : ""))
                port = controller__jint(p, "port", 0);
        }
        if (!port)
            continue;
        json_array_foreach(json_object_get(sl->d, "endpoints"), j, e)
        {
            const char *ip = controller__jstr(e, "ip"), *pn = controller__jstr(e, "pod");
            struct m_pod *pod = pn ? map_get(&c->pods, pn) : NULL;
            bool rdy = json_is_true(json_object_get(e, "ready")), dup = false;
            json_t *have, *ep;
            char *id = NULL;
            json_array_foreach(out, k, have) dup =
                dup || (!strcmp(controller__jstr(have, "ip"), ip) &&
                        controller__jint(have, "port", 0) == port);
            if (dup)
                continue;
            if (pod && pod->meshed &&
                !(id = controller__spiffe(m, s->ns, controller__jstr(pod->d, "sa"))))
                goto fail;
            ep = json_pack("{s:s,s:I,s:s?,s:b}", "ip", ip, "port", (json_int_t)port, "identity", id,
                           "ready", rdy);
            free(id);
            if (!ep || json_array_append_new(out, ep) < 0)
                goto fail;
            if (rdy)
                (*ready)++;
        }
    }
    free(keys);
    /* sort by ip then port (slices were visited in name order) */
    n = json_array_size(out);
    for (i = 1; i < n; i++) {
        for (j = i; j > 0; j--) {
            json_t *a = json_array_get(out, j - 1), *b = json_array_get(out, j);
            int cmp = strcmp(controller__jstr(a, "ip"), controller__jstr(b, "ip"));
            if (cmp < 0 ||
                (cmp == 0 && controller__jint(a, "port", 0) <= controller__jint(b, "port", 0)))
                break;
            json_incref(a);
            json_array_set(out, j - 1, b);
            json_array_set_new(out, j, a);
        }
    }
    return out;
fail:
    free(keys);
    json_decref(out);
    return NULL;
}

/* One weighted backend set: split backends (or the apex alone when split is NULL). */
static json_t *backend_set(struct mesh_model *m, const struct m_svc *apex, long long port,
                           const struct m_cr *split)
{
    json_t *out = json_array(), *eps[64] = {NULL}, *b;
    const char *names[64];
    long long W[64], n[64], ach[64], sum = 0;
    int w[64];
    size_t nb = 0, i, j;

    if (!out)
        return NULL;
    if (!split) {
        const json_t *sp = svc_port_by_number(apex, port);
        names[0] = apex->name;
        W[0] = 1;
        if (!(eps[0] = endpoints_of(m, apex, sp, &n[0])))
            goto fail;
        nb = 1;
    } else {
        json_array_foreach(json_object_get(split->d, "backends"), i, b)
        {
            char *k = controller__key(apex->ns, controller__jstr(b, "service"));
            struct m_svc *bs = k ? map_get(&m->svcs, k) : NULL;
            const json_t *sp = bs ? svc_port_by_number(bs, port) : NULL;
            free(k);
            if (!sp || nb >= 64)
                continue; /* missing Service or port: reported by status */
            names[nb] = bs->name;
            W[nb] = controller__jint(b, "w", 0);
            if (!(eps[nb] = endpoints_of(m, bs, sp, &n[nb])))
                goto fail;
            nb++;
        }
    }
    if (!nb)
        return out;
    for (i = 0; i < nb; i++)
        sum += W[i];
    if (controller__weights(nb, W, n, w, ach) < 0)
        goto fail;
    for (i = 0; i < nb; i++) {
        struct jbuild jb = JBUILD_INIT;
        json_t *e;
        json_array_foreach(eps[i], j, e) jbuild_set(
            &jb, e, "weight", json_integer(json_is_true(json_object_get(e, "ready")) ? w[i] : 0));
        if (jb.rc)
            goto fail;
        b = json_pack("{s:s,s:I,s:I,s:o}", "service", names[i], "requestedPpm",
                      (json_int_t)(sum ? (W[i] * 1000000 + sum / 2) / sum : 0), "achievedPpm",
                      (json_int_t)ach[i], "endpoints", eps[i]);
        eps[i] = NULL;
        if (!b || json_array_append_new(out, b) < 0)
            goto fail;
    }
    return out;
fail:
    for (i = 0; i < 64; i++)
        json_decref(eps[i]);
    json_decref(out);
    return NULL;
}

/* The matches a split routes on, NULL for all requests; *unresolved true when an SMI route
 * reference cannot be resolved (the split is then not applied). */
static json_t *split_matches(struct mesh_model *m, const struct m_cr *t, bool *unresolved)
{
    json_t *refs = json_object_get(t->d, "refs"), *r, *out;
    struct m_nsc *c = controller__nsc(m, t->ns, false);
    struct jbuild jb = JBUILD_INIT;
    size_t i, j;

    *unresolved = false;
    if (!refs)
        return json_incref(json_object_get(t->d, "matches"));
    out = jbuild_new(&jb, json_array());
    if (!out)
        return NULL;
    json_array_foreach(refs, i, r)
    {
        const char *k = controller__jstr(r, "kind"), *n = controller__jstr(r, "name");
        struct m_cr *rg = c && !strcmp(k, "HTTPRouteGroup") ? map_get(&c->rgs, n) : NULL;
        json_t *mt;
        if (!rg || rg->invalid) {
            *unresolved = true;
            continue;
        }
        json_array_foreach(rg->d, j, mt) jbuild_append(&jb, out, json_incref(mt));
    }
    return jbuild_end(&jb, &out) ? NULL : out;
}

static int block_compile(struct mesh_model *m, struct m_svc *s, json_t **out)
{
    json_t *b = NULL, *ports = NULL, *sp;
    bool headless = json_is_true(json_object_get(s->d, "headless"));
    struct jbuild jb = JBUILD_INIT; /* the sets below; the rest is checked where it happens */
    size_t i, j;
    int rc = -ENOMEM;

    b = json_pack("{s:s,s:s}", "service", s->name, "namespace", s->ns);
    ports = json_array();
    if (!b || !ports)
        goto out;
    if (headless)
        jbuild_set(&jb, b, "headless", json_true());
    else if (controller__jstr(s->d, "clusterIP"))
        jbuild_set(&jb, b, "clusterIP", json_string(controller__jstr(s->d, "clusterIP")));
    json_array_foreach(json_object_get(s->d, "ports"), i, sp)
    {
        long long port = controller__jint(sp, "port", 0);
        const char *proto = proto_in_mode(
            proto_of(controller__jstr(sp, "appProtocol"), controller__jstr(sp, "name")), m->mode);
        const struct m_cr *rp = retry_for(m, s->ns, s->name, (int)port, NULL, NULL);
        json_t *po = json_pack("{s:I,s:s,s:s}", "port", (json_int_t)port, "name",
                               controller__jstr(sp, "name"), "protocol", proto);
        if (!po || json_array_append_new(ports, po) < 0)
            goto out;
        if (rp) {
            json_t *r = json_pack("{s:s,s:I,s:O}", "policy", rp->name, "attempts",
                                  (json_int_t)controller__jint(rp->d, "attempts", 0), "retryOn",
                                  json_object_get(rp->d, "retryOn"));
            if (!r)
                goto out;
            if (controller__jint(rp->d, "perTryTimeoutMs", 0))
                jbuild_set(&jb, r, "perTryTimeoutMs",
                           json_integer((json_int_t)controller__jint(rp->d, "perTryTimeoutMs", 0)));
            jbuild_set(&jb, po, "retry", r);
            if (controller__jint(rp->d, "timeoutMs", 0))
                jbuild_set(&jb, po, "timeoutMs",
                           json_integer((json_int_t)controller__jint(rp->d, "timeoutMs", 0)));
        }
        if (headless) {
            long long rdy;
            json_t *eps = endpoints_of(m, s, sp, &rdy);
            if (!eps)
                goto out;
            jbuild_set(&jb, po, "endpoints", eps);
            continue;
        }
        {
            const struct m_cr *t = controller__split_for(m, s->ns, s->name, (int)port);
            json_t *routes = json_array(), *apexset = NULL, *splitset = NULL, *ms = NULL, *mt;
            bool unresolved = false, http = proto_http(proto);
            char *sk = NULL;
            if (!routes)
                goto out;
            jbuild_set_ref(&jb, po, "routes", routes);
            json_decref(routes); /* po holds it (or jb the failure; routes then goes unused) */
            if (jb.rc)
                goto out;
            if (t) {
                ms = split_matches(m, t, &unresolved);
                if (!ms && (json_object_get(t->d, "matches") || json_object_get(t->d, "refs")))
                    goto out;
                splitset = backend_set(m, s, port, t);
                if (!splitset) {
                    json_decref(ms);
                    goto out;
                }
                /* not applied: unresolved route refs, no backend resolved, matches on tcp */
                if (unresolved || !json_array_size(splitset) || (ms && !http)) {
                    json_decref(splitset);
                    json_decref(ms);
                    splitset = ms = NULL;
                    t = NULL;
                }
            }
            if (t) {
                sk = controller__key(t->kind == MK_SMITS ? "split.smi-spec.io" : "mesh.weft.dev",
                                     t->name);
                if (!sk) {
                    json_decref(splitset);
                    json_decref(ms);
                    goto out;
                }
            }
            json_array_foreach(ms, j, mt)
            {
                json_t *r =
                    json_pack("{s:O,s:s,s:O}", "match", mt, "split", sk, "backends", splitset);
                if (!r || json_array_append_new(routes, r) < 0)
                    goto route_fail;
            }
            if (t && !ms) {
                json_t *r = json_pack("{s:s,s:O}", "split", sk, "backends", splitset);
                if (!r || json_array_append_new(routes, r) < 0)
                    goto route_fail;
            } else {
                apexset = backend_set(m, s, port, NULL);
                if (!apexset ||
                    json_array_append_new(routes, json_pack("{s:O}", "backends", apexset)) < 0)
                    goto route_fail;
            }
            json_decref(apexset);
            json_decref(splitset);
            json_decref(ms);
            free(sk);
            continue;
        route_fail:
            json_decref(apexset);
            json_decref(splitset);
            json_decref(ms);
            free(sk);
            goto out;
        }
    }
    jbuild_set(&jb, b, "ports", ports);
    ports = NULL;
    if ((rc = jbuild_end(&jb, &b)) < 0)
        goto out;
    *out = b;
    b = NULL;
    rc = 0;
out:
    json_decref(ports);
    json_decref(b);
    return rc;
}

static int ident_outbound(struct mesh_model *m, struct m_ident *id)
{
    const char **keys = NULL;
    size_t n = 0, i;
    json_t *arr = NULL;
    struct chash h;
    int rc = 0;

    if (id->outbound)
        return 0;
    keys = map_sorted_keys(&id->outset, &n, &rc);
    if (rc < 0)
        return rc;
    arr = json_array();
    if (!arr) {
        rc = -ENOMEM;
        goto out;
    }
    controller__hash_init(&h);
    for (i = 0; i < n; i++) {
        struct m_svc *s = map_get(&id->outset, keys[i]);
        if (!s->block) {
            if ((rc = block_compile(m, s, &s->block)) < 0)
                goto out;
            controller__hash_init(&s->block_hash);
            if ((rc = controller__hash_json(&s->block_hash, s->block)) < 0) {
                json_decref(s->block);
                s->block = NULL;
                goto out;
            }
        }
        if (json_array_append(arr, s->block) < 0) {
            rc = -ENOMEM;
            goto out;
        }
        controller__hash_add(&h, &s->block_hash, sizeof(s->block_hash));
    }
    id->outbound = arr;
    arr = NULL;
    id->out_hash = h;
out:
    free(keys);
    json_decref(arr);
    return rc;
}

/* ---- inbound ------------------------------------------------------------------------------ */

static int cmp_json_str(const void *a, const void *b)
{
    return strcmp(json_string_value(*(json_t *const *)a), json_string_value(*(json_t *const *)b));
}

/* Sort and deduplicate an array of strings in place. */
static int uniq_strings(json_t *arr)
{
    size_t n = json_array_size(arr), i;
    struct jbuild jb = JBUILD_INIT;
    json_t **v;
    if (n < 2)
        return 0;
    v = malloc(n * sizeof(*v));
    if (!v)
        return -ENOMEM;
    for (i = 0; i < n; i++)
        v[i] = json_incref(json_array_get(arr, i));
    qsort(v, n, sizeof(*v), cmp_json_str);
    json_array_clear(arr);
    for (i = 0; i < n; i++) {
        if (i && json_equal(v[i], v[i - 1]))
            json_decref(v[i]);
        else
            jbuild_append(&jb, arr, v[i]);
    }
    free(v);
    return jb.rc;
}

/* Peers of a policy: {"any":true} or {"ids":[...],"prefixes":[...]} (sorted, unique). */
static json_t *compile_peers(struct mesh_model *m, const struct m_cr *ap)
{
    json_t *from = json_object_get(ap->d, "from"), *ids, *pre, *e;
    size_t i;
    char *s = NULL;

    if (!from)
        return json_pack("{s:b}", "any", 1);
    ids = json_array();
    pre = json_array();
    if (!ids || !pre)
        goto fail;
    json_array_foreach(from, i, e)
    {
        const char *v;
        const json_t *sel;
        if ((v = controller__jstr(e, "sa"))) {
            const char *slash = strchr(v, '/');
            char *ns = strndup(v, (size_t)(slash - v));
            s = ns ? controller__spiffe(m, ns, slash + 1) : NULL;
            free(ns);
            if (!s || json_array_append_new(ids, json_string(s)) < 0)
                goto fail;
            FREE_AND_NULL(s);
        } else if ((v = controller__jstr(e, "ns"))) {
            if (asprintf(&s, "spiffe://%s/ns/%s/sa/", m->trust_domain, v) < 0) {
                s = NULL;
                goto fail;
            }
            if (json_array_append_new(pre, json_string(s)) < 0)
                goto fail;
            FREE_AND_NULL(s);
        } else if ((sel = json_object_get(e, "nssel"))) {
            MAP_FOREACH(&m->nss, x)
            {
                struct m_nsc *c = x->val;
                if (!c->labels || !controller__selector_match(sel, c->labels))
                    continue;
                if (asprintf(&s, "spiffe://%s/ns/%s/sa/", m->trust_domain, c->name) < 0) {
                    s = NULL;
                    goto fail;
                }
                if (json_array_append_new(pre, json_string(s)) < 0)
                    goto fail;
                FREE_AND_NULL(s);
            }
        } else if ((v = controller__jstr(e, "id"))) {
            if (json_array_append_new(ids, json_string(v)) < 0)
                goto fail;
        } else if ((v = controller__jstr(e, "prefix"))) {
            if (json_array_append_new(pre, json_string(v)) < 0)
                goto fail;
        }
    }
    if (uniq_strings(ids) < 0 || uniq_strings(pre) < 0)
        goto fail;
    return json_pack("{s:o,s:o}", "ids", ids, "prefixes", pre);
fail:
    free(s);
    json_decref(ids);
    json_decref(pre);
    return NULL;
}

/* Does the pod's container port `cp` (named pname) back a port of service s (any port when
 * ports is NULL, else one of the listed service ports)? */
static bool svc_targets_port(const struct m_svc *s, long long cp, const char *pname,
                             const json_t *ports)
{
    size_t i, j;
    json_t *sp, *x;
    json_array_foreach(json_object_get(s->d, "ports"), i, sp)
    {
        json_t *tp = json_object_get(sp, "targetPort");
        bool hit = json_is_integer(tp)
                       ? json_integer_value(tp) == cp
                       : (pname && json_is_string(tp) && !strcmp(json_string_value(tp), pname));
        bool listed = !ports;
        if (!hit)
            continue;
        json_array_foreach(ports, j, x) listed =
            listed || json_integer_value(x) == controller__jint(sp, "port", 0);
        if (listed)
            return true;
    }
    return false;
}

static bool ap_applies_port(struct mesh_model *m, const struct m_cr *ap, long long cp,
                            const char *pname)
{
    const json_t *t = json_object_get(ap->d, "target"), *ports = json_object_get(ap->d, "ports");
    const char *kind = controller__jstr(t, "kind");
    size_t i;
    json_t *x;
    if (!strcmp(kind, "Service")) {
        char *k = controller__key(ap->ns, controller__jstr(t, "name"));
        struct m_svc *s = k ? map_get(&m->svcs, k) : NULL;
        free(k);
        return s && svc_targets_port(s, cp, pname, ports);
    }
    if (!ports)
        return true;
    json_array_foreach(ports, i, x) if (json_integer_value(x) == cp) return true;
    return false;
}

static const char *default_access(enum mesh_mode mode)
{
    switch (mode) {
    case MESH_MODE_DENY:
        return "deny";
    case MESH_MODE_PERMISSIVE:
        return "allow-any";
    case MESH_MODE_ALL_AUTHENTICATED:
    default:
        return "allow-authenticated";
    }
}

static json_t *compile_inbound(struct mesh_model *m, const struct m_pod *p)
{
    struct m_nsc *c = controller__nsc(m, p->ns, false);
    const json_t *labels = json_object_get(p->d, "labels");
    struct jbuild jb = JBUILD_INIT;
    json_t *out = jbuild_new(&jb, json_array()), *ports = jbuild_new(&jb, json_array()), *x, *sp;
    const char **ak = NULL;
    size_t na = 0, i, j, k;
    int rc = 0;

    if (!out || !ports || !c)
        goto fail;
    /* listener ports: declared container ports and numeric targetPorts of selecting services */
    json_array_foreach(json_object_get(p->d, "ports"), i, x)
        jbuild_append(&jb, ports, json_integer(json_integer_value(json_object_get(x, "port"))));
    MAP_FOREACH(&c->svcs, y)
    {
        struct m_svc *s = y->val;
        if (!controller__map_selects(json_object_get(s->d, "selector"), labels))
            continue;
        json_array_foreach(json_object_get(s->d, "ports"), i, sp)
        {
            json_t *tp = json_object_get(sp, "targetPort");
            bool have = false;
            if (!json_is_integer(tp))
                continue;
            json_array_foreach(ports, j, x) have =
                have || json_integer_value(x) == json_integer_value(tp);
            if (!have)
                jbuild_append(&jb, ports, json_integer(json_integer_value(tp)));
        }
    }
    if (jb.rc)
        goto fail;
    /* sort ports */
    for (i = 1; i < json_array_size(ports); i++)
        for (j = i; j > 0 && json_integer_value(json_array_get(ports, j - 1)) >
                                 json_integer_value(json_array_get(ports, j));
             j--) {
            json_t *a = json_incref(json_array_get(ports, j - 1));
            json_array_set(ports, j - 1, json_array_get(ports, j));
            json_array_set_new(ports, j, a);
        }
    ak = map_sorted_keys(&c->aps, &na, &rc);
    if (rc < 0)
        goto fail;
    json_array_foreach(ports, i, x)
    {
        long long cp = json_integer_value(x);
        const char *pname = NULL, *proto = NULL;
        json_t *svcs = json_array(), *lst, *deny = json_array(), *audit = json_array(),
               *allow = json_array(), *pp;
        bool any_allow = false, mixed = false;
        json_array_foreach(json_object_get(p->d, "ports"), j,
                           pp) if (controller__jint(pp, "port", 0) == cp) pname =
            controller__jstr(pp, "name");
        lst = json_pack("{s:I}", "port", (json_int_t)cp);
        if (!svcs || !deny || !audit || !allow || !lst || json_array_append_new(out, lst) < 0) {
            json_decref(svcs);
            json_decref(deny);
            json_decref(audit);
            json_decref(allow);
            goto fail;
        }
        /* protocol: the hints of the service ports that target this port */
        MAP_FOREACH(&c->svcs, y)
        {
            struct m_svc *s = y->val;
            if (!controller__map_selects(json_object_get(s->d, "selector"), labels))
                continue;
            json_array_foreach(json_object_get(s->d, "ports"), j, sp)
            {
                json_t *tp = json_object_get(sp, "targetPort");
                bool hit = json_is_integer(tp) ? json_integer_value(tp) == cp
                                               : (pname && !strcmp(json_string_value(tp), pname));
                const char *pr;
                if (!hit)
                    continue;
                pr = proto_in_mode(
                    proto_of(controller__jstr(sp, "appProtocol"), controller__jstr(sp, "name")),
                    m->mode);
                if (proto && strcmp(proto, pr) != 0)
                    mixed = true;
                proto = pr;
                jbuild_append(&jb, svcs, json_string(s->name));
            }
        }
        if (mixed)
            proto = "tcp";
        if (!proto)
            proto = proto_of(NULL, pname);
        jbuild_fail(&jb, uniq_strings(svcs));
        jbuild_set(&jb, lst, "protocol", json_string(proto));
        jbuild_set(&jb, lst, "services", svcs);
        for (k = 0; k < na; k++) {
            struct m_cr *ap = map_get(&c->aps, ak[k]);
            const char *act = controller__jstr(ap->d, "action");
            json_t *rule, *rules = json_object_get(ap->d, "rules");
            if (!controller__ap_targets_pod(m, ap, p) || !ap_applies_port(m, ap, cp, pname))
                continue;
            if (!strcmp(act, "Allow"))
                any_allow = true;
            if (rules && !proto_http(proto) && !strcmp(act, "Allow"))
                continue; /* L7 conditions cannot be checked on tcp: the Allow admits nothing */
            rule = json_pack("{s:s,s:o}", "policy", ap->name, "peers", compile_peers(m, ap));
            if (!rule)
                goto fail_lists;
            if (rules && proto_http(proto))
                jbuild_set_ref(&jb, rule, "l7", rules);
            else if (rules)
                jbuild_set(&jb, rule, "l7Ignored", json_true());
            jbuild_append(&jb,
                          !strcmp(act, "Allow")  ? allow
                          : !strcmp(act, "Deny") ? deny
                                                 : audit,
                          rule);
        }
        jbuild_set(&jb, lst, "default", json_string(any_allow ? "deny" : default_access(m->mode)));
        jbuild_set(&jb, lst, "deny", deny);
        jbuild_set(&jb, lst, "audit", audit);
        jbuild_set(&jb, lst, "allow", allow);
        if (jb.rc)
            goto fail;
        continue;
    fail_lists:
        json_decref(deny);
        json_decref(audit);
        json_decref(allow);
        goto fail;
    }
    free(ak);
    json_decref(ports);
    return out;
fail:
    free(ak);
    json_decref(ports);
    json_decref(out);
    return NULL;
}

/* ---- the document ------------------------------------------------------------------------- */

int mesh_compile_pod_ex(struct mesh_model *m, const char *ns, const char *name, json_t **doc,
                        struct mesh_compile_info *info)
{
    char *k = controller__key(ns, name), *subject = NULL;
    struct m_pod *p = NULL;
    json_t *d = NULL;
    struct chash h;
    int rc;

    if (!k) {
        m->compile_failures++;
        return -ENOMEM;
    }
    rc = controller__resolve(m);
    if (rc < 0)
        goto out;
    p = map_get(&m->pods, k);
    if (!p || !p->meshed || !p->ident) {
        rc = ERR_NOTFOUND;
        goto out;
    }
    if ((rc = ident_outbound(m, p->ident)) < 0)
        goto out;
    rc = -ENOMEM;
    if (!p->inbound) {
        /* inbound depends on the pod's own inputs only; cached until mark_pod() drops it */
        json_t *in = compile_inbound(m, p);
        if (!in)
            goto out;
        controller__hash_init(&p->in_hash);
        if ((rc = controller__hash_json(&p->in_hash, in)) < 0) {
            json_decref(in);
            goto out;
        }
        p->inbound = in;
    }
    rc = -ENOMEM;
    subject = controller__peer_match_string(m->trust_domain, p->ns, p->ident->sa);
    if (!subject)
        goto out;
    d = json_pack("{s:i,s:{s:s,s:s,s:s?},s:{s:s,s:s,s:s,s:s},s:{s:s,s:s,s:s},s:s}", "schemaVersion",
                  MESH_SCHEMA_VERSION, "proxy", "namespace", p->ns, "pod", p->name, "ip",
                  controller__jstr(p->d, "ip"), "identity", "spiffeID", p->ident->spiffe,
                  "serviceAccount", p->ident->sa, "trustDomain", m->trust_domain, "subject",
                  subject, "trustBundle", "configMap", m->bundle_cm, "namespace", p->ns, "key",
                  m->bundle_key, "mode", mesh_mode_name(m->mode));
    if (!d)
        goto out;
    /* digest = H(head) . H(inbound) . H(outbound blocks): the serialization is a fixed
     * function of these parts, so equal digests mean byte-identical documents */
    controller__hash_init(&h);
    if ((rc = controller__hash_json(&h, d)) < 0)
        goto out;
    rc = -ENOMEM;
    controller__hash_add(&h, &p->in_hash, sizeof(p->in_hash));
    controller__hash_add(&h, &p->ident->out_hash, sizeof(p->ident->out_hash));
    if (json_object_set(d, "inbound", p->inbound) < 0)
        goto out;
    if (json_object_set(d, "outbound", p->ident->outbound) < 0) {
        rc = -ENOMEM;
        goto out;
    }
    if (info) {
        info->changed = !p->have_last || p->last.a != h.a || p->last.b != h.b;
        info->hash[0] = h.a;
        info->hash[1] = h.b;
    }
    p->last = h;
    p->have_last = true;
    *doc = d;
    d = NULL;
    rc = 0;
out:
    if (rc < 0 && rc != ERR_NOTFOUND) {
        /* Nothing partial leaves: *doc is untouched, the remembered hash stays the last good
         * document's, and the pod stays dirty so that the next pass tries again. */
        m->compile_failures++;
        if (p)
            controller__mark(&m->d_pods, p->key, m);
    }
    free(k);
    free(subject);
    json_decref(d);
    return rc;
}

int mesh_compile_pod(struct mesh_model *m, const char *ns, const char *name, json_t **doc)
{
    return mesh_compile_pod_ex(m, ns, name, doc, NULL);
}

uint64_t mesh_model_compile_failures(const struct mesh_model *m)
{
    return m->compile_failures;
}

/* ---- status ------------------------------------------------------------------------------- */

struct cond {
    const char *type;
    bool ok;
    const char *reason;
    char msg[1024];
};

static void msg_append(char *buf, size_t n, const char *fmt, ...) PRINTF_LIKE(3, 4);
static void msg_append(char *buf, size_t n, const char *fmt, ...)
{
    size_t len = strlen(buf);
    va_list ap;
    if (len >= n - 1)
        return;
    va_start(ap, fmt);
    vsnprintf(buf + len, n - len, fmt, ap);
    va_end(ap);
}

static bool svc_exists(struct mesh_model *m, const char *ns, const char *name, struct m_svc **out)
{
    char *k = controller__key(ns, name);
    struct m_svc *s = k ? map_get(&m->svcs, k) : NULL;
    free(k);
    if (out)
        *out = s;
    return s != NULL;
}

static size_t count_callers(const struct m_svc *s)
{
    size_t n = 0;
    MAP_FOREACH(&s->callers, x)
    n += ((struct m_ident *)x->val)->pods.n;
    return n;
}

static void status_split(struct mesh_model *m, const struct m_cr *t, struct cond *cs)
{
    const char *apex = controller__jstr(t->d, "apex");
    struct m_svc *as = NULL;
    json_t *b, *r;
    size_t i, nres = 0;
    long long port = controller__jint(t->d, "port", 0);
    bool refs_bad = false;

    cs[0] = (struct cond){"Accepted", true, "Accepted", "the split is valid"};
    cs[1] = (struct cond){"ResolvedRefs", true, "ResolvedRefs", ""};
    cs[2] = (struct cond){"Programmed", false, "NotAccepted", ""};
    if (t->invalid) {
        cs[0].ok = false;
        cs[0].reason = "Invalid";
        snprintf(cs[0].msg, sizeof(cs[0].msg), "%s", t->invalid);
    } else {
        const struct m_cr **v = NULL;
        int *bb = NULL;
        size_t n = 0;
        if (splits_for_apex(m, t->ns, apex, &v, &n, &bb) == 0) {
            for (i = 0; i < n; i++) {
                if (v[i] == t && bb[i] >= 0) {
                    const struct m_cr *w = v[bb[i]];
                    cs[0].ok = false;
                    cs[0].reason = "Conflicted";
                    snprintf(cs[0].msg, sizeof(cs[0].msg),
                             "TrafficSplit %s/%s (%s) already splits Service %s%s and takes "
                             "precedence (older creationTimestamp, then name); delete one of them "
                             "or give them different ports",
                             w->ns, w->name,
                             w->kind == MK_SMITS ? "split.smi-spec.io" : "mesh.weft.dev", apex,
                             port ? " on an overlapping port" : "");
                }
            }
        }
        free(v);
        free(bb);
    }
    svc_exists(m, t->ns, apex ? apex : "", &as);
    if (apex && !as)
        msg_append(cs[1].msg, sizeof(cs[1].msg), "Service %s/%s (the apex) not found; ", t->ns,
                   apex);
    if (as && port && !svc_port_by_number(as, port))
        msg_append(cs[1].msg, sizeof(cs[1].msg), "Service %s/%s has no port %lld; ", t->ns, apex,
                   port);
    json_array_foreach(json_object_get(t->d, "backends"), i, b)
    {
        struct m_svc *bs = NULL;
        const char *bn = controller__jstr(b, "service");
        bool portok = true;
        size_t j;
        json_t *ap;
        if (!svc_exists(m, t->ns, bn, &bs)) {
            msg_append(cs[1].msg, sizeof(cs[1].msg), "Service %s/%s (backend) not found; ", t->ns,
                       bn);
            continue;
        }
        /* every apex port the split covers must exist on the backend */
        json_array_foreach(as ? json_object_get(as->d, "ports") : NULL, j, ap)
        {
            long long pn = controller__jint(ap, "port", 0);
            if ((port == 0 || pn == port) && !svc_port_by_number(bs, pn)) {
                msg_append(cs[1].msg, sizeof(cs[1].msg),
                           "Service %s/%s (backend) has no port %lld; ", t->ns, bn, pn);
                portok = false;
            }
        }
        if (portok)
            nres++;
    }
    json_array_foreach(json_object_get(t->d, "refs"), i, r)
    {
        const char *k = controller__jstr(r, "kind"), *n = controller__jstr(r, "name");
        struct m_nsc *c = controller__nsc(m, t->ns, false);
        struct m_cr *rg = c ? map_get(&c->rgs, n) : NULL;
        if (strcmp(k, "HTTPRouteGroup") != 0 || !rg || rg->invalid)
            refs_bad = true;
        if (strcmp(k, "HTTPRouteGroup") != 0)
            msg_append(cs[1].msg, sizeof(cs[1].msg), "%s %s/%s is not supported by Weft; ", k,
                       t->ns, n);
        else if (!rg)
            msg_append(cs[1].msg, sizeof(cs[1].msg), "HTTPRouteGroup %s/%s not found; ", t->ns, n);
        else if (rg->invalid)
            msg_append(cs[1].msg, sizeof(cs[1].msg), "HTTPRouteGroup %s/%s is invalid: %s; ", t->ns,
                       n, rg->invalid);
    }
    if (cs[1].msg[0]) {
        size_t l = strlen(cs[1].msg);
        cs[1].ok = false;
        cs[1].reason = "RefNotFound";
        if (l >= 2)
            cs[1].msg[l - 2] = '\0'; /* drop the trailing "; " */
    } else {
        snprintf(cs[1].msg, sizeof(cs[1].msg), "all referenced objects exist");
    }
    if (!cs[0].ok) {
        snprintf(cs[2].msg, sizeof(cs[2].msg), "not programmed: the split is not accepted");
    } else if (!as) {
        cs[2].reason = "ApexNotFound";
        snprintf(cs[2].msg, sizeof(cs[2].msg),
                 "no proxy routes to Service %s/%s: it does not "
                 "exist",
                 t->ns, apex);
    } else if (json_is_true(json_object_get(as->d, "headless"))) {
        cs[2].reason = "HeadlessService";
        snprintf(cs[2].msg, sizeof(cs[2].msg),
                 "Service %s/%s is headless: clients dial pod addresses, which cannot be split",
                 t->ns, apex);
    } else if (!nres) {
        cs[2].reason = "NoBackends";
        snprintf(cs[2].msg, sizeof(cs[2].msg),
                 "no backend resolves; traffic to %s keeps going to the Service itself", apex);
    } else if (refs_bad) {
        cs[2].reason = "RefNotFound";
        snprintf(cs[2].msg, sizeof(cs[2].msg),
                 "route references do not resolve; traffic to %s keeps going to the Service "
                 "itself",
                 apex);
    } else {
        cs[2].ok = true;
        cs[2].reason = "Compiled";
        snprintf(cs[2].msg, sizeof(cs[2].msg),
                 "compiled into the configuration of the %zu proxies that may call %s",
                 count_callers(as), apex);
    }
}

static void status_ap(struct mesh_model *m, const struct m_cr *ap, struct cond *cs)
{
    const json_t *t = json_object_get(ap->d, "target");
    const char *kind = controller__jstr(t, "kind");
    json_t *e;
    size_t i, npods = 0;
    struct m_nsc *c = controller__nsc(m, ap->ns, false);

    cs[0] = (struct cond){"Accepted", true, "Accepted", "the policy is valid"};
    cs[1] = (struct cond){"ResolvedRefs", true, "ResolvedRefs", ""};
    cs[2] = (struct cond){"Programmed", false, "NotAccepted", ""};
    if (ap->invalid) {
        cs[0].ok = false;
        cs[0].reason = "Invalid";
        snprintf(cs[0].msg, sizeof(cs[0].msg), "%s", ap->invalid);
        snprintf(cs[2].msg, sizeof(cs[2].msg), "not programmed: the policy is not accepted");
        snprintf(cs[1].msg, sizeof(cs[1].msg), "not resolved: the policy is not accepted");
        return;
    }
    if (kind && !strcmp(kind, "Service") &&
        !svc_exists(m, ap->ns, controller__jstr(t, "name"), NULL))
        msg_append(cs[1].msg, sizeof(cs[1].msg), "Service %s/%s (the target) not found; ", ap->ns,
                   controller__jstr(t, "name"));
    json_array_foreach(json_object_get(ap->d, "from"), i, e)
    {
        const char *v;
        if ((v = controller__jstr(e, "sa"))) {
            const char *slash = strchr(v, '/');
            char ns[256];
            struct m_nsc *sc;
            snprintf(ns, sizeof(ns), "%.*s", (int)(slash - v), v);
            sc = controller__nsc(m, ns, false);
            if (!sc || !map_get(&sc->sas, slash + 1))
                msg_append(cs[1].msg, sizeof(cs[1].msg), "ServiceAccount %s not found; ", v);
        } else if ((v = controller__jstr(e, "ns"))) {
            struct m_nsc *sc = controller__nsc(m, v, false);
            if (!sc || !sc->labels)
                msg_append(cs[1].msg, sizeof(cs[1].msg), "Namespace %s not found; ", v);
        }
    }
    if (cs[1].msg[0]) {
        size_t l = strlen(cs[1].msg);
        cs[1].ok = false;
        cs[1].reason = "RefNotFound";
        if (l >= 2)
            cs[1].msg[l - 2] = '\0';
    } else {
        snprintf(cs[1].msg, sizeof(cs[1].msg), "all referenced objects exist");
    }
    if (c)
        MAP_FOREACH(&c->pods, x)
        {
            struct m_pod *p = x->val;
            if (p->meshed && controller__ap_targets_pod(m, ap, p))
                npods++;
        }
    cs[2].ok = true;
    cs[2].reason = "Compiled";
    snprintf(cs[2].msg, sizeof(cs[2].msg),
             "compiled into the configuration of the %zu meshed pods it targets", npods);
}

static void status_rp(struct mesh_model *m, const struct m_cr *rp, struct cond *cs)
{
    const char *svc = controller__jstr(rp->d, "service");
    long long port = controller__jint(rp->d, "port", 0);
    struct m_svc *s = NULL;
    const struct m_cr *beater = NULL;

    cs[0] = (struct cond){"Accepted", true, "Accepted", "the policy is valid"};
    cs[1] = (struct cond){"ResolvedRefs", true, "ResolvedRefs", "all referenced objects exist"};
    cs[2] = (struct cond){"Programmed", false, "NotAccepted", ""};
    if (rp->invalid) {
        cs[0].ok = false;
        cs[0].reason = "Invalid";
        snprintf(cs[0].msg, sizeof(cs[0].msg), "%s", rp->invalid);
    } else {
        retry_for(m, rp->ns, svc, (int)port, rp, &beater);
        if (beater) {
            cs[0].ok = false;
            cs[0].reason = "Conflicted";
            snprintf(cs[0].msg, sizeof(cs[0].msg),
                     "RetryPolicy %s/%s already targets Service %s%s and takes precedence "
                     "(older creationTimestamp, then name); this one is ignored",
                     beater->ns, beater->name, svc, port ? " on the same port" : "");
        }
    }
    if (svc && !svc_exists(m, rp->ns, svc, &s)) {
        cs[1].ok = false;
        cs[1].reason = "RefNotFound";
        snprintf(cs[1].msg, sizeof(cs[1].msg), "Service %s/%s (the target) not found", rp->ns, svc);
    } else if (s && port && !svc_port_by_number(s, port)) {
        cs[1].ok = false;
        cs[1].reason = "RefNotFound";
        snprintf(cs[1].msg, sizeof(cs[1].msg), "Service %s/%s has no port %lld", rp->ns, svc, port);
    }
    if (!cs[0].ok) {
        snprintf(cs[2].msg, sizeof(cs[2].msg), "not programmed: the policy is not accepted");
    } else if (!cs[1].ok) {
        cs[2].reason = "RefNotFound";
        snprintf(cs[2].msg, sizeof(cs[2].msg), "not programmed: %.900s", cs[1].msg);
    } else {
        cs[2].ok = true;
        cs[2].reason = "Compiled";
        snprintf(cs[2].msg, sizeof(cs[2].msg),
                 "compiled into the configuration of the %zu proxies that may call %s",
                 count_callers(s), svc);
    }
}

/*
 * The custom resource kind/ns/name (kind as in mesh_model_status) after resolving the model:
 * 0 with *k, *c (its namespace) and *cr set, ERR_UNSUPPORTED, ERR_NOTFOUND or -ENOMEM.
 */
static int cr_lookup(struct mesh_model *m, const char *kind, const char *ns, const char *name,
                     enum mk *k, struct m_nsc **c, struct m_cr **cr)
{
    int rc = controller__kind_of_name(kind, k);

    if (rc < 0)
        return rc;
    if (*k != MK_TS && *k != MK_SMITS && *k != MK_AP && *k != MK_RP)
        return ERR_UNSUPPORTED;
    if ((rc = controller__resolve(m)) < 0)
        return rc;
    *c = ns ? controller__nsc(m, ns, false) : NULL;
    *cr = NULL;
    if (*c && (*k == MK_TS || *k == MK_SMITS))
        *cr = controller__split_get(*c, *k == MK_SMITS, name);
    else if (*c && *k == MK_AP)
        *cr = map_get(&(*c)->aps, name);
    else if (*c && *k == MK_RP)
        *cr = map_get(&(*c)->rps, name);
    return *cr ? 0 : ERR_NOTFOUND;
}

int mesh_model_status(struct mesh_model *m, const char *kind, const char *ns, const char *name,
                      const json_t *prev, const char *now, json_t **out)
{
    struct m_nsc *c;
    struct m_cr *cr = NULL;
    struct cond cs[3];
    json_t *arr = NULL;
    enum mk k;
    size_t i, j;
    int rc = cr_lookup(m, kind, ns, name, &k, &c, &cr);

    if (rc)
        return rc;
    if (k == MK_AP)
        status_ap(m, cr, cs);
    else if (k == MK_RP)
        status_rp(m, cr, cs);
    else
        status_split(m, cr, cs);
    arr = json_array();
    if (!arr)
        return -ENOMEM;
    for (i = 0; i < 3; i++) {
        const char *st = cs[i].ok ? "True" : "False", *ltt = now;
        json_t *pc, *o;
        json_array_foreach(prev, j, pc)
        {
            const char *pt = controller__jstr(pc, "type"), *ps = controller__jstr(pc, "status");
            const char *pl = controller__jstr(pc, "lastTransitionTime");
            if (pt && ps && pl && !strcmp(pt, cs[i].type) && !strcmp(ps, st))
                ltt = pl;
        }
        o = json_pack("{s:s,s:s,s:I,s:s,s:s,s:s}", "type", cs[i].type, "status", st,
                      "observedGeneration", (json_int_t)cr->gen, "lastTransitionTime",
                      ltt ? ltt : "", "reason", cs[i].reason, "message", cs[i].msg);
        if (!o || json_array_append_new(arr, o) < 0) {
            json_decref(arr);
            return -ENOMEM;
        }
    }
    *out = arr;
    return 0;
}

/* ---- the proxies a resource shapes ---------------------------------------------------------- */

static int visit_callers(const struct m_svc *s, mesh_proxy_visit_fn *fn, void *arg)
{
    int rc = 0;
    MAP_FOREACH(&s->callers, x)
    {
        const struct m_ident *id = x->val;
        MAP_FOREACH(&id->pods, y)
        {
            const struct m_pod *p = y->val;
            if (p->meshed && (rc = fn(arg, p->key)) != 0)
                return rc;
        }
    }
    return 0;
}

int mesh_model_affected_proxies(struct mesh_model *m, const char *kind, const char *ns,
                                const char *name, mesh_proxy_visit_fn *fn, void *arg)
{
    struct m_nsc *c;
    struct m_cr *cr = NULL;
    struct m_svc *s = NULL;
    enum mk k;
    int rc = cr_lookup(m, kind, ns, name, &k, &c, &cr);

    if (rc)
        return rc;
    if (k == MK_AP) {
        MAP_FOREACH(&c->pods, x)
        {
            const struct m_pod *p = x->val;
            if (p->meshed && controller__ap_targets_pod(m, cr, p) && (rc = fn(arg, p->key)) != 0)
                return rc;
        }
        return 0;
    }
    if (svc_exists(m, cr->ns, controller__jstr(cr->d, k == MK_RP ? "service" : "apex"), &s))
        return visit_callers(s, fn, arg);
    return 0;
}

/* ---- the TrafficSplit summary for kubectl ------------------------------------------------- */

/* ppm as a percentage: "80%", "33.3%". */
static void pct(char *out, size_t n, long long ppm)
{
    if (ppm % 10000 == 0)
        snprintf(out, n, "%lld%%", ppm / 10000);
    else
        snprintf(out, n, "%.1f%%", (double)ppm / 10000.0);
}

int mesh_model_split_summary(struct mesh_model *m, const char *ns, const char *name, char *out,
                             size_t outlen)
{
    struct m_nsc *c;
    struct m_cr *t;
    struct m_svc *as = NULL;
    const json_t *sp = NULL, *b;
    const char *names[64], *apex;
    char req[64][24], got[64][24];
    long long W[64], n[64], ach[64], sum = 0, ready = 0, port;
    int w[64];
    size_t nb = 0, i, len = 0;
    bool differs = false;
    int rc;

    if ((rc = controller__resolve(m)) < 0)
        return rc;
    c = ns ? controller__nsc(m, ns, false) : NULL;
    t = c ? controller__split_get(c, false, name) : NULL;
    if (!t)
        return ERR_NOTFOUND;
    json_array_foreach(json_object_get(t->d, "backends"), i, b)
    {
        if (nb == 64)
            break;
        names[nb] = controller__jstr(b, "service");
        W[nb] = controller__jint(b, "w", 0);
        n[nb] = 0;
        if (names[nb] && W[nb] >= 0)
            sum += W[nb++];
    }
    /* The shares the ready endpoints allow, on the split's port or else the apex's first one. */
    port = controller__jint(t->d, "port", 0);
    apex = controller__jstr(t->d, "apex");
    if (!t->invalid && apex && svc_exists(m, t->ns, apex, &as)) {
        if (!port)
            port = controller__jint(json_array_get(json_object_get(as->d, "ports"), 0), "port", 0);
        sp = svc_port_by_number(as, port);
    }
    for (i = 0; sp && i < nb; i++) {
        struct m_svc *bs = NULL;
        const json_t *bp;
        json_t *eps;
        if (!svc_exists(m, t->ns, names[i], &bs) || !(bp = svc_port_by_number(bs, port)))
            continue; /* a missing backend gets nothing */
        if (!(eps = endpoints_of(m, bs, bp, &n[i])))
            return -ENOMEM;
        json_decref(eps);
        ready += n[i];
    }
    if (ready && controller__weights(nb, W, n, w, ach) < 0)
        return -EINVAL;
    for (i = 0; i < nb; i++) {
        long long r = sum ? (W[i] * 1000000 + sum / 2) / sum : 0;
        pct(req[i], sizeof(req[i]), r);
        pct(got[i], sizeof(got[i]), ready ? ach[i] : r);
        if (strcmp(req[i], got[i]) != 0)
            differs = true;
    }
    out[0] = '\0';
    for (i = 0; i < nb; i++) {
        if (differs)
            len +=
                (size_t)snprintf(out + len, len < outlen ? outlen - len : 0,
                                 "%s%s %s (achieved %s)", i ? ", " : "", names[i], req[i], got[i]);
        else
            len += (size_t)snprintf(out + len, len < outlen ? outlen - len : 0, "%s%s %s",
                                    i ? ", " : "", names[i], req[i]);
        if (len >= outlen)
            return -ENOSPC;
    }
    if (sp && !ready && nb) {
        len +=
            (size_t)snprintf(out + len, len < outlen ? outlen - len : 0, " (no ready endpoints)");
        if (len >= outlen)
            return -ENOSPC;
    }
    return 0;
}
