/*
 * ca_roots.c - the CA inside weftd: where the signer comes from, and the trust bundle it
 * publishes.
 *
 * Signer. With --user-ca-secret the operator's Secret (tls.crt, tls.key, optional ca.crt) is
 * the signer; until it loads, weftd is not ready and says why in the log. Otherwise the signer
 * lives in the Secret --ca-secret (weft-ca): every replica watches it (an informer on that one
 * name); when it is absent, the leader generates a root on a worker and POSTs the Secret; a 409
 * means another replica won, and its Secret is loaded instead. So however many replicas start
 * together, one root exists. If the Secret is deleted while weftd runs, the leader writes it
 * back from memory (rotation, not deletion, replaces a root).
 *
 * The Secret is the source of truth for the trust bundle: its ca.crt holds every root that may
 * have signed a live leaf (rotation: add the new root to ca.crt, then switch tls.crt/tls.key,
 * then remove the old root). Each change is applied to the running struct ca in that order
 * (bundle_add, signer_set, bundle_remove) without a restart, then republished: the ConfigMap
 * weft-root-ca in every namespace labelled weft.dev/inject=enabled (leader only, server-side
 * apply with field manager weftd), the webhook's caBundle, and the serving certificates
 * (serving_cert.c) of the certificate endpoint and the webhook. Key material is never logged.
 */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/base64.h"
#include "core/log.h"
#include "weftd/weftd_int.h"

#define BUNDLE_CONFIGMAP "weft-root-ca"
#define INJECT_LABEL "weft.dev/inject"
#define FIELD_MANAGER "weftd"
#define TICK_MS 1000
#define LOG_REPEAT_S 60    /* a persisting problem is logged again after this long */
#define PUBLISH_RETRY_S 10 /* a failed ConfigMap write is retried after this long */

static const struct kube_resource res_secrets = {"", "v1", "secrets", true};
static const struct kube_resource res_configmaps = {"", "v1", "configmaps", true};

/* An API call in flight, cancelled on stop. */
struct ca_call {
    struct weftd_ca_roots *s;
    struct kube_call *kc;
    void (*done)(struct weftd_ca_roots *s, const char *ctx, int err, long status, json_t *body);
    struct ca_call *prev, *next;
    char ctx[256]; /* what the call is about (a namespace) */
};

/* Root generation on a worker. */
struct gen_job {
    uv_work_t w;
    struct weftd_ca_roots *s; /* held (s->hold): gone once the roots stopped */
    struct ca_signer *signer;
    int rc;
};

struct weftd_ca_roots {
    struct hold hold; /* owner, timer handle, root generation job (core/hold.h) */
    struct weftd *d;
    uv_timer_t timer;
    bool user;               /* signer from --user-ca-secret */
    const char *secret_name; /* the Secret holding the signer */
    char secret_key[512];    /* its informer key "ns/name" */
    struct kube_informer *secret_inf, *cm_inf;
    struct ca_call *calls;
    struct gen_job *gen;
    bool creating;
    bool load_failed;               /* the cached Secret did not load: retry on the tick */
    char *applied_crt, *applied_ca; /* certificates of the Secret state last applied */
    char last_problem[256];
    time_t last_problem_at;
    json_t *meshed;   /* namespace -> {"gen": published generation + 1 (0: publish), "retry": t} */
    json_t *inflight; /* namespaces with a ConfigMap write in flight */
};

/* ---- small helpers ------------------------------------------------------------------------ */

/* Wipe and free a string that may hold key material. */
static void free_secret(char *p)
{
    if (p) {
        OPENSSL_cleanse(p, strlen(p));
        free(p);
    }
}

/* The next PEM certificate block at or after *pos in pem: its start and length; advances *pos.
 * Returns false when there is none. */
static bool next_cert_block(const char *pem, size_t *pos, const char **start, size_t *len)
{
    static const char begin[] = "-----BEGIN CERTIFICATE-----";
    static const char end[] = "-----END CERTIFICATE-----";
    const char *b, *e;

    if (!pem)
        return false;
    b = strstr(pem + *pos, begin);
    if (!b)
        return false;
    e = strstr(b, end);
    if (!e)
        return false;
    e += sizeof(end) - 1;
    *start = b;
    *len = (size_t)(e - b);
    *pos = (size_t)(e - pem);
    return true;
}

