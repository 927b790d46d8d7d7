/*
 * haproxy.c - weft-agent's HAProxy driver: start, runtime API, checked master-worker reloads,
 * certificate swaps and restarts with the last good files (docs/agent.md, "The driver").
 *
 * The decisions (what goes through the runtime API, what needs a reload, what to put back when
 * HAProxy refuses a configuration) are here; what touches HAProxy is behind struct
 * agent_haproxy_ops, so tests/unit/agent runs them against a fake. Calls block and are
 * serialized by the driver's lock: the agent makes them on a worker thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "ca/ca.h"
#include "core/log.h"

extern char **environ;

/* Largest answer read from a CLI socket (show proc, show info and short replies). */
#define CMD_REPLY_MAX (1u << 20)
/* How long a reload may take before it is reported as failed. */
#define RELOAD_WAIT_MS 10000

/*
 * Idle-connection pooling for a server added with `add server`. HAProxy 2.6 gives a server
 * written in the configuration an unlimited idle pool purged after 5 s, but a server added at run
 * time none (`show servers conn`: idle_lim 0, purge_delay 0): through a TLS server that meant a
 * new handshake to the peer sidecar for nearly every request until the next reload. These are
 * the configuration's defaults, spelt out.
 */
#define RUNTIME_SERVER_POOL " pool-max-conn -1 pool-purge-delay 5s"

struct agent_driver {
    pthread_mutex_t lock;
    const struct agent_haproxy_ops *ops;
    void *ctx;
    struct agent_render_opts o;
    char *run_dir, *cert_file, *ca_file;
    char *cfg_path, *map_path, *lua_path, *admin_sock, *master_sock;
    /* the last good rendering: what the files on disk hold when no apply is running */
    char *good_cfg, *good_map;
    json_t *good_runtime;
    /* servers removed from the configuration that HAProxy still holds, in maintenance: `del
     * server` refused while connections remained; retried by agent_driver_sweep and every apply
     * ({"backend", "server", "addr", "args"}, keyed "<backend>/<server>") */
    json_t *zombies;
    char *bundle; /* the trust bundle HAProxy holds */
    struct agent_driver_stats st;
    int pid; /* the master's, 0 when none runs */
};

const char *agent_apply_kind_name(enum agent_apply_kind k)
{
    switch (k) {
    case AGENT_APPLY_NONE:
        return "none";
    case AGENT_APPLY_START:
        return "start";
    case AGENT_APPLY_RUNTIME:
        return "runtime";
    case AGENT_APPLY_RELOAD:
        return "reload";
    }
    return "unknown";
}

static char *join(const char *dir, const char *name)
{
    char *p = NULL;

    if (asprintf(&p, "%s/%s", dir, name) < 0)
        return NULL;
    return p;
}

int agent_driver_new(const struct agent_haproxy_ops *ops, void *ctx,
                     const struct agent_render_opts *opts, struct agent_driver **out)
{
    struct agent_driver *d = calloc(1, sizeof(*d));

    if (!d)
        return -ENOMEM;
    pthread_mutex_init(&d->lock, NULL);
    d->ops = ops;
    d->ctx = ctx;
    d->o = *opts;
    d->run_dir = strdup(opts->run_dir);
    d->cert_file = strdup(opts->cert_file);
    d->ca_file = strdup(opts->ca_file);
    d->cfg_path = join(opts->run_dir, "haproxy.cfg");
    d->map_path = join(opts->run_dir, "outbound.map");
    d->lua_path = join(opts->run_dir, AGENT_GRPC_LUA);
    d->admin_sock = join(opts->run_dir, "admin.sock");
    d->master_sock = join(opts->run_dir, "master.sock");
    d->zombies = json_object();
    if (!d->zombies || !d->run_dir || !d->cert_file || !d->ca_file || !d->cfg_path ||
        !d->map_path || !d->lua_path || !d->admin_sock || !d->master_sock) {
        agent_driver_free(d);
        return -ENOMEM;
    }
    d->o.run_dir = d->run_dir;
    d->o.cert_file = d->cert_file;
    d->o.ca_file = d->ca_file;
    *out = d;
    return 0;
}

