/*
 * kubelet.h - kubelet-lite internals: a node agent for kubelite that runs pods as local
 * processes in network namespaces (docs/kubelet-lite.md).
 *
 * One thread. main.c runs a loop that polls the API (through struct kapi, a small ops table
 * that the lib/kube informer client can replace), reaps children through a signalfd, runs
 * probes as short-lived child processes, and rewrites the node's iptables service rules when
 * Services or EndpointSlices change. Nothing here blocks for long: container processes and
 * probes are children reaped asynchronously; only `ip`/`iptables-restore` invocations and API
 * requests (localhost, bounded by timeouts) are synchronous.
 *
 * Files: kapi.c (kubeconfig, libcurl transport), image.c (image map), spec.c (pure helpers:
 * argv, env expansion, base64, time), net.c (bridge, netns, veth, command runner), proxy.c
 * (service rules), volume.c (volumes as files), proc.c (container and probe processes),
 * pod.c (the per-pod state machine and status), main.c (options, loop, node, cleanup).
 */
#ifndef WEFT_KUBELET_H
#define WEFT_KUBELET_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "core/buf.h"
#include "core/err.h"

/* ------------------------------------------------------------------ API access (kapi.c) */

/*
 * The API operations kubelet-lite needs. list returns a new reference to the array of items
 * of a collection path ("/api/v1/pods"); get returns a new reference to one object or
 * ERR_NOTFOUND; call performs a write (POST/PATCH/PUT/DELETE) with an optional JSON body and
 * returns the decoded answer in *resp when resp is non-NULL. Codes: 0, ERR_NOTFOUND (404),
 * ERR_EXISTS (409 AlreadyExists), ERR_CONFLICT (409 otherwise), ERR_INVALID (400/422),
 * ERR_UNSUPPORTED (405), -EACCES (401/403), -EIO (transport or other status); msg (may be
 * NULL) gets the Status message or the transport error.
 */
struct kapi_ops {
    int (*list)(void *ctx, const char *path, json_t **items);
    int (*get)(void *ctx, const char *path, json_t **obj);
    int (*call)(void *ctx, const char *method, const char *path, const char *content_type,
                const json_t *body, json_t **resp, char *msg, size_t msglen);
};

struct kapi {
    const struct kapi_ops *ops;
    void *ctx;
};

struct kclient;

/*
 * Load a kubeconfig (current-context; server, certificate-authority-data or
 * certificate-authority, insecure-skip-tls-verify, token or tokenFile, client-certificate-data
 * and client-key-data) and make a libcurl client. Returns 0, ERR_PARSE or ERR_INVALID (detail
 * in msg), -errno, -ENOMEM. Free with kclient_free.
 */
int kclient_new(const char *kubeconfig, struct kclient **out, char *msg, size_t msglen) WUR;
void kclient_free(struct kclient *c);
/* The ops table over a kclient (ctx = the kclient). */
extern const struct kapi_ops kclient_ops;
/* Server URL of the client ("https://127.0.0.1:6443"). */
const char *kclient_server(const struct kclient *c);

/* ------------------------------------------------------------------ images (image.c) */

/* One map line: `image[:tag-pattern] /path/to/program [extra args...]`. */
struct image_entry {
    char *repo;  /* repository, an fnmatch pattern ("weft/testapp"; wildcards allowed) */
    char *tag;   /* tag pattern, NULL = any tag */
    char **argv; /* program then extra args, NULL-terminated */
    size_t argc;
};

struct image_map;

/*
 * Parse a map: one entry per line, '#' comments and blank lines ignored, fields split on
 * blanks (double quotes group a field). The program must be an absolute path. Returns 0,
 * ERR_PARSE (msg: "line N: ...") or -ENOMEM.
 */
int image_map_parse(const char *text, struct image_map **out, char *msg, size_t msglen) WUR;
int image_map_load(const char *path, struct image_map **out, char *msg, size_t msglen) WUR;
void image_map_free(struct image_map *m);
/*
 * First entry matching an image reference ("docker.io/weft/testapp:1.2@sha256:..." matches
 * "weft/testapp"): the registry prefix "docker.io/" and "library/" are ignored, a missing tag
 * is "latest". NULL when nothing matches. The entry is borrowed from the map.
 */
const struct image_entry *image_map_find(const struct image_map *m, const char *image);
/*
 * Append the project's own images, any tag: weft/weftd, weft/proxy, weft/init and weft/testapp
 * run bindir's weftd, weft-agent, weft-init and testapp. Appended after the map's lines, so a
 * map line for the same image wins. Returns 0 or -ENOMEM.
 */
