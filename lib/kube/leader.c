/*
 * leader.c - leader election on a coordination.k8s.io/v1 Lease (client-go's leaderelection).
 *
 * While leading, every retry period: PUT the cached Lease with a new renewTime (its
 * resourceVersion makes it conditional). A leader that has not renewed successfully for
 * renew_deadline stops leading.
 *
 * Otherwise: GET it, create it when absent, and take it over by PUT when it is free (no holder)
 * or its record (holder + renewTime) has not changed for leaseDurationSeconds of *our* clock
 * since we first saw it (client-go's rule: never compare remote timestamps with the local
 * clock). To see each renewal when it happens rather than at our next poll, a follower also
 * watches the Lease (an informer with a metadata.name field selector); the time a record was
 * first seen, by the watch or a GET, starts its lease. The next attempt is scheduled at the
 * earlier of one retry period and the moment that lease runs out, so a dead leader's Lease is
 * taken over leaseDurationSeconds (plus one GET and one PUT) after its last renewal. Safety does
 * not depend on the watch: the takeover PUT follows a GET that must still show the record we
 * have watched age, and is conditional on that GET's resourceVersion.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "kube/kube_int.h"

static const struct kube_resource lease_res = {"coordination.k8s.io", "v1", "leases", true};

struct kube_leader {
    struct kube_client *c;
    struct kube_leader_opts o;
    char *ns, *name, *identity;
    uv_timer_t timer;
    struct kube_call *call;
    json_t *lease;               /* last Lease we wrote or read (with its resourceVersion) */
    struct kube_informer *watch; /* the Lease, for prompt observation of renewals */
    char *field_selector;        /* "metadata.name=<name>" */
    bool leading;
    char observed[512];    /* holder + renewTime of the record last seen */
    uint64_t observed_at;  /* our clock when that record was first seen */
    uint64_t observed_dur; /* its leaseDurationSeconds, in ms (ours when absent) */
    uint64_t last_renew;
};

void kube_microtime_format(const struct timespec *ts, char *out, size_t outlen)
{
    struct tm tm;
    char date[32];
    /* tv_nsec is in [0, 1e9): six digits of microseconds. */
    unsigned micros = (unsigned)((unsigned long)ts->tv_nsec / 1000u) % 1000000u;
    gmtime_r(&ts->tv_sec, &tm);
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, outlen, "%.20s.%06uZ", date, micros);
}

static uint64_t now_ms(struct kube_leader *le)
{
    return uv_now(kube_client_loop(le->c));
}

static void attempt(struct kube_leader *le);

static void on_timer(uv_timer_t *t)
{
    attempt(t->data);
}

static void schedule(struct kube_leader *le, uint64_t ms)
{
    uv_timer_start(&le->timer, on_timer, ms, 0);
}

static void set_leading(struct kube_leader *le, bool leading)
{
    if (le->leading == leading)
        return;
    le->leading = leading;
    log_info("msg=\"leader election\" lease=%s/%s identity=%s leading=%d", le->ns, le->name,
             le->identity, leading);
    if (leading && le->o.started_leading)
        le->o.started_leading(le->o.arg);
    else if (!leading && le->o.stopped_leading)
        le->o.stopped_leading(le->o.arg);
}

/* After a failed attempt: a leader past its renew deadline steps down. */
static void failed(struct kube_leader *le)
{
    if (le->leading && now_ms(le) - le->last_renew > le->o.renew_deadline_ms)
        set_leading(le, false);
    schedule(le, le->o.retry_period_ms);
}

/* Fill spec for us holding the Lease now. */
static int fill_spec(struct kube_leader *le, json_t *lease, bool release)
{
    json_t *spec = json_object_get(lease, "spec");
    const char *holder;
    char now[40];
    struct timespec ts;
    bool changed;
    json_int_t transitions;

    if (!json_is_object(spec)) {
        spec = json_object();
        if (!spec || json_object_set_new(lease, "spec", spec))
            return -ENOMEM;
    }
    holder = json_string_value(json_object_get(spec, "holderIdentity"));
    changed = !holder || strcmp(holder, le->identity) != 0;
    transitions = json_integer_value(json_object_get(spec, "leaseTransitions"));
    clock_gettime(CLOCK_REALTIME, &ts);
    kube_microtime_format(&ts, now, sizeof(now));
    if (release) {
        if (json_object_set_new(spec, "holderIdentity", json_string("")) ||
            json_object_set_new(spec, "leaseDurationSeconds", json_integer(1)) ||
            json_object_set_new(spec, "renewTime", json_string(now)) ||
            json_object_set_new(spec, "acquireTime", json_string(now)))
            return -ENOMEM;
        return 0;
    }
    if (changed &&
        (json_object_set_new(spec, "acquireTime", json_string(now)) ||
         json_object_set_new(spec, "leaseTransitions",
                             json_integer(holder && *holder ? transitions + 1 : transitions))))
        return -ENOMEM;
    if (json_object_set_new(spec, "holderIdentity", json_string(le->identity)) ||
        json_object_set_new(spec, "leaseDurationSeconds",
                            json_integer((le->o.lease_duration_ms + 999) / 1000)) ||
        json_object_set_new(spec, "renewTime", json_string(now)))
        return -ENOMEM;
    return 0;
}

