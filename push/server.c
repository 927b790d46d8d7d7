/*
 * server.c - the weftd side of the config stream.
 *
 * One libwebsockets context (one vhost, mTLS) on the caller's libuv loop. Per proxy ("ns/name")
 * the server keeps the newest document and its sync state; per stream it keeps what was sent
 * on it. Nothing is queued per stream: when the stream can take a frame, the `config` is built
 * from the proxy's newest document, so a slow peer holds at most the frame being written (inside
 * libwebsockets) plus the one current document.
 */
#include <arpa/inet.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <string.h>
#include <jansson.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/map.h"
#include "push/push.h"
#include "push/push_int.h"
#include "tls/tls.h"

#define SPIFFE_MAX 512
#define RX_MAX (64 * 1024) /* agent frames are small */
#define VHOST_NAME "weft-push"
#define MAX_CONNS_DEFAULT 16384
#define MAX_PER_ADDR_DEFAULT 64
#define HANDSHAKE_TIMEOUT_S_DEFAULT 10
#define MAX_HANDSHAKES_DEFAULT 512

struct conn;

struct proxy {
    struct proxy *dprev, *dnext; /* debounce list, oldest first */
    int dirty;
    uint64_t due_ms;
    int released;             /* a change went out (at once or at a window's end) */
    uint64_t last_release_ms; /* uv_now then */
    int64_t connected_ms;     /* Unix ms the current or last stream was accepted */
    int forgotten;
    const char *key;       /* the proxies map's copy */
    struct push__doc *doc; /* newest document, NULL none */
    char hash[PUSH_HASH_LEN + 1];
    uint64_t doc_ms;   /* uv_now when doc became current (a change), 0: not a change */
    struct conn *conn; /* accepted stream, NULL none */
    char spiffe[SPIFFE_MAX];
    uint64_t sent_version;
    char sent_hash[PUSH_HASH_LEN + 1];
    uint64_t acked_version;
    char acked_hash[PUSH_HASH_LEN + 1];
    uint64_t nack_version;
    char nack_hash[PUSH_HASH_LEN + 1];
    char *nack_reason;
    int64_t nack_time_ms;
    char *apps_exited; /* push_server_apps_exited's reason; NULL while the apps run */
};

struct conn {
    struct conn *prev, *next; /* all streams */
    struct lws *wsi;
    struct proxy *proxy; /* after an accepted hello */
    struct buf rx;
    uint64_t version;                  /* of the last `config` on this stream */
    char sent_hash[PUSH_HASH_LEN + 1]; /* what the peer has (sent, or its lastHash) */
    int want_config;
    int v2;                     /* protocol v2 was negotiated */
    int holds_nothing;          /* v2: the hello named no lastHash: inline every block */
    struct push__doc *sent_doc; /* v2: the last document sent (its blocks are served) */
    unsigned char *need;        /* v2: per block of sent_doc, asked for by a `need` */
    size_t nneed;               /* blocks flagged in need */
    struct push_hash *missing;  /* v2: asked for, not in sent_doc (at most PUSH_NEED_MAX) */
    size_t nmissing;
    unsigned needs_this_version; /* `need`s for the last document sent */
    uint64_t answered;           /* the highest version ACKed or NACKed on this stream */
    int apps_sent;               /* `appsExited` went out on this stream */
    uint64_t trust_sent;         /* the server's trust_gen last sent on this stream; 0 none */
    char *error_frame;           /* to write before closing */
    char close_reason[64];
    int close_status;
    char spiffe[SPIFFE_MAX];
    uint64_t last_rx_ms; /* uv_now of the last frame from the peer (a pong counts) */
    int want_ping, pinged;
    int counted; /* in nstreams */
};

struct pss {
    struct conn *c;
    int closing; /* a stream closed (CLOSED) that lws has not destroyed yet */
};

/* The peer address of an accepted descriptor, for the per-address cap (indexed by fd). */
struct addr_slot {
    int used;
    struct sockaddr_in peer;
};

struct push_server {
    uv_loop_t *loop;
    struct lws_context *ctx;
    SSL_CTX *ssl_ctx;        /* lws made it for the vhost; the policy is ours */
    SSL_CTX *client_ssl_ctx; /* unused: a server-only lws context otherwise makes one (loading
                              * the system CA store) that lws 4.1 leaks once a connection has
                              * been served */
    struct push_server_ops ops;
    void *arg;
    unsigned debounce_ms;
    unsigned hello_timeout_s;
    unsigned max_conns, max_per_addr, max_handshakes;
    unsigned nstreams;       /* connections past their accepted hello (the rest are handshaking) */
    unsigned nclosing;       /* streams closed, their connection not destroyed yet */
    struct lws *lserv;       /* lws's listening connection (seen at the first accept) */
    int accept_paused;       /* lserv's POLLIN is off: max_handshakes are under way */
    uint64_t paused_at;      /* uv_now when it was paused */
    struct addr_slot *slots; /* by descriptor number */
    size_t nslots;
    struct push_server_stats stats;
    char *trust_pem;
    uint64_t trust_gen;   /* bumped by every new bundle; streams are sent the newest */
    lws_retry_bo_t retry; /* lws's validity timers off: see keepalive_cb */
    uint32_t retry_ms[1];
    unsigned ping_ms;
    uv_timer_t keepalive;
    int keepalive_done;
    struct lws_protocols protocols[3]; /* v1 first: a request naming no subprotocol gets v1 */
    struct map proxies;                /* "ns/name" -> struct proxy */
    struct push__store store;          /* the blocks of every document held (v2) */
    struct proxy *dhead, *dtail;
    uv_timer_t timer;
    struct conn *conns;
    int port;
    int freeing;
    int live; /* accepted connections lws has not destroyed yet */
    uint64_t teardown_deadline;
    int destroy_called, lws_stuck, timer_done;
    unsigned teardown_ticks;
    struct push__fdguard *guard;
};

static void accept_modulate(struct push_server *s);

/* Connections before an accepted hello: neither an open stream nor a closed one lws has yet to
 * destroy (10,000 streams closing at once must not look like as many handshakes). */
static unsigned handshaking(const struct push_server *s)
{
    unsigned n = s->live > 0 ? (unsigned)s->live : 0;

    return n > s->nstreams + s->nclosing ? n - s->nstreams - s->nclosing : 0;
}

/* --- proxies ------------------------------------------------------------------------------- */

