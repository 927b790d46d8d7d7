/*
 * agent.h - the sidecar's pure pieces: weft-init's iptables plan and rules, and the renderer
 * from a proxy configuration document (docs/proxy-config.md) to HAProxy 2.6 configuration.
 *
 * Nothing here runs a process, opens a socket or touches the network: weft-init's main
 * (agent/init/main.c) runs iptables-save/-restore with the text these functions produce, and the
 * agent hands the rendered configuration to HAProxy. Every function is thread-safe (no shared
 * state); memory returned is the caller's (named free function). docs/agent.md describes the
 * rules and the rendering.
 */
#ifndef WEFT_AGENT_H
#define WEFT_AGENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "core/buf.h"
#include "core/diag.h"
#include "core/err.h"
#include "core/map.h"
#include "core/netaddr.h"

/* ---- weft-init: the nat redirection ------------------------------------------------------ */

/* Our chains all start with this; weft-init owns every nat chain with the prefix. */
#define AGENT_IPT_CHAIN_PREFIX "WEFT_"
/* The source address the inbound listener uses to reach the app on the pod's own IP, so that
 * the connection is told apart from the proxy's self-calls (see docs/agent.md). */
#define AGENT_INBOUND_SRC4 "127.0.0.6"
#define AGENT_INBOUND_SRC6 "::6"

struct agent_ipt_plan {
    int proxy_uid;     /* traffic of this UID is never redirected outbound (the proxy's own) */
    int outbound_port; /* 15001 */
    int inbound_port;  /* 15006 */
    bool in_all;       /* include-inbound-ports "*": every port but the excluded ones */
    int *in_ports;     /* include-inbound-ports when not "*"; empty: no inbound capture */
    size_t n_in_ports;
    int *ex_in_ports;
    size_t n_ex_in_ports;
    int *ex_out_ports;
    size_t n_ex_out_ports;
    bool out_all; /* include-outbound-ip-ranges "*"; else only in_ranges are captured */
    struct netaddr_cidr *in_ranges;
    size_t n_in_ranges;
    struct netaddr_cidr *ex_ranges;
    size_t n_ex_ranges;
};

/* Defaults (UID 1337, ports 15001/15006, everything included, nothing excluded). */
void agent_ipt_plan_init(struct agent_ipt_plan *p);
void agent_ipt_plan_release(struct agent_ipt_plan *p);

/*
 * Parse one list argument into the plan. `what` is the option name without dashes
 * ("include-inbound-ports", "exclude-inbound-ports", "exclude-outbound-ports",
 * "include-outbound-ip-ranges", "exclude-outbound-ip-ranges"); value is comma-separated, blank
 * for none, "*" where the option allows it. Duplicates are dropped. On error returns
 * ERR_INVALID with a message in diag naming the option and the item; the plan keeps its old list.
 */
int agent_ipt_plan_set(struct agent_ipt_plan *p, const char *what, const char *value,
                       struct diag *diag) WUR;

/*
 * The rules for one family (AF_INET or AF_INET6), as the body of an iptables-restore `*nat`
 * section: our chain declarations (":WEFT_... - [0:0]") then our rules, jumps from PREROUTING and
 * OUTPUT included, no `*nat` and no COMMIT. Appends to out. Deterministic.
 */
int agent_ipt_rules(const struct agent_ipt_plan *p, int family, struct buf *out) WUR;

/*
 * The complete nat table to restore: `saved` is iptables-save's output (all tables or `-t nat`;
 * may be empty), `rules` what agent_ipt_rules wrote. Keeps every chain and rule of the nat table
 * that is not ours (the built-in chains' policies included), drops our chains and every rule
 * that jumps to one, and appends ours; the result is `*nat ... COMMIT\n`, for iptables-restore
 * without --noflush (atomic; other tables are untouched). ERR_UNSUPPORTED with a message in diag
 * when the saved nat table cannot be represented by iptables (nft rules written by another tool).
 */
int agent_ipt_merge(const char *saved, const char *rules, struct buf *out, struct diag *diag) WUR;

/* ---- the renderer: document -> HAProxy 2.6 configuration ----------------------------------- */

/* Where things are on the pod and the listeners' settings (agent_render_opts_init: defaults). */
struct agent_render_opts {
    const char *run_dir;   /* admin.sock (runtime API) and outbound.map live here */
    const char *cert_file; /* the pod's certificate chain and key, one PEM (crt) */
    const char *ca_file;   /* the trust bundle (ca-file) */
    int inbound_port;      /* 15006 */
    int outbound_port;     /* 15001 */
    int metrics_port;      /* 15090 */
    int maxconn;           /* per process (the inbound listener gets 3/4 of it) */
    int peer_maxconn;      /* connections one peer address may hold on the inbound listener */
    int hard_stop_after_s; /* bound on an old worker after a reload (its connections' time) */
    int max_reloads;       /* ... and on the later reloads it survives (mworker-max-reloads) */
    bool ipv6;             /* the pod has IPv6: the outbound listener binds [::1] too */
    bool access_log_all;   /* log every request, not only decisions and errors (--access-log) */
};