static const char *obj_str(const json_t *obj, const char *a, const char *b)
{
    const json_t *v = json_object_get(obj, a);
    if (b)
        v = json_object_get(v, b);
    return json_string_value(v);
}

/* Log a problem that may persist: once when it appears or changes, then every LOG_REPEAT_S.
 * Waiting (for the leader, for the operator's Secret) is info; an unusable Secret is an error. */
static void problem_at(struct weftd_ca_roots *s, enum log_level lvl, const char *text)
{
    time_t now = time(NULL);
    if (strcmp(text, s->last_problem) == 0 && now - s->last_problem_at < LOG_REPEAT_S)
        return;
    snprintf(s->last_problem, sizeof(s->last_problem), "%s", text);
    s->last_problem_at = now;
    log_msg(lvl, "msg=\"%s\" secret=%s/%s problem=\"%s\"",
            s->d->ca ? "CA Secret not applied; the previous signer and bundle stay in use"
                     : "CA not ready",
            s->d->opts.namespace, s->secret_name, text);
}

static void problem(struct weftd_ca_roots *s, const char *text)
{
    problem_at(s, LOG_ERROR, text);
}

/* ---- tracked API calls -------------------------------------------------------------------- */

static void call_done(void *arg, int err, long status, json_t *body)
{
    struct ca_call *c = arg;
    struct weftd_ca_roots *s = c->s;

    if (c->prev)
        c->prev->next = c->next;
    else
        s->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->done(s, c->ctx, err, status, body);
    free(c);
}

static int call_start(struct weftd_ca_roots *s, const char *method, const char *path,
                      const json_t *body, const char *ctype, const char *ctx,
                      void (*done)(struct weftd_ca_roots *, const char *, int, long, json_t *))
{
    struct ca_call *c = calloc(1, sizeof(*c));
    int rc;

    if (!c)
        return -ENOMEM;
    c->s = s;
    c->done = done;
    snprintf(c->ctx, sizeof(c->ctx), "%s", ctx ? ctx : "");
    rc = kube_request(s->d->kube, method, path, body, ctype, call_done, c, &c->kc);
    if (rc) {
        free(c);
        return rc;
    }
    c->next = s->calls;
    if (s->calls)
        s->calls->prev = c;
    s->calls = c;
    return 0;
}

/* ---- applying the Secret ------------------------------------------------------------------ */

static void publish_all(struct weftd_ca_roots *s);

/* Roots that should be in the bundle: the signer's and every certificate of ca.crt. */
static bool root_wanted(const struct weftd_ca_roots *s, const char *fp, const char *ca_pem)
{
    const char *blk;
    size_t pos = 0, len;

    if (strcmp(fp, ca_signer_root_fingerprint(ca_signer_get(s->d->ca))) == 0)
        return true;
    while (next_cert_block(ca_pem, &pos, &blk, &len)) {
        struct ca_cert_info info;
        if (ca_cert_info(blk, len, &info) == 0 && strcmp(info.fingerprint, fp) == 0)
            return true;
    }
    return false;
}

/* Add every root of pem to the bundle; non-roots (intermediates) are skipped. */
static int bundle_add_roots(struct ca *ca, const char *pem)
{
    const char *blk;
    size_t pos = 0, len;

    while (next_cert_block(pem, &pos, &blk, &len)) {
        struct diag diag;
        int rc = ca_bundle_add(ca, blk, len, NULL, &diag);
        if (rc == -ENOMEM)
            return rc;
        if (rc)
            log_debug("msg=\"certificate of ca.crt not added to the bundle\" reason=%s "
                      "detail=\"%s\"",
                      ca_refusal_str(diag.code), diag.text);
    }
    return 0;
}