int image_map_add_builtin(struct image_map *m, const char *bindir) WUR;

/* ------------------------------------------------------------------ spec helpers (spec.c) */

/* A growable NULL-terminated array of "NAME=value" strings (an environment). */
struct envv {
    char **v;
    size_t n, cap;
};

void envv_init(struct envv *e);
void envv_release(struct envv *e);
/* Set NAME to value (replacing an earlier NAME). Returns 0 or -ENOMEM. */
int envv_set(struct envv *e, const char *name, const char *value) WUR;
/* Value of NAME or NULL. */
const char *envv_get(const struct envv *e, const char *name);

/*
 * Expand $(VAR) references the way the kubelet does: $(VAR) becomes VAR's value when VAR is
 * set in env, stays as written otherwise; $$ is a literal $. Returns a malloc'd string or NULL
 * (out of memory).
 */
char *spec_expand(const char *s, const struct envv *env);

/*
 * The argv of a container (malloc'd, NULL-terminated, free with spec_argv_free): entry is the
 * mapped image (program + default args), command and args the container's arrays (may be
 * NULL), expanded against env.
 *   - no command: program, then args if given, else the entry's extra args;
 *   - command whose first element is an absolute path to an executable file: command + args;
 *   - command whose first element names the mapped program (same basename): the mapped
 *     program path, then command[1..] + args;
 *   - any other command: the mapped program, then command + args as its arguments.
 * Returns 0, ERR_INVALID (a non-string element; msg) or -ENOMEM.
 */
int spec_argv_build(const struct image_entry *entry, const json_t *command, const json_t *args,
                    const struct envv *env, char ***out, char *msg, size_t msglen) WUR;
void spec_argv_free(char **argv);

/* Decode standard base64 (padding optional, whitespace skipped). Returns 0 or ERR_PARSE. */
int spec_b64_decode(const char *in, unsigned char **out, size_t *outlen) WUR;

/* RFC 3339 UTC timestamp of now ("2026-01-01T00:00:00Z"). */
void spec_now_rfc3339(char out[32]);
/* Monotonic clock in seconds. */
double spec_mono(void);

/* Integer field of a JSON object, def when absent or not an integer. */
long spec_int(const json_t *obj, const char *key, long def);
/* String field or NULL. */
const char *spec_str(const json_t *obj, const char *key);

/*
 * Resolve a downward-API fieldPath against a pod ("metadata.name", "metadata.namespace",
 * "metadata.uid", "metadata.labels['k']", "metadata.annotations['k']", "spec.nodeName",
 * "spec.serviceAccountName", "status.podIP", "status.hostIP"; "metadata.labels" and
 * "metadata.annotations" give the k="v" lines volume files carry). podip overrides the pod's
 * status. Returns a malloc'd value, or NULL with ERR_INVALID/-ENOMEM in *rc.
 */
char *spec_field_ref(const json_t *pod, const char *path, const char *podip, int *rc);

/* ------------------------------------------------------------------ host commands (net.c) */

/*
 * Run argv (argv[0] an absolute path) to completion with an empty signal mask; its stdout and
 * stderr are collected into out (may be NULL); stdin (may be NULL) is written to it. Returns
 * the exit status (0..255), 128+signal, or -errno when it could not run.
 */
int host_run(const char *const *argv, const char *stdin_text, struct buf *out);

/* Remove a directory tree (symlinks are not followed). Returns 0 or -errno of the last step. */
int host_rm_tree(const char *path);
/* Whether dir is a mount point: on another file system than its parent. */
bool host_is_mountpoint(const char *dir);

/* ------------------------------------------------------------------ volumes (volume.c) */

/* mkdir -p; the last component gets mode. Returns 0 or -errno. */
int volume_mkdirs(const char *path, mode_t mode) WUR;

/*
 * Materialise (or refresh) every volume of pod under voldir/<name>. tokstate is a JSON object
 * the caller keeps per pod (token refresh times). Returns 0, or the first failure with msg
 * "MountVolume.SetUp failed for volume \"x\" : ..." (ERR_NOTFOUND for a missing ConfigMap,
 * Secret or key that is not optional).
 */
int volume_sync(struct kapi *api, const json_t *pod, const char *podip, const char *voldir,
                json_t *tokstate, double now, char *msg, size_t msglen) WUR;

/* The host path a volume is mounted from (hostPath, else voldir/name in buf); NULL when the pod
 * has no such volume. */
