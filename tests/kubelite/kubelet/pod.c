/*
 * pod.c - one pod's life on this node: network and volumes, init containers in order (native
 * sidecars among them), containers, probes, restarts with backoff, termination, and the status
 * written back to the API.
 *
 * The pod's spec is copied when the pod is first seen (a pod's spec is immutable). Each call of
 * pod_sync advances the state machine as far as it can without blocking; exits and probe
 * results arrive through pod_reaped.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/log.h"
#include "tests/kubelite/kubelet/kubelet.h"

#define BACKOFF_MAX 30.0   /* seconds (the kubelet uses 300; tests cannot wait that long) */
#define BACKOFF_RESET 60.0 /* a container that ran this long restarts without delay history */
#define VOLUME_REFRESH 5.0 /* seconds between volume refreshes */
#define MAX_GROUPS 32
#define POSTSTART_TIMEOUT 600 /* seconds a postStart hook may run before it counts as failed */

enum cstate { CS_WAITING, CS_RUNNING, CS_TERMINATED };
enum { P_STARTUP, P_READINESS, P_LIVENESS, P_COUNT };
static const char *const probe_keys[P_COUNT] = {"startupProbe", "readinessProbe", "livenessProbe"};

struct probe {
    const json_t *spec; /* borrowed from the container spec; NULL = none */
    int succ, fail;     /* consecutive results */
    bool ok;
    double next;
    pid_t pid;
    double deadline;
};

struct term {
    bool set;
    int exit_code, signal;
    char reason[48], message[512], started[32], finished[32];
};

struct ctr {
    const char *name;
    const json_t *spec; /* borrowed from pod->spec */
    bool init, sidecar;
    enum cstate state;
    char reason[48], message[512]; /* waiting reason and message */
    pid_t pid;
    char started_at[32], container_id[64], image_id[600];
    double start_mono;
    struct term term, last;
    int restarts, backoff_n;
    double next_start;
    bool started, ready, done, ever_started;
    bool gate_passed;     /* sidecar: started once, so the init sequence went on */
    double kill_deadline; /* a liveness/startup kill in progress: SIGKILL after this */
    uid_t uid;
    gid_t gid;
    bool set_ids;
    struct probe probes[P_COUNT];
    char program[512]; /* the image's program: hooks and exec probes may name it by basename */
    pid_t post_pid;    /* the postStart hook while it runs: later containers wait for it */
    pid_t pre_pid;     /* the preStop hook while it runs: SIGTERM follows it */
    bool pre_started;  /* termination began for this container (hook or SIGTERM) */
    bool post_failed;  /* the postStart hook failed: the container is being killed */
};

struct cond {
    const char *type;
    int status; /* -1 unset, 0 False, 1 True */
    char ts[32];
};

struct pod {
    json_t *obj;  /* latest API object */
    json_t *spec; /* spec as first seen */
    char *uid, *ns, *name;
    char id[9], netns_path[64], ip[16];
    char dir[4096], voldir[4200];
    struct ctr *c;
    size_t nc, ninit;
    bool host_network, net_ready, vols_ready, etc_ready;
    bool own_resolv; /* <dir>/etc/resolv.conf is mounted over /etc/resolv.conf */
    char wait_reason[48], wait_msg[700];
    double next_setup, next_vol_refresh;
    json_t *tokstate;
    const char *phase; /* set once final: "Succeeded" / "Failed" */
    bool terminating, gone, shutdown, sidecars_termed, released;
    double term_deadline;
    json_t *last_status;
    struct cond conds[5];
    char start_time[32];
};

static const char *const cond_types[5] = {"PodReadyToStartContainers", "Initialized", "Ready",
                                          "ContainersReady", "PodScheduled"};

static bool alive(const struct ctr *c)
{
    return c->pid > 0;
}

/* Ready: running, started, and the readiness probe (when there is one) passing. */
static bool ctr_ready(const struct ctr *c)
{
    return alive(c) && c->started && c->post_pid == 0 && (!c->probes[P_READINESS].spec || c->ready);
}

struct pod *pod_new(const json_t *obj, bool native_sidecars)
{
    struct pod *p = calloc(1, sizeof(*p));
    json_t *md = json_object_get(obj, "metadata"), *list;
    size_t i, k = 0;