/* /var/lib/weft/{pod.pem,bundle.pem}, 15006/15001/15090, maxconn 4096, 512 per peer,
 * hard-stop-after 3600 s, max reloads 25. */
void agent_render_opts_init(struct agent_render_opts *o);

struct agent_render_out {
    struct buf config;       /* haproxy.cfg */
    struct buf outbound_map; /* <run_dir>/outbound.map: "ip:port backend" lines */
    /* What may change without a reload, for the runtime API: [{"kind": "ssl-cert"|"ca-file"|
     * "map", "file": path}, {"kind": "server", "backend", "server", "weight", "addr", "args",
     * "line"}...]: every server of an outbound backend, with what `add server` needs (addr
     * "ip:port" or "[ip]:port", args the TLS keywords or "") and its configuration line. */
    json_t *runtime;
};
void agent_render_out_release(struct agent_render_out *out);

/*
 * Render a configuration document (docs/proxy-config.md, schemaVersion 1). Pure: no I/O. On
 * success fills *out (release with agent_render_out_release). Errors: ERR_INVALID (a field the
 * document gets wrong, named by its JSON path in diag), ERR_UNSUPPORTED (a valid document this
 * renderer cannot express: another schemaVersion), -ENOMEM. *out is left
 * empty on error. Thread-safe.
 */
int agent_render(const json_t *doc, const struct agent_render_opts *o, struct agent_render_out *out,
                 struct diag *diag) WUR;

/* ---- weft-agent: the HAProxy driver (agent/haproxy.c) -------------------------------------- */

/*
 * How the driver reaches HAProxy. The real table (agent_haproxy_real_ops) runs the haproxy
 * binary and talks to its sockets; tests plug in a fake. Each call blocks (a check takes up to
 * half a second with a large configuration): the agent makes them on a worker thread, one at a
 * time (the driver's lock). diag receives HAProxy's own words on failure.
 */
struct agent_haproxy_ops {
    /* `haproxy -c -f cfg_path`: 0, or ERR_INVALID with HAProxy's ALERT lines in diag. */
    int (*check)(void *ctx, const char *cfg_path, struct diag *diag);
    /* Start the master (master-worker mode, master socket master_sock) with cfg_path; *pid is
     * the master's. 0 or a negative errno. */
    int (*start)(void *ctx, const char *cfg_path, const char *master_sock, int *pid);
    /* One command on a CLI socket (the stats socket or the master socket); the answer, capped,
     * into reply. 0 or a negative errno (-ETIMEDOUT, -ECONNREFUSED...). */
    int (*cmd)(void *ctx, const char *sock, const char *command, struct buf *reply);
};
extern const struct agent_haproxy_ops agent_haproxy_real_ops;
/* What agent_haproxy_real_ops reads through ctx (borrowed). */
struct agent_haproxy_real {
    const char *haproxy; /* the binary: "haproxy" (PATH) by default */
    int timeout_ms;      /* per socket command */
    int log_fd;          /* the log pipe's write end, AGENT_LOG_FD in HAProxy; < 0: none */
};

/* What an apply did. */
enum agent_apply_kind {
    AGENT_APPLY_NONE,    /* nothing changed */
    AGENT_APPLY_START,   /* the first configuration: HAProxy started */
    AGENT_APPLY_RUNTIME, /* outbound servers only: added, removed, reweighted (runtime API) */
    AGENT_APPLY_RELOAD,  /* checked with haproxy -c, then a seamless master-worker reload */
};
const char *agent_apply_kind_name(enum agent_apply_kind k);

struct agent_driver;

/*
 * A driver for one HAProxy whose files live under opts->run_dir (haproxy.cfg, outbound.map,
 * admin.sock, master.sock) and opts->cert_file / ca_file. ops and ctx are borrowed for the
 * driver's life; opts is copied. Nothing runs until the first apply. 0 or -ENOMEM.
 */
int agent_driver_new(const struct agent_haproxy_ops *ops, void *ctx,
                     const struct agent_render_opts *opts, struct agent_driver **out) WUR;
/* Does not stop HAProxy (agent_driver_stop does). NULL is fine. */
void agent_driver_free(struct agent_driver *d);