static struct proxy *proxy_find(struct push_server *s, const char *key)
{
    return map_get(&s->proxies, key);
}

static int proxy_get(struct push_server *s, const char *key, struct proxy **out)
{
    struct proxy *p = proxy_find(s, key);

    if (p) {
        *out = p;
        return 0;
    }
    p = calloc(1, sizeof(*p));
    if (!p || map_put(&s->proxies, key, p) < 0) {
        free(p);
        return -ENOMEM;
    }
    p->key = map_key(&s->proxies, key);
    *out = p;
    return 0;
}

static void dirty_unlink(struct push_server *s, struct proxy *p)
{
    if (!p->dirty)
        return;
    if (p->dprev)
        p->dprev->dnext = p->dnext;
    else
        s->dhead = p->dnext;
    if (p->dnext)
        p->dnext->dprev = p->dprev;
    else
        s->dtail = p->dprev;
    p->dprev = p->dnext = NULL;
    p->dirty = 0;
}

static void proxy_remove(struct push_server *s, struct proxy *p)
{
    dirty_unlink(s, p);
    map_del(&s->proxies, p->key); /* frees p->key */
    push__doc_unref(&s->store, p->doc);
    free(p->nack_reason);
    free(p->apps_exited);
    free(p);
}

/* Ask the proxy's stream for a write if it lacks the newest document or the news that the
 * pod's apps have exited. */
static void proxy_kick(struct proxy *p)
{
    struct conn *c = p->conn;

    if (!c || c->close_status)
        return;
    if (p->apps_exited && !c->apps_sent)
        lws_callback_on_writable(c->wsi);
    if (!p->doc)
        return;
    if (strcmp(c->sent_hash, p->hash) == 0) {
        /* The stream's hello reported this document as served: count it as acknowledged. */
        if (c->version == 0 && strcmp(p->acked_hash, p->hash) != 0) {
            memcpy(p->acked_hash, p->hash, sizeof(p->acked_hash));
            p->acked_version = 0;
        }
        return;
    }
    c->want_config = 1;
    lws_callback_on_writable(c->wsi);
}

static void timer_cb(uv_timer_t *t)
{
    struct push_server *s = t->data;
    uint64_t now = uv_now(s->loop);

    while (s->dhead && s->dhead->due_ms <= now) {
        struct proxy *p = s->dhead;

        dirty_unlink(s, p);
        p->released = 1;
        p->last_release_ms = now;
        proxy_kick(p);
    }
    if (s->dhead)
        uv_timer_start(&s->timer, timer_cb, s->dhead->due_ms - now, 0);
}

/* --- streams ------------------------------------------------------------------------------- */

/*
 * Idle streams are pinged after ping_ms and dropped after 3 * ping_ms without a frame from the
 * peer, by one sweep over the streams every ping_ms / 3. libwebsockets' own validity timers do
 * the same per connection, but lws 4.1 keeps every timer in one sorted list and re-inserts a
 * connection's timer (a walk over the whole list) on every frame received: with 10,000 streams
 * a connect storm or a change ACKed by every agent spent most of weftd's CPU in that walk.
 */
static void keepalive_cb(uv_timer_t *t)
{
    struct push_server *s = t->data;
    uint64_t now = uv_now(s->loop);
    struct conn *next;

    for (struct conn *c = s->conns; c; c = next) {
        uint64_t idle = now - c->last_rx_ms;

        next = c->next; /* c may be freed below */
        if (idle >= 3 * (uint64_t)s->ping_ms) {
            /* Silent for three intervals: closed at once, without a close frame (it would not
             * be read). This runs on the loop outside any lws callback, where lws allows a
             * synchronous close (its CLOSED callback frees c); its asynchronous kill and
             * pending timeouts do not fire on a foreign libuv loop without other traffic. */
            lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
        } else if (idle >= s->ping_ms && !c->pinged && !c->close_status) {
            c->want_ping = 1;
            c->pinged = 1;
            lws_callback_on_writable(c->wsi);
        }
    }
}

static int frame_write(struct lws *wsi, const char *text)
{
    size_t len = strlen(text);
    unsigned char *b = malloc(LWS_PRE + len);
    int n;

    if (!b)
        return -ENOMEM;
    memcpy(b + LWS_PRE, text, len);
    n = lws_write(wsi, b + LWS_PRE, len, LWS_WRITE_TEXT);
    free(b);
    return n < (int)len ? -EIO : 0;
}

/* Encode m and write it as one frame. 0 or a negative code. */
static int msg_write(struct lws *wsi, const struct push_msg *m)
{
    char *frame = NULL;
    int rc = push_msg_encode(m, &frame);

    if (rc == 0)
        rc = frame_write(wsi, frame);
    free(frame);
    return rc;
}

/* Send `error` then close with status. Later frames from the peer are ignored. */
static void conn_fail(struct conn *c, const char *code, const char *reason, int status)
{
    struct push_msg m;
    char *frame = NULL;

    if (c->error_frame || c->close_status)
        return;
    memset(&m, 0, sizeof(m));
    m.type = PUSH_MSG_ERROR;
    IGNORE_RESULT(push__strlcpy(m.code, code, sizeof(m.code)));
    m.reason = (char *)(uintptr_t)reason;
    if (push_msg_encode(&m, &frame) == 0)
        c->error_frame = frame;
    snprintf(c->close_reason, sizeof(c->close_reason), "%s", code);
    c->close_status = status;
    c->want_config = 0;
    lws_callback_on_writable(c->wsi);
}

static void conn_detach(struct push_server *s, struct conn *c, int notify)
{
    struct proxy *p = c->proxy;

    if (!p)
        return;
    c->proxy = NULL;
    if (p->conn != c)
        return;
    p->conn = NULL;
    if (notify && !s->freeing && s->ops.on_disconnect)
        s->ops.on_disconnect(s->arg, p->key);
    if (p->forgotten)
        proxy_remove(s, p);
}