    if (!p)
        return NULL;
    p->obj = json_deep_copy(obj);
    p->spec = json_deep_copy(json_object_get(obj, "spec"));
    p->uid = strdup(spec_str(md, "uid") ? spec_str(md, "uid") : "");
    p->ns = strdup(spec_str(md, "namespace") ? spec_str(md, "namespace") : "default");
    p->name = strdup(spec_str(md, "name") ? spec_str(md, "name") : "");
    p->tokstate = json_object();
    p->nc = json_array_size(json_object_get(p->spec, "initContainers")) +
            json_array_size(json_object_get(p->spec, "containers"));
    p->c = calloc(p->nc ? p->nc : 1, sizeof(*p->c));
    if (!p->obj || !p->spec || !p->uid || !p->ns || !p->name || !p->tokstate || !p->c) {
        pod_free(p);
        return NULL;
    }
    /* 8 hex digits of the uid name the netns and veth (a uid without them: a hash). */
    {
        size_t o = 0;
        for (const char *s = p->uid; *s && o < 8; s++) {
            if ((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'))
                p->id[o++] = *s;
            else if (*s >= 'A' && *s <= 'F')
                p->id[o++] = (char)(*s - 'A' + 'a');
        }
        if (o < 8) {
            unsigned h = 2166136261u;
            for (const char *s = p->uid; *s; s++)
                h = (h ^ (unsigned char)*s) * 16777619u;
            snprintf(p->id, sizeof(p->id), "%08x", h);
        }
    }
    p->host_network = json_is_true(json_object_get(p->spec, "hostNetwork"));
    if (p->host_network)
        snprintf(p->netns_path, sizeof(p->netns_path), "/proc/1/ns/net");
    else
        snprintf(p->netns_path, sizeof(p->netns_path), "/var/run/netns/kl-%s", p->id);
    for (int pass = 0; pass < 2; pass++) {
        json_t *c;
        list = json_object_get(p->spec, pass == 0 ? "initContainers" : "containers");
        json_array_foreach(list, i, c)
        {
            struct ctr *x = &p->c[k++];
            x->name = spec_str(c, "name") ? spec_str(c, "name") : "";
            x->spec = c;
            x->init = pass == 0;
            x->sidecar = x->init && native_sidecars && spec_str(c, "restartPolicy") &&
                         strcmp(spec_str(c, "restartPolicy"), "Always") == 0;
            x->state = CS_WAITING;
            snprintf(x->reason, sizeof(x->reason), "%s",
                     x->init ? "PodInitializing" : "ContainerCreating");
            if (!x->init || x->sidecar) {
                for (int pk = 0; pk < P_COUNT; pk++)
                    x->probes[pk].spec = json_object_get(c, probe_keys[pk]);
            }
        }
        if (pass == 0)
            p->ninit = k;
    }
    for (i = 0; i < 5; i++) {
        p->conds[i].type = cond_types[i];
        p->conds[i].status = -1;
    }
    return p;
}

void pod_free(struct pod *p)
{
    if (!p)
        return;
    json_decref(p->obj);
    json_decref(p->spec);
    json_decref(p->tokstate);
    json_decref(p->last_status);
    free(p->uid);
    free(p->ns);
    free(p->name);
    free(p->c);
    free(p);
}

const char *pod_uid(const struct pod *p)
{
    return p->uid;
}

bool pod_finished(const struct pod *p)
{
    return p->released;
}

static const char *restart_policy(const struct pod *p)
{
    const char *r = spec_str(p->spec, "restartPolicy");
    return r ? r : "Always";
}

static void kill_group(pid_t pid, int sig)
{
    if (pid > 0 && kill(-pid, sig) && errno == ESRCH)
        kill(pid, sig);
}

/*
 * Ask a container to stop: SIGTERM to its main process only, as a container runtime signals
 * the container's init process (a sidecar's children, HAProxy under weft-agent, are the main
 * process's to stop). SIGKILL (kill_group) still takes the whole process group, as a runtime
 * takes the whole container, and the group goes when the main process exits (pod_reaped).
 */
static void term_main(pid_t pid)
{
    if (pid > 0)
        kill(pid, SIGTERM);
}

static void kill_probes(struct ctr *c)
{
    for (int k = 0; k < P_COUNT; k++) {
        if (c->probes[k].pid > 0)
            kill_group(c->probes[k].pid, SIGKILL);
    }
}

static void kill_hooks(struct ctr *c)
{
    kill_group(c->post_pid, SIGKILL);
    kill_group(c->pre_pid, SIGKILL);
}

static int start_hook(struct pod *p, struct ctr *c, const json_t *handler, int timeout, pid_t *pid);

/*
 * Stop one container as the kubelet does: its preStop hook first (within the grace period),
 * SIGTERM when the hook is done (pod_reaped) or at once without one.
 */
static void stop_container(struct pod *p, struct ctr *c, double deadline)
{
    const json_t *pre = json_object_get(json_object_get(c->spec, "lifecycle"), "preStop");
    double left = deadline - spec_mono();

    if (!alive(c) || c->pre_started)
        return;
    c->pre_started = true;
    kill_group(c->post_pid, SIGKILL);
    if (pre && start_hook(p, c, pre, left > 1 ? (int)left : 1, &c->pre_pid) == 0) {
        log_info("msg=\"preStop hook started\" pod=%s/%s container=%s", p->ns, p->name, c->name);
        return;
    }
    c->pre_pid = 0;
    term_main(c->pid);
}

void pod_kill_all(struct pod *p)
{
    for (size_t i = 0; i < p->nc; i++) {
        kill_group(p->c[i].pid, SIGKILL);
        kill_probes(&p->c[i]);
        kill_hooks(&p->c[i]);
    }
}

static void begin_termination(struct pod *p, double grace)
{
    double now = spec_mono();

    if (p->terminating) {
        if (now + grace < p->term_deadline)
            p->term_deadline = now + grace;
        return;
    }
    p->terminating = true;
    p->term_deadline = now + grace;
    log_info("msg=\"terminating pod\" pod=%s/%s grace=%.0f", p->ns, p->name, grace);
    for (size_t i = 0; i < p->nc; i++) {
        kill_probes(&p->c[i]);
        /* Regular containers first; sidecars once those are gone (as the kubelet orders it). */
        if (!p->c[i].sidecar)
            stop_container(p, &p->c[i], p->term_deadline);
    }
}

static double grace_of(const struct pod *p)
{
    return (double)spec_int(p->spec, "terminationGracePeriodSeconds", 30);
}

void pod_update_obj(struct pod *p, const json_t *obj)
{
    json_t *md = json_object_get(obj, "metadata");
    json_t *n = json_deep_copy(obj);

    if (n) {
        json_decref(p->obj);
        p->obj = n;
    }
    if (json_object_get(md, "deletionTimestamp")) {
        json_t *g = json_object_get(md, "deletionGracePeriodSeconds");
        begin_termination(p, json_is_integer(g) ? (double)json_integer_value(g) : grace_of(p));
    }
}

void pod_mark_gone(struct pod *p)
{
    p->gone = true;
    begin_termination(p, grace_of(p));
}

void pod_shutdown(struct pod *p, const struct kubelet_conf *conf)
{
    double g = grace_of(p);
    p->shutdown = true;
    begin_termination(p, g < conf->shutdown_grace ? g : conf->shutdown_grace);
}

/* ------------------------------------------------------------------ container start */

static const json_t *sec_ctx(const struct pod *p, const struct ctr *c, const char *key)
{
    json_t *v = json_object_get(json_object_get(c->spec, "securityContext"), key);
    return v ? v : json_object_get(json_object_get(p->spec, "securityContext"), key);
}

static void set_waiting(struct ctr *c, const char *reason, const char *msg)
{
    c->state = CS_WAITING;
    snprintf(c->reason, sizeof(c->reason), "%s", reason);
    snprintf(c->message, sizeof(c->message), "%.*s", (int)sizeof(c->message) - 1, msg ? msg : "");
}

/* NAME in upper case with '-' as '_' (the kubelet's service variable names). */
static void env_name(char *out, size_t outlen, const char *a, const char *b)
{
    size_t o = 0;
    for (const char *s = a; *s && o + 1 < outlen; s++)
        out[o++] = *s == '-' ? '_' : (char)toupper((unsigned char)*s);
    for (const char *s = b; *s && o + 1 < outlen; s++)
        out[o++] = *s == '-' ? '_' : (char)toupper((unsigned char)*s);
    out[o] = '\0';
}

/* The variables of one Service, as the kubelet writes them: {SVC}_SERVICE_HOST,
 * {SVC}_SERVICE_PORT, {SVC}_SERVICE_PORT_{PORTNAME}, and the Docker link variables
 * {SVC}_PORT, {SVC}_PORT_{port}_{PROTO}[_PROTO|_PORT|_ADDR]. */
static int service_env(struct envv *env, const json_t *svc)
{
    json_t *spec = json_object_get(svc, "spec"), *port;
    const char *ip = spec_str(spec, "clusterIP");
    const char *name = spec_str(json_object_get(svc, "metadata"), "name");
    char var[512], val[300], proto[16];
    size_t i;
    int rc = 0;

    if (!ip || !*ip || strcmp(ip, "None") == 0 || !name)
        return 0;
    env_name(var, sizeof(var), name, "_SERVICE_HOST");
    if ((rc = envv_set(env, var, ip)))
        return rc;
    json_array_foreach(json_object_get(spec, "ports"), i, port)
    {
        const char *pname = spec_str(port, "name");
        long num = spec_int(port, "port", 0);
        char n[32], suffix[300];
        size_t k;
        snprintf(proto, sizeof(proto), "%s",
                 spec_str(port, "protocol") ? spec_str(port, "protocol") : "TCP");
        for (k = 0; proto[k]; k++)
            proto[k] = (char)tolower((unsigned char)proto[k]);
        snprintf(n, sizeof(n), "%ld", num);
        snprintf(val, sizeof(val), "%s://%s:%ld", proto, ip, num);
        if (i == 0) {
            env_name(var, sizeof(var), name, "_SERVICE_PORT");
            if ((rc = envv_set(env, var, n)))
                return rc;
            env_name(var, sizeof(var), name, "_PORT");
            if ((rc = envv_set(env, var, val)))
                return rc;
        }
        if (pname && *pname) {
            snprintf(suffix, sizeof(suffix), "_SERVICE_PORT_%s", pname);
            env_name(var, sizeof(var), name, suffix);
            if ((rc = envv_set(env, var, n)))
                return rc;
        }
        snprintf(suffix, sizeof(suffix), "_PORT_%ld_%s", num, proto);
        env_name(var, sizeof(var), name, suffix);
        if ((rc = envv_set(env, var, val)))
            return rc;
        {
            static const char *const parts[] = {"_PROTO", "_PORT", "_ADDR"};
            const char *vals[] = {proto, n, ip};
            for (k = 0; k < 3; k++) {
                char full[600];
                snprintf(full, sizeof(full), "%s%s", var, parts[k]);
                if ((rc = envv_set(env, full, vals[k])))
                    return rc;
            }
        }
    }
    return 0;
}

/* Resolve env (the Service variables, envFrom, then env in order with $(VAR) expansion).
 * Returns 0 or an error. */
static int build_env(struct pod *p, struct ctr *c, struct kapi *api,
                     const struct kubelet_conf *conf, struct envv *env, char *msg, size_t msglen)
{
    bool links = !json_is_false(json_object_get(p->spec, "enableServiceLinks"));
    size_t i;
    json_t *e;
    int rc = 0;

    if ((rc = envv_set(env, "PATH",
                       "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")) ||
        (rc = envv_set(env, "HOSTNAME", p->name)) || (rc = envv_set(env, "HOME", "/root")))
        return rc;
    /* Services of the pod's namespace (enableServiceLinks), and always the API server's. */
    json_array_foreach(conf->services, i, e)
    {
        const json_t *md = json_object_get(e, "metadata");
        const char *ns = spec_str(md, "namespace"), *name = spec_str(md, "name");
        bool master = ns && name && strcmp(ns, "default") == 0 && strcmp(name, "kubernetes") == 0;
        if (!ns || (!master && !(links && strcmp(ns, p->ns) == 0)))
            continue;
        if ((rc = service_env(env, e)))
            return rc;
    }
    json_array_foreach(json_object_get(c->spec, "envFrom"), i, e)
    {
        json_t *ref = json_object_get(e, "configMapRef"), *obj = NULL, *data;
        bool secret = false;
        char path[1024];
        const char *k, *prefix = spec_str(e, "prefix");
        json_t *v;
        if (!ref) {
            ref = json_object_get(e, "secretRef");
            secret = true;
        }
        if (!spec_str(ref, "name"))
            continue;
        snprintf(path, sizeof(path), "/api/v1/namespaces/%s/%s/%s", p->ns,
                 secret ? "secrets" : "configmaps", spec_str(ref, "name"));
        rc = api->ops->get(api->ctx, path, &obj);
        if (rc == ERR_NOTFOUND && json_is_true(json_object_get(ref, "optional"))) {
            rc = 0;
            continue;
        }
        if (rc) {
            snprintf(msg, msglen, "%s \"%s\" not found", secret ? "secret" : "configmap",
                     spec_str(ref, "name"));
            return rc;
        }
        data = json_object_get(obj, "data");
        json_object_foreach(data, k, v)
        {
            char name[512];
            const char *s = json_string_value(v);
            unsigned char *d = NULL;
            size_t dl;
            if (!s)
                continue;
            if (secret && spec_b64_decode(s, &d, &dl) == 0)
                s = (const char *)d;
            snprintf(name, sizeof(name), "%s%s", prefix ? prefix : "", k);
            rc = envv_set(env, name, s);
            free(d);
            if (rc)
                break;
        }
        json_decref(obj);
        if (rc)
            return rc;
    }
    json_array_foreach(json_object_get(c->spec, "env"), i, e)
    {
        const char *name = spec_str(e, "name"), *val = spec_str(e, "value");
        json_t *vf = json_object_get(e, "valueFrom"), *ref;
        char *owned = NULL;
        if (!name)
            continue;
        if (vf && (ref = json_object_get(vf, "fieldRef")) != NULL) {
            owned =
                spec_field_ref(p->obj, spec_str(ref, "fieldPath") ? spec_str(ref, "fieldPath") : "",
                               p->ip[0] ? p->ip : NULL, &rc);
            if (rc) {
                snprintf(msg, msglen, "env %s: unsupported fieldPath %s", name,
                         spec_str(ref, "fieldPath") ? spec_str(ref, "fieldPath") : "");
                return rc;
            }
            rc = envv_set(env, name, owned);
        } else if (vf && ((ref = json_object_get(vf, "configMapKeyRef")) != NULL ||
                          (ref = json_object_get(vf, "secretKeyRef")) != NULL)) {
            bool secret = json_object_get(vf, "secretKeyRef") != NULL;
            json_t *obj = NULL;
            char path[1024];
            const char *s;
            snprintf(path, sizeof(path), "/api/v1/namespaces/%s/%s/%s", p->ns,
                     secret ? "secrets" : "configmaps",
                     spec_str(ref, "name") ? spec_str(ref, "name") : "");
            rc = api->ops->get(api->ctx, path, &obj);
            s = rc ? NULL
                   : spec_str(json_object_get(obj, "data"),
                              spec_str(ref, "key") ? spec_str(ref, "key") : "");
            if (!s) {
                json_decref(obj);
                if (json_is_true(json_object_get(ref, "optional"))) {
                    rc = 0;
                    continue;
                }
                snprintf(msg, msglen, rc ? "%s \"%s\" not found" : "couldn't find key %s in %s",
                         rc ? (secret ? "secret" : "configmap") : spec_str(ref, "key"),
                         spec_str(ref, "name") ? spec_str(ref, "name") : "");
                return rc ? rc : ERR_NOTFOUND;
            }
            if (secret) {
                unsigned char *d;
                size_t dl;
                rc = spec_b64_decode(s, &d, &dl);
                if (!rc) {
                    rc = envv_set(env, name, (const char *)d);
                    free(d);
                }
            } else {
                rc = envv_set(env, name, s);
            }
            json_decref(obj);
        } else if (vf) {
            rc = envv_set(env, name, "0"); /* resourceFieldRef: no resource accounting */
        } else {
            owned = spec_expand(val ? val : "", env);
            rc = owned ? envv_set(env, name, owned) : -ENOMEM;
        }
        free(owned);
        if (rc)
            return rc;
    }
    return 0;
}

/* mkdir -p path recording the directories this call created into created (array). */
static int mkdirs_tracked(const char *path, json_t *created)
{
    char p[4096];
    size_t len = strlen(path);

    if (len == 0 || len >= sizeof(p) || path[0] != '/')
        return -EINVAL;
    memcpy(p, path, len + 1);
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char save = *s;
            *s = '\0';
            if (mkdir(p, 0755) == 0)
                json_array_append_new(created, json_string(p));
            else if (errno != EEXIST)
                return -errno;
            *s = save;
            if (!save)
                break;
        }
    }
    return 0;
}

