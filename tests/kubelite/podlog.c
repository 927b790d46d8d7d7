/*
 * podlog.c - GET pods/<name>/log: a container's output, for `kubectl logs`.
 *
 * A real API server proxies this to the kubelet of the pod's node. kubelite runs on the same
 * machine as its node, kubelet-lite, which writes each container's output to
 * <dir>/<pod uid>/logs/<container>.log (the previous run's to <container>.previous.log) and
 * names <dir> in its Node's annotation kubelet-lite.weft.dev/pod-log-dir; kubelite reads the
 * files from there. Parameters: container, previous, tailLines, limitBytes, follow (timestamps
 * and sinceSeconds are accepted and ignored). A follow streams what the container appends,
 * checked on every tick (100 ms), until the container exits or restarts, the pod goes, or the
 * client leaves; followers are bounded, and so is what each gets per tick.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "tests/kubelite/kjson.h"
#include "tests/kubelite/kubelite_int.h"

#define LOG_DIR_ANNOTATION "kubelet-lite.weft.dev/pod-log-dir"
#define MAX_FOLLOWERS 256
#define MAX_READ (16u << 20)   /* bytes of a file served at once (its end, when larger) */
#define TICK_READ (256u << 10) /* bytes sent to one follower per tick */
#define MAX_BACKLOG (1u << 20) /* a follower with this much unsent waits */

struct kl_log_follower {
    struct kl_log_follower *next;
    struct kl *kl;
    struct http_conn *conn;
    int fd;
    ino_t ino;
    char path[4200];
    char ns[256], pod[256], uid[64], container[256];
    long long limit; /* bytes left under limitBytes, -1 = none */
    bool dead;       /* the connection failed: its close (on_close) frees this */
};

static void bad(struct http_conn *c, const char *msg)
{
    kl_respond_status(c, 400, "BadRequest", msg, NULL, NULL, NULL, NULL);
}

static void follower_free(struct kl_log_follower *f)
{
    struct kl_log_follower **pp;
    for (pp = &f->kl->log_followers; *pp; pp = &(*pp)->next) {
        if (*pp == f) {
            *pp = f->next;
            f->kl->nlog_followers--;
            break;
        }
    }
    if (f->fd >= 0)
        close(f->fd);
    free(f);
}

static void follower_closed(void *arg, struct http_conn *c)
{
    (void)c;
    follower_free(arg);
}

/* Names of a pod's containers of one list, "[a b]". */
static void names_of(const json_t *list, char *out, size_t outlen)
{
    size_t i, o = 0;
    json_t *c;
    o += (size_t)snprintf(out, outlen, "[");
    json_array_foreach(list, i, c)
    {
        if (o < outlen)
            o +=
                (size_t)snprintf(out + o, outlen - o, "%s%s", i ? " " : "", jstr_or(c, "name", ""));
    }
    if (o < outlen)
        snprintf(out + o, outlen - o, "]");
}

/* The container's status (containerStatuses or initContainerStatuses), or NULL. */
static const json_t *status_of(const json_t *pod, const char *container)
{
    static const char *const keys[] = {"containerStatuses", "initContainerStatuses"};
    for (size_t k = 0; k < 2; k++) {
        size_t i;
        json_t *s;
        json_array_foreach(jget2(pod, "status", keys[k]), i, s)
        {
            if (strcmp(jstr_or(s, "name", ""), container) == 0)
                return s;
        }
    }
    return NULL;
}

static bool spec_has(const json_t *pod, const char *container)
{
    static const char *const keys[] = {"containers", "initContainers", "ephemeralContainers"};
    for (size_t k = 0; k < 3; k++) {
        size_t i;
        json_t *c;
        json_array_foreach(jget2(pod, "spec", keys[k]), i, c)
        {
            if (strcmp(jstr_or(c, "name", ""), container) == 0)
                return true;
        }
    }
    return false;
}

/* Keep the last n lines of b[0..len) (a final line without '\n' counts). Returns the start. */
static size_t tail_start(const char *b, size_t len, long n)
{
    size_t i = len;
    if (n < 0)
        return 0;
    if (n == 0)
        return len;
    if (i > 0 && b[i - 1] == '\n')
        i--;
    while (i > 0) {
        if (b[i - 1] == '\n' && --n == 0)
            return i;
        i--;
    }
    return 0;
}

static long param_long(const struct http_request *req, const char *name, long def, bool *bad_value)
{
    char v[32], *end;
    long n;
    if (!http_query_get(req, name, v, sizeof(v)) || !v[0])
        return def;
    n = strtol(v, &end, 10);
    if (*end || n < 0)
        *bad_value = true;
    return n;
}