void agent_driver_free(struct agent_driver *d)
{
    if (!d)
        return;
    free(d->run_dir);
    free(d->cert_file);
    free(d->ca_file);
    free(d->cfg_path);
    free(d->map_path);
    free(d->lua_path);
    free(d->admin_sock);
    free(d->master_sock);
    free(d->good_cfg);
    free(d->good_map);
    json_decref(d->good_runtime);
    json_decref(d->zombies);
    free(d->bundle);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

/* Write a file atomically (temporary file in the same directory, then rename). */
static int write_file(const char *path, const char *data, size_t len, mode_t mode)
{
    char *tmp = NULL;
    int fd = -1, rc = 0;
    size_t off = 0;

    if (asprintf(&tmp, "%s.tmp", path) < 0)
        return -ENOMEM;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            goto out;
        }
        off += (size_t)n;
    }
    if (close(fd) != 0) {
        fd = -1;
        rc = -errno;
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        rc = -errno;
out:
    if (fd >= 0)
        close(fd);
    if (rc)
        unlink(tmp);
    free(tmp);
    return rc;
}

int agent_read_file(const char *path, char **out)
{
    struct buf b;
    char tmp[4096];
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

    if (fd < 0)
        return -errno;
    buf_init(&b);
    for (;;) {
        ssize_t n = read(fd, tmp, sizeof(tmp));

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            break;
        }
        if (n == 0)
            break;
        rc = buf_append(&b, tmp, (size_t)n);
        if (rc)
            break;
    }
    close(fd);
    explicit_bzero(tmp, sizeof(tmp));
    if (rc) {
        if (b.p)
            explicit_bzero(b.p, b.cap);
        buf_release(&b);
        return rc;
    }
    *out = buf_take(&b);
    return 0;
}

/*
 * The configuration without the server lines of the outbound backends (oh_*, ot_*): every one
 * of them is a runtime item the runtime API can add, remove or reweight. Two renderings whose
 * stripped texts are equal differ only in those servers.
 */
static char *strip_servers(const char *cfg)
{
    struct buf b;
    const char *p = cfg;
    bool outbound = false;

    buf_init(&b);
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p + 1) : strlen(p);

        if (p[0] != ' ' && p[0] != '\n' && p[0] != '#')
            outbound = strncmp(p, "backend oh_", 11) == 0 || strncmp(p, "backend ot_", 11) == 0;
        if (!(outbound && strncmp(p, "    server ", 11) == 0) && buf_append(&b, p, n))
            goto fail;
        p += n;
    }
    if (buf_reserve(&b, 1))
        goto fail;
    return buf_take(&b);
fail:
    buf_release(&b);
    return NULL;
}

/* The runtime's server items by "<backend>/<server>" (borrowed references), or NULL. */
static json_t *server_index(const json_t *runtime)
{
    json_t *idx = json_object(), *it;
    size_t i;

    if (!idx)
        return NULL;
    json_array_foreach(runtime, i, it)
    {
        const char *k = json_string_value(json_object_get(it, "kind"));
        char key[512];

        if (!k || strcmp(k, "server") != 0)
            continue;
        snprintf(key, sizeof(key), "%s/%s", json_string_value(json_object_get(it, "backend")),
                 json_string_value(json_object_get(it, "server")));
        if (json_object_set(idx, key, it) < 0) {
            json_decref(idx);
            return NULL;
        }
    }
    return idx;
}

static const char *sv_str(const json_t *it, const char *k)
{
    const char *v = json_string_value(json_object_get(it, k));
    return v ? v : "";
}

/* The same server (address and TLS arguments), weights aside. */
static bool same_server(const json_t *a, const json_t *b)
{
    return strcmp(sv_str(a, "addr"), sv_str(b, "addr")) == 0 &&
           strcmp(sv_str(a, "args"), sv_str(b, "args")) == 0;
}

/* The reply with its trailing blank lines cut, for messages. */
static const char *trimmed(struct buf *b)
{
    while (b->len && (b->p[b->len - 1] == '\n' || b->p[b->len - 1] == ' '))
        b->p[--b->len] = '\0';
    return b->len ? b->p : "(no answer)";
}

/* The master's reload counters from `show proc` ("<pid> master <reloads> [failed: <n>]"). */
static int master_reloads(struct agent_driver *d, long *reloads, long *failed)
{
    struct buf r;
    const char *m;
    int rc;

    buf_init(&r);
    rc = d->ops->cmd(d->ctx, d->master_sock, "show proc", &r);
    if (rc)
        goto out;
    m = r.p ? strstr(r.p, " master ") : NULL;
    if (!m || sscanf(m, " master %ld [failed: %ld]", reloads, failed) != 2)
        rc = ERR_PARSE;
out:
    buf_release(&r);
    return rc;
}

