/*
 * push.h - the config stream: weftd pushes each proxy's configuration document to the agent in
 * that pod over one WebSocket with mutual TLS (protocol: docs/config-stream.md).
 *
 * Three parts:
 *   - the codec: push_msg_parse/encode and push_doc_canonical (canonical JSON + SHA-256 hash);
 *   - the server (weftd): push_server_*;
 *   - the client (weft-agent): push_client_*.
 *
 * Both ends run libwebsockets as a foreign loop on the caller's libuv loop: every function and
 * every callback runs on that loop's thread. Callbacks must not free the handle that called them.
 * push_server_free and push_client_free release asynchronously: keep running the loop until
 * uv_run returns (as with uv_close) before closing it.
 */
#ifndef WEFT_PUSH_H
#define WEFT_PUSH_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/err.h"
#include "push/push_types.h"

/* --- codec --------------------------------------------------------------------------------- */

/*
 * Decode one frame into out (zeroed first; release with push_msg_release). Unknown fields are
 * ignored. Returns 0, ERR_PARSE (not a JSON object), ERR_INVALID (unknown type, a required field
 * missing or of the wrong type, a string over its limit, a hash that is not 64 lowercase hex
 * digits, a version of 0) or -ENOMEM; out is left zeroed on failure.
 */
int push_msg_parse(const char *text, size_t len, struct push_msg *out) WUR;

/*
 * Encode m as one compact JSON frame into *out (free()). For PUSH_MSG_CONFIG, m->config must be
 * a JSON object's text; it is embedded byte for byte. Returns 0, ERR_INVALID or -ENOMEM.
 */
int push_msg_encode(const struct push_msg *m, char **out) WUR;

/* Free reason and config and zero m. Accepts NULL. */
void push_msg_release(struct push_msg *m);

/*
 * Canonicalize a JSON object document (compact, object keys sorted, UTF-8, duplicate keys
 * refused) and hash it. *canon_out (free()) and hash_out are written only on success. Returns 0,
 * ERR_PARSE (not JSON or duplicate keys), ERR_INVALID (not an object) or -ENOMEM.
 */
int push_doc_canonical(const char *doc_json, char **canon_out,
                       char hash_out[PUSH_HASH_LEN + 1]) WUR;

/* --- server (weftd) ------------------------------------------------------------------------ */

struct push_server;

struct push_server_config {
    const char *listen_addr;  /* IPv4 address to bind; NULL: all */
    int port;                 /* 0: the kernel picks one (push_server_port) */
    const char *cert_pem;     /* serving certificate, then any intermediates */
    const char *key_pem;      /* its private key */
    const char *trust_pem;    /* CA bundle that client certificates must chain to */
    unsigned ping_interval_s; /* 0: PUSH_PING_INTERVAL_S_DEFAULT */
    unsigned debounce_ms;     /* coalescing window for push_server_send; 0: none */
    unsigned hello_timeout_s; /* 0: 10; a stream without hello is closed after this */
    /* Bounds (0: the default in brackets). A connection over a cap is closed at accept, but at
     * max_handshakes the server stops accepting instead (connections wait in the kernel's
     * listen backlog until one of those is past its hello or gone). */
    unsigned max_conns;           /* connections at once, handshakes included [16384] */
    unsigned max_conns_per_addr;  /* from one client address [64] */
    unsigned handshake_timeout_s; /* TLS handshake and WebSocket upgrade [10] */
    unsigned max_handshakes;      /* connections before an accepted hello, at once [512] */
    /* The newest protocol served: 0 or 2 both (v2 to agents that offer it), 1 v1 only. */
    unsigned max_protocol;
};

/* What a connecting agent claims (hello) and proves (its verified client certificate). */
struct push_peer {
    const char *ns, *name, *uid; /* from hello */
    const char *agent;           /* agent version from hello */
    const char *last_hash;       /* from hello; "" when absent */
    const char *spiffe_id;       /* the certificate's URI SAN starting "spiffe://"; "" if none */
    const char *cert_pem;        /* the verified client certificate (leaf) as PEM; "" if none */
};

/* Filled by on_hello to reject: a stable CamelCase code and a human-readable reason. */
struct push_reject {
    char code[PUSH_CODE_MAX + 1];
    char reason[256];
};

