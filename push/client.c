/*
 * client.c - the weft-agent side of the config stream.
 *
 * One libwebsockets context per client (client-only, no listener) on the caller's libuv loop.
 * State machine: CONNECTING -> OPEN -> (closed) WAITING -> CONNECTING ... The backoff resets
 * after a stream that weftd accepted; a rejected or failed attempt doubles it.
 */
#include <errno.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>

#include "core/buf.h"
#include "core/log.h"
#include "push/push.h"
#include "push/push_int.h"
#include "tls/tls.h"

#define RX_MAX (64u * 1024 * 1024) /* one configuration document */
/* A refused connect backs off at most this step: min * 2^2 (2 s by default), see closed(). */
#define REFUSED_STEP 2
#define OUTQ_MAX 16

enum cstate { C_IDLE, C_CONNECTING, C_OPEN, C_WAITING };

struct frame {
    struct frame *next;
    char *text;
};

struct push_client {
    uv_loop_t *loop;
    struct lws_context *ctx;
    SSL_CTX *ssl_ctx; /* ours, given to lws as provided_client_ssl_ctx */
    struct push_client_ops ops;
    void *arg;
    char *host, *server_name;
    int port;
    struct push_msg hello;
    char last_hash[PUSH_HASH_LEN + 1];
    unsigned bmin, bmax, attempt;
    uint64_t rng;
    lws_retry_bo_t retry;
    uint32_t retry_ms[1];
    struct lws_protocols protocols[3];
    unsigned max_protocol;     /* offered: 2 (v2, then v1) or 1 */
    int proto;                 /* negotiated on the open stream: 1 or 2; 0 none */
    struct push__cache *cache; /* v2 blocks, kept across streams */
    uv_timer_t timer;
    struct lws *wsi; /* the current attempt's connection, NULL between attempts */
    enum cstate st;
    int established, rejected, rotating;
    int refused; /* this attempt made no TCP connection (never_connected) */
    char why[256];
    char asm_hash[PUSH_HASH_LEN + 1]; /* of the `config` being assembled (v2) */
    struct frame *qhead, *qtail;
    unsigned qlen;
    struct buf rx;
    int freeing;
    int live; /* connections lws has not destroyed yet */
    uint64_t teardown_deadline;
    int destroy_called, lws_stuck, timer_done;
    unsigned teardown_ticks;
    struct push__fdguard *guard;
};

static uint64_t rng_next(struct push_client *c)
{
    /* xorshift64: jitter only needs to decorrelate agents, not to be unpredictable. */
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    return c->rng;
}

/* Delay for attempt n: d = min(max, min * 2^n), uniformly jittered in [d/2, d]. */
static unsigned backoff_ms(struct push_client *c, unsigned n)
{
    uint64_t d = n >= 32 ? c->bmax : (uint64_t)c->bmin << n;

    if (d > c->bmax)
        d = c->bmax;
    return (unsigned)(d / 2 + rng_next(c) % (d - d / 2 + 1));
}

static void emit(struct push_client *c, enum push_client_state st, const char *code,
                 const char *reason, unsigned retry_ms)
{
    struct push_client_event ev = {st, code, reason, retry_ms};

    if (c->ops.on_state && !c->freeing)
        c->ops.on_state(c->arg, &ev);
}

static void q_clear(struct push_client *c)
{
    while (c->qhead) {
        struct frame *f = c->qhead;

        c->qhead = f->next;
        free(f->text);
        free(f);
    }
    c->qtail = NULL;
    c->qlen = 0;
}

/* Queue a frame (consumes text, even on failure). Oldest answers go first when full. */
static void q_push(struct push_client *c, char *text)
{
    struct frame *f = calloc(1, sizeof(*f));

    if (!f) {
        free(text);
        return;
    }
    f->text = text;
    if (c->qlen >= OUTQ_MAX && c->qhead) {
        struct frame *old = c->qhead;

        c->qhead = old->next;
        if (!c->qhead)
            c->qtail = NULL;
        free(old->text);
        free(old);
        c->qlen--;
    }
    if (c->qtail)
        c->qtail->next = f;
    else
        c->qhead = f;
    c->qtail = f;
    c->qlen++;
    if (c->wsi)
        lws_callback_on_writable(c->wsi);
}