/* A seamless reload through the master socket, waited for until the master counts it. */
static int reload(struct agent_driver *d, struct diag *diag)
{
    long r0 = 0, f0 = 0, r1 = 0, f1 = 0;
    struct buf r;
    int rc;

    buf_init(&r);
    rc = master_reloads(d, &r0, &f0);
    if (rc) {
        diag_set(diag, "master socket %s: show proc: %s", d->master_sock, err_str(rc));
        goto out;
    }
    rc = d->ops->cmd(d->ctx, d->master_sock, "reload", &r);
    if (rc) {
        diag_set(diag, "master socket %s: reload: %s", d->master_sock, err_str(rc));
        goto out;
    }
    for (int waited = 0; waited < RELOAD_WAIT_MS; waited += 20) {
        if (master_reloads(d, &r1, &f1) == 0 && r1 > r0)
            break;
        nanosleep(&(struct timespec){0, 20 * 1000000L}, NULL);
    }
    if (r1 <= r0) {
        rc = -ETIMEDOUT;
        diag_set(diag, "HAProxy did not reload within %d ms", RELOAD_WAIT_MS);
    } else if (f1 > f0) {
        rc = -EIO;
        diag_set(diag, "HAProxy's master reports a failed reload (%ld failed so far)", f1);
    }
    if (rc)
        d->st.reload_failures++;
    else
        d->st.reloads++;
    if (!rc) /* the new worker runs the files: none of the kept servers is in it */
        json_object_clear(d->zombies);
out:
    buf_release(&r);
    return rc;
}

static int put_back(struct agent_driver *d)
{
    int rc = 0;

    if (d->good_map)
        rc = write_file(d->map_path, d->good_map, strlen(d->good_map), 0644);
    if (!rc && d->good_cfg)
        rc = write_file(d->cfg_path, d->good_cfg, strlen(d->good_cfg), 0644);
    return rc;
}

/*
 * One command on the admin socket whose success is the answer `ok` (a prefix; NULL: an empty
 * answer). 0, -EIO with HAProxy's answer in r when it refused, or the socket's error.
 */
static int admin(struct agent_driver *d, const char *cmd, const char *ok, struct buf *r)
{
    int rc;

    buf_reset(r);
    rc = d->ops->cmd(d->ctx, d->admin_sock, cmd, r);
    if (rc)
        return rc;
    if (ok ? !(r->p && strncmp(r->p, ok, strlen(ok)) == 0)
           : (r->len && strspn(r->p, "\n ") != r->len))
        return -EIO;
    return 0;
}

/*
 * `del server` for a server already in maintenance. HAProxy refuses while connections remain
 * (active or idle): then it stays a zombie, in maintenance (no new request goes to it), and is
 * tried again later. 0 deleted, 1 kept for later, <0 the socket failed.
 */
static int del_server(struct agent_driver *d, const char *be, const char *sv, struct buf *r)
{
    char cmd[600];
    int rc;

    snprintf(cmd, sizeof(cmd), "del server %s/%s", be, sv);
    rc = admin(d, cmd, "Server deleted.", r);
    if (rc == -EIO && r->p && strncmp(r->p, "No such server", 14) == 0)
        return 0; /* already gone */
    if (rc == -EIO) {
        log_debug("msg=\"server kept in maintenance until its connections end\" server=%s/%s "
                  "answer=\"%s\"",
                  be, sv, trimmed(r));
        return 1;
    }
    return rc;
}

/* Delete the zombies HAProxy now lets go. Called with the lock held. */
static void sweep(struct agent_driver *d)
{
    const char *key;
    json_t *z, *tmp;
    struct buf r;

    if (d->pid <= 0 || json_object_size(d->zombies) == 0)
        return;
    buf_init(&r);
    json_object_foreach_safe(d->zombies, tmp, key, z)
    {
        int rc = del_server(d, sv_str(z, "backend"), sv_str(z, "server"), &r);

        if (rc == 0) {
            log_info("msg=\"removed server deleted\" server=%s", key);
            json_object_del(d->zombies, key);
        } else if (rc < 0) {
            break;
        }
    }
    buf_release(&r);
}

/* Bytes of ';'-separated weight commands sent in one exchange (HAProxy reads a command line
 * into a buffer of tune.bufsize, 16 KB by default). */
#define REWEIGHT_BATCH 4096

struct server_counts {
    unsigned added, removed, reweighted, kept;
};

/*
 * Servers through the runtime API: from the last good rendering's servers to r's. First what
 * cannot be done at runtime is looked for (a server whose address or TLS arguments changed
 * under the same name: 1, nothing sent). Then new servers are added (`add server`, then `set
 * server ... state ready`: HAProxy adds them in maintenance), or taken back from the zombies;
 * weights are set; removed servers go to maintenance and are deleted, or kept as zombies while
 * connections remain. The order means a backend never lacks a server its new state has.
 * 0 done, 1 needs a reload, <0 a command failed (HAProxy's answer logged): reload.
 */