/* Remove bundle roots the Secret no longer lists. */
static int bundle_prune(struct weftd_ca_roots *s, const char *ca_pem)
{
    char *bundle = NULL;
    const char *blk;
    size_t pos = 0, len;
    int rc = ca_bundle_pem(s->d->ca, &bundle, NULL);

    if (rc)
        return rc;
    while (next_cert_block(bundle, &pos, &blk, &len)) {
        struct ca_cert_info info;
        if (ca_cert_info(blk, len, &info) || root_wanted(s, info.fingerprint, ca_pem))
            continue;
        rc = ca_bundle_remove(s->d->ca, info.fingerprint, false);
        if (rc == -EBUSY) {
            log_warn("msg=\"root removed from the Secret while leaves issued under it are "
                     "still valid; removing it anyway\" fingerprint=%s",
                     info.fingerprint);
            rc = ca_bundle_remove(s->d->ca, info.fingerprint, true);
        }
        if (rc && rc != ERR_NOTFOUND)
            log_warn("msg=\"cannot remove root from the bundle\" fingerprint=%s error=%s",
                     info.fingerprint, err_str(rc));
        else
            log_info("msg=\"root removed from the trust bundle\" fingerprint=%s", info.fingerprint);
        rc = 0;
    }
    free(bundle);
    return 0;
}

static bool str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/*
 * Bring the running CA in line with a Secret: first signer load (or a switch), bundle additions
 * before the switch and removals after it. Returns 0 (applied or unchanged), ERR_INVALID (the
 * Secret is unusable; logged), -ENOMEM.
 */
static int apply_secret(struct weftd_ca_roots *s, const json_t *secret)
{
    struct weftd *d = s->d;
    const json_t *data = json_object_get(secret, "data");
    const char *crt_b64 = json_string_value(json_object_get(data, "tls.crt"));
    const char *key_b64 = json_string_value(json_object_get(data, "tls.key"));
    const char *ca_b64 = json_string_value(json_object_get(data, "ca.crt"));
    char *crt = NULL, *key = NULL, *ca_pem = NULL, *bundle = NULL;
    size_t crt_len = 0, key_len = 0, ca_len = 0;
    struct ca_signer *signer = NULL;
    struct diag diag;
    char text[DIAG_TEXT_MAX + 64]; /* a prefix and diag.text */
    bool first = !d->ca, switched = false;
    int rc;

    memset(&diag, 0, sizeof(diag));
    if (!crt_b64 || !key_b64) {
        problem(s, "the Secret has no tls.crt or no tls.key");
        rc = ERR_INVALID;
        goto out;
    }
    if ((rc = base64_decode(crt_b64, &crt, &crt_len)) ||
        (ca_b64 && (rc = base64_decode(ca_b64, &ca_pem, &ca_len)))) {
        if (rc == -EINVAL)
            problem(s, "tls.crt or ca.crt is not base64");
        goto out;
    }
    if (d->ca && str_eq(crt, s->applied_crt) && str_eq(ca_pem, s->applied_ca)) {
        rc = 0; /* an unrelated change (labels, annotations) */
        goto out;
    }
    if (first || !str_eq(crt, s->applied_crt)) {
        struct ca_signer_input in;
        rc = base64_decode(key_b64, &key, &key_len);
        if (rc) {
            if (rc == -EINVAL)
                problem(s, "tls.key is not base64");
            goto out;
        }
        in.crt = crt;
        in.crt_len = crt_len;
        in.key = key;
        in.key_len = key_len;
        in.ca = ca_pem;
        in.ca_len = ca_len;
        rc = ca_signer_load(&in, time(NULL), &signer, &diag);
        if (rc) {
            if (rc == ERR_INVALID) {
                snprintf(text, sizeof(text), "signer refused: %s: %s", ca_refusal_str(diag.code),
                         diag.text);
                problem(s, text);
            }
            goto out;
        }
    }
    if (first) {
        struct ca *ca = NULL;
        rc = ca_new(signer, &ca);
        signer = NULL;
        if (rc)
            goto out;
        d->ca = ca;
    } else if (signer) {
        /* rotation step 2: the new signer's root must be in the bundle before the switch */
        struct ca_signer_pem sp;
        memset(&sp, 0, sizeof(sp));
        rc = ca_signer_pem_get(signer, &sp);
        if (!rc)
            rc = bundle_add_roots(d->ca, sp.ca_crt);
        ca_signer_pem_release(&sp);
        if (rc)
            goto out;
    }
    rc = bundle_add_roots(d->ca, ca_pem);
    if (rc)
        goto out;
    if (signer) {
        rc = ca_signer_set(d->ca, signer, &diag);
        signer = NULL;
        if (rc) {
            snprintf(text, sizeof(text), "cannot switch to the new signer: %s: %s",
                     ca_refusal_str(diag.code), diag.text);
            problem(s, text);
            goto out;
        }
        switched = true;
    }
    rc = bundle_prune(s, ca_pem);
    if (!rc)
        rc = ca_bundle_pem(d->ca, &bundle, NULL);
    if (rc)
        goto out;
    free(s->applied_crt);
    free(s->applied_ca);
    s->applied_crt = crt;
    s->applied_ca = ca_pem;
    crt = ca_pem = NULL;
    s->last_problem[0] = '\0';
    if (first || switched || !str_eq(bundle, d->bundle_pem)) {
        free(d->bundle_pem);
        d->bundle_pem = bundle;
        bundle = NULL;
        log_info("msg=\"%s\" secret=%s/%s root=%s roots=%zu",
                 first      ? "CA ready"
                 : switched ? "CA signer switched"
                            : "trust bundle changed",
                 d->opts.namespace, s->secret_name,
                 ca_signer_root_fingerprint(ca_signer_get(d->ca)), ca_bundle_count(d->ca));
        if (first || switched)
            weftd_certs_ca_ready(d);
        weftd_webhook_ca_ready(d);
        weftd_stream_bundle(d);
        publish_all(s);
    }
out:
    ca_signer_free(signer);
    free(crt);
    free(ca_pem);
    free_secret(key);
    free(bundle);
    s->load_failed = rc != 0;
    return rc;
}