static void on_exit_decide(struct pod *p, struct ctr *c, double now);

static void record_start_failure(struct pod *p, struct ctr *c, const char *reason, const char *msg,
                                 double now)
{
    char ts[32];
    spec_now_rfc3339(ts);
    c->state = CS_TERMINATED;
    memset(&c->term, 0, sizeof(c->term));
    c->term.set = true;
    c->term.exit_code = 128;
    snprintf(c->term.reason, sizeof(c->term.reason), "%s", reason);
    snprintf(c->term.message, sizeof(c->term.message), "%s", msg);
    snprintf(c->term.started, sizeof(c->term.started), "%s", ts);
    snprintf(c->term.finished, sizeof(c->term.finished), "%s", ts);
    log_warn("msg=\"container start failed\" pod=%s/%s container=%s err=\"%s\"", p->ns, p->name,
             c->name, msg);
    on_exit_decide(p, c, now);
}

static void start_container(struct pod *p, struct ctr *c, struct kapi *api,
                            const struct image_map *images, const struct kubelet_conf *conf,
                            double now)
{
    const char *image = spec_str(c->spec, "image");
    const struct image_entry *ie = image ? image_map_find(images, image) : NULL;
    struct envv env;
    char msg[600] = "", **argv = NULL, logp[4400];
    const char *srcs[64], *dsts[64];
    char srcbuf[64][4400];
    bool ro[64];
    size_t nm = 0, i;
    json_t *vm, *created = (json_t *)conf->created;
    const json_t *v;
    gid_t groups[MAX_GROUPS];
    size_t ng = 0;
    struct proc_spec ps;
    pid_t pid;
    int rc;

    envv_init(&env);
    if (!ie) {
        char m[600];
        snprintf(m, sizeof(m),
                 "Failed to pull image \"%s\": the image is not in kubelet-lite's image map",
                 image ? image : "");
        set_waiting(c,
                    c->reason[0] && strcmp(c->reason, "ErrImagePull") == 0 ? "ImagePullBackOff"
                                                                           : "ErrImagePull",
                    m);
        c->next_start = now + 2;
        goto out;
    }
    rc = build_env(p, c, api, conf, &env, msg, sizeof(msg));
    if (!rc)
        rc = spec_argv_build(ie, json_object_get(c->spec, "command"),
                             json_object_get(c->spec, "args"), &env, &argv, msg, sizeof(msg));
    if (rc) {
        set_waiting(c, "CreateContainerConfigError", msg[0] ? msg : err_str(rc));
        c->next_start = now + 2;
        goto out;
    }
    /* The pod's resolv.conf and hosts over the host's (mountpoints that exist on every host). */
    for (int f = 0; f < 2; f++) {
        if ((f == 0 && !p->own_resolv) || (f == 1 && p->host_network))
            continue;
        snprintf(srcbuf[nm], sizeof(srcbuf[nm]), "%s/etc/%s", p->dir, f ? "hosts" : "resolv.conf");
        srcs[nm] = srcbuf[nm];
        dsts[nm] = f ? "/etc/hosts" : "/etc/resolv.conf";
        ro[nm] = false;
        nm++;
    }
    json_array_foreach(json_object_get(c->spec, "volumeMounts"), i, vm)
    {
        const char *vname = spec_str(vm, "name"), *mp = spec_str(vm, "mountPath");
        const char *sub = spec_str(vm, "subPath"), *src;
        struct stat st;
        if (!vname || !mp || mp[0] != '/' || nm >= ARRAY_LEN(srcs))
            continue;
        src = volume_source(p->obj, p->voldir, vname, srcbuf[nm], sizeof(srcbuf[nm]));
        if (!src) {
            snprintf(msg, sizeof(msg), "volumeMount %s: no volume named %s", mp, vname);
            set_waiting(c, "CreateContainerConfigError", msg);
            c->next_start = now + 2;
            goto out;
        }
        if (sub && *sub) {
            char full[4400];
            snprintf(full, sizeof(full), "%s/%s", src, sub);
            snprintf(srcbuf[nm], sizeof(srcbuf[nm]), "%s", full);
            src = srcbuf[nm];
            if (stat(src, &st) != 0)
                IGNORE_RESULT(volume_mkdirs(src, 0755)); /* the kubelet creates a missing subPath */
        } else if (src != srcbuf[nm]) {
            snprintf(srcbuf[nm], sizeof(srcbuf[nm]), "%s", src);
            src = srcbuf[nm];
        }
        if (stat(src, &st) == 0 && !S_ISDIR(st.st_mode)) {
            /* A file mount: the mountpoint is an empty file. */
            char parent[4096];
            snprintf(parent, sizeof(parent), "%s", mp);
            *strrchr(parent, '/') = '\0';
            rc = parent[0] ? mkdirs_tracked(parent, created) : 0;
            if (!rc && access(mp, F_OK) != 0) {
                FILE *f = fopen(mp, "a");
                if (f) {
                    fclose(f);
                    json_array_append_new(created, json_string(mp));
                }
            }
        } else {
            rc = mkdirs_tracked(mp, created);
        }
        if (rc) {
            snprintf(msg, sizeof(msg), "cannot create mountpoint %s: %s", mp, err_str(rc));
            record_start_failure(p, c, "StartError", msg, now);
            goto out;
        }
        srcs[nm] = src;
        dsts[nm] = mp;
        ro[nm] = json_is_true(json_object_get(vm, "readOnly"));
        nm++;
    }
    memset(&ps, 0, sizeof(ps));
    v = sec_ctx(p, c, "runAsUser");
    c->uid = json_is_integer(v) ? (uid_t)json_integer_value(v) : 0;
    c->set_ids = json_is_integer(v);
    v = sec_ctx(p, c, "runAsGroup");
    c->gid = json_is_integer(v) ? (gid_t)json_integer_value(v) : 0;
    c->set_ids = c->set_ids || json_is_integer(v);
    v = json_object_get(json_object_get(p->spec, "securityContext"), "fsGroup");
    if (json_is_integer(v))
        groups[ng++] = (gid_t)json_integer_value(v);
    json_array_foreach(
        json_object_get(json_object_get(p->spec, "securityContext"), "supplementalGroups"), i, vm)
    {
        if (json_is_integer(vm) && ng < MAX_GROUPS)
            groups[ng++] = (gid_t)json_integer_value(vm);
    }
    snprintf(logp, sizeof(logp), "%s/logs/%s.log", p->dir, c->name);
    if (c->ever_started) {
        /* A restart: the last run's output becomes the previous log (kubectl logs --previous). */
        char prev[4500];
        snprintf(prev, sizeof(prev), "%s/logs/%s.previous.log", p->dir, c->name);
        if (rename(logp, prev) && errno != ENOENT)
            log_warn("msg=\"cannot keep the previous log\" pod=%s/%s container=%s err=\"%s\"",
                     p->ns, p->name, c->name, strerror(errno));
    }
    ps.argv = argv;
    ps.envp = env.v;
    ps.netns_path = p->netns_path;
    ps.hostname = p->host_network ? NULL : p->name;
    ps.workdir = spec_str(c->spec, "workingDir");
    ps.log_path = logp;
    ps.uid = c->uid;
    ps.gid = c->gid;
    ps.set_ids = c->set_ids;
    ps.groups = groups;
    ps.ngroups = ng;
    ps.caps = proc_caps_for(
        json_object_get(json_object_get(c->spec, "securityContext"), "capabilities"), c->uid == 0);
    ps.privileged =
        json_is_true(json_object_get(json_object_get(c->spec, "securityContext"), "privileged"));
    ps.mount_src = srcs;
    ps.mount_dst = dsts;
    ps.mount_ro = ro;
    ps.nmounts = nm;
    rc = proc_start(&ps, &pid, msg, sizeof(msg));
    if (rc) {
        char m[700];
        snprintf(m, sizeof(m), "failed to start container \"%s\": %s", c->name,
                 msg[0] ? msg : err_str(rc));
        record_start_failure(p, c, "StartError", m, now);
        goto out;
    }
    c->pid = pid;
    c->state = CS_RUNNING;
    c->reason[0] = c->message[0] = '\0';
    c->start_mono = now;
    c->ever_started = true;
    c->kill_deadline = 0;
    spec_now_rfc3339(c->started_at);
    snprintf(c->container_id, sizeof(c->container_id), "kubelet-lite://%s-%s-%d", p->id, c->name,
             (int)pid);
    snprintf(c->image_id, sizeof(c->image_id), "kubelet-lite://%s", ie->argv[0]);
    snprintf(c->program, sizeof(c->program), "%s", ie->argv[0]);
    c->pre_started = c->post_failed = false;
    {
        const json_t *post = json_object_get(json_object_get(c->spec, "lifecycle"), "postStart");
        if (post && start_hook(p, c, post, POSTSTART_TIMEOUT, &c->post_pid)) {
            c->post_pid = 0;
            c->post_failed = true;
            kill_group(c->pid, SIGKILL);
        } else if (post) {
            log_info("msg=\"postStart hook started\" pod=%s/%s container=%s", p->ns, p->name,
                     c->name);
        }
    }
    c->started = !c->probes[P_STARTUP].spec;
    c->ready = false;
    for (int k = 0; k < P_COUNT; k++) {
        struct probe *pr = &c->probes[k];
        pr->succ = pr->fail = 0;
        pr->ok = false;
        pr->pid = 0;
        pr->next = now + (double)spec_int(pr->spec, "initialDelaySeconds", 0);
    }
    log_info("msg=\"container started\" pod=%s/%s container=%s pid=%d argv0=%s", p->ns, p->name,
             c->name, (int)pid, argv[0]);
out:
    spec_argv_free(argv);
    envv_release(&env);
}