static int apply_servers(struct agent_driver *d, const json_t *runtime, struct server_counts *n)
{
    json_t *oldx = server_index(d->good_runtime), *newx = server_index(runtime), *it, *old;
    const char *key;
    struct buf r, cmd;
    int rc = -ENOMEM;

    buf_init(&r);
    buf_init(&cmd);
    if (!oldx || !newx)
        goto out;
    rc = 1;
    json_object_foreach(newx, key, it)
    {
        old = json_object_get(oldx, key);
        if (!old)
            old = json_object_get(d->zombies, key);
        if (old && !same_server(old, it)) {
            log_info("msg=\"a server changed under the same name; reloading\" server=%s", key);
            goto out;
        }
    }
    rc = 0;
    /* added (or taken back from the zombies) */
    json_object_foreach(newx, key, it)
    {
        const char *be = sv_str(it, "backend"), *sv = sv_str(it, "server");
        int w = (int)json_integer_value(json_object_get(it, "weight"));

        if (json_object_get(oldx, key))
            continue;
        buf_reset(&cmd);
        if (json_object_get(d->zombies, key)) {
            rc = buf_printf(&cmd, "set server %s/%s weight %d", be, sv, w);
            if (!rc)
                rc = admin(d, cmd.p, NULL, &r);
        } else {
            rc = buf_printf(&cmd, "add server %s/%s %s weight %d%s%s" RUNTIME_SERVER_POOL, be, sv,
                            sv_str(it, "addr"), w, *sv_str(it, "args") ? " " : "",
                            sv_str(it, "args"));
            if (!rc)
                rc = admin(d, cmd.p, "New server registered.", &r);
        }
        if (!rc) {
            buf_reset(&cmd);
            rc = buf_printf(&cmd, "set server %s/%s state ready", be, sv);
            if (!rc)
                rc = admin(d, cmd.p, NULL, &r);
        }
        if (rc)
            goto refused;
        json_object_del(d->zombies, key);
        n->added++;
    }
    /* reweighted: raised weights first, then lowered ones, so that a backend whose traffic
     * moves from one server to another (a split flipped from 100/0 to 0/100) never has every
     * weight at 0 in between (HAProxy answers 503 "no server available" then). The commands go
     * in one exchange, separated by ';' (HAProxy runs them in turn on one connection), a few
     * KB at a time: the window in which a request may still see the old weights is HAProxy's
     * own, not a round trip per command. Any answer but an empty one refuses the batch. */
    buf_reset(&cmd);
    for (int raise = 1; raise >= 0; raise--) {
        json_object_foreach(newx, key, it)
        {
            json_int_t w = json_integer_value(json_object_get(it, "weight")), ow;

            old = json_object_get(oldx, key);
            if (!old)
                continue;
            ow = json_integer_value(json_object_get(old, "weight"));
            if (w == ow || (w > ow) != raise)
                continue;
            rc = buf_printf(&cmd, "%sset server %s/%s weight %d", cmd.len ? "; " : "",
                            sv_str(it, "backend"), sv_str(it, "server"), (int)w);
            if (!rc && cmd.len > REWEIGHT_BATCH) {
                rc = admin(d, cmd.p, NULL, &r);
                if (!rc)
                    buf_reset(&cmd);
            }
            if (rc)
                goto refused;
            n->reweighted++;
        }
    }
    if (cmd.len) {
        rc = admin(d, cmd.p, NULL, &r);
        if (rc)
            goto refused;
    }
    /* removed: drained (maintenance), then deleted when HAProxy lets go */
    json_object_foreach(oldx, key, old)
    {
        const char *be = sv_str(old, "backend"), *sv = sv_str(old, "server");
        json_t *z;

        if (json_object_get(newx, key))
            continue;
        buf_reset(&cmd);
        rc = buf_printf(&cmd, "set server %s/%s state maint", be, sv);
        if (!rc)
            rc = admin(d, cmd.p, NULL, &r);
        if (!rc)
            rc = del_server(d, be, sv, &r);
        if (rc < 0)
            goto refused;
        n->removed++;
        if (rc == 1) {
            z = json_pack("{s:s,s:s,s:s,s:s}", "backend", be, "server", sv, "addr",
                          sv_str(old, "addr"), "args", sv_str(old, "args"));
            if (!z || json_object_set_new(d->zombies, key, z) < 0) {
                rc = -ENOMEM;
                goto out;
            }
            n->kept++;
            rc = 0;
        }
    }
    goto out;
refused:
    log_warn("msg=\"runtime API refused a server change; reloading instead\" command=\"%s\" "
             "answer=\"%s\"",
             cmd.p ? cmd.p : "", rc == -EIO ? trimmed(&r) : err_str(rc));
out:
    json_decref(oldx);
    json_decref(newx);
    buf_release(&r);
    buf_release(&cmd);
    return rc;
}

