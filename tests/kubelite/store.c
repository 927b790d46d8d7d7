/*
 * store.c - objects, the global resourceVersion, the event history, persistence.
 *
 * Consistent reads in the past (paginated LISTs, LIST at an exact resourceVersion) come from
 * the history: the state at rv is the current state with every later event undone. That is
 * possible for any rv not older than compacted_rv, the same window in which a WATCH can start.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "tests/kubelite/kjson.h"
#include "tests/kubelite/kubelite_int.h"

double kl_monotonic(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

void kl_now_rfc3339(char *out, size_t outlen)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void kl_now_micro(char *out, size_t outlen)
{
    struct timespec t;
    struct tm tm;
    char base[32];
    clock_gettime(CLOCK_REALTIME, &t);
    gmtime_r(&t.tv_sec, &tm);
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, outlen, "%s.%06ldZ", base, t.tv_nsec / 1000);
}

void kl_new_uid(struct kl *kl, char out[37])
{
    unsigned char r[16];
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(r, 1, sizeof(r), f) != sizeof(r)) {
        unsigned long long x =
            (unsigned long long)time(NULL) ^ (++kl->uid_counter * 0x9E3779B97F4A7C15ULL);
        for (int i = 0; i < 16; i++)
            r[i] = (unsigned char)(x >> ((i % 8) * 8)) ^ (unsigned char)i;
    }
    if (f)
        fclose(f);
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0],
             r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13],
             r[14], r[15]);
}

void kl_key(const char *ns, const char *name, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/%s", ns ? ns : "", name);
}

json_t *kl_store_lookup(struct rstore *st, const char *key)
{
    return json_object_get(st->objs, key);
}

static void set_rv(json_t *obj, uint64_t rv)
{
    char s[32];
    json_t *md = json_object_get(obj, "metadata");
    snprintf(s, sizeof(s), "%llu", (unsigned long long)rv);
    if (!md) {
        md = json_object();
        json_object_set_new(obj, "metadata", md);
    }
    json_object_set_new(md, "resourceVersion", json_string(s));
}

static int persist(struct kl *kl, struct rstore *st, const char *key, const json_t *obj)
{
    json_t *rec;
    char *line;
    if (!kl->wal)
        return 0;
    rec = json_pack("{s:I,s:s,s:s,s:O?}", "rv", (json_int_t)kl->rv, "store", st->id, "key", key,
                    "obj", obj);
    line = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
    json_decref(rec);
    if (!line)
        return -ENOMEM;
    if (fprintf(kl->wal, "%s\n", line) < 0 || fflush(kl->wal) != 0) {
        int rc = -errno;
        free(line);
        log_error("msg=\"cannot write data log\" error=\"%s\"", err_str(rc));
        return rc;
    }
    free(line);
    return 0;
}

int kl_commit(struct kl *kl, struct rstore *st, const char *key, json_t *obj, json_t **committed)
{
    json_t *old = json_incref(json_object_get(st->objs, key));
    struct event *ev;
    int rc = 0;

    kl->rv++;
    if (obj) {
        set_rv(obj, kl->rv);
        if (json_object_set(st->objs, key, obj)) {
            kl->rv--;
            json_decref(old);
            json_decref(obj);
            return -ENOMEM;
        }
    } else {
        if (!old) {
            kl->rv--;
            return ERR_NOTFOUND;
        }
        /* The DELETED event carries the final state at the deletion's resourceVersion. */
        obj = json_deep_copy(old);
        if (!obj) {
            kl->rv--;
            json_decref(old);
            return -ENOMEM;
        }
        set_rv(obj, kl->rv);
        json_object_del(st->objs, key);
    }
    st->rv = kl->rv;

    if (kl->hist_len == kl->hist_cap) {
        struct event *oldest = &kl->hist[kl->hist_head];
        kl->compacted_rv = oldest->rv;
        json_decref(oldest->obj);
        json_decref(oldest->old);
        kl->hist_head = (kl->hist_head + 1) % kl->hist_cap;
        kl->hist_len--;
    }
    ev = &kl->hist[(kl->hist_head + kl->hist_len) % kl->hist_cap];
    kl->hist_len++;
    ev->rv = kl->rv;
    ev->store = st;
    ev->obj = obj; /* reference moves into the history */
    ev->old = old;
    ev->type = !old ? EV_ADDED : json_object_get(st->objs, key) ? EV_MODIFIED : EV_DELETED;
    /* Garbage collection only has work after a deletion or a write involving ownership. */
    if (ev->type == EV_DELETED || jget2(obj, "metadata", "ownerReferences") ||
        jget2(obj, "metadata", "deletionTimestamp"))
        kl->gc_pending = true;

    rc = persist(kl, st, key, ev->type == EV_DELETED ? NULL : obj);
    if (committed)
        *committed = ev->type == EV_DELETED ? NULL : obj;
    kl_watch_fanout(kl, ev);
    return rc;
}