/* ---- creating the Secret ------------------------------------------------------------------ */

static void secret_got(struct weftd_ca_roots *s, const char *ctx, int err, long status,
                       json_t *body)
{
    (void)ctx;
    if (kube_result_err(err, status, body) == 0)
        IGNORE_RESULT(apply_secret(s, body));
}

static void secret_created(struct weftd_ca_roots *s, const char *ctx, int err, long status,
                           json_t *body)
{
    char path[1024];
    int rc = kube_result_err(err, status, body);

    (void)ctx;
    s->creating = false;
    if (rc == 0) {
        log_info("msg=\"CA Secret written\" secret=%s/%s", s->d->opts.namespace, s->secret_name);
        IGNORE_RESULT(apply_secret(s, body));
        return;
    }
    if (rc == ERR_EXISTS) {
        /* another replica won the race: use its root */
        log_info("msg=\"CA Secret created by another replica; loading it\" secret=%s/%s",
                 s->d->opts.namespace, s->secret_name);
        if (kube_path(&res_secrets, s->d->opts.namespace, s->secret_name, NULL, path,
                      sizeof(path)) == 0 &&
            call_start(s, "GET", path, NULL, NULL, NULL, secret_got) == 0)
            return;
        return;
    }
    log_error("msg=\"cannot create the CA Secret\" secret=%s/%s error=%s status=%ld "
              "message=\"%s\"",
              s->d->opts.namespace, s->secret_name, err_str(rc), status, kube_status_message(body));
}

/* POST the Secret holding signer; ca_crt (NULL: the signer's root) becomes ca.crt. */
static void create_secret(struct weftd_ca_roots *s, const struct ca_signer *signer,
                          const char *ca_crt)
{
    struct ca_signer_pem pem;
    json_t *body = NULL, *key;
    char path[1024];
    int rc;

    memset(&pem, 0, sizeof(pem));
    rc = ca_signer_pem_get(signer, &pem);
    if (rc)
        goto out;
    body = json_pack("{s:s,s:s,s:{s:s,s:s,s:{s:s}},s:s,s:{s:s,s:s,s:s}}", "apiVersion", "v1",
                     "kind", "Secret", "metadata", "name", s->secret_name, "namespace",
                     s->d->opts.namespace, "labels", "app.kubernetes.io/managed-by", "weftd",
                     "type", "kubernetes.io/tls", "stringData", "tls.crt", pem.tls_crt, "tls.key",
                     pem.tls_key, "ca.crt", ca_crt ? ca_crt : pem.ca_crt);
    rc = body ? kube_path(&res_secrets, s->d->opts.namespace, NULL, NULL, path, sizeof(path))
              : -ENOMEM;
    if (!rc)
        rc = call_start(s, "POST", path, body, NULL, NULL, secret_created);
    if (!rc)
        s->creating = true;
out:
    if (rc)
        log_error("msg=\"cannot create the CA Secret\" error=%s", err_str(rc));
    /* the request body was serialized by kube_request: wipe our copy of the key */
    key = json_object_get(json_object_get(body, "stringData"), "tls.key");
    if (key)
        OPENSSL_cleanse((char *)json_string_value(key), json_string_length(key));
    json_decref(body);
    ca_signer_pem_release(&pem);
}