static void on_hello(struct push_server *s, struct conn *c, const struct push_msg *m)
{
    struct push_peer peer = {m->pod.ns,    m->pod.name, m->pod.uid, m->agent,
                             m->last_hash, c->spiffe,   ""};
    struct push_reject rej;
    char key[PUSH_NS_MAX + PUSH_NAME_MAX + 2];
    char *cert = NULL;
    struct proxy *p;
    int verdict;

    memset(&rej, 0, sizeof(rej));
    if (tls_peer_cert_pem(lws_get_ssl(c->wsi), &cert) == 0)
        peer.cert_pem = cert;
    verdict = s->ops.on_hello(s->arg, &peer, &rej);
    free(cert);
    if (verdict != 0) {
        s->stats.hellos_rejected++;
        log_info("msg=\"config stream rejected\" pod=%s/%s identity=\"%s\" code=%s", m->pod.ns,
                 m->pod.name, c->spiffe, rej.code[0] ? rej.code : "Rejected");
        conn_fail(c, rej.code[0] ? rej.code : "Rejected", rej.reason, PUSH_CLOSE_POLICY);
        return;
    }
    snprintf(key, sizeof(key), "%s/%s", m->pod.ns, m->pod.name);
    if (proxy_get(s, key, &p) < 0) {
        conn_fail(c, "Internal", "out of memory", LWS_CLOSE_STATUS_UNEXPECTED_CONDITION);
        return;
    }
    if (p->conn) {
        struct conn *old = p->conn;

        conn_detach(s, old, 0);
        conn_fail(old, PUSH_ERR_REPLACED, "a newer stream for this pod was accepted",
                  LWS_CLOSE_STATUS_NORMAL);
    }
    s->stats.hellos_accepted++;
    if (!c->counted) {
        c->counted = 1;
        s->nstreams++;
        accept_modulate(s);
    }
    p->forgotten = 0;
    p->conn = c;
    p->connected_ms = push__now_unix_ms();
    c->proxy = p;
    memcpy(p->spiffe, c->spiffe, sizeof(p->spiffe));
    p->sent_version = 0;
    p->sent_hash[0] = '\0';
    memcpy(c->sent_hash, m->last_hash, sizeof(c->sent_hash));
    /* an agent that reports no document has assembled none, so it would ask for every block:
     * the first config carries them (one round trip less on a first connect) */
    c->holds_nothing = !m->last_hash[0];
    if (m->last_hash[0] && p->doc && strcmp(m->last_hash, p->hash) == 0) {
        /* The agent already serves the current document: nothing to send. */
        memcpy(p->acked_hash, m->last_hash, sizeof(p->acked_hash));
        p->acked_version = 0;
    }
    lws_set_timeout(c->wsi, NO_PENDING_TIMEOUT, 0);
    proxy_kick(p);
    if (c->trust_sent != s->trust_gen)
        lws_callback_on_writable(c->wsi); /* the bundle goes out first */
}

/*
 * A v2 agent lacks blocks of the document last sent on its stream. A `need` for an older
 * version is dropped (the newer `config` is out or on its way, and the agent gave up the old
 * one); blocks that document does not hold are answered as `missing`. What is asked is kept as
 * flags over the document's blocks, so repeated asks cost no memory.
 */
static void on_need(struct push_server *s, struct conn *c, const struct push_msg *m)
{
    struct push__doc *d = c->sent_doc;

    s->stats.needs++;
    if (!d || m->version != c->version)
        return;
    /* an agent asks for a document's blocks in at most nblocks / PUSH_NEED_MAX + 1 messages
     * (the next batch once the answer came); more is not an agent assembling that document */
    if (++c->needs_this_version > d->nblocks / PUSH_NEED_MAX + 2) {
        conn_fail(c, PUSH_ERR_PROTOCOL, "too many need messages for one document",
                  PUSH_CLOSE_POLICY);
        return;
    }
    if (!c->need) {
        c->need = calloc(d->nblocks ? d->nblocks : 1, 1);
        if (!c->need) {
            conn_fail(c, "Internal", "out of memory", LWS_CLOSE_STATUS_UNEXPECTED_CONDITION);
            return;
        }
    }
    for (size_t i = 0; i < m->nhashes; i++) {
        int k = push__doc_find(&s->store, d, m->hashes[i].h);

        if (k >= 0) {
            c->nneed += !c->need[k];
            c->need[k] = 1;
            continue;
        }
        if (!c->missing)
            c->missing = calloc(PUSH_NEED_MAX, sizeof(*c->missing));
        if (c->missing && c->nmissing < PUSH_NEED_MAX)
            c->missing[c->nmissing++] = m->hashes[i];
    }
    lws_callback_on_writable(c->wsi);
}

/* Drop what a `need` asked for (answered, or for a document since replaced). */
static void need_clear(struct conn *c)
{
    FREE_AND_NULL(c->need);
    FREE_AND_NULL(c->missing);
    c->nneed = c->nmissing = 0;
}

/* Write the `blocks` answer to the pending asks. 0 or -1 (drop the connection). */
static int blocks_write(struct push_server *s, struct conn *c)
{
    struct push__doc *d = c->sent_doc;
    struct push_block *bl = calloc(c->nneed ? c->nneed : 1, sizeof(*bl));
    struct push_msg m;
    char *frame = NULL;
    size_t n = 0;
    int rc;

    if (!bl)
        return -1;
    for (size_t i = 0; d && i < d->nblocks && n < c->nneed; i++)
        if (c->need[i])
            bl[n++] = *push__doc_block(d, i);
    memset(&m, 0, sizeof(m));
    m.type = PUSH_MSG_BLOCKS;
    m.version = c->version;
    m.blocks = bl;
    m.nblocks = n;
    m.hashes = c->missing;
    m.nhashes = c->nmissing;
    rc = push_msg_encode(&m, &frame);
    free(bl);
    if (rc == 0)
        rc = frame_write(c->wsi, frame);
    if (rc == 0) {
        s->stats.blocks_frames++;
        s->stats.blocks_sent += n;
        s->stats.bytes_sent += strlen(frame);
        s->stats.blocks_bytes += strlen(frame);
    }
    free(frame);
    need_clear(c);
    return rc < 0 ? -1 : 0;
}