static void on_write(void *arg, int err, long status, json_t *body)
{
    struct kube_leader *le = arg;

    le->call = NULL;
    if (err || (status != 200 && status != 201) || !json_is_object(body)) {
        if (!err)
            log_debug("msg=\"lease write failed\" status=%ld message=\"%s\"", status,
                      kube_status_message(body));
        /* On a conflict the cached copy is stale: read it again next time. */
        json_decref(le->lease);
        le->lease = NULL;
        failed(le);
        return;
    }
    json_decref(le->lease);
    le->lease = json_incref(body);
    le->last_renew = now_ms(le);
    set_leading(le, true);
    schedule(le, le->o.retry_period_ms);
}

static void write_lease(struct kube_leader *le, json_t *lease, bool create)
{
    char path[1024];
    int rc = fill_spec(le, lease, false);

    if (!rc)
        rc = kube_path(&lease_res, le->ns, create ? NULL : le->name, NULL, path, sizeof(path));
    if (!rc)
        rc = kube_request(le->c, create ? "POST" : "PUT", path, lease, NULL, on_write, le,
                          &le->call);
    if (rc)
        failed(le);
}

/*
 * Note the record in lease (from a GET or the watch): a record different from the last one seen
 * starts its lease now. Returns the holder ("" when none).
 */
static const char *observe(struct kube_leader *le, const json_t *lease)
{
    const json_t *spec = json_object_get(lease, "spec");
    const char *holder = json_string_value(json_object_get(spec, "holderIdentity"));
    const char *renew = json_string_value(json_object_get(spec, "renewTime"));
    json_int_t secs = json_integer_value(json_object_get(spec, "leaseDurationSeconds"));
    char rec[512];

    snprintf(rec, sizeof(rec), "%s|%s", holder ? holder : "", renew ? renew : "");
    if (strcmp(rec, le->observed) != 0) {
        snprintf(le->observed, sizeof(le->observed), "%s", rec);
        le->observed_at = now_ms(le);
    }
    le->observed_dur = secs > 0 ? (uint64_t)secs * 1000 : le->o.lease_duration_ms;
    return holder ? holder : "";
}

/*
 * Milliseconds until a follower should try to acquire the Lease observed last, with holder:
 * now when it is free or ours, else when its lease runs out on our clock (0 once it has).
 */
static uint64_t follower_delay(struct kube_leader *le, const char *holder)
{
    uint64_t now = now_ms(le), expiry = le->observed_at + le->observed_dur;

    if (!*holder || strcmp(holder, le->identity) == 0)
        return 0;
    return now >= expiry ? 0 : expiry - now;
}

/* Schedule the next follower attempt: at the lease's expiry, or after one retry period. */
static void follow(struct kube_leader *le, const char *holder)
{
    uint64_t delay = follower_delay(le, holder);
    schedule(le, delay < le->o.retry_period_ms ? delay : le->o.retry_period_ms);
}

static void on_watch(void *arg, enum kube_event_type type, const char *key, const json_t *obj)
{
    struct kube_leader *le = arg;
    uint64_t delay;
    (void)key;

    if (type == KUBE_EVENT_DELETED) {
        /* Gone: whoever held it, it is free. */
        le->observed[0] = '\0';
        le->observed_at = now_ms(le);
        delay = 0;
    } else {
        delay = follower_delay(le, observe(le, obj));
    }
    /*
     * A follower waiting in its timer (no request in flight; one in flight reschedules when it
     * completes) moves its next attempt earlier when the Lease now runs out sooner.
     */
    if (le->leading || le->call)
        return;
    if (!uv_is_active((uv_handle_t *)&le->timer) || uv_timer_get_due_in(&le->timer) > delay)
        schedule(le, delay);
}