static int remember(struct agent_driver *d, const struct agent_render_out *r)
{
    char *cfg = strdup(r->config.p ? r->config.p : "");
    char *map = strdup(r->outbound_map.p ? r->outbound_map.p : "");
    json_t *rt = json_deep_copy(r->runtime);

    if (!cfg || !map || !rt) {
        free(cfg);
        free(map);
        json_decref(rt);
        return -ENOMEM;
    }
    free(d->good_cfg);
    free(d->good_map);
    json_decref(d->good_runtime);
    d->good_cfg = cfg;
    d->good_map = map;
    d->good_runtime = rt;
    return 0;
}

int agent_driver_apply(struct agent_driver *d, const struct agent_render_out *r,
                       enum agent_apply_kind *kind, struct diag *diag)
{
    const char *cfg = r->config.p ? r->config.p : "";
    const char *map = r->outbound_map.p ? r->outbound_map.p : "";
    char *s_old = NULL, *s_new = NULL, *cfg_new = NULL;
    enum agent_apply_kind k = AGENT_APPLY_RELOAD;
    struct server_counts counts = {0};
    int rc;

    pthread_mutex_lock(&d->lock);
    if (d->good_cfg && strcmp(d->good_cfg, cfg) == 0 && strcmp(d->good_map, map) == 0) {
        k = AGENT_APPLY_NONE;
        rc = 0;
        goto out;
    }
    if (d->good_cfg && d->pid > 0 && strcmp(d->good_map, map) == 0) {
        s_old = strip_servers(d->good_cfg);
        s_new = strip_servers(cfg);
        if (!s_old || !s_new) {
            rc = -ENOMEM;
            goto out;
        }
        sweep(d);
        if (strcmp(s_old, s_new) == 0 && apply_servers(d, r->runtime, &counts) == 0) {
            /* the files follow, so that a later reload or restart runs this state */
            rc = write_file(d->cfg_path, cfg, strlen(cfg), 0644);
            if (rc) {
                diag_set(diag, "%s: %s", d->cfg_path, err_str(rc));
                goto out;
            }
            k = AGENT_APPLY_RUNTIME;
            rc = remember(d, r);
            goto out;
        }
    }
    /* A reload (or the first start): the new files, checked before HAProxy sees them. The map
     * goes in place for the check (it is read only at start and reload) and is put back if
     * HAProxy refuses the configuration. */
    if (asprintf(&cfg_new, "%s.new", d->cfg_path) < 0) {
        rc = -ENOMEM;
        goto out;
    }
    rc = write_file(d->map_path, map, strlen(map), 0644);
    /* the gRPC status filter, for a configuration that loads it (the same text every time) */
    if (!rc && strstr(cfg, "\n    lua-load "))
        rc = write_file(d->lua_path, agent_grpc_lua, strlen(agent_grpc_lua), 0644);
    if (!rc)
        rc = write_file(cfg_new, cfg, strlen(cfg), 0644);
    if (rc) {
        diag_set(diag, "%s: %s", d->run_dir, err_str(rc));
        IGNORE_RESULT(put_back(d));
        goto out;
    }
    rc = d->ops->check(d->ctx, cfg_new, diag);
    if (rc) {
        if (rc != ERR_INVALID)
            diag_set(diag, "haproxy -c: %s", err_str(rc));
        unlink(cfg_new);
        IGNORE_RESULT(put_back(d));
        goto out;
    }
    if (rename(cfg_new, d->cfg_path) != 0) {
        rc = -errno;
        diag_set(diag, "%s: %s", d->cfg_path, err_str(rc));
        IGNORE_RESULT(put_back(d));
        goto out;
    }
    if (d->pid > 0) {
        rc = reload(d, diag);
    } else {
        k = AGENT_APPLY_START;
        rc = d->ops->start(d->ctx, d->cfg_path, d->master_sock, &d->pid);
        if (rc)
            diag_set(diag, "starting HAProxy: %s", err_str(rc));
    }
    if (rc) {
        /* HAProxy accepted the files but did not take them: keep the last good on disk so
         * that a restart runs what was serving */
        IGNORE_RESULT(put_back(d));
        goto out;
    }
    rc = remember(d, r);
out:
    if (!rc) {
        *kind = k;
        if (k == AGENT_APPLY_RUNTIME)
            d->st.runtime_applies++;
    }
    if (!rc && k == AGENT_APPLY_RUNTIME)
        log_info("msg=\"applied through the runtime API\" servers_added=%u servers_removed=%u "
                 "weights_changed=%u removed_kept_draining=%u",
                 counts.added, counts.removed, counts.reweighted, counts.kept);
    pthread_mutex_unlock(&d->lock);
    free(s_old);
    free(s_new);
    free(cfg_new);
    return rc;
}