static void on_frame(struct push_server *s, struct conn *c)
{
    struct push_msg m;
    struct proxy *p = c->proxy;
    int rc;

    if (c->close_status)
        return;
    rc = push_msg_parse(c->rx.p, c->rx.len, &m);
    if (!p) {
        if (rc < 0 || m.type != PUSH_MSG_HELLO)
            conn_fail(c, PUSH_ERR_BAD_HELLO, "the first frame must be a valid hello",
                      PUSH_CLOSE_POLICY);
        else
            on_hello(s, c, &m);
        goto out;
    }
    if (rc < 0 || (m.type != PUSH_MSG_ACK && m.type != PUSH_MSG_NACK &&
                   (m.type != PUSH_MSG_NEED || !c->v2))) {
        conn_fail(c, PUSH_ERR_PROTOCOL,
                  c->v2 ? "expected ack, nack or need" : "expected ack or nack", PUSH_CLOSE_POLICY);
        goto out;
    }
    if (m.type == PUSH_MSG_NEED) {
        on_need(s, c, &m);
        goto out;
    }
    if (m.version > c->answered)
        c->answered = m.version;
    if (m.type == PUSH_MSG_ACK) {
        s->stats.acks++;
        p->acked_version = m.version;
        memcpy(p->acked_hash, m.hash, sizeof(p->acked_hash));
        if (p->doc_ms && strcmp(m.hash, p->hash) == 0) {
            /* the change that made this document current has reached the proxy */
            if (s->ops.on_converged)
                s->ops.on_converged(s->arg, p->key, (double)(uv_now(s->loop) - p->doc_ms) / 1000.0);
            p->doc_ms = 0;
        }
        if (s->ops.on_ack)
            s->ops.on_ack(s->arg, p->key, m.version, m.hash);
    } else {
        s->stats.nacks++;
        free(p->nack_reason);
        p->nack_reason = m.reason;
        m.reason = NULL;
        p->nack_version = m.version;
        memcpy(p->nack_hash, m.hash, sizeof(p->nack_hash));
        p->nack_time_ms = push__now_unix_ms();
        log_warn("msg=\"config rejected by agent\" proxy=%s version=%llu reason=\"%s\"", p->key,
                 (unsigned long long)m.version, p->nack_reason);
        if (s->ops.on_nack)
            s->ops.on_nack(s->arg, p->key, m.version, m.hash, p->nack_reason);
    }
out:
    push_msg_release(&m);
}

static int on_writeable(struct push_server *s, struct conn *c)
{
    struct proxy *p = c->proxy;
    struct push_msg m;
    int rc;

    if (c->want_ping && !c->close_status) {
        unsigned char b[LWS_PRE + 1];

        c->want_ping = 0;
        /* with a payload: lws does not pass an empty pong up (LWS_CALLBACK_RECEIVE_PONG) */
        b[LWS_PRE] = 'k';
        if (lws_write(c->wsi, b + LWS_PRE, 1, LWS_WRITE_PING) < 0)
            return -1;
        lws_callback_on_writable(c->wsi); /* anything else waiting: one frame per turn */
        return 0;
    }
    if (c->close_status) {
        /* The error frame first; the close frame needs a writable turn of its own. */
        if (c->error_frame) {
            rc = frame_write(c->wsi, c->error_frame);
            FREE_AND_NULL(c->error_frame);
            if (rc == 0) {
                lws_callback_on_writable(c->wsi);
                return 0;
            }
        }
        return push__ws_close(c->wsi, c->close_status, c->close_reason);
    }
    if (p && p->apps_exited && !c->apps_sent) {
        /* before any document: a proxy whose apps are gone has nothing left to configure */
        memset(&m, 0, sizeof(m));
        m.type = PUSH_MSG_APPS_EXITED;
        m.reason = p->apps_exited;
        if (msg_write(c->wsi, &m) < 0)
            return -1;
        c->apps_sent = 1;
        s->stats.apps_exited_sent++;
        if (c->want_config || c->trust_sent != s->trust_gen)
            lws_callback_on_writable(c->wsi);
        return 0;
    }
    if (p && c->trust_sent != s->trust_gen) {
        /* the trust bundle before any document: the agent follows a root rotation */
        memset(&m, 0, sizeof(m));
        m.type = PUSH_MSG_TRUST;
        m.bundle = s->trust_pem;
        if (msg_write(c->wsi, &m) < 0)
            return -1;
        s->stats.trusts_sent++;
        c->trust_sent = s->trust_gen;
        if (c->want_config)
            lws_callback_on_writable(c->wsi);
        return 0;
    }
    if (!c->want_config || !p || !p->doc || strcmp(c->sent_hash, p->hash) == 0) {
        if (c->need || c->missing)
            return blocks_write(s, c);
        return 0;
    }
    {
        char *frame = NULL;
        size_t inl = 0;

        rc = c->v2 ? push__doc_frame_v2(p->doc, c->version + 1, c->sent_doc, c->holds_nothing,
                                        &frame, &inl)
                   : push__doc_frame_v1(p->doc, c->version + 1, &frame);
        if (rc == 0)
            rc = frame_write(c->wsi, frame);
        if (rc == 0) {
            s->stats.bytes_sent += strlen(frame);
            s->stats.config_bytes += strlen(frame);
            s->stats.blocks_sent += inl;
        }
        free(frame);
        if (rc < 0)
            return -1;
    }
    s->stats.configs_sent++;
    c->want_config = 0;
    c->version++;
    /* asks for the previous version are moot: the agent assembles this one now */
    need_clear(c);
    c->needs_this_version = 0;
    if (c->v2) {
        push__doc_unref(&s->store, c->sent_doc);
        c->sent_doc = p->doc;
        p->doc->refs++;
        c->holds_nothing = 0;
    }
    memcpy(c->sent_hash, p->hash, sizeof(c->sent_hash));
    p->sent_version = c->version;
    memcpy(p->sent_hash, p->hash, sizeof(p->sent_hash));
    return 0;
}

static int path_ok(struct lws *wsi)
{
    char uri[64];

    if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) < 0)
        return 0;
    return strcmp(uri, PUSH_PATH) == 0;
}

static void free_conn(struct push_server *s, struct conn *c);

/* Whether slot i still holds the connection it recorded: the descriptor is open and its peer
 * is the recorded address and port (a reused number with the same 4-tuple is that connection). */
static int slot_live(const struct addr_slot *sl, int fd)
{
    struct sockaddr_in peer;
    socklen_t len = sizeof(peer);

    return fcntl(fd, F_GETFD) != -1 && getpeername(fd, (struct sockaddr *)&peer, &len) == 0 &&
           peer.sin_family == AF_INET && peer.sin_port == sl->peer.sin_port &&
           peer.sin_addr.s_addr == sl->peer.sin_addr.s_addr;
}

/*
 * The caps, at accept (before TLS): at most max_conns connections at once (lws's own count of
 * the connections it created, s->live) and max_per_addr from one address. Entries of closed
 * connections are found stale by slot_live when the address is counted, so nothing has to see
 * lws close a descriptor. Returns 1 to admit fd.
 */
