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

#include "core/buf.h"
#include "core/err.h"
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
 * ERR_INVALID with a message naming the option and the item; the plan keeps its old list.
 */
int agent_ipt_plan_set(struct agent_ipt_plan *p, const char *what, const char *value, char *msg,
                       size_t msglen) WUR;

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
 * without --noflush (atomic; other tables are untouched). ERR_UNSUPPORTED with a message when
 * the saved nat table cannot be represented by iptables (nft rules written by another tool).
 */
int agent_ipt_merge(const char *saved, const char *rules, struct buf *out, char *msg,
                    size_t msglen) WUR;

/* ---- the renderer: document -> HAProxy 2.6 configuration ----------------------------------- */

/* Where things are on the pod and the listeners' settings (agent_render_opts_init: defaults). */
struct agent_render_opts {
    const char *run_dir;   /* admin.sock (runtime API) and outbound.map live here */
    const char *cert_file; /* the pod's certificate chain and key, one PEM (crt) */
    const char *ca_file;   /* the trust bundle (ca-file) */
    int inbound_port;      /* 15006 */
    int outbound_port;     /* 15001 */
    int metrics_port;      /* 15090 */
    int maxconn;           /* per process and per listener */
    int hard_stop_after_s; /* bound on an old worker after a reload */
    bool ipv6;             /* the pod has IPv6: the outbound listener binds [::1] too */
};

/* /var/lib/weft/{pod.pem,bundle.pem}, 15006/15001/15090, maxconn 4096, hard-stop-after 30 s. */
void agent_render_opts_init(struct agent_render_opts *o);

struct agent_render_out {
    struct buf config;       /* haproxy.cfg */
    struct buf outbound_map; /* <run_dir>/outbound.map: "ip:port backend" lines */
    /* What may change without a reload, for the runtime API: [{"kind": "ssl-cert"|"ca-file"|
     * "map", "file": path}, {"kind": "server", "backend", "server", "weight"}...]. */
    json_t *runtime;
};
void agent_render_out_release(struct agent_render_out *out);

/*
 * Render a configuration document (docs/proxy-config.md, schemaVersion 1). Pure: no I/O. On
 * success fills *out (release with agent_render_out_release). Errors: ERR_INVALID (a field the
 * document gets wrong, named by its JSON path in msg), ERR_UNSUPPORTED (a valid document this
 * renderer cannot express: another schemaVersion, permissive mode), -ENOMEM. *out is left
 * empty on error. Thread-safe.
 */
int agent_render(const json_t *doc, const struct agent_render_opts *o, struct agent_render_out *out,
                 char *msg, size_t msglen) WUR;

#endif