struct push_server_ops {
    /*
     * Required. Decide on a hello (the owner checks the pod exists with that uid and that its
     * ServiceAccount identity equals peer->spiffe_id). Return 0 to accept; nonzero to reject
     * after filling rej (an empty code becomes "Rejected"): weftd sends `error` and closes 1008.
     */
    int (*on_hello)(void *arg, const struct push_peer *peer, struct push_reject *rej);
    /* Optional. key is "ns/name"; strings are borrowed for the call. */
    void (*on_ack)(void *arg, const char *key, uint64_t version, const char *hash);
    void (*on_nack)(void *arg, const char *key, uint64_t version, const char *hash,
                    const char *reason);
    /* Optional. An accepted stream ended (not called from push_server_free). */
    void (*on_disconnect)(void *arg, const char *key);
    /*
     * Optional. The proxy ACKed the document that a change (push_server_send replacing its
     * document) made current, seconds after that call; once per change, not for a proxy's first
     * document nor for a document superseded before it was ACKed.
     */
    void (*on_converged)(void *arg, const char *key, double seconds);
};

/*
 * Listen on cfg's address with mTLS. cfg strings are copied; ops is copied; arg is passed to
 * every op. Returns 0 and *out, -EINVAL (missing field, no on_hello, listen_addr not an IPv4
 * address), ERR_INVALID (PEM that does not load, key not matching), a negative errno from
 * binding (-EADDRINUSE), -EIO (libwebsockets failed) or -ENOMEM. Sets libwebsockets' log
 * (process-wide) to errors and warnings, written through core/log.
 */
int push_server_new(uv_loop_t *loop, const struct push_server_config *cfg,
                    const struct push_server_ops *ops, void *arg, struct push_server **out) WUR;

/* The TCP port the server listens on. */
int push_server_port(const struct push_server *s);

/*
 * Replace the serving certificate and key (rotation); new handshakes use them, open streams
 * continue. Returns 0, -EINVAL or ERR_INVALID (unparsable PEM or key not matching); on failure
 * the old pair stays.
 */
int push_server_set_certs(struct push_server *s, const char *cert_pem, const char *key_pem) WUR;

/*
 * Replace the trust bundle for new handshakes, and send it (`trust`) to every accepted stream;
 * a stream accepted later gets it after its hello, before any `config`. A bundle equal to the
 * current one sends nothing. Returns 0, -EINVAL, ERR_INVALID or -ENOMEM (the old one stays).
 */
int push_server_set_trust(struct push_server *s, const char *trust_pem) WUR;

/*
 * Make doc_json the current document of the proxy key "ns/name" (copied). Nothing is sent if its
 * canonical hash equals the current one. Otherwise the connected stream (if any) gets one
 * `config` with the newest document, unless that stream already has that hash: at once when the
 * proxy's last change went out at least debounce_ms ago (a change after a quiet period), else
 * when the debounce window that the last one opened closes (a burst: later documents only
 * replace the pending one). A slow peer never queues more than the newest document. Returns 0,
 * ERR_PARSE or ERR_INVALID (doc is not a JSON object, key is not "ns/name") or -ENOMEM.
 */
int push_server_send(struct push_server *s, const char *key, const char *doc_json) WUR;

/*
 * Record that every app container of proxy key's pod ("ns/name") has exited and none will run
 * again (reason says which and why; copied, cut at PUSH_REASON_MAX bytes). The proxy's stream,
 * the current one or the next accepted one, gets one `appsExited` before any `config`. Once
 * said, it stays said until push_server_forget. Returns 0, ERR_INVALID (bad key) or -ENOMEM.
 */
int push_server_apps_exited(struct push_server *s, const char *key, const char *reason) WUR;

/*
 * push_server_send with the document as a JSON object (borrowed for the call): the same
 * canonical text and hash without serializing and parsing it first (weftd's compiler hands out
 * json_t documents). Same returns; ERR_INVALID when doc is not an object.
 */
struct json_t;
int push_server_send_json(struct push_server *s, const char *key, const struct json_t *doc) WUR;