/* ------------------------------------------------------------------ exits and restarts */

static void schedule_restart(struct pod *p, struct ctr *c, double now)
{
    double ran = c->start_mono > 0 ? now - c->start_mono : 0, delay;

    if (ran >= BACKOFF_RESET)
        c->backoff_n = 0;
    delay = (double)(1 << (c->backoff_n < 5 ? c->backoff_n : 5));
    if (delay > BACKOFF_MAX)
        delay = BACKOFF_MAX;
    c->backoff_n++;
    c->last = c->term;
    c->restarts++;
    c->next_start = now + delay;
    {
        char m[300];
        snprintf(m, sizeof(m), "back-off %.0fs restarting failed container=%s pod=%s_%s(%s)", delay,
                 c->name, p->name, p->ns, p->uid);
        set_waiting(c, "CrashLoopBackOff", m);
    }
}

static void on_exit_decide(struct pod *p, struct ctr *c, double now)
{
    const char *rp = restart_policy(p);
    bool ok = c->term.exit_code == 0 && c->term.signal == 0 &&
              strcmp(c->term.reason, "StartError") != 0 && !c->post_failed;

    c->ready = false;
    c->started = false;
    if (p->terminating || p->phase)
        return;
    if (c->init && !c->sidecar) {
        if (ok)
            c->done = true;
        else if (strcmp(rp, "Never") == 0)
            p->phase = "Failed";
        else
            schedule_restart(p, c, now);
    } else if (c->sidecar) {
        schedule_restart(p, c, now);
    } else if (strcmp(rp, "Always") == 0 || (strcmp(rp, "OnFailure") == 0 && !ok)) {
        schedule_restart(p, c, now);
    }
}

