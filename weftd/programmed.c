/*
 * programmed.c - the Programmed condition from the proxies' acknowledgements
 * (docs/config-stream.md, "Programmed: acknowledgements across replicas").
 *
 * Three pieces, all on the loop:
 *
 *   - A ledger of this replica's documents: compile passes are numbered; per proxy, the hashes
 *     it was given with the pass that made each current: the last HIST_MIN, and older ones for
 *     RETAIN_MS after they were replaced (at most HIST_MAX), because another replica's
 *     acknowledgements reach the leader through its publication, up to PUBLISH_MIN_MS and a
 *     watch event late: a burst of changes must not push a document still being acknowledged
 *     out of the ledger (its proxy would count as pending for every resource it reads). A
 *     document is valid from
 *     that pass until the pass that replaced it (the model recompiles a proxy whenever anything
 *     it reads changes, so a document not replaced is the model's current answer). Per custom
 *     resource, the first pass after its current generation entered the model. A proxy has
 *     programmed a resource when the document it acknowledged was still current at or after that
 *     pass.
 *
 *   - A publication: every replica writes the acknowledgement state of the proxies whose stream
 *     it has served (acked hash prefix, connected or not and since when, the last NACK) into its
 *     own ConfigMap weftd-acks-<identity> in weftd's namespace, only when that state changed and
 *     at most once per PUBLISH_MIN_MS, renewed every PUBLISH_RENEW_MS. The leader watches them
 *     (label weft.dev/acks) and merges them with its own streams: for each proxy, a connected
 *     stream beats a closed one, then the most recent stream wins. A publication not renewed
 *     for PEER_STALE_MS counts as disconnected; one not renewed for PEER_GC_MS is deleted.
 *
 *   - The evaluation (leader only), at most once per EVAL_MIN_MS after acknowledgements moved
 *     and every EVAL_TICK_MS (disconnection grace periods end): every custom resource's status
 *     is evaluated again and written only where it changed (sync.c), so 10,000 proxies ACKing
 *     make at most one write per resource and second.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/map.h"
#include "core/utf8.h"
#include "push/push.h"
#include "weftd/weftd_int.h"

#define HIST_MIN 8
#define HIST_MAX 64
#define RETAIN_MS 10000
#define EVAL_MIN_MS 1000
#define EVAL_TICK_MS 5000
#define PUBLISH_MIN_MS 1000
#define PUBLISH_RENEW_MS 20000
#define PEER_STALE_MS 60000
#define PEER_GC_MS 600000
#define LIST_MAX 5        /* proxies named per category in a message */
#define REASON_IN_MSG 160 /* bytes of a NACK reason quoted in a message */
#define ACKS_LABEL "weft.dev/acks"

static const struct kube_resource configmaps = {"", "v1", "configmaps", true};

/* One document a proxy was given on this replica. */
struct pxdoc {
    uint64_t hash;     /* 64-bit prefix of the canonical hash; 0: no valid document */
    uint64_t since;    /* the compile pass that made it current */
    uint64_t until_ms; /* uv_now when it was replaced; 0 while current */
};

/* One proxy's documents on this replica. */
struct px {
    struct pxdoc *doc;     /* oldest first: the current one is doc[n - 1] */
    unsigned n, cap;       /* cap: HIST_MIN, doubled while a burst needs it, up to HIST_MAX */
    int64_t disc_since_ms; /* leader: first seen connected to no replica; 0 when connected */
};

struct crgen {
    long long gen;
    uint64_t seq; /* first compile pass that includes generation gen */
    /* the verdict of evaluation epoch v_epoch for generation v_gen (state: enum verdict) */
    uint64_t v_epoch;
    long long v_gen;
    int v_state;
    char *v_msg;
};

enum verdict { V_NONE, V_PROGRAMMED, V_PENDING, V_REJECTED };

/* A peer replica's publication. */
struct peer {
    uint64_t seen_ms; /* uv_now of its last change (a write, a renewal) */
    json_t *proxies;  /* "ns/name" -> [ackedPrefix, connected, sinceMs, nackPrefix, reason] */
};