static int admit(struct push_server *s, struct lws *wsi, int fd)
{
    struct sockaddr_in peer;
    socklen_t len = sizeof(peer);
    unsigned n = 0;

    if (fd < 0 || getpeername(fd, (struct sockaddr *)&peer, &len) < 0 || peer.sin_family != AF_INET)
        return 0;
    if ((unsigned)s->live >= s->max_conns) {
        s->stats.refused_max_conns++;
        return 0;
    }
    /* accept_modulate stops accepting at the handshake cap; this catches what got past it (lws
     * re-enables a listener itself when it had run out of descriptors; one 10,000-agent storm
     * saw thousands of these that this does not explain: hence the log) */
    if (handshaking(s) >= s->max_handshakes) {
        /* logged at the first and every 1000th: how the count stood */
        if (s->stats.refused_handshakes % 1000 == 0)
            log_warn("msg=\"config stream: a connection got past the paused listener, closed\" "
                     "paused=%d connections=%d streams=%u closing=%u refused_before=%llu",
                     s->accept_paused, s->live, s->nstreams, s->nclosing,
                     (unsigned long long)s->stats.refused_handshakes);
        s->stats.refused_handshakes++;
        if (s->accept_paused && lws_rx_flow_control(wsi, 1) == 0) { /* pause it again */
            s->accept_paused = 0;
            s->stats.accept_paused_ms += uv_now(s->loop) - s->paused_at;
        }
        accept_modulate(s);
        return 0;
    }
    if ((size_t)fd >= s->nslots) {
        size_t n2 = (size_t)fd + 1 > 2 * s->nslots ? (size_t)fd + 1 : 2 * s->nslots;
        struct addr_slot *g = realloc(s->slots, n2 * sizeof(*g));

        if (!g)
            return 0;
        memset(g + s->nslots, 0, (n2 - s->nslots) * sizeof(*g));
        s->slots = g;
        s->nslots = n2;
    }
    s->slots[fd].used = 0; /* the kernel gave this number again: its old entry is gone */
    for (size_t i = 0; i < s->nslots; i++) {
        struct addr_slot *sl = &s->slots[i];

        if (!sl->used || sl->peer.sin_addr.s_addr != peer.sin_addr.s_addr)
            continue;
        if (!slot_live(sl, (int)i))
            sl->used = 0;
        else
            n++;
    }
    if (n >= s->max_per_addr) {
        s->stats.refused_per_addr++;
        return 0;
    }
    s->slots[fd].used = 1;
    s->slots[fd].peer = peer;
    return 1;
}

/*
 * A reconnect storm (weftd restarted, or every agent cut off at once) brings thousands of TLS
 * handshakes together: served all at once, each takes so long in the crowd that most pass their
 * deadline and the CPU they used is wasted (at 10,000 agents almost none got through). So at
 * most max_handshakes connections are before their accepted hello at once; at the cap the
 * listener stops accepting (lws's listening connection stops polling for input) and the next
 * connections wait in the kernel's listen backlog, their handshake starting when a slot frees.
 * A waiting agent sees a slower handshake, not a refusal and a backoff of up to 30 s (which
 * closing them at accept cost: at 10,000 agents most of a storm was agents waiting out their
 * backoff). Called whenever the count changes.
 */
static void accept_modulate(struct push_server *s)
{
    int full = handshaking(s) >= s->max_handshakes;
    uint64_t now;

    if (!s->lserv || s->freeing || full == s->accept_paused)
        return;
    if (lws_rx_flow_control(s->lserv, full ? 0 : 1) < 0)
        return;
    s->accept_paused = full;
    now = uv_now(s->loop);
    if (full) {
        s->stats.accept_pauses++;
        s->paused_at = now;
    } else {
        s->stats.accept_paused_ms += now - s->paused_at;
    }
}

static int server_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len)
{
    struct pss *pss = user;
    struct push_server *s;
    struct conn *c;

    switch (reason) {
    case LWS_CALLBACK_WSI_CREATE:
        s = lws_context_user(lws_get_context(wsi));
        s->live++;
        accept_modulate(s);
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        s = lws_context_user(lws_get_context(wsi));
        if (wsi == s->lserv) {
            s->lserv = NULL; /* the listener is destroyed without having been created */
            return 0;
        }
        if (pss && pss->closing && s->nclosing > 0) { /* user_space is intact here */
            pss->closing = 0;
            s->nclosing--;
        }
        if (s->live > 0)
            s->live--;
        accept_modulate(s);
        return 0;
    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
        s = lws_context_user(lws_get_context(wsi));
        s->ssl_ctx = user;
        return tls_set_trust(user, s->trust_pem) < 0;
    case LWS_CALLBACK_OPENSSL_PERFORM_CLIENT_CERT_VERIFICATION:
        /* lws returns our verdict to OpenSSL as is: keep OpenSSL's (len is preverify_ok). */
        return len ? 0 : 1;
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
        s = lws_context_user(lws_get_context(wsi));
        s->lserv = wsi; /* lws asks with its listening connection */
        return s->freeing || !admit(s, wsi, (int)(intptr_t)in);
    case LWS_CALLBACK_HTTP:
        return -1; /* only the WebSocket upgrade is served */
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return path_ok(wsi) ? 0 : -1;
    case LWS_CALLBACK_ESTABLISHED:
        s = lws_context_user(lws_get_context(wsi));
        if (s->freeing)
            return -1;
        c = calloc(1, sizeof(*c));
        if (!c)
            return -1;
        c->wsi = wsi;
        c->v2 = lws_get_protocol(wsi) && lws_get_protocol(wsi)->name &&
                strcmp(lws_get_protocol(wsi)->name, PUSH_SUBPROTOCOL_V2) == 0;
        c->last_rx_ms = uv_now(s->loop);
        buf_init(&c->rx);
        if (tls_peer_spiffe_id(lws_get_ssl(wsi), c->spiffe, sizeof(c->spiffe)) < 0)
            c->spiffe[0] = '\0';
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
        pss->c = c;
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, (int)s->hello_timeout_s);
        return 0;
    case LWS_CALLBACK_RECEIVE_PONG:
        c = pss->c;
        s = lws_context_user(lws_get_context(wsi));
        if (c) {
            c->last_rx_ms = uv_now(s->loop);
            c->pinged = 0;
        }
        return 0;
    case LWS_CALLBACK_RECEIVE:
        c = pss->c;
        if (!c)
            return -1;
        s = lws_context_user(lws_get_context(wsi));
        if (s->freeing)
            return 0;
        c->last_rx_ms = uv_now(s->loop);
        c->pinged = 0;
        if (c->rx.len + len > RX_MAX) {
            lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, NULL, 0);
            return -1;
        }
        if (buf_append(&c->rx, in, len) < 0)
            return -1;
        if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
            on_frame(s, c);
            buf_reset(&c->rx);
        }
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        c = pss->c;
        s = lws_context_user(lws_get_context(wsi));
        if (s->freeing)
            return push__ws_close(wsi, LWS_CLOSE_STATUS_GOINGAWAY, "server shutting down");
        return c ? on_writeable(s, c) : 0;
    case LWS_CALLBACK_CLOSED:
        c = pss->c;
        if (!c)
            return 0;
        s = lws_context_user(lws_get_context(wsi));
        pss->c = NULL;
        if (c->counted && s->nstreams > 0) {
            s->nstreams--; /* in nclosing until WSI_DESTROY */
            s->nclosing++;
            pss->closing = 1;
        }
        conn_detach(s, c, 1);
        if (c->prev)
            c->prev->next = c->next;
        else
            s->conns = c->next;
        if (c->next)
            c->next->prev = c->prev;
        free_conn(s, c);
        return 0;
    default:
        return 0;
    }
}