/*
 * Make HAProxy run `r` (a full rendering of the current state). The first call writes the
 * files, checks them and starts HAProxy. Later calls compare with the last good rendering:
 * when they differ only in the servers of outbound backends (endpoints added or removed,
 * weights, an endpoint's identity: it is named after it, so a new identity is another server)
 * the difference goes through the runtime API with no reload: `add server` then `set server
 * ... state ready`, `set server ... weight`, `set server ... state maint` then `del server`
 * (refused while connections remain: the server stays in maintenance, taking no new request,
 * and is deleted by a later apply or agent_driver_sweep). The files are rewritten too, so that
 * a later reload or restart runs the same state. Anything else: the new files are checked with
 * `haproxy -c` and HAProxy reloads through the master socket. A configuration HAProxy refuses
 * returns ERR_INVALID with HAProxy's message in diag: the last good files are put back and keep
 * serving. A failing runtime command falls back to a reload. *kind says what was done (written
 * on success). Thread-safe (serialized by the driver's lock).
 */
int agent_driver_apply(struct agent_driver *d, const struct agent_render_out *r,
                       enum agent_apply_kind *kind, struct diag *diag) WUR;

/*
 * The pod's certificate (chain_pem then key_pem, one PEM, 0600 at opts->cert_file) and the
 * trust bundle (opts->ca_file), written atomically. When HAProxy runs and the bundle is the one
 * it holds, the certificate goes through the runtime API (`set ssl cert`/`commit ssl cert`, no
 * reload). A new bundle is never committed through the runtime API (HAProxy 2.6.12's
 * `commit ssl ca-file` breaks later certificate commits and then crashes the worker: see
 * haproxy.c): both files are written, checked with `haproxy -c` and loaded by one seamless
 * reload; if HAProxy refuses them the last good files are put back. key_pem is never logged and
 * never put in diag. 0, or a negative code with diag.
 */
int agent_driver_set_identity(struct agent_driver *d, const char *chain_pem, const char *key_pem,
                              const char *bundle_pem, struct diag *diag) WUR;

/*
 * A new trust bundle alone (weftd's `trust` message on the config stream, between renewals):
 * nothing when it equals the installed one; otherwise written, checked and loaded by a seamless
 * reload as above (*reloaded says whether one happened; may be NULL). Before HAProxy runs, the
 * file only. 0, or a negative code with diag (the last good bundle kept).
 */
int agent_driver_set_trust(struct agent_driver *d, const char *bundle_pem, bool *reloaded,
                           struct diag *diag) WUR;

/* What the driver did since it was made (for the agent's metrics). */
struct agent_driver_stats {
    unsigned long reloads;         /* seamless reloads HAProxy's master counted */
    unsigned long reload_failures; /* reloads refused or timed out */
    unsigned long bundle_reloads;  /* of the reloads: for a new trust bundle */
    unsigned long runtime_applies; /* configurations applied through the runtime API */
    unsigned long cert_swaps;      /* certificates committed through the runtime API */
};
void agent_driver_get_stats(struct agent_driver *d, struct agent_driver_stats *out);

/* A whole (small) file into *out (NUL-terminated, free(); wiped on error). 0 or -errno. */
int agent_read_file(const char *path, char **out) WUR;

/* Whether a first configuration has been applied, and the master's PID (0: none running). */
bool agent_driver_configured(struct agent_driver *d);
int agent_driver_pid(struct agent_driver *d);

/*
 * The master exited (the agent reaps it): start it again with the last good files. 0 or a
 * negative code with diag. Thread-safe.
 */
int agent_driver_restart(struct agent_driver *d, struct diag *diag) WUR;

/* Delete the removed servers HAProxy kept while they had connections, where it now lets go.
 * Blocking (one command per such server); thread-safe. */
void agent_driver_sweep(struct agent_driver *d);

/* Whether HAProxy answers `show info` on its stats socket. Thread-safe. */
bool agent_driver_healthy(struct agent_driver *d);

/* ---- weft-agent: metrics on 15020 (agent/metrics.c) ------------------------------------- */

enum agent_stream_state {
    AGENT_STREAM_NONE, /* no stream (--config-file), or not started yet */
    AGENT_STREAM_CONNECTED,
    AGENT_STREAM_DISCONNECTED,
    AGENT_STREAM_REJECTED,
};

/* The agent's own numbers for a scrape, gathered on its loop. */
struct agent_metrics {
    bool ready, haproxy_up, haproxy_scrape_ok;
    time_t cert_not_after; /* 0: none yet */
    unsigned long cert_ok, cert_errors;
    unsigned bundle_roots;
    unsigned long trust_updates;
    enum agent_stream_state stream_state;
    unsigned long stream_connects;
    unsigned long applied[4]; /* by enum agent_apply_kind */
    unsigned long nacks, restarts;
    struct agent_driver_stats drv;
};