static int cmp_keys(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

json_t *kl_store_snapshot(struct kl *kl, struct rstore *st, uint64_t rv, bool *gone)
{
    json_t *state = json_object(), *out = NULL;
    const char *key;
    json_t *v;
    const char **keys = NULL;
    size_t n = 0, i;

    *gone = false;
    if (!state)
        return NULL;
    if (rv && rv < kl->compacted_rv) {
        *gone = true;
        json_decref(state);
        return NULL;
    }
    json_object_foreach(st->objs, key, v)
    {
        if (json_object_set(state, key, v))
            goto out;
    }
    /* Undo events newer than rv, newest first: the earliest one's old state wins. */
    if (rv && rv < kl->rv) {
        for (i = kl->hist_len; i-- > 0;) {
            struct event *ev = &kl->hist[(kl->hist_head + i) % kl->hist_cap];
            const json_t *md;
            char k[1024];
            if (ev->rv <= rv)
                break;
            if (ev->store != st)
                continue;
            md = json_object_get(ev->obj, "metadata");
            kl_key(jstr(md, "namespace"), jstr_or(md, "name", ""), k, sizeof(k));
            if (ev->old)
                json_object_set(state, k, ev->old);
            else
                json_object_del(state, k);
        }
    }
    keys = malloc((json_object_size(state) + 1) * sizeof(*keys));
    out = json_array();
    if (!keys || !out)
        goto out;
    json_object_foreach(state, key, v) keys[n++] = key;
    qsort(keys, n, sizeof(*keys), cmp_keys);
    for (i = 0; i < n; i++)
        json_array_append(out, json_object_get(state, keys[i]));
out:
    free(keys);
    json_decref(state);
    return out;
}

json_t *kl_obj_for_version(const struct rtype *rt, json_t *obj)
{
    char av[300];
    const char *cur = jstr(obj, "apiVersion");
    json_t *copy;

    kl_api_version(rt, av, sizeof(av));
    if (!cur || strcmp(cur, av) == 0)
        return json_incref(obj);
    copy = json_copy(obj);
    if (!copy)
        return NULL;
    json_object_set_new(copy, "apiVersion", json_string(av));
    return copy;
}

/* Replay the data log, then rewrite it compacted (one record per live object). */
int kl_persist_open(struct kl *kl)
{
    char path[4096], tmp[4200];
    FILE *f;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    unsigned long lineno = 0;
    int rc = 0;

    if (!kl->data_dir)
        return 0;
    if (mkdir(kl->data_dir, 0700) < 0 && errno != EEXIST)
        return -errno;
    snprintf(path, sizeof(path), "%s/objects.jsonl", kl->data_dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(path, "r");
    if (f) {
        while ((n = getline(&line, &cap, f)) > 0) {
            json_error_t jerr;
            json_t *rec;
            const char *sid, *key;
            struct rstore *st;
            json_t *obj;
            char grp[256];
            const char *slash;

            lineno++;
            rec = json_loadb(line, (size_t)n, 0, &jerr);
            if (!rec) {
                /* A torn last line (crash mid-write) is dropped; anything else is corruption. */
                log_warn("msg=\"skipping unreadable data log record\" file=%s line=%lu", path,
                         lineno);
                continue;
            }
            sid = jstr(rec, "store");
            key = jstr(rec, "key");
            obj = json_object_get(rec, "obj");
            slash = sid ? strchr(sid, '/') : NULL;
            if (!slash || !key) {
                json_decref(rec);
                continue;
            }
            snprintf(grp, sizeof(grp), "%.*s", (int)(slash - sid), sid);
            st = kl_store_get(kl, grp, slash + 1, true);
            if (st) {
                if (obj && !json_is_null(obj))
                    json_object_set(st->objs, key, obj);
                else
                    json_object_del(st->objs, key);
            }
            if ((uint64_t)json_integer_value(json_object_get(rec, "rv")) > kl->rv)
                kl->rv = (uint64_t)json_integer_value(json_object_get(rec, "rv"));
            json_decref(rec);
        }
        free(line);
        fclose(f);
    }
    kl->compacted_rv = kl->rv;
    f = fopen(tmp, "w");
    if (!f)
        return -errno;
    fchmod(fileno(f), 0600);
    kl->wal = f;
    for (size_t i = 0; i < kl->nstores && !rc; i++) {
        const char *key;
        json_t *obj;
        json_object_foreach(kl->store_list[i]->objs, key, obj)
        {
            rc = persist(kl, kl->store_list[i], key, obj);
            if (rc)
                break;
        }
    }
    if (!rc && rename(tmp, path) < 0)
        rc = -errno;
    return rc;
}