static void gen_work(uv_work_t *w)
{
    struct gen_job *j = w->data;
    j->rc = ca_signer_generate_root(time(NULL), &j->signer);
    OPENSSL_thread_stop(); /* as in serving_cert.c */
}

static void gen_after(uv_work_t *w, int status)
{
    struct gen_job *j = w->data;
    struct weftd_ca_roots *s = j->s;

    if (!hold_gone(&s->hold)) {
        s->gen = NULL;
        if (status || j->rc)
            log_error("msg=\"cannot generate a root\" error=%s", err_str(status ? status : j->rc));
        else if (!s->d->leading)
            log_info("msg=\"lost leadership while generating a root; discarding it\"");
        else if (!s->d->ca) {
            log_info("msg=\"generated a new root\" fingerprint=%s",
                     ca_signer_root_fingerprint(j->signer));
            create_secret(s, j->signer, NULL);
        }
    }
    ca_signer_free(j->signer);
    free(j);
    hold_put(&s->hold);
}

static void start_generation(struct weftd_ca_roots *s)
{
    struct gen_job *j = calloc(1, sizeof(*j));
    if (!j)
        return;
    j->s = s;
    j->w.data = j;
    hold_get(&s->hold);
    if (uv_queue_work(s->d->loop, &j->w, gen_work, gen_after)) {
        free(j);
        hold_put(&s->hold);
        return;
    }
    s->gen = j;
    log_info("msg=\"no CA Secret; generating a root\" secret=%s/%s", s->d->opts.namespace,
             s->secret_name);
}

/* ---- the trust bundle ConfigMaps ---------------------------------------------------------- */

static void publish_done(struct weftd_ca_roots *s, const char *ns, int err, long status,
                         json_t *body)
{
    int rc = kube_result_err(err, status, body);
    json_t *st = json_object_get(s->meshed, ns);

    json_object_del(s->inflight, ns);
    if (!st)
        return;
    if (rc == 0) {
        /* what was sent, which a bundle change in flight may have made stale */
        json_object_set(st, "gen", json_object_get(st, "sent"));
        log_debug("msg=\"trust bundle published\" namespace=%s", ns);
    } else if (rc == ERR_NOTFOUND) {
        json_object_del(s->meshed, ns); /* the namespace is gone */
    } else {
        json_object_set_new(st, "retry", json_integer((json_int_t)time(NULL) + PUBLISH_RETRY_S));
        log_warn("msg=\"cannot publish the trust bundle\" namespace=%s error=%s message=\"%s\"", ns,
                 err_str(rc), kube_status_message(body));
    }
}

static void publish_ns(struct weftd_ca_roots *s, const char *ns)
{
    json_t *cm;
    char path[1024];
    int rc;

    cm = json_pack("{s:s,s:s,s:{s:s,s:s,s:{s:s}},s:{s:s}}", "apiVersion", "v1", "kind", "ConfigMap",
                   "metadata", "name", BUNDLE_CONFIGMAP, "namespace", ns, "labels",
                   "app.kubernetes.io/managed-by", "weftd", "data", "ca.crt", s->d->bundle_pem);
    rc = cm ? kube_path(&res_configmaps, ns, BUNDLE_CONFIGMAP, NULL, path, sizeof(path)) : -ENOMEM;
    if (!rc && strlen(path) + 64 < sizeof(path)) {
        strcat(path, "?fieldManager=" FIELD_MANAGER "&force=true");
        rc = call_start(s, "PATCH", path, cm, "application/apply-patch+yaml", ns, publish_done);
    }
    if (!rc) {
        json_object_set_new(s->inflight, ns, json_true());
        json_object_set_new(json_object_get(s->meshed, ns), "sent",
                            json_integer((json_int_t)ca_bundle_generation(s->d->ca) + 1));
    }
    json_decref(cm);
}