/* `set <what> <file> <<` with payload, then `commit <what> <file>`. */
static int runtime_swap(struct agent_driver *d, const char *what, const char *file,
                        const char *payload, struct diag *diag)
{
    struct buf cmd, r;
    int rc;

    buf_init(&cmd);
    buf_init(&r);
    rc = buf_printf(&cmd, "set %s %s <<\n%s%s", what, file, payload,
                    payload[0] && payload[strlen(payload) - 1] == '\n' ? "\n" : "\n\n");
    if (rc)
        goto out;
    rc = d->ops->cmd(d->ctx, d->admin_sock, cmd.p, &r);
    if (!rc && !strstr(r.p ? r.p : "", "ransaction")) { /* "Transaction created/updated" */
        rc = -EIO;
        diag_set(diag, "set %s %s: %s", what, file, trimmed(&r));
        goto out;
    }
    if (rc) {
        diag_set(diag, "set %s %s: %s", what, file, err_str(rc));
        goto out;
    }
    buf_reset(&cmd);
    buf_reset(&r);
    rc = buf_printf(&cmd, "commit %s %s", what, file);
    if (rc)
        goto out;
    rc = d->ops->cmd(d->ctx, d->admin_sock, cmd.p, &r);
    if (!rc && !strstr(r.p ? r.p : "", "Success")) {
        rc = -EIO;
        diag_set(diag, "commit %s %s: %s", what, file, trimmed(&r));
    } else if (rc) {
        diag_set(diag, "commit %s %s: %s", what, file, err_str(rc));
    }
out:
    /* the payload may hold the private key: wipe the copy */
    if (cmd.p)
        explicit_bzero(cmd.p, cmd.cap);
    buf_release(&cmd);
    buf_release(&r);
    return rc;
}

/*
 * Install a new trust bundle (the lock held). Never through `commit ssl ca-file`: in HAProxy
 * 2.6.12 that commit rebuilds every bind and server SSL instance using the file without linking
 * the new instances to their certificate's store, so every later `commit ssl cert` answers
 * "Success" but new handshakes keep presenting the old certificate (until it expires), and the
 * next ca-file commit follows the freed store and kills the worker with SIGSEGV (HAProxy issue
 * #3165, fixed upstream by 7482b6eb after 2.6.12; docs/agent.md, "Trust bundle"). So the bundle
 * file is written, the configuration checked with it, and HAProxy reloaded (seamless
 * master-worker reload: the master and the listening sockets stay; the new worker reads the
 * bundle and the certificate file). A bundle HAProxy refuses is put back to the last good one.
 * *reloaded is set when a reload happened.
 */
static int install_bundle(struct agent_driver *d, const char *bundle_pem, bool *reloaded,
                          struct diag *diag)
{
    char *copy;
    int rc;

    *reloaded = false;
    if (d->bundle && strcmp(d->bundle, bundle_pem) == 0)
        return 0;
    copy = strdup(bundle_pem);
    if (!copy)
        return -ENOMEM;
    rc = ca_key_file_write(d->ca_file, bundle_pem, strlen(bundle_pem));
    if (rc) {
        diag_set(diag, "%s: %s", d->ca_file, err_str(rc));
        goto fail;
    }
    if (d->pid > 0 && d->good_cfg) {
        rc = d->ops->check(d->ctx, d->cfg_path, diag);
        if (rc && rc != ERR_INVALID)
            diag_set(diag, "haproxy -c with the new bundle: %s", err_str(rc));
        if (!rc)
            rc = reload(d, diag);
        if (rc) {
            if (d->bundle)
                IGNORE_RESULT(ca_key_file_write(d->ca_file, d->bundle, strlen(d->bundle)));
            goto fail;
        }
        *reloaded = true;
        d->st.bundle_reloads++;
    }
    free(d->bundle);
    d->bundle = copy;
    return 0;
fail:
    free(copy);
    return rc;
}