/* --- public -------------------------------------------------------------------------------- */

/*
 * libwebsockets 4.1 leaves a foreign libuv loop with dangling handles when it fails to bind, so
 * a port that is taken is detected first (same SO_REUSEADDR semantics as lws).
 */
static int bind_check(const char *addr, int port)
{
    struct sockaddr_in sa;
    int fd, one = 1, rc = 0;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_ANY);
    if (addr && inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
        return -EINVAL;
    if (!port)
        return 0;
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0)
        rc = -errno;
    close(fd);
    return rc;
}

int push_server_new(uv_loop_t *loop, const struct push_server_config *cfg,
                    const struct push_server_ops *ops, void *arg, struct push_server **out)
{
    struct lws_context_creation_info info;
    struct push_server *s = NULL;
    struct lws_vhost *vh;
    void *loops[1] = {loop};
    unsigned ping;
    int rc;

    if (!loop || !cfg || !ops || !ops->on_hello || !cfg->cert_pem || !cfg->key_pem ||
        !cfg->trust_pem || cfg->port < 0 || cfg->port > 65535)
        return -EINVAL;
    if (tls_check_identity(cfg->cert_pem, cfg->key_pem) < 0 || tls_check_trust(cfg->trust_pem) < 0)
        return ERR_INVALID;
    rc = bind_check(cfg->listen_addr, cfg->port);
    if (rc < 0)
        return rc;
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    uv_timer_init(loop, &s->keepalive);
    s->keepalive.data = s;
    s->trust_pem = strdup(cfg->trust_pem);
    s->trust_gen = 1;
    rc = s->trust_pem ? tls_client_ctx_new(&s->client_ssl_ctx) : -ENOMEM;
    if (rc)
        goto out;
    s->loop = loop;
    s->ops = *ops;
    s->arg = arg;
    s->debounce_ms = cfg->debounce_ms;
    s->hello_timeout_s = cfg->hello_timeout_s ? cfg->hello_timeout_s : 10;
    s->max_conns = cfg->max_conns ? cfg->max_conns : MAX_CONNS_DEFAULT;
    s->max_per_addr = cfg->max_conns_per_addr ? cfg->max_conns_per_addr : MAX_PER_ADDR_DEFAULT;
    s->max_handshakes = cfg->max_handshakes ? cfg->max_handshakes : MAX_HANDSHAKES_DEFAULT;
    ping = cfg->ping_interval_s ? cfg->ping_interval_s : PUSH_PING_INTERVAL_S_DEFAULT;
    s->retry_ms[0] = 1000;
    s->retry.retry_ms_table = s->retry_ms;
    s->retry.retry_ms_table_count = 1;
    /* secs_since_valid_hangup 0: no lws validity timers (keepalive_cb does it) */
    s->retry.secs_since_valid_ping = 0;
    s->retry.secs_since_valid_hangup = 0;
    s->ping_ms = ping * 1000;
    if (cfg->max_protocol > PUSH_PROTOCOL_MAX) {
        rc = -EINVAL;
        goto out;
    }
    push__store_init(&s->store);
    /* v1 first (a request that names no subprotocol gets it); lws picks the first name of the
     * client's list that it serves, and agents list v2 first */
    for (int i = 0; i < (cfg->max_protocol == 1 ? 1 : 2); i++) {
        s->protocols[i].name = i ? PUSH_SUBPROTOCOL_V2 : PUSH_SUBPROTOCOL;
        s->protocols[i].callback = server_cb;
        s->protocols[i].per_session_data_size = sizeof(struct pss);
        /* lws holds this much per stream for received frames; agents send acks (and nacks,
         * whose reason is at most 1 KiB, and needs) and larger frames arrive in pieces (RX_MAX
         * bounds the whole) */
        s->protocols[i].rx_buffer_size = 2048;
    }

    push__lws_log_init();
    memset(&info, 0, sizeof(info));
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT |
                   LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT |
                   LWS_SERVER_OPTION_DISABLE_IPV6;
    info.foreign_loops = loops;
    info.port = cfg->port;
    info.iface = cfg->listen_addr;
    info.vhost_name = VHOST_NAME;
    info.protocols = s->protocols;
    info.user = s;
    info.server_ssl_cert_mem = cfg->cert_pem;
    info.server_ssl_cert_mem_len = (unsigned)strlen(cfg->cert_pem);
    info.server_ssl_private_key_mem = cfg->key_pem;
    info.server_ssl_private_key_mem_len = (unsigned)strlen(cfg->key_pem);
    info.retry_and_idle_policy = &s->retry;
    /* the TLS handshake and the upgrade request (lws's pending timeouts before the stream) */
    info.timeout_secs =
        cfg->handshake_timeout_s ? cfg->handshake_timeout_s : HANDSHAKE_TIMEOUT_S_DEFAULT;
    /* fd_limit_per_thread stays 0: lws's lookup table is then indexed by descriptor up to the
     * process limit; a smaller limit switches it to a slower lookup, and weftd's other
     * listeners hold descriptors numbered past this server's cap. The cap is admit()'s. */
    info.provided_client_ssl_ctx = s->client_ssl_ctx;
    info.pcontext = &s->ctx; /* lws writes NULL here once it is completely done */
    s->ctx = lws_create_context(&info);
    vh = s->ctx ? lws_get_vhost_by_name(s->ctx, VHOST_NAME) : NULL;
    if (!vh || !s->ssl_ctx || lws_get_vhost_listen_port(vh) <= 0) {
        rc = -EADDRINUSE;
        goto out;
    }
    s->port = lws_get_vhost_listen_port(vh);
    uv_timer_start(&s->keepalive, keepalive_cb, s->ping_ms / 3, s->ping_ms / 3);
    /* Weft's TLS policy replaces lws's defaults before the loop runs a handshake, and lws
     * loads only the leaf from memory: install the full chain from the same PEM. */
    rc = tls_policy_apply(s->ssl_ctx);
    tls_release_buffers(s->ssl_ctx); /* streams are idle between changes */
    if (!rc)
        rc = tls_set_identity(s->ssl_ctx, cfg->cert_pem, cfg->key_pem);
    if (rc < 0)
        goto out;
    *out = s;
    s = NULL;
out:
    push_server_free(s);
    return rc;
}