/* Append the agent's families (weft_agent_*) in Prometheus text format 0.0.4. 0 or -ENOMEM. */
int agent_metrics_text(const struct agent_metrics *m, struct buf *b) WUR;

/*
 * Whether text (len bytes, HAProxy's exporter answer) may be appended to the agent's families:
 * complete lines only, no NUL, and every sample a haproxy_* family (so that nothing can
 * shadow or break the agent's own). 0 or ERR_INVALID.
 */
int agent_metrics_check_haproxy(const char *text, size_t len) WUR;

/* A macro's value as a string literal (a limit in a metric's HELP text). */
#define AGENT_STR_(x) #x
#define AGENT_STR(x) AGENT_STR_(x)

/* ---- counters by series, bounded (agent/series.c): access.c's and grpc.c's ---------------- */

struct agent_series {
    struct map c;                  /* "<key>" -> unsigned long long * */
    size_t max;                    /* at most this many series */
    unsigned long long lines, bad; /* log lines read; those not wholly counted */
};
void agent_series_init(struct agent_series *s, size_t max);
void agent_series_release(struct agent_series *s);
/* key's counter raised by `by` (a new key starts at 0): 0, ERR_INVALID past max series, or
 * -ENOMEM. */
int agent_series_add(struct agent_series *s, const char *key, unsigned long long by) WUR;
/* One series' sample line for key's value v. */
typedef int agent_series_line_fn(struct buf *b, const char *key, unsigned long long v);
/* head (the series' HELP and TYPE), a line per series in key order, then lines_metric{result=
 * "ok"|"bad"} with lines_help. */
int agent_series_text(const struct agent_series *s, struct buf *b, const char *head,
                      agent_series_line_fn *line, const char *lines_metric,
                      const char *lines_help) WUR;

/* The agent's log pipe (docs/agent.md, "Access decisions"): HAProxy inherits its write end as
 * this descriptor (haproxy.c), and the frontends whose lines the agent counts log to it with
 * "log fd@" AGENT_STR(AGENT_LOG_FD) " len " AGENT_STR(AGENT_LOG_LINE_MAX) (render.c); main.c
 * reads the other end. A write of at most PIPE_BUF (4096) bytes to a pipe is atomic, so the
 * lines of every worker (old ones included) never interleave. */
#define AGENT_LOG_FD 3
#define AGENT_LOG_LINE_MAX 4096
/* The pipe's capacity (F_SETPIPE_SZ; /proc/sys/fs/pipe-max-size is 1 MB by default). */
#define AGENT_LOG_PIPE_SIZE (1 << 20)
/* The log pipe's bytes cut into lines ('\n' ends each; the pipe carries HAProxy's lines whole,
 * at most AGENT_LOG_LINE_MAX bytes each with their '\n'). A line that does not fit is handed
 * on as an empty one when its end arrives (counted as neither a decision nor a gRPC line). */
struct agent_lines {
    char part[AGENT_LOG_LINE_MAX]; /* the start of a line whose end has not arrived */
    size_t len;
    bool skip; /* part overflowed: the rest of that line is dropped */
};
typedef void agent_lines_fn(void *ctx, const char *line, size_t len);
/* Every line completed by p[0..n) to fn (without its '\n'); the rest kept for the next call. */
void agent_lines_feed(struct agent_lines *l, const char *p, size_t n, agent_lines_fn *fn,
                      void *ctx);

/* ---- the inbound listener's access decisions (agent/access.c) ----------------------------- */

/* At most this many (action, policy) series are counted. */
#define AGENT_ACCESS_MAX 4096

/* The value of the last " <name>=" field in line[0..len) (name with its '='), up to the next
 * space or the end: *n bytes. NULL when absent. */
const char *agent_log_field(const char *line, size_t len, const char *name, size_t *n);

struct agent_access;
int agent_access_new(struct agent_access **out) WUR;
void agent_access_free(struct agent_access *a);
/* One inbound log line (render.c's log-format, ending "denied=<ns>/<p> audit=<ns>/<p>;..."):
 * its decisions counted. false when the line is not one (a TLS handshake error line, a cut
 * line). */
bool agent_access_line(struct agent_access *a, const char *line, size_t len);
/* After a document is applied: its Deny and Audit policies (and <ns>/default where a port
 * denies by default, or in mode deny) listed at 0, the counters of the others dropped. */