static void q_msg(struct push_client *c, const struct push_msg *m)
{
    char *text = NULL;

    if (push_msg_encode(m, &text) == 0)
        q_push(c, text);
}

static void timer_cb(uv_timer_t *t);

/* Whether wsi's attempt ended without a TCP connection, so nothing reached weftd: the connect
 * was refused (a reset, or an ICMP error) or is still unanswered (its deadline passed: nothing
 * there, or weftd's listen backlog full and the kernel dropping SYNs). */
static int never_connected(struct lws *wsi)
{
    int e = 0;
    struct tcp_info ti;
    socklen_t len = sizeof(e);
    lws_sockfd_type fd = lws_get_socket_fd(wsi);

    if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
        return 0;
    if (e == ECONNREFUSED || e == EHOSTUNREACH || e == ENETUNREACH)
        return 1;
    len = sizeof(ti);
    return e == 0 && getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
           ti.tcpi_state == TCP_SYN_SENT;
}

static void closed(struct push_client *c, const char *why)
{
    unsigned delay;

    if (c->st != C_CONNECTING && c->st != C_OPEN)
        return;
    c->wsi = NULL;
    c->st = C_WAITING;
    c->proto = 0;
    q_clear(c);
    buf_reset(&c->rx);
    if (c->rotating) {
        c->rotating = 0;
        c->attempt = 0;
        delay = 0;
    } else {
        if (c->established && !c->rejected)
            c->attempt = 0;
        /* No TCP connection was made (weftd restarting, no ready endpoint, or its listen
         * backlog full): such an attempt costs weftd nothing, so the agent keeps retrying
         * every second or two rather than climbing to the 30 s cap, and is back soon after
         * weftd listens again. Failures that reached weftd (a failed or timed-out handshake,
         * a connection closed at accept, a rejected hello) climb as before. */
        if (c->refused && c->attempt > REFUSED_STEP)
            c->attempt = REFUSED_STEP;
        delay = backoff_ms(c, c->attempt);
        if (c->attempt < 32)
            c->attempt++;
    }
    if (c->freeing)
        return;
    log_info("msg=\"config stream closed\" reason=\"%s\" retry_ms=%u", why ? why : "", delay);
    uv_timer_start(&c->timer, timer_cb, delay, 0);
    emit(c, PUSH_CLIENT_DISCONNECTED, "", why ? why : "", delay);
}

static void connect_now(struct push_client *c)
{
    struct lws_client_connect_info ci;
    struct lws *wsi;

    memset(&ci, 0, sizeof(ci));
    ci.context = c->ctx;
    ci.address = c->host;
    ci.port = c->port;
    ci.path = PUSH_PATH;
    ci.host = c->server_name;
    ci.origin = c->server_name;
    /* weftd serves the first name of the list it knows; an older one knows only v1 */
    ci.protocol =
        c->max_protocol >= 2 ? PUSH_SUBPROTOCOL_V2 ", " PUSH_SUBPROTOCOL : PUSH_SUBPROTOCOL;
    ci.local_protocol_name = PUSH_SUBPROTOCOL;
    ci.ssl_connection = LCCSCF_USE_SSL;
    ci.retry_and_idle_policy = &c->retry;
    c->st = C_CONNECTING;
    c->established = 0;
    c->rejected = 0;
    c->refused = 0;
    c->why[0] = '\0';
    c->wsi = NULL;
    wsi = lws_client_connect_via_info(&ci);
    if (c->st != C_CONNECTING)
        return; /* failed synchronously and already handled */
    if (!wsi) {
        c->wsi = NULL;
        closed(c, c->why[0] ? c->why : "connect failed");
        return;
    }
    c->wsi = wsi;
}

static void timer_cb(uv_timer_t *t)
{
    struct push_client *c = t->data;

    if (c->st == C_WAITING || c->st == C_IDLE)
        connect_now(c);
}