int agent_driver_set_identity(struct agent_driver *d, const char *chain_pem, const char *key_pem,
                              const char *bundle_pem, struct diag *diag)
{
    struct buf pem;
    bool reloaded = false;
    int rc;

    buf_init(&pem);
    pthread_mutex_lock(&d->lock);
    rc = buf_puts(&pem, chain_pem);
    if (!rc && pem.len && pem.p[pem.len - 1] != '\n')
        rc = buf_puts(&pem, "\n");
    if (!rc)
        rc = buf_puts(&pem, key_pem);
    if (rc)
        goto out;
    /*
     * When the bundle changed too (a root rotation), both files first and one reload that reads
     * them together: the new root is trusted by the time a leaf under it is presented.
     * Otherwise the certificate alone through the runtime API (no reload).
     */
    if (d->bundle && strcmp(d->bundle, bundle_pem) != 0) {
        char *old = NULL;

        rc = agent_read_file(d->cert_file, &old);
        if (rc == -ENOENT)
            rc = 0;
        if (!rc)
            rc = ca_key_file_write(d->cert_file, pem.p, pem.len);
        if (rc) {
            diag_set(diag, "%s: %s", d->cert_file, err_str(rc));
            free(old);
            goto out;
        }
        rc = install_bundle(d, bundle_pem, &reloaded, diag);
        if (rc && old) /* HAProxy runs with the old pair: keep it for a restart */
            IGNORE_RESULT(ca_key_file_write(d->cert_file, old, strlen(old)));
        if (old) {
            explicit_bzero(old, strlen(old));
            free(old);
        }
        goto out;
    }
    rc = install_bundle(d, bundle_pem, &reloaded, diag); /* the first one: a file */
    if (rc)
        goto out;
    rc = ca_key_file_write(d->cert_file, pem.p, pem.len);
    if (rc) {
        diag_set(diag, "%s: %s", d->cert_file, err_str(rc));
        goto out;
    }
    if (d->pid > 0) {
        rc = runtime_swap(d, "ssl cert", d->cert_file, pem.p, diag);
        if (!rc)
            d->st.cert_swaps++;
    }
out:
    pthread_mutex_unlock(&d->lock);
    if (pem.p)
        explicit_bzero(pem.p, pem.cap);
    buf_release(&pem);
    return rc;
}

int agent_driver_set_trust(struct agent_driver *d, const char *bundle_pem, bool *reloaded,
                           struct diag *diag)
{
    bool r = false;
    int rc;

    pthread_mutex_lock(&d->lock);
    rc = install_bundle(d, bundle_pem, &r, diag);
    pthread_mutex_unlock(&d->lock);
    if (reloaded)
        *reloaded = r;
    return rc;
}

void agent_driver_get_stats(struct agent_driver *d, struct agent_driver_stats *out)
{
    pthread_mutex_lock(&d->lock);
    *out = d->st;
    pthread_mutex_unlock(&d->lock);
}

bool agent_driver_configured(struct agent_driver *d)
{
    bool v;

    pthread_mutex_lock(&d->lock);
    v = d->good_cfg != NULL;
    pthread_mutex_unlock(&d->lock);
    return v;
}

int agent_driver_pid(struct agent_driver *d)
{
    int v;

    pthread_mutex_lock(&d->lock);
    v = d->pid;
    pthread_mutex_unlock(&d->lock);
    return v;
}

int agent_driver_restart(struct agent_driver *d, struct diag *diag)
{
    int rc = 0;

    pthread_mutex_lock(&d->lock);
    d->pid = 0;
    json_object_clear(d->zombies);
    if (!d->good_cfg)
        goto out;
    /* the files on disk are the last good ones (an apply puts them back when it fails) */
    rc = d->ops->start(d->ctx, d->cfg_path, d->master_sock, &d->pid);
    if (rc)
        diag_set(diag, "starting HAProxy: %s", err_str(rc));
out:
    pthread_mutex_unlock(&d->lock);
    return rc;
}

void agent_driver_sweep(struct agent_driver *d)
{
    pthread_mutex_lock(&d->lock);
    sweep(d);
    pthread_mutex_unlock(&d->lock);
}

bool agent_driver_healthy(struct agent_driver *d)
{
    struct buf r;
    bool ok = false;
    int pid;

    pid = agent_driver_pid(d);
    if (pid <= 0)
        return false;
    buf_init(&r);
    if (d->ops->cmd(d->ctx, d->admin_sock, "show info", &r) == 0 && r.p && strstr(r.p, "Pid: ") &&
        strstr(r.p, "Uptime_sec: "))
        ok = true;
    buf_release(&r);
    return ok;
}