int push_server_port(const struct push_server *s)
{
    return s->port;
}

int push_server_set_certs(struct push_server *s, const char *cert_pem, const char *key_pem)
{
    if (!cert_pem || !key_pem)
        return -EINVAL;
    return tls_set_identity(s->ssl_ctx, cert_pem, key_pem);
}

int push_server_set_trust(struct push_server *s, const char *trust_pem)
{
    char *copy;
    int rc;

    if (!trust_pem)
        return -EINVAL;
    copy = strdup(trust_pem);
    if (!copy)
        return -ENOMEM;
    rc = tls_set_trust(s->ssl_ctx, trust_pem);
    if (rc < 0) {
        free(copy);
        return rc;
    }
    if (s->trust_pem && strcmp(s->trust_pem, copy) == 0) {
        free(copy);
        return 0;
    }
    free(s->trust_pem);
    s->trust_pem = copy;
    /* every accepted stream gets the new bundle (`trust`) on its next writable turn */
    s->trust_gen++;
    for (struct conn *c = s->conns; c; c = c->next)
        if (c->proxy && !c->close_status)
            lws_callback_on_writable(c->wsi);
    return 0;
}

/* Queue p for release at due (list ordered by due time; new entries land near the tail). */
static void dirty_insert(struct push_server *s, struct proxy *p, uint64_t due)
{
    struct proxy *after = s->dtail;
    uint64_t now = uv_now(s->loop);

    while (after && after->due_ms > due)
        after = after->dprev;
    p->dirty = 1;
    p->due_ms = due;
    p->dprev = after;
    p->dnext = after ? after->dnext : s->dhead;
    if (p->dnext)
        p->dnext->dprev = p;
    else
        s->dtail = p;
    if (after)
        after->dnext = p;
    else
        s->dhead = p;
    if (s->dhead == p || !uv_is_active((uv_handle_t *)&s->timer))
        uv_timer_start(&s->timer, timer_cb, s->dhead->due_ms > now ? s->dhead->due_ms - now : 0, 0);
}

static int key_ok(const char *key)
{
    const char *slash = strchr(key, '/');

    return slash && slash != key && slash[1] && !strchr(slash + 1, '/') &&
           (size_t)(slash - key) <= PUSH_NS_MAX && strlen(slash + 1) <= PUSH_NAME_MAX;
}

/* Make d (consumed, even on failure) the proxy's current document. */
static int send_doc(struct push_server *s, const char *key, struct push__doc *d)
{
    struct proxy *p;
    uint64_t now;
    int rc;

    rc = proxy_get(s, key, &p);
    if (rc < 0)
        goto out;
    p->forgotten = 0;
    if (p->doc && strcmp(p->hash, d->hash) == 0)
        goto out; /* unchanged */
    /* a replaced document is a change (the first one a proxy gets is not: nothing to converge) */
    p->doc_ms = p->doc ? uv_now(s->loop) : 0;
    push__doc_unref(&s->store, p->doc);
    p->doc = d;
    d = NULL;
    memcpy(p->hash, p->doc->hash, sizeof(p->hash));
    if (p->dirty) {
        s->stats.changes_superseded++;
        goto out; /* the pending flush takes the newest document */
    }
    now = uv_now(s->loop);
    if (!s->debounce_ms || !p->released || now - p->last_release_ms >= s->debounce_ms) {
        /* the first change after a quiet period goes out at once and opens a window */
        s->stats.changes_immediate++;
        p->released = 1;
        p->last_release_ms = now;
        proxy_kick(p);
        goto out;
    }
    s->stats.changes_deferred++;
    dirty_insert(s, p, p->last_release_ms + s->debounce_ms);
out:
    push__doc_unref(&s->store, d);
    return rc;
}

int push_server_apps_exited(struct push_server *s, const char *key, const char *reason)
{
    struct proxy *p;
    char *copy;
    int rc;

    if (!key || !reason || !key_ok(key))
        return ERR_INVALID;
    if (proxy_find(s, key) && proxy_find(s, key)->apps_exited)
        return 0; /* said once; it cannot be unsaid */
    copy = strndup(reason, PUSH_REASON_MAX);
    if (!copy)
        return -ENOMEM;
    rc = proxy_get(s, key, &p);
    if (rc < 0) {
        free(copy);
        return rc;
    }
    p->apps_exited = copy;
    proxy_kick(p);
    return 0;
}

int push_server_send(struct push_server *s, const char *key, const char *doc_json)
{
    json_t *doc;
    int rc;

    if (!key || !doc_json || !key_ok(key))
        return ERR_INVALID;
    doc = json_loads(doc_json, JSON_REJECT_DUPLICATES, NULL);
    if (!doc)
        return ERR_PARSE;
    rc = push_server_send_json(s, key, doc);
    json_decref(doc);
    return rc;
}

int push_server_send_json(struct push_server *s, const char *key, const struct json_t *doc)
{
    struct push__doc *d = NULL;
    int rc;

    if (!key || !doc || !key_ok(key))
        return ERR_INVALID;
    rc = push__doc_from_json(&s->store, doc, &d);
    return rc < 0 ? rc : send_doc(s, key, d);
}