static void publish_all(struct weftd_ca_roots *s)
{
    json_int_t want, now = (json_int_t)time(NULL);
    const char *ns;
    json_t *st;

    if (!s->d->ca || !s->d->bundle_pem || !s->d->leading)
        return;
    want = (json_int_t)ca_bundle_generation(s->d->ca) + 1;
    json_object_foreach(s->meshed, ns, st)
    {
        if (json_integer_value(json_object_get(st, "gen")) == want ||
            json_object_get(s->inflight, ns) ||
            json_integer_value(json_object_get(st, "retry")) > now)
            continue;
        publish_ns(s, ns);
    }
}

void weftd_ca_namespace(struct weftd *d, const json_t *nsobj)
{
    struct weftd_ca_roots *s = d->ca_roots;
    const char *name = obj_str(nsobj, "metadata", "name");
    const char *label = json_string_value(json_object_get(
        json_object_get(json_object_get(nsobj, "metadata"), "labels"), INJECT_LABEL));
    const char *phase = obj_str(nsobj, "status", "phase");
    bool meshed = label && strcmp(label, "enabled") == 0 &&
                  !json_object_get(json_object_get(nsobj, "metadata"), "deletionTimestamp") &&
                  !(phase && strcmp(phase, "Terminating") == 0);

    if (!s || !name)
        return;
    if (!meshed) {
        /* Nothing is deleted: pods of a namespace that leaves the mesh may still mount it. */
        json_object_del(s->meshed, name);
        return;
    }
    if (json_object_get(s->meshed, name))
        return;
    json_object_set_new(s->meshed, name, json_pack("{s:i,s:i}", "gen", 0, "retry", 0));
    publish_all(s);
}

/* Someone else changed or deleted a weft-root-ca ConfigMap: put ours back. */
static void on_cm_event(void *arg, enum kube_event_type type, const char *key, const json_t *obj)
{
    struct weftd_ca_roots *s = arg;
    const char *ns = obj_str(obj, "metadata", "namespace");
    const char *have = obj_str(obj, "data", "ca.crt");
    json_t *st;

    (void)key;
    if (!ns || !(st = json_object_get(s->meshed, ns)) || !s->d->bundle_pem)
        return;
    if (type != KUBE_EVENT_DELETED && have && strcmp(have, s->d->bundle_pem) == 0)
        return;
    json_object_set_new(st, "gen", json_integer(0));
    json_object_set_new(st, "retry", json_integer(0));
    publish_all(s);
}

/* ---- bootstrap ---------------------------------------------------------------------------- */

static void reconcile(struct weftd_ca_roots *s)
{
    struct weftd *d = s->d;
    const json_t *obj;

    if (!s->secret_inf || !kube_informer_synced(s->secret_inf))
        return;
    obj = kube_informer_get(s->secret_inf, s->secret_key);
    if (!d->ca) {
        if (obj) {
            if (s->load_failed)
                IGNORE_RESULT(apply_secret(s, obj));
        } else if (s->user) {
            problem_at(s, LOG_WARN, "waiting for the Secret given by --user-ca-secret");
        } else if (d->leading && !s->gen && !s->creating) {
            start_generation(s);
        } else if (!d->leading) {
            problem_at(s, LOG_INFO, "waiting for the leader to create the Secret");
        }
        return;
    }
    if (obj && s->load_failed)
        IGNORE_RESULT(apply_secret(s, obj));
    if (!obj && !s->user && d->leading && !s->creating) {
        log_warn("msg=\"CA Secret deleted; writing it back from memory\" secret=%s/%s",
                 d->opts.namespace, s->secret_name);
        create_secret(s, ca_signer_get(d->ca), d->bundle_pem);
    }
    publish_all(s);
}

static void on_tick(uv_timer_t *h)
{
    reconcile(h->data);
}