/* Hand a document whose hash was checked to the owner and answer as it says. */
static void deliver(struct push_client *c, uint64_t version, const char *hash, const char *doc)
{
    char reason[PUSH_REASON_MAX + 1] = "";
    struct push_msg ans;
    int rc;

    memset(&ans, 0, sizeof(ans));
    ans.version = version;
    memcpy(ans.hash, hash, sizeof(ans.hash));
    rc = c->ops.on_config(c->arg, version, hash, doc, reason, sizeof(reason));
    if (rc == PUSH_CONFIG_LATER)
        return;
    reason[sizeof(reason) - 1] = '\0';
    if (rc == 0) {
        ans.type = PUSH_MSG_ACK;
        memcpy(c->last_hash, hash, sizeof(c->last_hash));
        memcpy(c->hello.last_hash, hash, sizeof(c->hello.last_hash));
    } else {
        ans.type = PUSH_MSG_NACK;
        ans.reason = reason[0] ? reason : (char *)(uintptr_t)err_str(rc);
    }
    q_msg(c, &ans);
}

/* What the v2 assembly said: deliver the document, ask for blocks, or NACK the version. */
static void on_assembly(struct push_client *c, const struct push_msg *m, int rc,
                        struct push__asm_out *o)
{
    struct push_msg out;

    memset(&out, 0, sizeof(out));
    out.version = m->version;
    if (rc == PUSH__ASM_DONE) {
        deliver(c, m->version, m->hash[0] ? m->hash : c->asm_hash, o->doc);
    } else if (rc == PUSH__ASM_NEED) {
        out.type = PUSH_MSG_NEED;
        out.hashes = o->need;
        out.nhashes = o->nneed;
        q_msg(c, &out);
    } else if (rc == PUSH__ASM_FAIL) {
        log_warn("msg=\"config refused: %s\" version=%llu", o->reason,
                 (unsigned long long)m->version);
        out.type = PUSH_MSG_NACK;
        memcpy(out.hash, m->hash[0] ? m->hash : c->asm_hash, sizeof(out.hash));
        out.reason = o->reason;
        if (push__is_hash(out.hash))
            q_msg(c, &out);
    }
    free(o->doc);
    free(o->need);
}

static void on_config(struct push_client *c, struct push_msg *m)
{
    char hash[PUSH_HASH_LEN + 1];
    struct push__asm_out o;
    struct push_msg ans;

    memset(&ans, 0, sizeof(ans));
    ans.version = m->version;
    memcpy(ans.hash, m->hash, sizeof(ans.hash));
    log_info("msg=\"config received\" version=%llu hash=%s bytes=%zu",
             (unsigned long long)m->version, m->hash, c->rx.len);
    if (c->proto == 2) {
        memcpy(c->asm_hash, m->hash, sizeof(c->asm_hash));
        on_assembly(c, m, push__cache_config(c->cache, m, &o), &o);
        return;
    }
    if (tls_sha256_hex(m->config, strlen(m->config), hash) < 0) {
        /* not a verdict on the document: the server sends it again after a reconnect */
        ans.type = PUSH_MSG_NACK;
        ans.reason = (char *)(uintptr_t) "OutOfMemory: cannot hash the document";
        q_msg(c, &ans);
        return;
    }
    if (strcmp(hash, m->hash) != 0) {
        ans.type = PUSH_MSG_NACK;
        ans.reason = (char *)(uintptr_t) "HashMismatch: hash does not match the document";
        q_msg(c, &ans);
        return;
    }
    deliver(c, m->version, m->hash, m->config);
}

int push_client_answer(struct push_client *c, uint64_t version, const char *hash, int rc,
                       const char *reason)
{
    char r[PUSH_REASON_MAX + 1];
    struct push_msg ans;

    if (!c || !hash || strlen(hash) != PUSH_HASH_LEN)
        return -EINVAL;
    memset(&ans, 0, sizeof(ans));
    ans.version = version;
    memcpy(ans.hash, hash, sizeof(ans.hash));
    if (rc == 0) {
        ans.type = PUSH_MSG_ACK;
        memcpy(c->last_hash, hash, sizeof(c->last_hash));
        memcpy(c->hello.last_hash, hash, sizeof(c->hello.last_hash));
    } else {
        ans.type = PUSH_MSG_NACK;
        snprintf(r, sizeof(r), "%s", reason && *reason ? reason : err_str(rc));
        ans.reason = r;
    }
    if (c->st == C_OPEN && !c->freeing)
        q_msg(c, &ans);
    return 0;
}