static void probe_result(struct pod *p, struct ctr *c, int k, bool success, double now)
{
    struct probe *pr = &c->probes[k];
    long st = spec_int(pr->spec, "successThreshold", 1);
    long ft = spec_int(pr->spec, "failureThreshold", 3);

    if (success) {
        pr->succ++;
        pr->fail = 0;
        if (pr->succ >= (k == P_READINESS ? st : 1))
            pr->ok = true;
    } else {
        pr->fail++;
        pr->succ = 0;
        if (pr->fail >= ft)
            pr->ok = false;
    }
    if (!alive(c))
        return;
    if (k == P_STARTUP && pr->ok && !c->started) {
        c->started = true;
        /* Readiness and liveness start after the startup probe succeeds. */
        c->probes[P_READINESS].next = now;
        c->probes[P_LIVENESS].next = now;
    } else if (k == P_READINESS) {
        c->ready = pr->ok;
    }
    if ((k == P_LIVENESS || k == P_STARTUP) && !success && pr->fail >= ft &&
        c->kill_deadline == 0) {
        json_t *g = json_object_get(pr->spec, "terminationGracePeriodSeconds");
        double grace = json_is_integer(g) ? (double)json_integer_value(g) : grace_of(p);
        log_info("msg=\"%s probe failed, killing container\" pod=%s/%s container=%s",
                 k == P_LIVENESS ? "liveness" : "startup", p->ns, p->name, c->name);
        term_main(c->pid);
        c->kill_deadline = now + grace;
    }
}

bool pod_reaped(struct pod *p, pid_t pid, int wstatus, double now)
{
    bool ok = WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0;

    for (size_t i = 0; i < p->nc; i++) {
        struct ctr *c = &p->c[i];
        if (c->post_pid == pid) {
            c->post_pid = 0;
            log_info("msg=\"postStart hook %s\" pod=%s/%s container=%s", ok ? "done" : "failed",
                     p->ns, p->name, c->name);
            if (!ok && alive(c)) {
                /* FailedPostStartHook: the kubelet kills the container; the policy restarts it. */
                c->post_failed = true;
                term_main(c->pid);
                c->kill_deadline = now + grace_of(p);
            }
            return true;
        }
        if (c->pre_pid == pid) {
            c->pre_pid = 0;
            log_info("msg=\"preStop hook %s\" pod=%s/%s container=%s", ok ? "done" : "failed",
                     p->ns, p->name, c->name);
            term_main(c->pid);
            return true;
        }
        for (int k = 0; k < P_COUNT; k++) {
            if (c->probes[k].pid == pid) {
                c->probes[k].pid = 0;
                probe_result(p, c, k, WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0, now);
                return true;
            }
        }
        if (c->pid == pid) {
            c->pid = 0;
            kill_group(pid, SIGKILL); /* children it left in its process group */
            kill_probes(c);
            kill_group(c->post_pid, SIGKILL);
            c->state = CS_TERMINATED;
            memset(&c->term, 0, sizeof(c->term));
            c->term.set = true;
            if (WIFEXITED(wstatus)) {
                c->term.exit_code = WEXITSTATUS(wstatus);
            } else {
                c->term.signal = WTERMSIG(wstatus);
                c->term.exit_code = 128 + c->term.signal;
            }
            snprintf(c->term.reason, sizeof(c->term.reason), "%s",
                     c->term.exit_code == 0 && !c->post_failed ? "Completed" : "Error");
            if (c->post_failed)
                snprintf(c->term.message, sizeof(c->term.message),
                         "FailedPostStartHook: the postStart hook failed");
            snprintf(c->term.started, sizeof(c->term.started), "%s", c->started_at);
            spec_now_rfc3339(c->term.finished);
            c->kill_deadline = 0;
            log_info("msg=\"container exited\" pod=%s/%s container=%s code=%d", p->ns, p->name,
                     c->name, c->term.exit_code);
            on_exit_decide(p, c, now);
            return true;
        }
    }
    return false;
}

/* ------------------------------------------------------------------ probes */

static int probe_port(const struct ctr *c, const json_t *port)
{
    size_t i;
    json_t *cp;

    if (json_is_integer(port))
        return (int)json_integer_value(port);
    if (!json_string_value(port))
        return 0;
    if (json_string_value(port)[0] >= '0' && json_string_value(port)[0] <= '9')
        return atoi(json_string_value(port));
    json_array_foreach(json_object_get(c->spec, "ports"), i, cp)
    {
        if (spec_str(cp, "name") && strcmp(spec_str(cp, "name"), json_string_value(port)) == 0)
            return (int)spec_int(cp, "containerPort", 0);
    }
    return 0;
}

/*
 * The argv of an exec probe or hook (a calloc'd array of borrowed strings; NULL when empty): a
 * first word that is the basename of the container's program (`weft-agent` for an image mapped
 * to build/bin/weft-agent) runs that program, as it would inside the image; other words are
 * looked up in PATH.
 */
static char **exec_argv(const struct ctr *c, const json_t *cmd)
{
    size_t n = json_array_size(cmd);
    char **argv = n ? calloc(n + 1, sizeof(char *)) : NULL;
    const char *base = strrchr(c->program, '/');

    if (!argv)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const char *w = json_string_value(json_array_get(cmd, i));
        argv[i] = (char *)(w ? w : "");
    }
    if (base && !strchr(argv[0], '/') && strcmp(argv[0], base + 1) == 0)
        argv[0] = (char *)c->program;
    return argv;
}

/* Start a lifecycle hook (exec in the container, httpGet from the node, sleep) as a child of
 * the kind probes are. Returns 0 with *pid, or an error (an unusable handler). */