struct weftd_programmed {
    struct weftd *d;
    uint64_t seq;
    struct map px;    /* "ns/name" -> struct px */
    struct map crs;   /* "<watch>|ns/name" -> struct crgen */
    struct map peers; /* ConfigMap name -> struct peer */
    struct kube_informer *inf;
    struct kube_call *call; /* the publication being written */
    uv_timer_t eval, publish, tick;
    uint64_t last_eval_ms, last_publish_ms, renew_due_ms;
    bool eval_wanted, writing;
    bool counting;   /* inside on_eval: count each resource's state */
    uint64_t epoch;  /* evaluations so far: verdicts are reused within one */
    char *published; /* proxies' state as last written */
    char cm_name[254];
    int closed;
    /* counters */
    uint64_t evaluations, publications, publish_errors;
    uint64_t res_state[3]; /* last evaluation: programmed, pending, rejected */
    uint64_t res_acc[3];
};

/* ---------------------------------------------------------------- hashes */

/* The first 16 hex digits of a hash as a number; 0 for none ("" or not hex). */
static uint64_t prefix(const char *h)
{
    uint64_t v = 0;

    if (!h || strlen(h) < 16)
        return 0;
    for (int i = 0; i < 16; i++) {
        char c = h[i];
        unsigned x = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                                            : 16;
        if (x == 16)
            return 0;
        v = v << 4 | x;
    }
    return v ? v : 1;
}

static void prefix_str(uint64_t v, char out[17])
{
    if (v)
        snprintf(out, 17, "%016llx", (unsigned long long)v);
    else
        out[0] = '\0';
}

static uint64_t newest(const struct px *p)
{
    return p->n ? p->doc[p->n - 1].hash : 0;
}

/*
 * The last compile pass at which the document with hash prefix h was p's current one: UINT64_MAX
 * while it is, 0 when it is not in the history.
 */