static int on_frame(struct push_client *c)
{
    struct push_msg m;
    int rc = push_msg_parse(c->rx.p, c->rx.len, &m);

    if (rc < 0) {
        snprintf(c->why, sizeof(c->why), "malformed frame from server: %s", err_str(rc));
        return -1;
    }
    if (m.type == PUSH_MSG_CONFIG && (c->proto == 2) != (m.config == NULL)) {
        snprintf(c->why, sizeof(c->why), "a %s config on a %s stream", m.config ? "v1" : "v2",
                 c->proto == 2 ? "v2" : "v1");
        rc = -1;
    } else if (m.type == PUSH_MSG_CONFIG) {
        on_config(c, &m);
    } else if (m.type == PUSH_MSG_BLOCKS && c->proto == 2) {
        struct push__asm_out o;

        on_assembly(c, &m, push__cache_blocks(c->cache, &m, &o), &o);
    } else if (m.type == PUSH_MSG_APPS_EXITED) {
        log_info("msg=\"weftd: the pod's app containers have exited\" reason=\"%s\"", m.reason);
        if (c->ops.on_apps_exited)
            c->ops.on_apps_exited(c->arg, m.reason);
    } else if (m.type == PUSH_MSG_TRUST) {
        /* the stream's own verification follows weftd's roots too */
        if (tls_check_trust(m.bundle) < 0 || tls_set_trust(c->ssl_ctx, m.bundle) < 0) {
            log_warn("msg=\"config stream: weftd's trust bundle holds no usable certificate; "
                     "ignored\"");
        } else if (c->ops.on_trust && !c->freeing) {
            c->ops.on_trust(c->arg, m.bundle);
        }
    } else if (m.type == PUSH_MSG_ERROR) {
        c->rejected = 1;
        snprintf(c->why, sizeof(c->why), "%s: %s", m.code, m.reason);
        log_warn("msg=\"config stream refused\" code=%s reason=\"%s\"", m.code, m.reason);
        emit(c, PUSH_CLIENT_REJECTED, m.code, m.reason, 0);
    } else {
        snprintf(c->why, sizeof(c->why), "unexpected frame from server");
        rc = -1;
    }
    push_msg_release(&m);
    return rc;
}

static int on_writeable(struct push_client *c, struct lws *wsi)
{
    struct frame *f = c->qhead;
    unsigned char *b;
    size_t len;
    int n;

    if (!f) {
        if (!c->rotating)
            return 0;
        return push__ws_close(wsi, LWS_CLOSE_STATUS_NORMAL, "certificate rotation");
    }
    c->qhead = f->next;
    if (!c->qhead)
        c->qtail = NULL;
    c->qlen--;
    len = strlen(f->text);
    b = malloc(LWS_PRE + len);
    if (!b) {
        n = -1;
    } else {
        memcpy(b + LWS_PRE, f->text, len);
        n = lws_write(wsi, b + LWS_PRE, len, LWS_WRITE_TEXT);
    }
    free(b);
    free(f->text);
    free(f);
    if (n < (int)len)
        return -1;
    if (c->qhead || c->rotating)
        lws_callback_on_writable(wsi);
    return 0;
}