static int start_hook(struct pod *p, struct ctr *c, const json_t *handler, int timeout, pid_t *pid)
{
    const json_t *e, *h, *sl;
    int rc = -EINVAL;

    *pid = 0;
    if ((e = json_object_get(handler, "exec")) != NULL) {
        char **argv = exec_argv(c, json_object_get(e, "command"));
        if (argv)
            rc = proc_probe_start(PROBE_EXEC, p->netns_path, NULL, 0, NULL, NULL, NULL, argv,
                                  c->pid, c->uid, c->gid, c->set_ids, timeout, pid);
        free(argv);
    } else if ((h = json_object_get(handler, "httpGet")) != NULL) {
        const char *host = spec_str(h, "host");
        rc = proc_probe_start(PROBE_HTTP, p->netns_path, host ? host : p->ip,
                              probe_port(c, json_object_get(h, "port")), spec_str(h, "path"),
                              spec_str(h, "scheme"), json_object_get(h, "httpHeaders"), NULL, 0, 0,
                              0, false, timeout, pid);
    } else if ((sl = json_object_get(handler, "sleep")) != NULL) {
        char secs[32];
        char *argv[] = {(char *)"/bin/sleep", secs, NULL};
        snprintf(secs, sizeof(secs), "%ld", spec_int(sl, "seconds", 0));
        rc = proc_probe_start(PROBE_EXEC, p->netns_path, NULL, 0, NULL, NULL, NULL, argv, c->pid,
                              c->uid, c->gid, c->set_ids, timeout, pid);
    }
    if (rc)
        log_warn("msg=\"cannot run a lifecycle hook\" pod=%s/%s container=%s err=\"%s\"", p->ns,
                 p->name, c->name, err_str(rc));
    return rc;
}

static void run_probes(struct pod *p, struct ctr *c, double now)
{
    for (int k = 0; k < P_COUNT; k++) {
        struct probe *pr = &c->probes[k];
        const json_t *h, *t, *e;
        int timeout = (int)spec_int(pr->spec, "timeoutSeconds", 1), rc = -EINVAL;
        pid_t pid = 0;
        if (!pr->spec || !alive(c) || c->kill_deadline > 0 || c->post_pid > 0)
            continue;
        if ((k == P_STARTUP) == c->started)
            continue; /* startup before started; the others after */
        if (pr->pid > 0) {
            if (now >= pr->deadline)
                kill_group(pr->pid, SIGKILL); /* reaped as a failure */
            continue;
        }
        if (now < pr->next)
            continue;
        pr->next = now + (double)spec_int(pr->spec, "periodSeconds", 10);
        if ((h = json_object_get(pr->spec, "httpGet")) != NULL) {
            const char *host = spec_str(h, "host");
            rc = proc_probe_start(PROBE_HTTP, p->netns_path, host ? host : p->ip,
                                  probe_port(c, json_object_get(h, "port")), spec_str(h, "path"),
                                  spec_str(h, "scheme"), json_object_get(h, "httpHeaders"), NULL, 0,
                                  0, 0, false, timeout, &pid);
        } else if ((t = json_object_get(pr->spec, "tcpSocket")) != NULL ||
                   (t = json_object_get(pr->spec, "grpc")) != NULL) {
            /* gRPC health checks are reduced to a TCP connect to their port. */
            const char *host = spec_str(t, "host");
            rc = proc_probe_start(PROBE_TCP, p->netns_path, host ? host : p->ip,
                                  probe_port(c, json_object_get(t, "port")), NULL, NULL, NULL, NULL,
                                  0, 0, 0, false, timeout, &pid);
        } else if ((e = json_object_get(pr->spec, "exec")) != NULL) {
            char **argv = exec_argv(c, json_object_get(e, "command"));
            if (argv)
                rc = proc_probe_start(PROBE_EXEC, p->netns_path, NULL, 0, NULL, NULL, NULL, argv,
                                      c->pid, c->uid, c->gid, c->set_ids, timeout, &pid);
            free(argv);
        }
        if (rc) {
            probe_result(p, c, k, false, now);
            continue;
        }
        pr->pid = pid;
        pr->deadline = now + (double)timeout;
    }
}

/* ------------------------------------------------------------------ status */

static json_t *term_json(const struct term *t)
{
    json_t *j = json_pack("{s:i,s:s,s:s,s:s}", "exitCode", t->exit_code, "reason", t->reason,
                          "startedAt", t->started, "finishedAt", t->finished);
    if (j && t->signal)
        json_object_set_new(j, "signal", json_integer(t->signal));
    if (j && t->message[0])
        json_object_set_new(j, "message", json_string(t->message));
    return j;
}

static json_t *ctr_status(const struct ctr *c)
{
    json_t *st, *state;
    const char *image = spec_str(c->spec, "image");

    if (c->state == CS_RUNNING && c->post_pid > 0) /* the postStart hook holds the start */
        state = json_pack("{s:{s:s}}", "waiting", "reason", "ContainerCreating");
    else if (c->state == CS_RUNNING)
        state = json_pack("{s:{s:s}}", "running", "startedAt", c->started_at);
    else if (c->state == CS_TERMINATED)
        state = json_pack("{s:o}", "terminated", term_json(&c->term));
    else if (c->message[0])
        state = json_pack("{s:{s:s,s:s}}", "waiting", "reason", c->reason, "message", c->message);
    else
        state = json_pack("{s:{s:s}}", "waiting", "reason", c->reason);
    st = json_pack("{s:s,s:s,s:s,s:b,s:b,s:i,s:o,s:o}", "name", c->name, "image",
                   image ? image : "", "imageID", c->image_id, "ready", ctr_ready(c), "started",
                   c->started && alive(c) && c->post_pid == 0, "restartCount", c->restarts, "state",
                   state, "lastState",
                   c->last.set ? json_pack("{s:o}", "terminated", term_json(&c->last))
                               : json_object());
    if (st && c->container_id[0])
        json_object_set_new(st, "containerID", json_string(c->container_id));
    return st;
}

static void set_cond(struct cond *cd, bool status, const char *now)
{
    if (cd->status != (int)status) {
        cd->status = status;
        snprintf(cd->ts, sizeof(cd->ts), "%s", now);
    }
}

static const char *compute_phase(struct pod *p, bool initialized)
{
    bool all_term = true, all_ok = true, all_started = true, any = false;

    if (p->phase)
        return p->phase;
    if (!initialized)
        return "Pending";
    for (size_t i = p->ninit; i < p->nc; i++) {
        const struct ctr *c = &p->c[i];
        any = true;
        if (c->state != CS_TERMINATED)
            all_term = false;
        else if (c->term.exit_code != 0)
            all_ok = false;
        if (!c->ever_started && c->state != CS_TERMINATED)
            all_started = false;
    }
    if (any && all_term && !p->shutdown) {
        p->phase = all_ok ? "Succeeded" : "Failed";
        return p->phase;
    }
    return all_started ? "Running" : "Pending";
}