const char *volume_source(const json_t *pod, const char *voldir, const char *name, char *buf,
                          size_t buflen);

/* ------------------------------------------------------------------ pod network (net.c) */

struct net;

/*
 * The node network: bridge kl0 with the first address of pod_cidr, IPv4 forwarding on (the
 * previous value is saved in <root>/ip_forward.orig and restored by net_free/net_cleanup), a
 * route for service_cidr through the bridge so host-originated ClusterIP traffic has a
 * pod-network source. Returns 0, ERR_INVALID (bad CIDR; msg), ERR_EXISTS (kl0 exists: a
 * previous run left it; run --cleanup) or -errno.
 */
int net_new(const char *pod_cidr, const char *service_cidr, const char *root, struct net **out,
            char *msg, size_t msglen) WUR;
/* Remove the bridge and route; restore ip_forward. Pods must be gone. Accepts NULL. */
void net_free(struct net *n);
const char *net_gateway(const struct net *n);
int net_prefix(const struct net *n);

/*
 * Create netns "kl-<id>" with veth "eth0" (host side "klv<id>" on the bridge), the next free
 * address and a default route through the gateway. id is 8 lowercase hex digits. ip (16 bytes)
 * gets the address. Returns 0, -ENOSPC (no address left) or the failing command's code (msg).
 */
int net_pod_add(struct net *n, const char *id, char ip[16], char *msg, size_t msglen) WUR;
/* Remove the pod's veth and netns and release ip. Processes inside must be gone. */
void net_pod_del(struct net *n, const char *id, const char *ip);

/*
 * Remove leftovers of any earlier run: kill every process in a kl-* netns, delete those
 * netns, veths named klv*, the bridge kl0 and its route, the KL-* iptables chains and jumps,
 * <root>/pods, and restore ip_forward from <root>/ip_forward.orig. Safe to call repeatedly.
 */
void net_cleanup(const char *root, const char *service_cidr);

/* Parse "a.b.c.d/len" into host-order address and prefix. Returns 0 or ERR_INVALID. */
int net_cidr_parse(const char *cidr, unsigned *addr, int *prefix) WUR;

/* ------------------------------------------------------------------ service rules (proxy.c) */

/*
 * Render the nat and filter rules for the Services and EndpointSlices (JSON arrays of
 * objects) as iptables-restore --noflush input into out. prev_chains is the JSON array of
 * per-service chain names the previous render created (NULL the first time); chains that
 * disappear are deleted in the same input. *chains gets the new array (new reference).
 * Deterministic: the same input gives the same text. Returns 0 or -ENOMEM.
 */
int proxy_render(const json_t *services, const json_t *slices, const json_t *prev_chains,
                 struct buf *out, json_t **chains) WUR;
/* Install the base chains and the jumps into them (idempotent). Returns 0 or a host_run code. */
int proxy_setup(char *msg, size_t msglen) WUR;
/* Apply rendered rules with iptables-restore --noflush. */
int proxy_apply(const char *rules, char *msg, size_t msglen) WUR;
/* Remove the jumps and every KL-* chain from the nat and filter tables. */
void proxy_teardown(void);

/* ------------------------------------------------------------------ cluster DNS (dns.c) */

struct dns;

/* A UDP resolver on addr:53 (the bridge address). Returns 0, ERR_INVALID or -errno (msg). */
int dns_new(const char *addr, struct dns **out, char *msg, size_t msglen) WUR;
void dns_free(struct dns *d);
int dns_fd(const struct dns *d);
/* Replace the answered names with those of services and slices (JSON arrays, borrowed):
 * <svc>.<ns>.svc.cluster.local -> the ClusterIP, or for a headless Service its ready endpoints
 * (and <hostname>.<svc>.<ns>.svc.cluster.local for endpoints with a hostname). */
void dns_update(struct dns *d, const json_t *services, const json_t *slices);
/* Answer the queries waiting on the socket (at most a bounded burst per call). */
void dns_serve(struct dns *d);
/*
 * The resolv.conf a pod gets, from its spec's dnsPolicy and dnsConfig, the way the kubelet
 * writes it: ClusterFirst (and ClusterFirstWithHostNet) -> nameserver, search
 * <ns>.svc.cluster.local svc.cluster.local cluster.local, options ndots:5, with dnsConfig's
 * nameservers, searches and options added; None -> dnsConfig only. Returns 0 (text in out), 1
 * when the pod uses the node's own file (Default; ClusterFirst with hostNetwork), -ENOMEM.
 */