/* ---- the real HAProxy ------------------------------------------------------------------- */

static const char *hp_bin(void *ctx)
{
    const struct agent_haproxy_real *r = ctx;
    return r && r->haproxy ? r->haproxy : "haproxy";
}

/* Read fd until EOF (or cap) into b. */
static int read_all(int fd, struct buf *b, int timeout_ms)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        char tmp[8192];
        ssize_t n;
        int pr = poll(&p, 1, timeout_ms);

        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0)
            return -errno;
        if (pr == 0)
            return -ETIMEDOUT;
        n = read(fd, tmp, sizeof(tmp));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return 0;
        if (b->len < CMD_REPLY_MAX && buf_append(b, tmp, (size_t)n))
            return -ENOMEM;
    }
}

static int real_check(void *ctx, const char *cfg_path, struct diag *diag)
{
    const char *argv[] = {hp_bin(ctx), "-c", "-f", cfg_path, NULL};
    posix_spawn_file_actions_t fa;
    struct buf out;
    int pipefd[2], rc, st = 0;
    pid_t pid;

    if (pipe2(pipefd, O_CLOEXEC) != 0)
        return -errno;
    buf_init(&out);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
    rc = -posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pipefd[1]);
    if (rc) {
        close(pipefd[0]);
        diag_set(diag, "cannot run %s: %s", argv[0], err_str(rc));
        buf_release(&out);
        return rc;
    }
    rc = read_all(pipefd[0], &out, 60000);
    close(pipefd[0]);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (!rc && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        /* HAProxy's ALERT lines, joined: the message a NACK carries */
        struct buf m;
        char *line, *save = NULL;

        buf_init(&m);
        for (line = strtok_r(out.p ? out.p : (char[]){""}, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save))
            if (strstr(line, "ALERT"))
                IGNORE_RESULT(buf_printf(&m, "%s%s", m.len ? " | " : "", line));
        diag_set(diag, "haproxy -c refused the configuration: %s",
                 m.len ? m.p : (out.len ? trimmed(&out) : "no message"));
        buf_release(&m);
        rc = ERR_INVALID;
    }
    buf_release(&out);
    return rc;
}

static int real_start(void *ctx, const char *cfg_path, const char *master_sock, int *pid)
{
    const struct agent_haproxy_real *r = ctx;
    char *ms = NULL;
    const char *argv[] = {hp_bin(ctx), "-W", "-S", NULL, "-f", cfg_path, NULL};
    posix_spawn_file_actions_t fa;
    pid_t p;
    int rc;

    /* the master socket only to this user (the admin socket's mode is in the configuration) */
    if (asprintf(&ms, "%s,mode,600", master_sock) < 0)
        return -ENOMEM;
    argv[3] = ms;
    /* the agent's log pipe as AGENT_LOG_FD, which the master and every worker it forks keep
     * (main.c makes sure the write end is not that number already: dup2 onto itself would
     * leave it close-on-exec) */
    posix_spawn_file_actions_init(&fa);
    if (r && r->log_fd >= 0 && r->log_fd != AGENT_LOG_FD)
        rc = -posix_spawn_file_actions_adddup2(&fa, r->log_fd, AGENT_LOG_FD);
    else
        rc = 0;
    if (!rc)
        rc = -posix_spawnp(&p, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    free(ms);
    if (!rc)
        *pid = (int)p;
    return rc;
}

static int real_cmd(void *ctx, const char *sock, const char *command, struct buf *reply)
{
    const struct agent_haproxy_real *r = ctx;
    int timeout = r && r->timeout_ms > 0 ? r->timeout_ms : 5000;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(command), off = 0;
    int fd, rc = 0;

    if (strlen(sock) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, sock, strlen(sock) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        rc = -errno;
        goto out;
    }
    /* one line; a command with a payload (`<<`) ends with its own blank line */
    bool nl = len && command[len - 1] == '\n';
    while (off < len || (off == len && !nl)) {
        const char *p = off < len ? command + off : "\n";
        size_t n = off < len ? len - off : 1;
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            rc = -errno;
            goto out;
        }
        if (off == len)
            break;
        off += (size_t)w;
    }
    /* our end of the conversation: the CLI answers and closes (the master's too) */
    shutdown(fd, SHUT_WR);
    rc = read_all(fd, reply, timeout);
out:
    close(fd);
    return rc;
}

const struct agent_haproxy_ops agent_haproxy_real_ops = {
    .check = real_check,
    .start = real_start,
    .cmd = real_cmd,
};