/* Counters of the server's work since push_server_new. */
struct push_server_stats {
    uint64_t changes_immediate;  /* changed documents released at once (after a quiet period) */
    uint64_t changes_deferred;   /* changes held to the end of a debounce window */
    uint64_t changes_superseded; /* changes replaced by a newer one inside the window */
    uint64_t configs_sent;       /* `config` frames written */
    uint64_t apps_exited_sent;   /* `appsExited` frames written */
    uint64_t trusts_sent;        /* `trust` frames written (one per stream and bundle) */
    uint64_t acks, nacks;
    uint64_t hellos_accepted, hellos_rejected;
    uint64_t refused_max_conns, refused_per_addr; /* connections closed at accept by the caps */
    uint64_t refused_handshakes; /* closed at accept: max_handshakes were under way */
    uint64_t accept_pauses;      /* times accepting stopped at max_handshakes (backlog waits) */
    uint64_t accept_paused_ms;   /* time spent not accepting, in all */
    int accept_paused;           /* not accepting now */
    uint64_t bytes_sent;         /* payload bytes of `config` and `blocks` frames */
    uint64_t config_bytes;       /* of them in `config` frames (v1 and v2) */
    uint64_t blocks_bytes;       /* of them in `blocks` frames (v2 answers to `need`) */
    uint64_t blocks_sent;        /* blocks written, inline in a `config` or in `blocks` */
    uint64_t blocks_frames;      /* `blocks` frames written */
    uint64_t needs;              /* `need` frames received */
    unsigned conns;              /* connections open now (handshakes included) */
    unsigned streams;            /* accepted streams open now */
    unsigned streams_v2;         /* of them speaking protocol v2 */
    size_t blocks_held;          /* distinct blocks held for current and last-sent documents */
    size_t block_bytes_held;     /* their canonical text */
};
void push_server_stats(const struct push_server *s, struct push_server_stats *out);

/* Forget a proxy's document and state (its pod is gone). An open stream stays open. */
void push_server_forget(struct push_server *s, const char *key);

enum push_sync {
    PUSH_SYNC_DISCONNECTED, /* no accepted stream */
    PUSH_SYNC_PENDING,      /* connected; current document not (yet) acknowledged */
    PUSH_SYNC_SYNCED,       /* connected; the agent serves the current document */
    PUSH_SYNC_REJECTED,     /* connected; the agent NACKed the current document */
};

/* Per-proxy sync state; strings are borrowed for the visit and "" when unset. */
struct push_proxy_state {
    const char *key; /* "ns/name" */
    enum push_sync sync;
    int connected;
    const char *spiffe_id;    /* of the current or last accepted stream */
    int64_t connected_ms;     /* Unix time in ms the current or last stream was accepted; 0 */
    const char *desired_hash; /* of the newest push_server_send document */
    uint64_t sent_version;    /* last `config` version on the current or last stream; 0 none */
    const char *sent_hash;
    uint64_t acked_version; /* 0 when the hash was reported by hello's lastHash */
    const char *acked_hash; /* last ACKed hash, or hello's lastHash when it was current */
    int in_flight; /* a config sent on the current stream is not yet ACKed or NACKed: what the
                    * proxy serves is not known (sync is pending), whatever acked_hash says */
    uint64_t nack_version;
    const char *nack_hash;
    const char *nack_reason; /* last NACK; kept after later ACKs */
    int64_t nack_time_ms;    /* Unix time in ms of the last NACK; 0 none */
    const char *apps_exited; /* push_server_apps_exited's reason; "" while the apps run */
    int apps_exited_sent;    /* the current stream got `appsExited` */
    int send_buffered;       /* bytes written to the stream wait in libwebsockets for the socket */
    int64_t idle_ms;         /* since the last frame from the agent on the current stream; -1 */
};

typedef void push_state_visit_fn(void *arg, const struct push_proxy_state *st);

/* Call fn for every known proxy, in no particular order. fn must not call push_server_*. */
void push_server_sync_state(struct push_server *s, push_state_visit_fn *fn, void *arg);

/* Call fn for one proxy. Returns 0 or ERR_NOTFOUND. */
int push_server_proxy_state(struct push_server *s, const char *key, push_state_visit_fn *fn,
                            void *arg) WUR;

/*
 * Close every stream (close frame 1001) and stop listening; no op runs afterwards. Returns at
 * once; the listening socket and memory go over the next loop turns (up to ~2 s when a peer does
 * not read), so run the loop before reusing the port. Not from inside an op. Accepts NULL.
 */
void push_server_free(struct push_server *s);

/* --- client (weft-agent) ------------------------------------------------------------------- */

struct push_client;

/* on_config's answer "not yet": push_client_answer() gives the verdict. A value no error
 * code takes (they are negative; callers NACK with small positive values too). */
#define PUSH_CONFIG_LATER 0x4c415445 /* "LATE" */