static bool param_true(const struct http_request *req, const char *name)
{
    char v[16];
    return http_query_get(req, name, v, sizeof(v)) &&
           (strcmp(v, "true") == 0 || strcmp(v, "1") == 0);
}

void kl_pod_log(struct kl *kl, struct http_conn *c, const struct http_request *req, const char *ns,
                const char *name)
{
    struct rstore *pods = kl_store_get(kl, "", "pods", false);
    struct rstore *nodes = kl_store_get(kl, "", "nodes", false);
    char key[600], container[256] = "", msg[1200], path[4200], list[600];
    const json_t *pod, *node, *st;
    const char *node_name, *dir;
    bool previous = param_true(req, "previous"), follow = param_true(req, "follow"), badv = false;
    long tail = param_long(req, "tailLines", -1, &badv);
    long limit = param_long(req, "limitBytes", -1, &badv);
    struct stat sb;
    char *data = NULL;
    size_t len = 0, start;
    off_t from = 0;
    int fd;

    if (strcmp(req->method, "GET") != 0) {
        kl_respond_status(c, 405, "MethodNotAllowed",
                          "the server does not allow this method on the requested resource", NULL,
                          NULL, NULL, NULL);
        return;
    }
    if (badv || limit == 0) {
        bad(c, "tailLines and limitBytes must be non-negative integers (limitBytes at least 1)");
        return;
    }
    kl_key(ns, name, key, sizeof(key));
    pod = pods ? kl_store_lookup(pods, key) : NULL;
    if (!pod) {
        snprintf(msg, sizeof(msg), "pods \"%s\" not found", name);
        kl_respond_status(c, 404, "NotFound", msg, "pods", name, "", NULL);
        return;
    }
    http_query_get(req, "container", container, sizeof(container));
    if (!container[0]) {
        const json_t *ctrs = jget2(pod, "spec", "containers");
        if (json_array_size(ctrs) != 1) {
            names_of(ctrs, list, sizeof(list));
            snprintf(msg, sizeof(msg),
                     "a container name must be specified for pod %s, choose one of: %s", name,
                     list);
            if (json_array_size(jget2(pod, "spec", "initContainers"))) {
                size_t o = strlen(msg);
                names_of(jget2(pod, "spec", "initContainers"), list, sizeof(list));
                snprintf(msg + o, sizeof(msg) - o, " or one of the init containers: %s", list);
            }
            bad(c, msg);
            return;
        }
        snprintf(container, sizeof(container), "%s", jstr_or(json_array_get(ctrs, 0), "name", ""));
    }
    if (!spec_has(pod, container)) {
        snprintf(msg, sizeof(msg), "container %s is not valid for pod %s", container, name);
        bad(c, msg);
        return;
    }
    node_name = jstr(json_object_get(pod, "spec"), "nodeName");
    if (!node_name || !*node_name) {
        snprintf(msg, sizeof(msg), "pod %s does not have a host assigned", name);
        bad(c, msg);
        return;
    }
    kl_key(NULL, node_name, key, sizeof(key));
    node = nodes ? kl_store_lookup(nodes, key) : NULL;
    dir = jstr(jget2(node, "metadata", "annotations"), LOG_DIR_ANNOTATION);
    if (!dir || dir[0] != '/') {
        snprintf(msg, sizeof(msg),
                 "node %s serves no logs (kubelite reads the files of a kubelet-lite node, which "
                 "names its directory in the annotation " LOG_DIR_ANNOTATION ")",
                 node_name);
        bad(c, msg);
        return;
    }
    st = status_of(pod, container);
    if (!previous && (!st || (json_object_get(json_object_get(st, "state"), "waiting") &&
                              json_integer_value(json_object_get(st, "restartCount")) == 0 &&
                              !json_object_get(json_object_get(st, "lastState"), "terminated")))) {
        snprintf(msg, sizeof(msg), "container \"%s\" in pod \"%s\" is waiting to start: %s",
                 container, name,
                 jstr_or(jget2(json_object_get(st, "state"), "waiting", ""), "reason",
                         "ContainerCreating"));
        bad(c, msg);
        return;
    }
    snprintf(path, sizeof(path), "%s/%s/logs/%s%s", dir,
             jstr_or(json_object_get(pod, "metadata"), "uid", ""), container,
             previous ? ".previous.log" : ".log");
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) != 0) {
        if (fd >= 0)
            close(fd);
        if (previous)
            snprintf(msg, sizeof(msg),
                     "previous terminated container \"%s\" in pod \"%s\" not found", container,
                     name);
        else
            snprintf(msg, sizeof(msg), "container \"%s\" in pod \"%s\": no log yet", container,
                     name);
        bad(c, msg);
        return;
    }
    /* What is there now (its end, beyond MAX_READ bytes). */
    if (sb.st_size > (off_t)MAX_READ)
        from = sb.st_size - (off_t)MAX_READ;
    data = malloc(sb.st_size > 0 ? (size_t)(sb.st_size - from) : 1);
    if (!data) {
        close(fd);
        kl_respond_status(c, 500, "InternalError", "out of memory", NULL, NULL, NULL, NULL);
        return;
    }
    while (len < (size_t)(sb.st_size - from)) {
        ssize_t r = pread(fd, data + len, (size_t)(sb.st_size - from) - len, from + (off_t)len);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    start = tail_start(data, len, tail);
    len -= start;
    if (limit > 0 && (long long)len > limit)
        len = (size_t)limit;
    if (!follow || previous) {
        close(fd);
        http_respond(c, 200, "text/plain", data + start, len, "");
        free(data);
        return;
    }
    if (kl->nlog_followers >= MAX_FOLLOWERS) {
        close(fd);
        free(data);
        kl_respond_status(c, 429, "TooManyRequests", "too many log streams are open; retry later",
                          NULL, NULL, NULL, NULL);
        return;
    }
    {
        struct kl_log_follower *f = calloc(1, sizeof(*f));
        if (!f) {
            close(fd);
            free(data);
            kl_respond_status(c, 500, "InternalError", "out of memory", NULL, NULL, NULL, NULL);
            return;
        }
        f->kl = kl;
        f->conn = c;
        f->fd = fd;
        f->ino = sb.st_ino;
        if (lseek(fd, from + (off_t)(start + len), SEEK_SET) < 0)
            lseek(fd, 0, SEEK_END);
        f->limit = limit > 0 ? limit - (long long)len : -1;
        snprintf(f->path, sizeof(f->path), "%s", path);
        snprintf(f->ns, sizeof(f->ns), "%s", ns);
        snprintf(f->pod, sizeof(f->pod), "%s", name);
        snprintf(f->uid, sizeof(f->uid), "%s",
                 jstr_or(json_object_get(pod, "metadata"), "uid", ""));
        snprintf(f->container, sizeof(f->container), "%s", container);
        f->next = kl->log_followers;
        kl->log_followers = f;
        kl->nlog_followers++;
        http_stream_begin(c, 200, "text/plain", follower_closed, f);
        if (len && http_stream_write(c, data + start, len))
            f->dead = true;
    }
    free(data);
}