static int client_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len)
{
    struct push_client *c = NULL;

    (void)user;
    if (wsi && lws_get_context(wsi))
        c = lws_context_user(lws_get_context(wsi));
    if (!c)
        return 0;
    if (reason == LWS_CALLBACK_WSI_CREATE)
        c->live++;
    if (reason == LWS_CALLBACK_WSI_DESTROY && c->live > 0)
        c->live--;
    if (c->freeing) {
        /* push_client_free ran: close what is open, ignore the rest. */
        if (reason != LWS_CALLBACK_CLIENT_WRITEABLE)
            return 0;
        return push__ws_close(wsi, LWS_CLOSE_STATUS_GOINGAWAY, "agent shutting down");
    }
    switch (reason) {
    case LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION:
        return len ? 0 : 1; /* keep OpenSSL's verdict (len is preverify_ok) */
    case LWS_CALLBACK_CLIENT_FILTER_PRE_ESTABLISH: {
        char proto[32] = "";

        /* the subprotocol weftd chose (the response's headers are readable only here): v2
         * only when it said so; an older weftd says v1 */
        if (lws_hdr_copy(wsi, proto, sizeof(proto), WSI_TOKEN_PROTOCOL) < 0)
            proto[0] = '\0';
        c->proto = strcmp(proto, PUSH_SUBPROTOCOL_V2) == 0 ? 2 : 1;
        return 0;
    }
    case LWS_CALLBACK_CLIENT_ESTABLISHED: {
        if (c->freeing)
            return -1;
        if (!c->proto)
            c->proto = 1;
        c->st = C_OPEN;
        c->established = 1;
        q_msg(c, &c->hello);
        emit(c, PUSH_CLIENT_CONNECTED, "", "", 0);
        lws_callback_on_writable(wsi);
        return 0;
    }
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (c->rx.len + len > RX_MAX) {
            snprintf(c->why, sizeof(c->why), "frame over %u bytes", RX_MAX);
            lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, NULL, 0);
            return -1;
        }
        if (buf_append(&c->rx, in, len) < 0)
            return -1;
        if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
            int rc = on_frame(c);

            buf_reset(&c->rx);
            if (rc < 0) {
                lws_close_reason(wsi, LWS_CLOSE_STATUS_PROTOCOL_ERR, NULL, 0);
                return -1;
            }
        }
        return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return on_writeable(c, wsi);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (!c->why[0] && len >= 2) {
            const unsigned char *p = in;

            snprintf(c->why, sizeof(c->why), "closed by server (%u)", (unsigned)(p[0] << 8 | p[1]));
        }
        return 0;
    case LWS_CALLBACK_WSI_CREATE:
        /* The first event of a new attempt's connection (possibly before connect returns). */
        if (c->st == C_CONNECTING && !c->wsi)
            c->wsi = wsi;
        return 0;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        /* No TCP connection: see never_connected, or connect() failing at once, inside
         * lws_client_connect_via_info (before c->wsi is set; lws has closed the socket then) */
        if (c->st == C_CONNECTING &&
            (wsi == c->wsi ? never_connected(wsi)
                           : !c->wsi && in && strcmp(in, "Unable to connect") == 0))
            c->refused = 1;
        if (c->st == C_CONNECTING && !c->wsi && !c->why[0])
            snprintf(c->why, sizeof(c->why), "%s", in ? (const char *)in : "connect failed");
        if (wsi == c->wsi && !c->why[0])
            snprintf(c->why, sizeof(c->why), "%s", in ? (const char *)in : "connection error");
        if (wsi == c->wsi)
            closed(c, c->why);
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_CLOSED_CLIENT_HTTP:
    case LWS_CALLBACK_WSI_DESTROY:
        /* Whichever comes first ends the attempt; a TLS refusal after the handshake (TLS 1.3)
         * arrives as CLOSED_CLIENT_HTTP, every path ends in WSI_DESTROY. */
        if (wsi == c->wsi)
            closed(c, c->why[0] ? c->why : "closed");
        return 0;
    default:
        return 0;
    }
}