void push_server_forget(struct push_server *s, const char *key)
{
    struct proxy *p = proxy_find(s, key);

    if (!p)
        return;
    if (!p->conn) {
        proxy_remove(s, p);
        return;
    }
    /* Keep the entry while its stream is open; it goes when the stream closes. */
    dirty_unlink(s, p);
    push__doc_unref(&s->store, p->doc);
    p->doc = NULL;
    p->hash[0] = '\0';
    p->forgotten = 1;
}

static void proxy_visit(struct push_server *s, const struct proxy *p, push_state_visit_fn *fn,
                        void *arg)
{
    struct push_proxy_state st;

    memset(&st, 0, sizeof(st));
    st.key = p->key;
    st.connected = p->conn != NULL;
    st.spiffe_id = p->spiffe;
    st.connected_ms = p->connected_ms;
    st.desired_hash = p->hash;
    st.sent_version = p->sent_version;
    st.sent_hash = p->sent_hash;
    st.acked_version = p->acked_version;
    st.acked_hash = p->acked_hash;
    st.nack_version = p->nack_version;
    st.nack_hash = p->nack_hash;
    st.nack_reason = p->nack_reason ? p->nack_reason : "";
    st.nack_time_ms = p->nack_time_ms;
    st.apps_exited = p->apps_exited ? p->apps_exited : "";
    st.apps_exited_sent = p->conn && p->conn->apps_sent;
    /* A config is on its way: the proxy serves the last acknowledged document or the one in
     * flight, which may differ from the acked hash even when that equals the desired one (a
     * change and its undoing sent before the first ACK came back). */
    st.in_flight = p->conn && p->conn->version > p->conn->answered;
    st.send_buffered = p->conn && p->conn->wsi && lws_partial_buffered(p->conn->wsi);
    st.idle_ms = p->conn ? (int64_t)(uv_now(s->loop) - p->conn->last_rx_ms) : -1;
    if (!p->conn)
        st.sync = PUSH_SYNC_DISCONNECTED;
    else if (st.in_flight)
        st.sync = PUSH_SYNC_PENDING;
    else if (p->doc && strcmp(p->acked_hash, p->hash) == 0)
        st.sync = PUSH_SYNC_SYNCED;
    else if (p->doc && p->nack_reason && strcmp(p->nack_hash, p->hash) == 0)
        st.sync = PUSH_SYNC_REJECTED;
    else
        st.sync = PUSH_SYNC_PENDING;
    fn(arg, &st);
}

void push_server_sync_state(struct push_server *s, push_state_visit_fn *fn, void *arg)
{
    MAP_FOREACH(&s->proxies, slot)
    proxy_visit(s, slot->val, fn, arg);
}

int push_server_proxy_state(struct push_server *s, const char *key, push_state_visit_fn *fn,
                            void *arg)
{
    const struct proxy *p = proxy_find(s, key);

    if (!p)
        return ERR_NOTFOUND;
    proxy_visit(s, p, fn, arg);
    return 0;
}

void push_server_stats(const struct push_server *s, struct push_server_stats *out)
{
    *out = s->stats;
    out->conns = s->live > 0 ? (unsigned)s->live : 0;
    out->accept_paused = s->accept_paused;
    if (s->accept_paused)
        out->accept_paused_ms += uv_now(s->loop) - s->paused_at;
    out->streams = out->streams_v2 = 0;
    MAP_FOREACH(&s->proxies, slot)
    {
        const struct conn *c = ((const struct proxy *)slot->val)->conn;

        out->streams += c != NULL;
        out->streams_v2 += c && c->v2;
    }
    out->blocks_held = s->store.nblocks;
    out->block_bytes_held = s->store.bytes;
}

static void free_conn(struct push_server *s, struct conn *c)
{
    buf_release(&c->rx);
    free(c->error_frame);
    need_clear(c);
    push__doc_unref(&s->store, c->sent_doc);
    free(c);
}

static void maybe_release(struct push_server *s)
{
    if (s->ctx || s->lws_stuck || !s->timer_done || !s->keepalive_done)
        return;        /* lws_stuck: lws may still call back, so the struct is kept */
    while (s->conns) { /* streams lws never reported closed */
        struct conn *c = s->conns;

        s->conns = c->next;
        free_conn(s, c);
    }
    push__store_release(&s->store);
    push__fdguard_release(s->guard);
    SSL_CTX_free(s->client_ssl_ctx);
    free(s->slots);
    free(s);
}

static void keepalive_closed(uv_handle_t *h)
{
    struct push_server *s = h->data;

    s->keepalive_done = 1;
    maybe_release(s);
}

static void timer_closed(uv_handle_t *h)
{
    struct push_server *s = h->data;

    s->timer_done = 1;
    maybe_release(s);
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
    struct push_server *s = t->data;

    if (s->ctx && !s->destroy_called) {
        if (s->live > 0 && uv_now(s->loop) < s->teardown_deadline)
            return;
        s->destroy_called = 1;
        s->guard = push__fdguard_destroy_ctx(ctx_destroy, s->ctx);
        s->teardown_ticks = 0;
    } else if (s->ctx && ++s->teardown_ticks == 10) {
        lws_context_destroy(s->ctx); /* 50 ms on: lws's handles have closed */
    } else if (s->ctx && s->teardown_ticks > 200) {
        s->lws_stuck = 1;
    }
    if (s->ctx && !s->lws_stuck)
        return;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, timer_closed);
}

void push_server_free(struct push_server *s)
{
    if (!s)
        return;
    s->freeing = 1;
    uv_timer_stop(&s->keepalive);
    uv_close((uv_handle_t *)&s->keepalive, keepalive_closed);
    for (struct conn *c = s->conns; c; c = c->next) {
        c->proxy = NULL;
        /* Close frame on the next writable turn; a peer that never reads is cut after 1 s. */
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, 1);
        lws_callback_on_writable(c->wsi);
    }
    MAP_FOREACH(&s->proxies, slot)
    proxy_remove(s, slot->val); /* deleting during the walk is allowed */
    map_release(&s->proxies);
    s->dhead = s->dtail = NULL;
    FREE_AND_NULL(s->trust_pem);
    /* Streams still mid-handshake are not known by pointer; they get a bounded wait. */
    s->teardown_deadline = uv_now(s->loop) + 2000;
    uv_timer_stop(&s->timer);
    uv_timer_start(&s->timer, teardown_cb, 0, 5);
}