int agent_access_doc(struct agent_access *a, const json_t *doc) WUR;
/* weft_agent_access_decisions_total and weft_agent_access_log_lines_total, sorted. */
int agent_access_text(const struct agent_access *a, struct buf *b) WUR;

/* ---- gRPC status codes on grpc ports (agent/grpc.c) --------------------------------------- */

/* The Lua filter HAProxy loads from <run_dir>/AGENT_GRPC_LUA when the document has a grpc port
 * (render.c writes the lua-load line, the driver the file). */
#define AGENT_GRPC_LUA "grpc.lua"
extern const char agent_grpc_lua[];
/* At most this many (direction, service, code) series; a service label is at most this long. */
#define AGENT_GRPC_MAX 2048
#define AGENT_GRPC_SERVICE_MAX 600

struct agent_grpc;
int agent_grpc_new(struct agent_grpc **out) WUR;
void agent_grpc_free(struct agent_grpc *g);
/* One log line from the log pipe: when it is a grpc port's response ("grpc=<code>
 * grpc_call=<inbound|outbound>/<namespace>/<service>", render.c), counted, and true. */
bool agent_grpc_line(struct agent_grpc *g, const char *line, size_t len);
/* weft_agent_grpc_responses_total and weft_agent_grpc_log_lines_total, sorted. */
int agent_grpc_text(const struct agent_grpc *g, struct buf *b) WUR;

/* ---- weft-agent: certificate timing (agent/identity.c) ------------------------------------- */

/*
 * When to renew a certificate received at `now` that expires at not_after: at half the
 * remaining lifetime, minus a jitter of up to a tenth of it (rnd in [0, 1)), so that pods
 * given certificates together do not renew together. Milliseconds from now, at least 1000.
 */
long agent_renew_delay_ms(time_t now, time_t not_after, double rnd);
/*
 * The wait before retry number `attempt` (0 = first retry) after a failed request: 1 s
 * doubling to 30 s, times a jitter factor in [0.5, 1) from rnd; never past half the time left
 * before not_after when a certificate is held (not_after 0: none), and at least 200 ms.
 */
long agent_retry_delay_ms(unsigned attempt, time_t now, time_t not_after, double rnd);

/* ---- weft-agent: the pod's certificate from weftd (agent/identity.c) ------------------------ */

struct agent_cert_req {
    const char *url;        /* https://<control plane>/v1/certificates */
    const char *token_file; /* the projected ServiceAccount token (audience weft), read each time */
    const char *ca_file;    /* verifies weftd's serving certificate (the weft-root-ca bundle) */
    const char *trust_pem;  /* NULL, or the newest bundle weftd sent (answer or stream): trusted
                             * too, so that weftd's certificate from a new root verifies before
                             * the mounted ConfigMap catches up */
    long timeout_ms;        /* the whole request */
};

/* A certificate and its key; release with agent_cert_release (wipes the key). */
struct agent_cert {
    char *chain_pem;  /* leaf, then intermediates */
    char *key_pem;    /* PKCS#8, made here, never leaves the process but into HAProxy's file */
    char *bundle_pem; /* every root weftd trusts */
    time_t not_after;
    char spiffe_id[2049];
    char fingerprint[65];
    char pod_namespace[64], pod_name[254], pod_uid[64]; /* the pod extension; "" when absent */
};
void agent_cert_release(struct agent_cert *c);

/*
 * A fresh ECDSA P-256 key made in memory (ca_csr_new), its CSR sent with the token to weftd,
 * the answer checked (the chain's leaf holds this key; a bundle). Blocking (key generation and
 * one HTTPS request): run on a worker thread. 0 with *out filled, or a negative code with diag
 * (weftd's own error text when it answered one; the token is never put in diag).
 */
int agent_cert_fetch(const struct agent_cert_req *req, struct agent_cert *out,
                     struct diag *diag) WUR;

/* ---- weft-agent: app probes (agent/health.c) ------------------------------------------------ */

/*
 * Run one probe of WEFT_APP_PROBES (docs/injection.md, "Probes"): spec is the value for one
 * /app-health/... path ({"httpGet": {scheme, port, path, httpHeaders}} | {"tcpSocket": {port}}
 * | {"grpc": {port, service}}, "timeoutSeconds"). Over loopback (127.0.0.1), which weft-init
 * does not redirect. Blocking, bounded by timeoutSeconds: run on a worker. Returns 0 when the
 * app passes (HTTP 200-399, the TCP connect, gRPC SERVING), else a negative code with why in
 * diag; ERR_INVALID for a spec this cannot run.
 */
int agent_probe_run(const json_t *spec, struct diag *diag) WUR;

#endif