struct push_client_config {
    const char *host; /* weftd address to connect to */
    int port;
    const char *server_name; /* SNI and the name weftd's certificate must carry; NULL: host */
    const char *cert_pem;    /* workload certificate, then any intermediates */
    const char *key_pem;
    const char *trust_pem; /* bundle weftd's certificate must chain to */
    const char *pod_ns, *pod_name, *pod_uid;
    const char *agent_version;
    const char *last_hash;    /* hash of the configuration served at start; NULL or "" none */
    unsigned ping_interval_s; /* 0: PUSH_PING_INTERVAL_S_DEFAULT */
    unsigned backoff_min_ms;  /* 0: PUSH_BACKOFF_MIN_MS_DEFAULT */
    unsigned backoff_max_ms;  /* 0: PUSH_BACKOFF_MAX_MS_DEFAULT */
    unsigned max_protocol;    /* newest protocol offered: 0 or 2 (v2, falling back to v1), 1 */
    size_t block_cache_bytes; /* v2: unpinned blocks kept; 0: PUSH_BLOCK_CACHE_BYTES_DEFAULT */
};

enum push_client_state {
    PUSH_CLIENT_CONNECTED,    /* stream open, hello sent */
    PUSH_CLIENT_REJECTED,     /* weftd sent `error` (code, reason set) */
    PUSH_CLIENT_DISCONNECTED, /* stream closed or connect failed; retry in retry_ms */
};

struct push_client_event {
    enum push_client_state state;
    const char *code;   /* REJECTED: error code; DISCONNECTED: "" */
    const char *reason; /* REJECTED: weftd's reason; DISCONNECTED: what failed, or "" */
    unsigned retry_ms;  /* DISCONNECTED: delay before the next attempt */
};

struct push_client_ops {
    /*
     * Required. A `config` arrived whose hash matches its document (canonical JSON text).
     * Return 0 to ACK (the hash becomes lastHash); nonzero to NACK with reason (NUL-terminated
     * in reason_size bytes; empty: err_str of the return value); or PUSH_CONFIG_LATER to answer
     * later with push_client_answer() (the document is applied off the loop).
     */
    int (*on_config)(void *arg, uint64_t version, const char *hash, const char *doc, char *reason,
                     size_t reason_size);
    /* Optional. */
    void (*on_state)(void *arg, const struct push_client_event *ev);
    /*
     * Optional. weftd says the pod's app containers have exited for good (`appsExited`; reason
     * is weftd's, borrowed for the call). Called once per stream that carries it, so possibly
     * again after a reconnect.
     */
    void (*on_apps_exited)(void *arg, const char *reason);
    /*
     * Optional. weftd's trust bundle (`trust`: after the hello and whenever weftd's roots
     * change), already checked to hold certificates and installed for the stream's own next
     * handshakes. bundle_pem is borrowed for the call.
     */
    void (*on_trust)(void *arg, const char *bundle_pem);
};

/*
 * Start connecting (first attempt on the next loop turn). cfg strings are copied. Returns 0 and
 * *out, -EINVAL (missing field or on_config), ERR_INVALID (PEM that does not load, key not
 * matching, empty namespace or name, a field over its limit, last_hash not a hash), -EIO or
 * -ENOMEM.
 */
int push_client_new(uv_loop_t *loop, const struct push_client_config *cfg,
                    const struct push_client_ops *ops, void *arg, struct push_client **out) WUR;

/*
 * Rotate the workload certificate/key and, when trust_pem is not NULL, the trust bundle. An open
 * stream is closed normally (1000) and reopened at once with the new certificate. Returns 0,
 * -EINVAL or ERR_INVALID (the old material stays).
 */
int push_client_set_certs(struct push_client *c, const char *cert_pem, const char *key_pem,
                          const char *trust_pem) WUR;

/*
 * The verdict on a document on_config deferred (PUSH_CONFIG_LATER): rc 0 ACKs it (its hash
 * becomes lastHash), nonzero NACKs it with reason (NULL or "": err_str(rc)). Sent when the
 * stream is open (a stream reopened since still hears it: the hash names what the proxy runs);
 * otherwise only lastHash follows. A document superseded before it was applied may go
 * unanswered: weftd compares the last answer with its newest document. 0, -EINVAL or -ENOMEM.
 */
int push_client_answer(struct push_client *c, uint64_t version, const char *hash, int rc,
                       const char *reason) WUR;

/* Hash of the last ACKed configuration (sent as lastHash in every hello); "" none. */
const char *push_client_last_hash(const struct push_client *c);

/* The protocol of the open stream (1 or 2, as weftd chose), 0 while none is open. */
int push_client_protocol(const struct push_client *c);

/* v2 block cache: blocks held (pinned or spare) and their bytes. */
void push_client_cache_stats(const struct push_client *c, size_t *nblocks, size_t *bytes);

/*
 * Close the stream (close frame 1001) and stop reconnecting; no op runs afterwards. Memory goes
 * over the next loop turns. Not from inside an op. Accepts NULL.
 */
void push_client_free(struct push_client *c);

#endif