int push_client_new(uv_loop_t *loop, const struct push_client_config *cfg,
                    const struct push_client_ops *ops, void *arg, struct push_client **out)
{
    struct lws_context_creation_info info;
    struct push_client *c = NULL;
    void *loops[1] = {loop};
    unsigned ping;
    int rc;

    if (!loop || !cfg || !ops || !ops->on_config || !cfg->host || cfg->port <= 0 ||
        cfg->port > 65535 || !cfg->cert_pem || !cfg->key_pem || !cfg->trust_pem || !cfg->pod_ns ||
        !cfg->pod_name || !cfg->pod_uid)
        return -EINVAL;
    if (tls_check_identity(cfg->cert_pem, cfg->key_pem) < 0 || tls_check_trust(cfg->trust_pem) < 0)
        return ERR_INVALID;
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    buf_init(&c->rx);
    c->loop = loop;
    c->ops = *ops;
    c->arg = arg;
    c->port = cfg->port;
    c->hello.type = PUSH_MSG_HELLO;
    rc = ERR_INVALID;
    if (!cfg->pod_ns[0] || !cfg->pod_name[0] ||
        push__strlcpy(c->hello.pod.ns, cfg->pod_ns, sizeof(c->hello.pod.ns)) < 0 ||
        push__strlcpy(c->hello.pod.name, cfg->pod_name, sizeof(c->hello.pod.name)) < 0 ||
        push__strlcpy(c->hello.pod.uid, cfg->pod_uid, sizeof(c->hello.pod.uid)) < 0 ||
        push__strlcpy(c->hello.agent, cfg->agent_version ? cfg->agent_version : "",
                      sizeof(c->hello.agent)) < 0 ||
        push__strlcpy(c->last_hash, cfg->last_hash ? cfg->last_hash : "", sizeof(c->last_hash)) <
            0 ||
        (c->last_hash[0] && !push__is_hash(c->last_hash)))
        goto out;
    memcpy(c->hello.last_hash, c->last_hash, sizeof(c->last_hash));
    rc = tls_client_ctx_new(&c->ssl_ctx);
    if (rc)
        goto out;
    rc = tls_set_identity(c->ssl_ctx, cfg->cert_pem, cfg->key_pem);
    if (rc == 0)
        rc = tls_set_trust(c->ssl_ctx, cfg->trust_pem);
    if (rc < 0)
        goto out;
    rc = -ENOMEM;
    c->host = strdup(cfg->host);
    c->server_name = strdup(cfg->server_name ? cfg->server_name : cfg->host);
    if (!c->host || !c->server_name)
        goto out;
    c->bmin = cfg->backoff_min_ms ? cfg->backoff_min_ms : PUSH_BACKOFF_MIN_MS_DEFAULT;
    c->bmax = cfg->backoff_max_ms ? cfg->backoff_max_ms : PUSH_BACKOFF_MAX_MS_DEFAULT;
    if (c->bmax < c->bmin)
        c->bmax = c->bmin;
    c->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)c ^ 0x9e3779b97f4a7c15ull;
    if (!c->rng)
        c->rng = 1;
    ping = cfg->ping_interval_s ? cfg->ping_interval_s : PUSH_PING_INTERVAL_S_DEFAULT;
    c->retry_ms[0] = 1000;
    c->retry.retry_ms_table = c->retry_ms;
    c->retry.retry_ms_table_count = 1;
    c->retry.secs_since_valid_ping = (uint16_t)ping;
    c->retry.secs_since_valid_hangup = (uint16_t)(3 * ping);
    c->max_protocol = cfg->max_protocol ? cfg->max_protocol : PUSH_PROTOCOL_MAX;
    if (c->max_protocol > PUSH_PROTOCOL_MAX) {
        rc = -EINVAL;
        goto out;
    }
    rc = push__cache_new(cfg->block_cache_bytes ? cfg->block_cache_bytes
                                                : PUSH_BLOCK_CACHE_BYTES_DEFAULT,
                         &c->cache);
    if (rc)
        goto out;
    for (int i = 0; i < 2; i++) {
        c->protocols[i].name = i ? PUSH_SUBPROTOCOL_V2 : PUSH_SUBPROTOCOL;
        c->protocols[i].callback = client_cb;
        c->protocols[i].rx_buffer_size = 16384;
    }

    push__lws_log_init();
    memset(&info, 0, sizeof(info));
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.foreign_loops = loops;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = c->protocols;
    info.user = c;
    /* Our own SSL_CTX: material loads from memory and swaps at run time, and lws 4.1 leaks the
     * one it would make after failed handshakes. lws still sets verification per connection. */
    info.provided_client_ssl_ctx = c->ssl_ctx;
    /* lws's pending timeouts: the TCP connect, then each handshake step */
    info.connect_timeout_secs = PUSH_CONNECT_TIMEOUT_S;
    info.timeout_secs = PUSH_HANDSHAKE_TIMEOUT_S;
    info.fd_limit_per_thread = 16; /* one stream; keeps per-client tables small */
    info.pcontext = &c->ctx;       /* lws writes NULL here once it is completely done */
    c->ctx = lws_create_context(&info);
    if (!c->ctx) {
        rc = -EIO;
        goto out;
    }
    c->st = C_WAITING;
    uv_timer_start(&c->timer, timer_cb, 0, 0);
    *out = c;
    c = NULL;
    rc = 0;