static void on_get(void *arg, int err, long status, json_t *body)
{
    struct kube_leader *le = arg;
    const char *holder;
    json_t *copy;

    le->call = NULL;
    if (!err && status == 404) {
        copy = json_pack("{s:s,s:s,s:{s:s,s:s}}", "apiVersion", "coordination.k8s.io/v1", "kind",
                         "Lease", "metadata", "name", le->name, "namespace", le->ns);
        if (!copy) {
            failed(le);
            return;
        }
        write_lease(le, copy, true);
        json_decref(copy);
        return;
    }
    if (err || status != 200 || !json_is_object(body)) {
        failed(le);
        return;
    }
    holder = observe(le, body);
    if (follower_delay(le, holder) > 0) {
        /* Held by someone else and not expired: look again when it would be. */
        set_leading(le, false);
        follow(le, holder);
        return;
    }
    copy = json_deep_copy(body);
    if (!copy) {
        failed(le);
        return;
    }
    write_lease(le, copy, false);
    json_decref(copy);
}

static void attempt(struct kube_leader *le)
{
    char path[1024];
    int rc;

    if (le->call)
        return; /* its completion schedules the next attempt */
    if (le->leading && le->lease) {
        json_t *copy = json_deep_copy(le->lease);
        if (!copy) {
            failed(le);
            return;
        }
        write_lease(le, copy, false);
        json_decref(copy);
        return;
    }
    /* Not kube_get: it gives no call handle, and kube_leader_free must cancel the request. */
    rc = kube_path(&lease_res, le->ns, le->name, NULL, path, sizeof(path));
    if (!rc)
        rc = kube_request(le->c, "GET", path, NULL, NULL, on_get, le, &le->call);
    if (rc)
        failed(le);
}

int kube_leader_new(struct kube_client *c, const struct kube_leader_opts *opts,
                    struct kube_leader **out)
{
    struct kube_leader *le;
    struct kube_informer_handlers h;
    struct kube_informer_opts io;
    int rc;

    if (!c || !opts || !opts->ns || !*opts->ns || !opts->name || !*opts->name || !opts->identity ||
        !*opts->identity)
        return -EINVAL;
    le = calloc(1, sizeof(*le));
    if (!le)
        return -ENOMEM;
    le->c = c;
    le->o = *opts;
    if (!le->o.lease_duration_ms)
        le->o.lease_duration_ms = 15000;
    if (!le->o.renew_deadline_ms)
        le->o.renew_deadline_ms = 10000;
    if (!le->o.retry_period_ms)
        le->o.retry_period_ms = 2000;
    le->ns = strdup(opts->ns);
    le->name = strdup(opts->name);
    le->identity = strdup(opts->identity);
    if (!le->ns || !le->name || !le->identity) {
        rc = -ENOMEM;
        goto fail;
    }
    le->o.ns = le->ns;
    le->o.name = le->name;
    le->o.identity = le->identity;
    if (asprintf(&le->field_selector, "metadata.name=%s", le->name) < 0) {
        le->field_selector = NULL;
        rc = -ENOMEM;
        goto fail;
    }
    memset(&h, 0, sizeof(h));
    h.on_event = on_watch;
    h.arg = le;
    memset(&io, 0, sizeof(io));
    io.field_selector = le->field_selector;
    rc = kube_informer_new(c, &lease_res, le->ns, NULL, &h, &io, &le->watch);
    if (rc)
        goto fail;
    uv_timer_init(kube_client_loop(c), &le->timer);
    le->timer.data = le;
    schedule(le, 0);
    *out = le;
    return 0;
fail:
    free(le->field_selector);
    free(le->ns);
    free(le->name);
    free(le->identity);
    free(le);
    return rc;
}

bool kube_leader_is_leader(const struct kube_leader *le)
{
    return le->leading;
}

static void on_leader_closed(uv_handle_t *h)
{
    struct kube_leader *le = h->data;
    json_decref(le->lease);
    free(le->field_selector);
    free(le->ns);
    free(le->name);
    free(le->identity);
    free(le);
}

void kube_leader_free(struct kube_leader *le)
{
    if (!le)
        return;
    kube_informer_free(le->watch);
    le->watch = NULL;
    kube_call_cancel(le->call);
    le->call = NULL;
    if (le->leading && le->o.release_on_stop && le->lease) {
        json_t *copy = json_deep_copy(le->lease);
        char path[1024];
        /* Unconditional (no resourceVersion): a renewal of ours still in flight would make the
         * cached version stale and the release a 409, leaving the Lease to expire. While we lead
         * nobody else may write it, so overwriting our own record is safe. */
        if (copy)
            json_object_del(json_object_get(copy, "metadata"), "resourceVersion");
        if (copy && fill_spec(le, copy, true) == 0 &&
            kube_path(&lease_res, le->ns, le->name, NULL, path, sizeof(path)) == 0)
            IGNORE_RESULT(kube_request(le->c, "PUT", path, copy, NULL, NULL, NULL, NULL));
        json_decref(copy);
    }
    uv_timer_stop(&le->timer);
    uv_close((uv_handle_t *)&le->timer, on_leader_closed);
}