static json_t *build_status(struct pod *p, const struct kubelet_conf *conf)
{
    json_t *st, *init = json_array(), *ctrs = json_array(), *conds = json_array();
    struct buf unready, unfinished;
    bool initialized = true, ready = true;
    const char *phase;
    char now[32];

    spec_now_rfc3339(now);
    buf_init(&unready);
    buf_init(&unfinished);
    for (size_t i = 0; i < p->nc; i++) {
        const struct ctr *c = &p->c[i];
        json_array_append_new(c->init ? init : ctrs, ctr_status(c));
        if (c->init && !c->sidecar && !c->done) {
            initialized = false;
            IGNORE_RESULT(buf_printf(&unfinished, "%s%s", unfinished.len ? " " : "", c->name));
        } else if (c->sidecar && !c->gate_passed) {
            initialized = false;
            IGNORE_RESULT(buf_printf(&unfinished, "%s%s", unfinished.len ? " " : "", c->name));
        }
        if ((!c->init || c->sidecar) && !ctr_ready(c)) {
            ready = false;
            IGNORE_RESULT(buf_printf(&unready, "%s%s", unready.len ? " " : "", c->name));
        }
    }
    phase = compute_phase(p, initialized);
    if (p->terminating || strcmp(phase, "Pending") == 0 || p->phase)
        ready = ready && !p->terminating && !p->phase;
    set_cond(&p->conds[0], p->net_ready && !p->released, now);
    set_cond(&p->conds[1], initialized, now);
    set_cond(&p->conds[2], ready, now);
    set_cond(&p->conds[3], ready, now);
    set_cond(&p->conds[4], true, now);
    for (int i = 0; i < 5; i++) {
        json_t *cd = json_pack("{s:s,s:s,s:n,s:s}", "type", p->conds[i].type, "status",
                               p->conds[i].status ? "True" : "False", "lastProbeTime",
                               "lastTransitionTime", p->conds[i].ts);
        if (!cd)
            continue;
        if (i == 1 && !initialized) {
            json_object_set_new(cd, "reason", json_string("ContainersNotInitialized"));
            json_object_set_new(cd, "message",
                                json_sprintf("containers with incomplete status: [%s]",
                                             unfinished.p ? unfinished.p : ""));
        } else if ((i == 2 || i == 3) && !ready) {
            bool done = p->phase && strcmp(p->phase, "Succeeded") == 0;
            json_object_set_new(cd, "reason",
                                json_string(done ? "PodCompleted" : "ContainersNotReady"));
            if (!done)
                json_object_set_new(cd, "message",
                                    json_sprintf("containers with unready status: [%s]",
                                                 unready.p ? unready.p : ""));
        }
        json_array_append_new(conds, cd);
    }
    if (!p->start_time[0])
        snprintf(p->start_time, sizeof(p->start_time), "%s", now);
    st = json_pack("{s:s,s:o,s:s,s:[{s:s}],s:s,s:s}", "phase", phase, "conditions", conds, "hostIP",
                   conf->host_ip, "hostIPs", "ip", conf->host_ip, "startTime", p->start_time,
                   "qosClass", "BestEffort");
    if (st && p->ip[0]) {
        json_object_set_new(st, "podIP", json_string(p->ip));
        json_object_set_new(st, "podIPs", json_pack("[{s:s}]", "ip", p->ip));
    }
    if (st && json_array_size(init))
        json_object_set(st, "initContainerStatuses", init);
    if (st)
        json_object_set(st, "containerStatuses", ctrs);
    json_decref(init);
    json_decref(ctrs);
    buf_release(&unready);
    buf_release(&unfinished);
    return st;
}

static void write_status(struct pod *p, struct kapi *api, const struct kubelet_conf *conf)
{
    json_t *st = build_status(p, conf), *patch, *body;
    const char *k;
    json_t *v;
    char path[1024], msg[512];
    int rc;

    if (!st || p->gone || (p->last_status && json_equal(st, p->last_status))) {
        json_decref(st);
        return;
    }
    patch = json_deep_copy(st);
    json_object_foreach(p->last_status, k, v)
    {
        if (!json_object_get(st, k))
            json_object_set_new(patch, k, json_null());
    }
    body = json_pack("{s:o}", "status", patch);
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s/status", p->ns, p->name);
    rc = body ? api->ops->call(api->ctx, "PATCH", path, "application/merge-patch+json", body, NULL,
                               msg, sizeof(msg))
              : -ENOMEM;
    json_decref(body);
    if (rc == ERR_NOTFOUND) {
        pod_mark_gone(p);
    } else if (rc) {
        log_warn("msg=\"cannot write pod status\" pod=%s/%s err=\"%s\"", p->ns, p->name, msg);
    } else {
        json_decref(p->last_status);
        p->last_status = st;
        st = NULL;
    }
    json_decref(st);
}

/* ------------------------------------------------------------------ the state machine */

static void release(struct pod *p, struct kapi *api, struct net *net)
{
    if (!p->host_network && p->net_ready)
        net_pod_del(net, p->id, p->ip);
    else if (!p->host_network)
        net_pod_del(net, p->id, NULL); /* a half-made netns */
    p->net_ready = false;
    if (p->dir[0])
        host_rm_tree(p->dir);
    p->released = true;
    if (!p->gone && !p->shutdown &&
        json_object_get(json_object_get(p->obj, "metadata"), "deletionTimestamp")) {
        char path[1024], msg[512];
        json_t *body =
            json_pack("{s:i,s:{s:s}}", "gracePeriodSeconds", 0, "preconditions", "uid", p->uid);
        int rc;
        snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s", p->ns, p->name);
        rc = body ? api->ops->call(api->ctx, "DELETE", path, NULL, body, NULL, msg, sizeof(msg))
                  : -ENOMEM;
        json_decref(body);
        if (rc && rc != ERR_NOTFOUND && rc != ERR_CONFLICT)
            log_warn("msg=\"cannot delete pod\" pod=%s/%s err=\"%s\"", p->ns, p->name, msg);
    }
    log_info("msg=\"pod removed from the node\" pod=%s/%s", p->ns, p->name);
}

static void terminate_step(struct pod *p, struct kapi *api, struct net *net,
                           const struct kubelet_conf *conf, double now)
{
    bool regular_alive = false, any_alive = false;

    for (size_t i = 0; i < p->nc; i++) {
        if (alive(&p->c[i]) && (!p->c[i].init || !p->c[i].sidecar))
            regular_alive = true;
        for (int k = 0; k < P_COUNT; k++)
            any_alive = any_alive || p->c[i].probes[k].pid > 0;
        any_alive = any_alive || alive(&p->c[i]) || p->c[i].post_pid > 0 || p->c[i].pre_pid > 0;
    }
    if (!regular_alive && !p->sidecars_termed) {
        p->sidecars_termed = true;
        for (size_t i = p->ninit; i-- > 0;) {
            if (p->c[i].sidecar)
                stop_container(p, &p->c[i], p->term_deadline);
        }
    }
    if (any_alive && now >= p->term_deadline)
        pod_kill_all(p);
    if (!any_alive) {
        if (!p->gone && !p->shutdown)
            write_status(p, api, conf);
        release(p, api, net);
        if (p->shutdown && !p->gone)
            write_status(p, api, conf);
    } else if (!p->gone) {
        write_status(p, api, conf);
    }
}

/*
 * The pod's /etc/resolv.conf and /etc/hosts, as the kubelet writes them, in <dir>/etc, written
 * once before the first container: they are bind-mounted file over file, and such a mount keeps
 * the inode it was made with, so a later replacement by rename would never be seen. Neither
 * changes during the pod's life (its IP, namespace and DNS settings are fixed).
 */
static int write_etc(struct pod *p, const struct kubelet_conf *conf, char *msg, size_t msglen)
{
    char dir[4200], path[4300];
    struct buf b;
    int rc;
    FILE *f;

    snprintf(dir, sizeof(dir), "%s/etc", p->dir);
    rc = volume_mkdirs(dir, 0755);
    buf_init(&b);
    if (!rc) {
        rc = dns_resolv_conf(p->spec, p->ns, conf->host_ip, &b);
        p->own_resolv = rc == 0;
        if (rc == 1)
            rc = 0;
    }
    for (int i = 0; !rc && i < 2; i++) {
        if (i == 0 && !p->own_resolv)
            continue;
        if (i == 1) {
            if (p->host_network)
                break;
            buf_release(&b);
            buf_init(&b);
            rc =
                buf_printf(&b,
                           "# Kubernetes-managed hosts file (kubelet-lite).\n127.0.0.1\tlocalhost\n"
                           "::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n",
                           p->ip, p->name);
            if (rc)
                break;
        }
        snprintf(path, sizeof(path), "%s/%s", dir, i == 0 ? "resolv.conf" : "hosts");
        f = fopen(path, "w");
        if (!f || fwrite(b.p, 1, b.len, f) != b.len || fchmod(fileno(f), 0644)) {
            rc = -errno;
            snprintf(msg, msglen, "cannot write %.400s: %s", path, err_str(rc));
        }
        if (f && fclose(f) && !rc) {
            rc = -errno;
            snprintf(msg, msglen, "cannot write %.400s: %s", path, err_str(rc));
        }
    }
    if (rc && !msg[0])
        snprintf(msg, msglen, "cannot prepare %.400s: %s", dir, err_str(rc));
    buf_release(&b);
    return rc;
}