/* Send what was appended; true when the stream is over (the container is done with this file). */
static bool follow_step(struct kl_log_follower *f)
{
    struct rstore *pods = kl_store_get(f->kl, "", "pods", false);
    char key[600], buf[65536];
    const json_t *pod, *st;
    size_t sent = 0;
    bool over = false;
    struct stat sb;

    kl_key(f->ns, f->pod, key, sizeof(key));
    pod = pods ? kl_store_lookup(pods, key) : NULL;
    if (!pod || strcmp(jstr_or(json_object_get(pod, "metadata"), "uid", ""), f->uid) != 0)
        over = true;
    st = pod ? status_of(pod, f->container) : NULL;
    if (st && json_object_get(json_object_get(st, "state"), "terminated"))
        over = true;
    /* Rotated (the container restarted) or removed: this run's output is complete. */
    if (stat(f->path, &sb) != 0 || sb.st_ino != f->ino)
        over = true;
    while (sent < TICK_READ && http_conn_backlog(f->conn) < MAX_BACKLOG && f->limit != 0) {
        size_t want = sizeof(buf);
        ssize_t r;
        if (f->limit > 0 && (long long)want > f->limit)
            want = (size_t)f->limit;
        r = read(f->fd, buf, want);
        if (r <= 0)
            break;
        if (f->limit > 0)
            f->limit -= r;
        if (http_stream_write(f->conn, buf, (size_t)r)) {
            f->dead = true;
            return false;
        }
        sent += (size_t)r;
    }
    if (f->limit == 0)
        return true;
    return over && sent < TICK_READ;
}

void kl_pod_log_tick(struct kl *kl)
{
    struct kl_log_follower *f = kl->log_followers, *next;
    for (; f; f = next) {
        next = f->next;
        if (!f->dead && follow_step(f)) {
            struct http_conn *c = f->conn;
            /* Ending the stream does not call on_close: free the follower here. */
            follower_free(f);
            http_stream_end(c);
        }
    }
}