int dns_resolv_conf(const json_t *pod_spec, const char *ns, const char *nameserver,
                    struct buf *out) WUR;

/* ------------------------------------------------------------------ processes (proc.c) */

/* How to start one container process; every field is borrowed for the call. */
struct proc_spec {
    char *const *argv; /* argv[0] an absolute path */
    char *const *envp;
    const char *netns_path; /* /var/run/netns/kl-... */
    const char *hostname;   /* UTS hostname (the pod name) */
    const char *workdir;    /* NULL = / */
    const char *log_path;   /* stdout and stderr, appended */
    uid_t uid;
    gid_t gid;
    bool set_ids;        /* switch to uid/gid (runAsUser given, or a non-root runAsGroup) */
    const gid_t *groups; /* supplementary groups */
    size_t ngroups;
    unsigned long long caps;      /* capability set to keep (bit per CAP_*) */
    bool privileged;              /* keep every capability */
    const char *const *mount_src; /* bind mounts (host path -> mountPath), nmounts of them */
    const char *const *mount_dst;
    const bool *mount_ro;
    size_t nmounts;
};

/*
 * Fork and exec the container process in its pod's netns, a private mount and UTS namespace,
 * its own process group. Returns 0 with *pid once the program was exec'd, or the child's
 * failure as -errno with the step in msg ("setns: ...", "exec /x: No such file ...").
 */
int proc_start(const struct proc_spec *ps, pid_t *pid, char *msg, size_t msglen) WUR;

/* Capability bits from a container's securityContext.capabilities and the user (root gets the
 * container runtime's default set + add - drop, others only what is added). */
unsigned long long proc_caps_for(const json_t *capabilities, bool root);

enum probe_kind { PROBE_HTTP, PROBE_TCP, PROBE_EXEC, PROBE_GRPC_UNSUPPORTED };

/*
 * Start a probe (or lifecycle hook) child: HTTP GET or TCP connect from the node (the host's
 * network namespace) to host:port (HTTP: a status 200-399 passes), or exec argv inside the
 * namespaces of process target_pid (netns_path, mount, UTS) with uid/gid. The child exits 0 on
 * success and is killed after timeout_s + 1 s. Returns 0 with *pid or -errno.
 */
int proc_probe_start(enum probe_kind kind, const char *netns_path, const char *host, int port,
                     const char *path, const char *scheme, const json_t *headers, char *const *argv,
                     pid_t target_pid, uid_t uid, gid_t gid, bool set_ids, int timeout_s,
                     pid_t *pid) WUR;

/* ------------------------------------------------------------------ pods (pod.c) */

struct kubelet;

/* Node-wide settings the pods need. */
struct kubelet_conf {
    const char *node_name;
    const char *root; /* per-pod directories live in <root>/pods/<uid> */
    const char *host_ip;
    double shutdown_grace; /* upper bound of the grace period when kubelet-lite exits */
    json_t *created;       /* mountpoints created on the host (array), removed at exit */
    json_t *services;      /* the Services last listed (array; borrowed), for the environment */
    bool native_sidecars;  /* the kubelet version is >= 1.29: init containers with
                            * restartPolicy Always are sidecars (else plain init containers) */
};

struct pod;

/* A pod from its API object (borrowed); NULL on -ENOMEM. Without native_sidecars (a kubelet
 * before 1.29) an init container's restartPolicy is ignored, as such a kubelet does. */
struct pod *pod_new(const json_t *obj, bool native_sidecars);
void pod_free(struct pod *p);
const char *pod_uid(const struct pod *p);
/* Replace the pod's latest API object (a new reference is taken). */
void pod_update_obj(struct pod *p, const json_t *obj);
/* The pod vanished from the API: terminate with its spec's grace period. */
void pod_mark_gone(struct pod *p);
/* Start termination (kubelet shutdown): grace capped at conf->shutdown_grace. */
void pod_shutdown(struct pod *p, const struct kubelet_conf *conf);
/* True when every process is gone and the pod's resources were released. */
bool pod_finished(const struct pod *p);

/*
 * Advance the pod: network, volumes, containers, probes, restarts, termination; then write its
 * status when it changed. now is spec_mono().
 */
void pod_sync(struct pod *p, struct kapi *api, struct net *net, const struct image_map *images,
              const struct kubelet_conf *conf, double now);
/* A child exited: returns true when pid belonged to this pod (container or probe). */
bool pod_reaped(struct pod *p, pid_t pid, int wstatus, double now);
/* Kill every process of the pod at once (SIGKILL to each process group). */
void pod_kill_all(struct pod *p);

#endif