/*
 * <pod dir>/netns holds the path of the pod's network namespace (a line; for a hostNetwork pod
 * kubelet-lite's own, /proc/<pid>/ns/net), for kubelite's
 * pods/portforward: the API server side of `kubectl port-forward` enters it to reach the pod's
 * 127.0.0.1 (kubelite finds the pod directory through the Node's pod-log-dir annotation).
 */
static int write_netns_file(const struct pod *p)
{
    char path[4200], tmp[4300], line[80];
    int fd, n, rc = 0;

    snprintf(path, sizeof(path), "%s/netns", p->dir);
    snprintf(tmp, sizeof(tmp), "%s.kl-tmp", path);
    /* a hostNetwork pod shares kubelet-lite's namespace (/proc/1 may be out of reach) */
    if (p->host_network)
        n = snprintf(line, sizeof(line), "/proc/%d/ns/net\n", (int)getpid());
    else
        n = snprintf(line, sizeof(line), "%s\n", p->netns_path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    if (write(fd, line, (size_t)n) != n)
        rc = errno ? -errno : -EIO;
    close(fd);
    if (!rc && rename(tmp, path))
        rc = -errno;
    if (rc)
        unlink(tmp);
    return rc;
}

static bool setup(struct pod *p, struct kapi *api, struct net *net, const struct kubelet_conf *conf,
                  double now)
{
    char msg[600] = "", logs[4400];
    int rc;

    if (!p->dir[0]) {
        snprintf(p->dir, sizeof(p->dir), "%s/pods/%s", conf->root, p->uid);
        snprintf(p->voldir, sizeof(p->voldir), "%s/volumes", p->dir);
    }
    if (!p->net_ready) {
        if (now < p->next_setup)
            return false;
        snprintf(logs, sizeof(logs), "%s/logs", p->dir);
        rc = volume_mkdirs(logs, 0755);
        if (!rc && !p->host_network)
            rc = net_pod_add(net, p->id, p->ip, msg, sizeof(msg));
        else if (!rc)
            snprintf(p->ip, sizeof(p->ip), "%s", conf->host_ip);
        if (rc) {
            snprintf(p->wait_reason, sizeof(p->wait_reason), "ContainerCreating");
            snprintf(p->wait_msg, sizeof(p->wait_msg), "network setup failed: %s",
                     msg[0] ? msg : err_str(rc));
            log_warn("msg=\"pod network setup failed\" pod=%s/%s err=\"%s\"", p->ns, p->name,
                     p->wait_msg);
            p->next_setup = now + 2;
            return false;
        }
        /* kubelite's pods/portforward enters the pod's network namespace named here */
        rc = write_netns_file(p);
        if (rc) {
            snprintf(p->wait_reason, sizeof(p->wait_reason), "ContainerCreating");
            snprintf(p->wait_msg, sizeof(p->wait_msg), "cannot write the pod's netns file: %s",
                     err_str(rc));
            log_warn("msg=\"pod setup failed\" pod=%s/%s err=\"%s\"", p->ns, p->name, p->wait_msg);
            p->next_setup = now + 2;
            return false;
        }
        p->net_ready = true;
        log_info("msg=\"pod network ready\" pod=%s/%s ip=%s netns=%s", p->ns, p->name, p->ip,
                 p->netns_path);
    }
    if (!p->etc_ready) {
        rc = write_etc(p, conf, msg, sizeof(msg));
        if (rc) {
            snprintf(p->wait_reason, sizeof(p->wait_reason), "ContainerCreating");
            snprintf(p->wait_msg, sizeof(p->wait_msg), "%s", msg);
            log_warn("msg=\"pod DNS setup failed\" pod=%s/%s err=\"%s\"", p->ns, p->name, msg);
            p->next_setup = now + 2;
            return false;
        }
        p->etc_ready = true;
    }
    if (!p->vols_ready || now >= p->next_vol_refresh) {
        if (!p->vols_ready && now < p->next_setup)
            return false;
        rc = volume_sync(api, p->obj, p->ip, p->voldir, p->tokstate, now, msg, sizeof(msg));
        if (rc && !p->vols_ready) {
            for (size_t i = 0; i < p->nc; i++)
                set_waiting(&p->c[i], p->c[i].init ? "PodInitializing" : "ContainerCreating", msg);
            log_warn("msg=\"volume setup failed\" pod=%s/%s err=\"%s\"", p->ns, p->name, msg);
            p->next_setup = now + 1;
            return false;
        }
        if (rc)
            log_warn("msg=\"volume refresh failed\" pod=%s/%s err=\"%s\"", p->ns, p->name, msg);
        if (!p->vols_ready) {
            for (size_t i = 0; i < p->nc; i++) {
                if (p->c[i].state == CS_WAITING)
                    p->c[i].message[0] = '\0';
            }
        }
        p->vols_ready = true;
        p->next_vol_refresh = now + VOLUME_REFRESH;
    }
    return true;
}

static void run_containers(struct pod *p, struct kapi *api, const struct image_map *images,
                           const struct kubelet_conf *conf, double now)
{
    for (size_t i = 0; i < p->ninit; i++) {
        struct ctr *c = &p->c[i];
        if (c->sidecar) {
            if (c->state != CS_RUNNING && now >= c->next_start)
                start_container(p, c, api, images, conf, now);
            if (!c->gate_passed && !(c->started && alive(c) && c->post_pid == 0))
                return;
            c->gate_passed = true;
            continue;
        }
        if (c->done)
            continue;
        if (c->state == CS_WAITING && now >= c->next_start)
            start_container(p, c, api, images, conf, now);
        return;
    }
    /* In order; a container's postStart hook holds the ones after it, as the kubelet's does. */
    for (size_t i = p->ninit; i < p->nc; i++) {
        struct ctr *c = &p->c[i];
        if (c->state == CS_WAITING && now >= c->next_start)
            start_container(p, c, api, images, conf, now);
        if (c->post_pid > 0)
            return;
    }
}

void pod_sync(struct pod *p, struct kapi *api, struct net *net, const struct image_map *images,
              const struct kubelet_conf *conf, double now)
{
    if (p->released)
        return;
    if (p->terminating) {
        terminate_step(p, api, net, conf, now);
        return;
    }
    if (setup(p, api, net, conf, now)) {
        if (!p->phase)
            run_containers(p, api, images, conf, now);
        for (size_t i = 0; i < p->nc; i++) {
            struct ctr *c = &p->c[i];
            if (alive(c) && c->kill_deadline > 0 && now >= c->kill_deadline)
                kill_group(c->pid, SIGKILL);
            run_probes(p, c, now);
        }
    }
    write_status(p, api, conf);
    if (p->phase) {
        /* The pod is done: sidecars (and anything left) stop; processes are not restarted. */
        for (size_t i = 0; i < p->nc; i++) {
            if (alive(&p->c[i]) && p->c[i].kill_deadline == 0) {
                term_main(p->c[i].pid);
                p->c[i].kill_deadline = now + grace_of(p);
            }
        }
    }
}