out:
    push_client_free(c);
    return rc;
}

int push_client_set_certs(struct push_client *c, const char *cert_pem, const char *key_pem,
                          const char *trust_pem)
{
    int rc;

    if (!cert_pem || !key_pem)
        return -EINVAL;
    if (trust_pem && tls_check_trust(trust_pem) < 0)
        return ERR_INVALID;
    rc = tls_set_identity(c->ssl_ctx, cert_pem, key_pem);
    if (rc == 0 && trust_pem)
        rc = tls_set_trust(c->ssl_ctx, trust_pem);
    if (rc < 0)
        return rc;
    if (c->st == C_OPEN || c->st == C_CONNECTING) {
        /* Close normally after any queued answer; reconnect at once with the new identity. */
        c->rotating = 1;
        if (c->wsi)
            lws_callback_on_writable(c->wsi);
    }
    return 0;
}

const char *push_client_last_hash(const struct push_client *c)
{
    return c->last_hash;
}

int push_client_protocol(const struct push_client *c)
{
    return c->st == C_OPEN ? c->proto : 0;
}

void push_client_cache_stats(const struct push_client *c, size_t *nblocks, size_t *bytes)
{
    push__cache_stats(c->cache, nblocks, bytes);
}

static void maybe_release(struct push_client *c)
{
    if (c->ctx || c->lws_stuck || !c->timer_done)
        return; /* lws_stuck: lws may still call back, so the struct is kept */
    push__fdguard_release(c->guard);
    push__cache_free(c->cache);
    SSL_CTX_free(c->ssl_ctx);
    free(c);
}

static void timer_closed(uv_handle_t *h)
{
    struct push_client *c = h->data;

    c->timer_done = 1;
    maybe_release(c);
}

/*
 * Teardown works around three libwebsockets 4.1.6 behaviours with a foreign libuv loop:
 *   - a connection still open at lws_context_destroy has its socket closed twice (once in the
 *     destroy, once when its uv handle closes), so the connections are closed first and the
 *     context destroyed once lws has destroyed them (or after a bounded wait);
 *   - other descriptors freed by the destroy (its event pipe) are closed again later, so their
 *     numbers stay parked until the end (fdguard.c);
 *   - the destroy completes only when lws_context_destroy is called again after lws's uv
 *     handles have closed; lws then writes NULL through info.pcontext.
 * All of it runs from a timer, never inside an lws callback.
 */
static void ctx_destroy(void *ctx)
{
    lws_context_destroy(ctx);
}

static void teardown_cb(uv_timer_t *t)
{
    struct push_client *c = t->data;

    if (c->ctx && !c->destroy_called) {
        if (c->live > 0 && uv_now(c->loop) < c->teardown_deadline)
            return;
        c->destroy_called = 1;
        c->guard = push__fdguard_destroy_ctx(ctx_destroy, c->ctx);
        c->teardown_ticks = 0;
    } else if (c->ctx && ++c->teardown_ticks == 10) {
        lws_context_destroy(c->ctx); /* 50 ms on: lws's handles have closed */
    } else if (c->ctx && c->teardown_ticks > 200) {
        c->lws_stuck = 1;
    }
    if (c->ctx && !c->lws_stuck)
        return;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, timer_closed);
}

void push_client_free(struct push_client *c)
{
    if (!c)
        return;
    c->freeing = 1;
    if (c->wsi) {
        /* Close frame on the next writable turn, or cut after 1 s. */
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, 1);
        lws_callback_on_writable(c->wsi);
    }
    c->wsi = NULL;
    q_clear(c);
    buf_release(&c->rx);
    FREE_AND_NULL(c->host);
    FREE_AND_NULL(c->server_name);
    c->teardown_deadline = uv_now(c->loop) + 2000;
    uv_timer_stop(&c->timer);
    uv_timer_start(&c->timer, teardown_cb, 0, 5);
}