static uint64_t valid_through(const struct px *p, uint64_t h)
{
    if (!h)
        return 0;
    for (unsigned i = p->n; i-- > 0;) {
        if (p->doc[i].hash == h)
            return i == p->n - 1 ? UINT64_MAX : p->doc[i + 1].since - 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- the ledger */

void weftd_programmed_pass(struct weftd *d)
{
    if (d->programmed)
        d->programmed->seq++;
}

static struct px *px_get(struct weftd_programmed *pg, const char *key, bool create)
{
    struct px *p = map_get(&pg->px, key);

    if (p || !create)
        return p;
    p = calloc(1, sizeof(*p));
    if (p && map_put(&pg->px, key, p)) {
        free(p);
        p = NULL;
    }
    return p;
}

static void px_free(struct px *p)
{
    if (p) {
        free(p->doc);
        free(p);
    }
}

/* Room for one more document in p: forget what is old enough, or grow. 0 or -ENOMEM. */
static int px_room(struct px *p, uint64_t now)
{
    unsigned drop = 0;

    while (p->n - drop >= HIST_MIN &&
           (p->n - drop >= HIST_MAX || now - p->doc[drop].until_ms >= RETAIN_MS))
        drop++;
    if (drop) {
        memmove(p->doc, p->doc + drop, (p->n - drop) * sizeof(*p->doc));
        p->n -= drop;
    }
    if (p->n == p->cap) {
        unsigned cap = p->cap ? p->cap * 2 : HIST_MIN;
        struct pxdoc *nd = realloc(p->doc, cap * sizeof(*nd));
        if (!nd)
            return -ENOMEM;
        p->doc = nd;
        p->cap = cap;
    }
    return 0;
}

void weftd_programmed_doc(struct weftd *d, const char *key, const char *hash)
{
    struct weftd_programmed *pg = d->programmed;
    uint64_t now;
    struct px *p;
    uint64_t h;

    if (!pg)
        return;
    h = prefix(hash);
    p = px_get(pg, key, true);
    if (p && p->n && newest(p) == h)
        return;
    now = uv_now(d->loop);
    if (p && p->n)
        p->doc[p->n - 1].until_ms = now;
    if (!p || px_room(p, now)) {
        /* Forget all: the proxy counts as pending until it acknowledges a later document. */
        if (p)
            p->n = 0;
        log_error("msg=\"cannot record the proxy's document: out of memory\" pod=%s", key);
        return;
    }
    p->doc[p->n++] = (struct pxdoc){.hash = h, .since = pg->seq};
}

void weftd_programmed_forget(struct weftd *d, const char *key)
{
    if (d->programmed)
        px_free(map_del(&d->programmed->px, key));
}

static void crgen_free(struct crgen *g)
{
    if (g) {
        free(g->v_msg);
        free(g);
    }
}

void weftd_programmed_resource(struct weftd *d, size_t watch, const char *key, const json_t *obj)
{
    struct weftd_programmed *pg = d->programmed;
    char k[700];
    struct crgen *g;
    long long gen;

    if (!pg)
        return;
    snprintf(k, sizeof(k), "%zu|%s", watch, key);
    if (!obj) {
        crgen_free(map_del(&pg->crs, k));
        return;
    }
    gen = (long long)json_integer_value(
        json_object_get(json_object_get(obj, "metadata"), "generation"));
    g = map_get(&pg->crs, k);
    if (g && g->gen == gen)
        return;
    if (!g) {
        g = calloc(1, sizeof(*g));
        if (!g || map_put(&pg->crs, k, g)) {
            free(g);
            log_error("msg=\"cannot record the resource's generation: out of memory\" key=%s", k);
            return;
        }
    }
    g->gen = gen;
    g->seq = pg->seq + 1; /* the compile pass this reconcile schedules */
}

/* ---------------------------------------------------------------- acknowledgement state */

struct ack {
    bool known; /* some replica served a stream of this proxy */
    bool connected;
    int64_t since_ms;
    uint64_t acked, nack;
    char reason[PUSH_REASON_MAX + 1];
};

static void local_state(void *arg, const struct push_proxy_state *ps)
{
    struct ack *a = arg;

    if (!ps->connected_ms)
        return;
    a->known = true;
    a->connected = ps->connected;
    a->since_ms = ps->connected_ms;
    a->acked = prefix(ps->acked_hash);
    a->nack = prefix(ps->nack_hash);
    snprintf(a->reason, sizeof(a->reason), "%s", ps->nack_reason ? ps->nack_reason : "");
}

static uint64_t hex_value(const json_t *v)
{
    const char *s = json_string_value(v);
    char full[65];

    if (!s || strlen(s) != 16)
        return 0;
    snprintf(full, sizeof(full), "%s", s);
    return prefix(full);
}

/* The merged state of proxy key: this replica's stream, then every peer's publication. */
static void merged_state(struct weftd_programmed *pg, const char *key, struct ack *a)
{
    struct weftd *d = pg->d;
    uint64_t now = uv_now(d->loop);

    memset(a, 0, sizeof(*a));
    if (weftd_stream_server(d) &&
        push_server_proxy_state(weftd_stream_server(d), key, local_state, a) != 0)
        memset(a, 0, sizeof(*a));
    MAP_FOREACH(&pg->peers, x)
    {
        const struct peer *pe = x->val;
        const json_t *e = json_object_get(pe->proxies, key);
        bool conn;
        int64_t since;

        if (!json_is_array(e))
            continue;
        conn = json_is_true(json_array_get(e, 1)) && now - pe->seen_ms < PEER_STALE_MS;
        since = (int64_t)json_integer_value(json_array_get(e, 2));
        if (a->known && (a->connected > conn || (a->connected == conn && a->since_ms >= since)))
            continue;
        a->known = true;
        a->connected = conn;
        a->since_ms = since;
        a->acked = hex_value(json_array_get(e, 0));
        a->nack = hex_value(json_array_get(e, 3));
        snprintf(a->reason, sizeof(a->reason), "%s",
                 json_string_value(json_array_get(e, 4)) ? json_string_value(json_array_get(e, 4))
                                                         : "");
    }
}

/* ---------------------------------------------------------------- evaluation */

struct eval {
    struct weftd_programmed *pg;
    uint64_t need; /* compile pass the acknowledged document must reach */
    int64_t now_ms;
    size_t total, ok, rejected, pending, gone;
    struct buf rej, pend, gonel;
    int err;
};

static int64_t wall_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Name key (with extra) as the n-th of a list, or end the list with "…" after LIST_MAX. */
static void list_add(int *err, struct buf *b, size_t n, const char *key, const char *extra)
{
    int rc = 0;

    if (n == LIST_MAX)
        rc = buf_puts(b, ", …");
    else if (n < LIST_MAX)
        rc = buf_printf(b, "%s%s%s", n ? ", " : "", key, extra);
    if (rc)
        *err = rc;
}

static int eval_proxy(void *arg, const char *key)
{
    struct eval *e = arg;
    struct weftd_programmed *pg = e->pg;
    struct px *p = px_get(pg, key, true); /* NULL only when out of memory */
    struct ack a;
    int64_t grace_ms = pg->d->opts.disconnected_grace_s * 1000;

    e->total++;
    merged_state(pg, key, &a);
    if (p && a.connected)
        p->disc_since_ms = 0;
    if (p && a.known && valid_through(p, a.acked) >= e->need) {
        e->ok++;
        return 0;
    }
    if (!a.connected) {
        if (p && !p->disc_since_ms)
            p->disc_since_ms = e->now_ms;
        if (p && e->now_ms - p->disc_since_ms >= grace_ms) {
            list_add(&e->err, &e->gonel, e->gone++, key, "");
            return 0;
        }
        list_add(&e->err, &e->pend, e->pending++, key, " (disconnected)");
        return 0;
    }
    if (p && a.nack && a.nack == newest(p)) {
        char r[REASON_IN_MSG + 8];
        snprintf(r, sizeof(r), ": %.*s", REASON_IN_MSG, a.reason);
        list_add(&e->err, &e->rej, e->rejected++, key, r);
        return 0;
    }
    list_add(&e->err, &e->pend, e->pending++, key, "");
    return 0;
}

static const char *bs(struct buf *b)
{
    if (!b->len || buf_reserve(b, 1))
        return "";
    b->p[b->len] = '\0';
    return b->p;
}

/* Set c's status, reason and message; lastTransitionTime from prev when the status holds. */
static int set_cond(json_t *c, const json_t *prev, const char *now, bool ok, const char *reason,
                    const char *msg)
{
    const char *st = ok ? "True" : "False", *ltt = now;
    const json_t *pc;
    size_t i;

    json_array_foreach(prev, i, pc)
    {
        const char *pt = json_string_value(json_object_get(pc, "type"));
        const char *ps = json_string_value(json_object_get(pc, "status"));
        const char *pl = json_string_value(json_object_get(pc, "lastTransitionTime"));
        if (pt && ps && pl && strcmp(pt, "Programmed") == 0 && strcmp(ps, st) == 0)
            ltt = pl;
    }
    if (json_object_set_new(c, "status", json_string(st)) ||
        json_object_set_new(c, "reason", json_string(reason)) ||
        json_object_set_new(c, "message", json_string(msg)) ||
        json_object_set_new(c, "lastTransitionTime", json_string(ltt)))
        return -ENOMEM;
    return 0;
}

/* Judge resource kind/ns/name (generation record g, may be NULL) by the merged ACK state. */
static int judge(struct weftd_programmed *pg, const char *kind, const char *ns, const char *name,
                 const struct crgen *g, int *state, char *msg, size_t n)
{
    struct weftd *d = pg->d;
    struct eval e;
    int rc;

    msg[0] = '\0';
    memset(&e, 0, sizeof(e));
    e.pg = pg;
    e.need = g ? g->seq : pg->seq;
    e.now_ms = wall_ms();
    rc = mesh_model_affected_proxies(d->model, kind, ns, name, eval_proxy, &e);
    if (rc == 0)
        rc = e.err;
    if (rc) {
        /* nothing */
    } else if (e.rejected) {
        int len = snprintf(msg, n, "%zu of %zu proxies refused their configuration: %s", e.rejected,
                           e.total, bs(&e.rej));
        if (e.pending && len > 0 && (size_t)len < n)
            snprintf(msg + len, n - (size_t)len, "; %zu more have not acknowledged it: %s",
                     e.pending, bs(&e.pend));
        *state = V_REJECTED;
    } else if (e.pending) {
        snprintf(msg, n,
                 "%zu of %zu proxies have not acknowledged a configuration with generation %lld "
                 "yet: %s",
                 e.pending, e.total, g ? g->gen : 0LL, bs(&e.pend));
        *state = V_PENDING;
    } else {
        if (!e.total)
            snprintf(msg, n, "no meshed proxy is affected");
        else if (!e.gone)
            snprintf(msg, n, "acknowledged by all %zu proxies it affects", e.total);
        else
            snprintf(msg, n,
                     "acknowledged by %zu of the %zu proxies it affects; %zu disconnected for "
                     "more than %lds, not waited for: %s",
                     e.ok, e.total, e.gone, d->opts.disconnected_grace_s, bs(&e.gonel));
        *state = V_PROGRAMMED;
    }
    buf_release(&e.rej);
    buf_release(&e.pend);
    buf_release(&e.gonel);
    utf8_scrub(msg); /* reasons and the message are cut at byte counts */
    return rc;
}

bool weftd_programmed_ready(const struct weftd *d)
{
    const struct weftd_programmed *pg = d->programmed;
    return pg && weftd_stream_server((struct weftd *)d) && kube_informer_synced(pg->inf);
}

int weftd_programmed_overlay(struct weftd *d, size_t watch, const char *kind, const char *ns,
                             const char *name, const json_t *prev, const char *now, json_t *conds)
{
    struct weftd_programmed *pg = d->programmed;
    int state = V_NONE;
    json_t *c = NULL, *v;
    const json_t *pc;
    struct crgen *g;
    char k[700], msg[2048];
    size_t i;
    int rc;

    json_array_foreach(conds, i, v)
    {
        const char *t = json_string_value(json_object_get(v, "type"));
        if (t && strcmp(t, "Programmed") == 0)
            c = v;
    }
    /* Only a resource the model compiled waits for acknowledgements. */
    if (!pg || !c || !json_string_value(json_object_get(c, "status")) ||
        strcmp(json_string_value(json_object_get(c, "status")), "True") != 0)
        return 0;
    if (!weftd_programmed_ready(d)) {
        /* Not yet able to judge: keep what is stored for this generation. */
        json_array_foreach(prev, i, pc)
        {
            const char *t = json_string_value(json_object_get(pc, "type"));
            if (t && strcmp(t, "Programmed") == 0 &&
                json_equal(json_object_get(pc, "observedGeneration"),
                           json_object_get(c, "observedGeneration")))
                return json_object_update(c, (json_t *)pc) ? -ENOMEM : 0;
        }
        return set_cond(c, prev, now, false, "Pending",
                        "waiting for the config stream and the replicas' acknowledgement state");
    }
    snprintf(k, sizeof(k), "%zu|%s/%s", watch, ns, name);
    g = map_get(&pg->crs, k);
    /* Between two evaluations the verdict stands: writes that other events cause (a status
     * write's own watch event, any reconcile) do not carry every ACK to the API server. */
    if (g && g->v_msg && g->v_epoch == pg->epoch && g->v_gen == g->gen) {
        state = g->v_state;
        snprintf(msg, sizeof(msg), "%s", g->v_msg);
    } else {
        rc = judge(pg, kind, ns, name, g, &state, msg, sizeof(msg));
        if (rc)
            return rc == ERR_NOTFOUND ? 0 : rc;
        if (g) {
            char *m = strdup(msg);
            if (m) {
                free(g->v_msg);
                g->v_msg = m;
                g->v_epoch = pg->epoch;
                g->v_gen = g->gen;
                g->v_state = state;
            }
        }
    }
    if (pg->counting)
        pg->res_acc[state == V_PROGRAMMED ? 0 : state == V_PENDING ? 1 : 2]++;
    return set_cond(c, prev, now, state == V_PROGRAMMED,
                    state == V_PROGRAMMED ? "Programmed"
                    : state == V_PENDING  ? "Pending"
                                          : "Rejected",
                    msg);
}

static void on_eval(uv_timer_t *t)
{
    struct weftd_programmed *pg = t->data;
    struct weftd *d = pg->d;

    pg->eval_wanted = false;
    pg->last_eval_ms = uv_now(d->loop);
    if (!d->leading || !weftd_programmed_ready(d))
        return;
    pg->evaluations++;
    pg->epoch++;
    memset(pg->res_acc, 0, sizeof(pg->res_acc));
    pg->counting = true;
    weftd_sync_status_all(d);
    pg->counting = false;
    memcpy(pg->res_state, pg->res_acc, sizeof(pg->res_state));
}

static void eval_soon(struct weftd_programmed *pg)
{
    uint64_t now = uv_now(pg->d->loop), wait;

    if (pg->eval_wanted)
        return;
    pg->eval_wanted = true;
    wait = now - pg->last_eval_ms >= EVAL_MIN_MS ? 0 : EVAL_MIN_MS - (now - pg->last_eval_ms);
    uv_timer_start(&pg->eval, on_eval, wait, 0);
}

static void publish_later(struct weftd_programmed *pg, uint64_t ms);

static void on_tick(uv_timer_t *t)
{
    struct weftd_programmed *pg = t->data;

    /* the publication's renewal: readers count it stale when it is not renewed for 60 s */
    if (pg->renew_due_ms && uv_now(pg->d->loop) >= pg->renew_due_ms &&
        !uv_is_active((uv_handle_t *)&pg->publish))
        publish_later(pg, 0);
    eval_soon(pg);
    if (pg->d->leading)
        weftd_programmed_gc(pg->d);
}

/* ---------------------------------------------------------------- publication */

static void pub_state(void *arg, const struct push_proxy_state *ps)
{
    json_t *o = arg;
    char a[17], n[17];

    if (!ps->connected_ms)
        return;
    prefix_str(prefix(ps->acked_hash), a);
    prefix_str(prefix(ps->nack_hash), n);
    json_object_set_new(o, ps->key,
                        json_pack("[s,b,I,s,s]", a, ps->connected, (json_int_t)ps->connected_ms, n,
                                  ps->nack_reason ? ps->nack_reason : ""));
}

static void publish_done(void *arg, int err, long status, json_t *body);

static void publish_send(struct weftd_programmed *pg, const char *method)
{
    struct weftd *d = pg->d;
    char now[40];
    time_t t = time(NULL);
    struct tm tm;
    char path[512];
    json_t *obj;
    int rc;

    gmtime_r(&t, &tm);
    strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", &tm);
    obj = json_pack("{s:s,s:s,s:{s:s,s:s,s:{s:s,s:s}},s:{s:s,s:s,s:s}}", "apiVersion", "v1", "kind",
                    "ConfigMap", "metadata", "name", pg->cm_name, "namespace", d->opts.namespace,
                    "labels", ACKS_LABEL, "true", "app.kubernetes.io/part-of", "weft", "data",
                    "replica", d->opts.identity, "renewed", now, "proxies",
                    pg->published ? pg->published : "{}");
    if (!obj) {
        pg->writing = false;
        return;
    }
    rc = kube_path(&configmaps, d->opts.namespace, strcmp(method, "POST") == 0 ? NULL : pg->cm_name,
                   NULL, path, sizeof(path));
    if (!rc)
        rc = kube_request(d->kube, method, path, obj, NULL, publish_done, pg, &pg->call);
    json_decref(obj);
    if (rc) {
        pg->writing = false;
        pg->publish_errors++;
    }
}

static void publish_done(void *arg, int err, long status, json_t *body)
{
    struct weftd_programmed *pg = arg;
    int rc = kube_result_err(err, status, body);

    pg->call = NULL;
    if (rc == ERR_NOTFOUND) {
        publish_send(pg, "POST");
        return;
    }
    pg->writing = false;
    if (rc && rc != ERR_EXISTS) {
        pg->publish_errors++;
        log_warn("msg=\"cannot publish the proxies' acknowledgements, will retry\" "
                 "configmap=%s/%s error=\"%s\"",
                 pg->d->opts.namespace, pg->cm_name,
                 kube_status_message(body)[0] ? kube_status_message(body) : err_str(rc));
        pg->renew_due_ms = 0; /* write again at the next chance */
        publish_later(pg, PUBLISH_MIN_MS);
        return;
    }
    if (rc == ERR_EXISTS) { /* created meanwhile: update it */
        pg->renew_due_ms = 0;
        publish_later(pg, 0);
        return;
    }
    pg->publications++;
}

static void on_publish(uv_timer_t *t)
{
    struct weftd_programmed *pg = t->data;
    struct weftd *d = pg->d;
    uint64_t now = uv_now(d->loop);
    json_t *o;
    char *s;

    if (pg->writing || !weftd_stream_server(d)) {
        if (pg->writing)
            publish_later(pg, PUBLISH_MIN_MS);
        return;
    }
    if (now - pg->last_publish_ms < PUBLISH_MIN_MS) {
        publish_later(pg, PUBLISH_MIN_MS - (now - pg->last_publish_ms));
        return;
    }
    o = json_object();
    if (!o)
        return;
    push_server_sync_state(weftd_stream_server(d), pub_state, o);
    s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    if (!s)
        return;
    if (pg->published && strcmp(s, pg->published) == 0 && now < pg->renew_due_ms) {
        free(s);
        return;
    }
    free(pg->published);
    pg->published = s;
    pg->last_publish_ms = now;
    pg->renew_due_ms = now + PUBLISH_RENEW_MS;
    pg->writing = true;
    publish_send(pg, "PUT");
}

static void publish_later(struct weftd_programmed *pg, uint64_t ms)
{
    uv_timer_start(&pg->publish, on_publish, ms, 0);
}

void weftd_programmed_changed(struct weftd *d)
{
    struct weftd_programmed *pg = d->programmed;

    if (!pg)
        return;
    if (!uv_is_active((uv_handle_t *)&pg->publish))
        publish_later(pg, 0);
    if (d->leading)
        eval_soon(pg);
}

/* ---------------------------------------------------------------- peers */

static void peer_free(struct peer *pe)
{
    if (pe) {
        json_decref(pe->proxies);
        free(pe);
    }
}

static void on_peer(void *arg, enum kube_event_type type, const char *key, const json_t *obj)
{
    struct weftd_programmed *pg = arg;
    const char *name = strchr(key, '/') ? strchr(key, '/') + 1 : key;
    const char *text;
    struct peer *pe;
    json_t *proxies;

    if (strcmp(name, pg->cm_name) == 0)
        return; /* our own: the streams themselves are read */
    if (type == KUBE_EVENT_DELETED) {
        peer_free(map_del(&pg->peers, name));
        eval_soon(pg);
        return;
    }
    text = json_string_value(json_object_get(json_object_get(obj, "data"), "proxies"));
    proxies = text ? json_loads(text, 0, NULL) : NULL;
    if (!json_is_object(proxies)) {
        log_warn("msg=\"ignoring an acknowledgement publication that holds no proxies object\" "
                 "configmap=%s",
                 key);
        json_decref(proxies);
        peer_free(map_del(&pg->peers, name));
        return;
    }
    pe = map_get(&pg->peers, name);
    if (!pe) {
        pe = calloc(1, sizeof(*pe));
        if (!pe || map_put(&pg->peers, name, pe)) {
            free(pe);
            json_decref(proxies);
            log_error("msg=\"cannot keep a peer's acknowledgements: out of memory\"");
            return;
        }
    }
    json_decref(pe->proxies);
    pe->proxies = proxies;
    pe->seen_ms = uv_now(pg->d->loop);
    if (pg->d->leading)
        eval_soon(pg);
}

static void gc_done(void *arg, int err, long status, json_t *body)
{
    (void)arg;
    (void)err;
    (void)status;
    (void)body;
}

/* Leader: delete publications of replicas gone for PEER_GC_MS (pod names do not come back). */
void weftd_programmed_gc(struct weftd *d)
{
    struct weftd_programmed *pg = d->programmed;
    uint64_t now;

    if (!pg)
        return;
    now = uv_now(d->loop);
    MAP_FOREACH(&pg->peers, x)
    {
        struct peer *pe = x->val;
        if (now - pe->seen_ms < PEER_GC_MS)
            continue;
        log_info("msg=\"deleting the acknowledgement publication of a replica gone\" "
                 "configmap=%s/%s",
                 d->opts.namespace, x->key);
        pe->seen_ms = now; /* once per period, whatever the answer */
        if (kube_delete(d->kube, &configmaps, d->opts.namespace, x->key, gc_done, NULL))
            log_warn("msg=\"cannot delete\" configmap=%s/%s", d->opts.namespace, x->key);
    }
}

/* ---------------------------------------------------------------- metrics */

int weftd_programmed_metrics(struct weftd *d, struct buf *b)
{
    struct weftd_programmed *pg = d->programmed;
    uint64_t z[3] = {0, 0, 0};
    const uint64_t *rs = pg ? pg->res_state : z;
    size_t peers = 0, stale = 0;
    uint64_t now = uv_now(d->loop);

    if (pg)
        MAP_FOREACH(&pg->peers, x)
        {
            peers++;
            stale += now - ((struct peer *)x->val)->seen_ms >= PEER_STALE_MS;
        }
    return buf_printf(
        b,
        "# HELP weft_programmed_resources Custom resources by Programmed state at the last "
        "evaluation (leader; resources the model compiled).\n"
        "# TYPE weft_programmed_resources gauge\n"
        "weft_programmed_resources{state=\"programmed\"} %llu\n"
        "weft_programmed_resources{state=\"pending\"} %llu\n"
        "weft_programmed_resources{state=\"rejected\"} %llu\n"
        "# HELP weft_programmed_evaluations_total Passes over every resource's Programmed "
        "condition after acknowledgements moved (at most one a second).\n"
        "# TYPE weft_programmed_evaluations_total counter\n"
        "weft_programmed_evaluations_total %llu\n"
        "# HELP weft_ack_publications_total Writes of this replica's acknowledgement "
        "publication (ConfigMap weftd-acks-<identity>), and failed ones.\n"
        "# TYPE weft_ack_publications_total counter\n"
        "weft_ack_publications_total{result=\"written\"} %llu\n"
        "weft_ack_publications_total{result=\"error\"} %llu\n"
        "# HELP weft_ack_peers Other replicas' acknowledgement publications seen, and those not "
        "renewed within 60 s (their proxies count as disconnected).\n"
        "# TYPE weft_ack_peers gauge\n"
        "weft_ack_peers{state=\"fresh\"} %zu\nweft_ack_peers{state=\"stale\"} %zu\n",
        (unsigned long long)rs[0], (unsigned long long)rs[1], (unsigned long long)rs[2],
        (unsigned long long)(pg ? pg->evaluations : 0),
        (unsigned long long)(pg ? pg->publications : 0),
        (unsigned long long)(pg ? pg->publish_errors : 0), peers - stale, stale);
}

/* ---------------------------------------------------------------- start and stop */

int weftd_programmed_start(struct weftd *d)
{
    struct weftd_programmed *pg = calloc(1, sizeof(*pg));
    struct kube_informer_handlers h = {on_peer, NULL, NULL};
    size_t len;
    int rc;

    if (!pg)
        return -ENOMEM;
    pg->d = d;
    h.arg = pg;
    /* weftd-acks-<identity> as a DNS subdomain: lower case, other characters as '-' */
    len = (size_t)snprintf(pg->cm_name, sizeof(pg->cm_name), "weftd-acks-%s", d->opts.identity);
    for (size_t i = 11; i < len && i < sizeof(pg->cm_name) - 1; i++) {
        char c = pg->cm_name[i];
        if (c >= 'A' && c <= 'Z')
            pg->cm_name[i] = (char)(c - 'A' + 'a');
        else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
            pg->cm_name[i] = '-';
    }
    while (len > 11 && (pg->cm_name[len - 1] == '-' || pg->cm_name[len - 1] == '.'))
        pg->cm_name[--len] = '\0';
    uv_timer_init(d->loop, &pg->eval);
    uv_timer_init(d->loop, &pg->publish);
    uv_timer_init(d->loop, &pg->tick);
    pg->eval.data = pg->publish.data = pg->tick.data = pg;
    d->programmed = pg;
    rc = kube_informer_new(d->kube, &configmaps, d->opts.namespace, ACKS_LABEL, &h, NULL, &pg->inf);
    if (rc)
        return rc;
    uv_timer_start(&pg->tick, on_tick, EVAL_TICK_MS, EVAL_TICK_MS);
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    struct weftd_programmed *pg = h->data;

    if (++pg->closed < 3)
        return;
    MAP_FOREACH(&pg->px, x) px_free(x->val);
    MAP_FOREACH(&pg->crs, x) crgen_free(x->val);
    MAP_FOREACH(&pg->peers, x) peer_free(x->val);
    map_release(&pg->px);
    map_release(&pg->crs);
    map_release(&pg->peers);
    free(pg->published);
    free(pg);
}

void weftd_programmed_stop(struct weftd *d)
{
    struct weftd_programmed *pg = d->programmed;

    if (!pg)
        return;
    d->programmed = NULL;
    kube_informer_free(pg->inf);
    pg->inf = NULL;
    kube_call_cancel(pg->call);
    pg->call = NULL;
    uv_timer_stop(&pg->eval);
    uv_timer_stop(&pg->publish);
    uv_timer_stop(&pg->tick);
    uv_close((uv_handle_t *)&pg->eval, on_closed);
    uv_close((uv_handle_t *)&pg->publish, on_closed);
    uv_close((uv_handle_t *)&pg->tick, on_closed);
}