static void on_secret_event(void *arg, enum kube_event_type type, const char *key,
                            const json_t *obj)
{
    struct weftd_ca_roots *s = arg;
    (void)key;
    if (type == KUBE_EVENT_DELETED) {
        if (s->d->ca)
            log_warn("msg=\"CA Secret deleted; keeping the CA in memory\" secret=%s/%s",
                     s->d->opts.namespace, s->secret_name);
        reconcile(s);
        return;
    }
    IGNORE_RESULT(apply_secret(s, obj));
}

static void on_secret_synced(void *arg)
{
    reconcile(arg);
}

void weftd_ca_leading(struct weftd *d)
{
    struct weftd_ca_roots *s = d->ca_roots;
    if (!s)
        return;
    /* every ConfigMap is rewritten once by a new leader (the old one may have missed some) */
    {
        const char *ns;
        json_t *st;
        json_object_foreach(s->meshed, ns, st)
        {
            json_object_set_new(st, "gen", json_integer(0));
            json_object_set_new(st, "retry", json_integer(0));
        }
    }
    reconcile(s);
}

/* ---- start and stop ----------------------------------------------------------------------- */

static void timer_closed(uv_handle_t *h)
{
    struct weftd_ca_roots *s = h->data;
    hold_put(&s->hold);
}

static void roots_release(void *obj)
{
    free(obj);
}

static void ca_release(void *obj)
{
    ca_free(obj);
}

int weftd_ca_start(struct weftd *d)
{
    struct weftd_ca_roots *s = calloc(1, sizeof(*s));
    struct kube_informer_handlers sh = {0}, ch = {0};
    struct kube_informer_opts so = {0}, co = {0};
    char sel[300];
    int rc;

    if (!s)
        return -ENOMEM;
    s->d = d;
    s->user = d->opts.user_ca_secret != NULL;
    s->secret_name = s->user ? d->opts.user_ca_secret : d->opts.ca_secret;
    snprintf(s->secret_key, sizeof(s->secret_key), "%s/%s", d->opts.namespace, s->secret_name);
    s->meshed = json_object();
    s->inflight = json_object();
    hold_init(&s->hold, s, roots_release);
    uv_timer_init(d->loop, &s->timer);
    hold_get(&s->hold); /* the timer handle's, put by timer_closed */
    s->timer.data = s;
    d->ca_roots = s;
    rc = hold_new(NULL, ca_release, &d->ca_hold); /* obj: d->ca, set at stop */
    if (!rc && (!s->meshed || !s->inflight))
        rc = -ENOMEM;
    if (rc)
        goto out;

    snprintf(sel, sizeof(sel), "metadata.name=%s", s->secret_name);
    sh.on_event = on_secret_event;
    sh.on_synced = on_secret_synced;
    sh.arg = s;
    so.field_selector = sel;
    rc =
        kube_informer_new(d->kube, &res_secrets, d->opts.namespace, NULL, &sh, &so, &s->secret_inf);
    if (rc)
        goto out;
    ch.on_event = on_cm_event;
    ch.arg = s;
    co.field_selector = "metadata.name=" BUNDLE_CONFIGMAP;
    rc = kube_informer_new(d->kube, &res_configmaps, NULL, NULL, &ch, &co, &s->cm_inf);
    if (rc)
        goto out;
    uv_timer_start(&s->timer, on_tick, TICK_MS, TICK_MS);
out:
    return rc; /* on failure main calls weftd_ca_stop, which releases what was made */
}

void weftd_ca_stop(struct weftd *d)
{
    struct weftd_ca_roots *s = d->ca_roots;

    if (!s)
        return;
    d->ca_roots = NULL;
    kube_informer_free(s->secret_inf);
    kube_informer_free(s->cm_inf);
    while (s->calls) {
        struct ca_call *c = s->calls;
        s->calls = c->next;
        kube_call_cancel(c->kc);
        free(c);
    }
    /* a root being generated is dropped when it lands (hold_gone) */
    if (d->ca_hold) {
        d->ca_hold->obj = d->ca; /* workers may still issue with it: the last one frees it */
        hold_drop(d->ca_hold);
        d->ca_hold = NULL;
    } else {
        ca_free(d->ca);
    }
    d->ca = NULL;
    FREE_AND_NULL(d->bundle_pem);
    free(s->applied_crt);
    free(s->applied_ca);
    json_decref(s->meshed);
    json_decref(s->inflight);
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, timer_closed);
    hold_drop(&s->hold);
}
