/*
 * portforward.c - POST/GET pods/<name>/portforward: `kubectl port-forward`.
 *
 * A real API server upgrades the connection, proxies it to the kubelet of the pod's node, and the
 * container runtime connects each forwarded connection to 127.0.0.1:<port> inside the pod's
 * network namespace. kubelite runs beside its node: kubelet-lite writes the path of each pod's
 * network namespace to <dir>/<pod uid>/netns (<dir> named by the Node's annotation
 * kubelet-lite.weft.dev/pod-log-dir, as for pods/log), and kubelite enters it itself.
 *
 * Protocols, as kubectl 1.27-1.33 speak them:
 * - SPDY/3.1 (`Upgrade: SPDY/3.1`, `X-Stream-Protocol-Version: portforward.k8s.io`): every
 *   kubectl. Per forwarded connection the client opens two streams with the headers
 *   streamType (error | data), port and requestID; we answer each SYN_STREAM with a SYN_REPLY,
 *   connect once both are there, and copy bytes between the data stream and the socket. A
 *   failure is written as text on the error stream (kubectl prints it); the end of the socket
 *   half-closes both streams. Header blocks are zlib streams (one per direction, primed with
 *   the SPDY/3 dictionary).
 * - WebSocket (`Upgrade: websocket`, subprotocol `SPDY/3.1+portforward.k8s.io`, KEP-4006):
 *   kubectl from 1.30 on (when its PortForwardWebsockets gate is on: by default from 1.31)
 *   tries this first: the same SPDY frames, tunneled as the payload of binary WebSocket
 *   messages. A refused WebSocket upgrade makes kubectl fall back to SPDY.
 *
 * Each session (one upgraded connection) runs on a thread of its own that has entered the pod's
 * network namespace (setns(2) is per thread), so every socket it makes is the pod's. Bounds:
 * sessions at once, streams per session, bytes buffered per stream (past it the client's
 * connection is not read: TCP pushes back), bytes queued to the client (past it the pod's
 * sockets are not read), frame size, a pair's second stream within 30 s (the kubelet's
 * streamCreationTimeout), and an idle timeout (--stream-idle-timeout, the kubelet's
 * streamingConnectionIdleTimeout, 4 h by default).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "core/base64.h"
#include "core/buf.h"
#include "core/log.h"
#include "tests/kubelite/kjson.h"
#include "tests/kubelite/kubelite_int.h"

#define LOG_DIR_ANNOTATION "kubelet-lite.weft.dev/pod-log-dir"
#define PF_PROTOCOL "portforward.k8s.io"
#define PF_WS_PROTOCOL "SPDY/3.1+portforward.k8s.io"

#define PF_MAX_SESSIONS 64         /* upgraded connections at once (then 429) */
#define PF_MAX_PAIRS 64            /* forwarded connections per session (128 streams) */
#define PF_STREAM_BUF (256u << 10) /* bytes for one pod socket before the client is not read */
#define PF_OUT_MAX (1u << 20)      /* bytes queued to the client before pod sockets are not read */
#define PF_FRAME_MAX (1u << 20)    /* a SPDY frame or WebSocket message fragment */
#define PF_HEADERS_MAX (64u << 10) /* a decompressed header block */
#define PF_READ_CHUNK 32768
#define PF_PAIR_TIMEOUT 30.0 /* the kubelet's streamCreationTimeout */
#define PF_CLOSE_GRACE 10.0  /* a closing session's last frames must be taken within this */

/* SPDY/3 control frame types, flags and RST_STREAM status codes */
enum {
    SPDY_SYN_STREAM = 1,
    SPDY_SYN_REPLY = 2,
    SPDY_RST_STREAM = 3,
    SPDY_SETTINGS = 4,
    SPDY_PING = 6,
    SPDY_GOAWAY = 7,
    SPDY_HEADERS = 8,
    SPDY_WINDOW_UPDATE = 9,
};
#define SPDY_FLAG_FIN 0x01
#define SPDY_RST_PROTOCOL_ERROR 1
#define SPDY_RST_REFUSED_STREAM 3
#define SPDY_RST_CANCEL 5
#define SPDY_RST_STREAM_IN_USE 8
#define SPDY_GOAWAY_PROTOCOL_ERROR 1

/*
 * The SPDY/3 header compression dictionary (draft 3, section 2.6.10.1): these words, each after
 * its length as 4 bytes big-endian, then the tail as it is. Built once by pf_dictionary().
 */
static const char *const dict_words[] = {"options",
                                         "head",
                                         "post",
                                         "put",
                                         "delete",
                                         "trace",
                                         "accept",
                                         "accept-charset",
                                         "accept-encoding",
                                         "accept-language",
                                         "accept-ranges",
                                         "age",
                                         "allow",
                                         "authorization",
                                         "cache-control",
                                         "connection",
                                         "content-base",
                                         "content-encoding",
                                         "content-language",
                                         "content-length",
                                         "content-location",
                                         "content-md5",
                                         "content-range",
                                         "content-type",
                                         "date",
                                         "etag",
                                         "expect",
                                         "expires",
                                         "from",
                                         "host",
                                         "if-match",
                                         "if-modified-since",
                                         "if-none-match",
                                         "if-range",
                                         "if-unmodified-since",
                                         "last-modified",
                                         "location",
                                         "max-forwards",
                                         "pragma",
                                         "proxy-authenticate",
                                         "proxy-authorization",
                                         "range",
                                         "referer",
                                         "retry-after",
                                         "server",
                                         "te",
                                         "trailer",
                                         "transfer-encoding",
                                         "upgrade",
                                         "user-agent",
                                         "vary",
                                         "via",
                                         "warning",
                                         "www-authenticate",
                                         "method",
                                         "get",
                                         "status",
                                         "200 OK",
                                         "version",
                                         "HTTP/1.1",
                                         "url",
                                         "public",
                                         "set-cookie",
                                         "keep-alive",
                                         "origin"};
static const char dict_tail[] =
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 "
    "Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 "
    "Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, "
    "Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/xml,"
    "application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,"
    "sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

static unsigned char dict[1500];
static size_t dict_len;
static pthread_once_t dict_once = PTHREAD_ONCE_INIT;

static void dict_build(void)
{
    size_t o = 0;
    for (size_t i = 0; i < sizeof(dict_words) / sizeof(dict_words[0]); i++) {
        size_t n = strlen(dict_words[i]);
        dict[o++] = 0;
        dict[o++] = 0;
        dict[o++] = 0;
        dict[o++] = (unsigned char)n;
        memcpy(dict + o, dict_words[i], n);
        o += n;
    }
    memcpy(dict + o, dict_tail, sizeof(dict_tail) - 1);
    dict_len = o + sizeof(dict_tail) - 1;
}

const unsigned char *kl_pf_dictionary(size_t *len)
{
    pthread_once(&dict_once, dict_build);
    *len = dict_len;
    return dict;
}

/* One forwarded connection: its two streams and the pod's socket. */
struct pf_pair {
    char reqid[64];
    int port;
    uint32_t err_id, data_id; /* 0 until the client opened it */
    int fd;                   /* the pod's socket, -1 before and after */
    int attempt;              /* 0: 127.0.0.1 being connected, 1: [::1] */
    bool connecting, connected;
    bool client_fin; /* the client half-closed the data stream */
    bool shut_wr;    /* ... and the socket was shut for writing after the last byte */
    bool done;       /* both streams finished: freed at the end of the round */
    char v4err[96];  /* why 127.0.0.1 failed */
    struct buf to_pod;
    double created;
};

struct pf_session {
    struct kl_pf *pf;
    int fd;
    SSL *ssl;
    bool ws;
    int netns_fd; /* -1: the host's */
    char netns[256], pod[600], uid[64];
    struct buf in;   /* bytes read from the client (WebSocket frames or SPDY) */
    struct buf spdy; /* SPDY bytes unwrapped from WebSocket messages */
    struct buf out;  /* bytes for the client */
    size_t out_off;
    z_stream zin, zout;
    bool zin_ok, zout_ok;
    struct pf_pair *pairs[PF_MAX_PAIRS];
    size_t npairs;
    uint32_t last_id;
    double last_active;
    double idle_timeout;
    bool closing; /* flush out, then end */
    double closing_since;
    bool failed; /* the client's connection is gone: end now */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Queue bytes for the client, in a binary WebSocket message when tunneled. */
static void out_raw(struct pf_session *s, const void *p, size_t n)
{
    if (buf_append(&s->out, p, n))
        s->failed = true;
}

static void out_bytes(struct pf_session *s, const void *p, size_t n)
{
    if (s->ws) {
        unsigned char h[10];
        size_t hl;
        h[0] = 0x82; /* FIN, binary */
        if (n < 126) {
            h[1] = (unsigned char)n;
            hl = 2;
        } else if (n < 65536) {
            h[1] = 126;
            h[2] = (unsigned char)(n >> 8);
            h[3] = (unsigned char)n;
            hl = 4;
        } else {
            h[1] = 127;
            for (int i = 0; i < 8; i++)
                h[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
            hl = 10;
        }
        out_raw(s, h, hl);
    }
    out_raw(s, p, n);
}

static void ctrl_frame(struct pf_session *s, int type, int flags, const unsigned char *body,
                       size_t len)
{
    unsigned char f[8 + 16];
    if (len > 16)
        return;
    f[0] = 0x80;
    f[1] = 3;
    f[2] = (unsigned char)(type >> 8);
    f[3] = (unsigned char)type;
    put32(f + 4, (uint32_t)len);
    f[4] = (unsigned char)flags;
    memcpy(f + 8, body, len);
    out_bytes(s, f, 8 + len);
}

static void mark_closing(struct pf_session *s)
{
    if (!s->closing)
        s->closing_since = now_s();
    s->closing = true;
}

static void send_rst(struct pf_session *s, uint32_t id, uint32_t status)
{
    unsigned char b[8];
    put32(b, id & 0x7fffffff);
    put32(b + 4, status);
    ctrl_frame(s, SPDY_RST_STREAM, 0, b, 8);
}

static void send_goaway(struct pf_session *s, uint32_t status)
{
    unsigned char b[8];
    put32(b, s->last_id & 0x7fffffff);
    put32(b + 4, status);
    ctrl_frame(s, SPDY_GOAWAY, 0, b, 8);
    mark_closing(s);
}

/* A DATA frame (payload may be empty, e.g. a lone FIN). */
static void send_data(struct pf_session *s, uint32_t id, bool fin, const void *p, size_t n)
{
    unsigned char h[8];
    if (!id)
        return;
    put32(h, id & 0x7fffffff);
    put32(h + 4, (uint32_t)n);
    h[4] = fin ? SPDY_FLAG_FIN : 0;
    if (s->ws) {
        /* one message: the frame head and its payload together */
        unsigned char *m = malloc(8 + n);
        if (!m) {
            s->failed = true;
            return;
        }
        memcpy(m, h, 8);
        if (n)
            memcpy(m + 8, p, n);
        out_bytes(s, m, 8 + n);
        free(m);
        return;
    }
    out_raw(s, h, 8);
    if (n)
        out_raw(s, p, n);
}

/* SYN_REPLY with an empty header block (what the kubelet answers each stream with). */
static void send_syn_reply(struct pf_session *s, uint32_t id)
{
    unsigned char nv[4] = {0, 0, 0, 0}, z[64], f[8 + 4 + 64];
    size_t zl;

    s->zout.next_in = nv;
    s->zout.avail_in = sizeof(nv);
    s->zout.next_out = z;
    s->zout.avail_out = sizeof(z);
    if (deflate(&s->zout, Z_SYNC_FLUSH) != Z_OK || s->zout.avail_in) {
        s->failed = true;
        return;
    }
    zl = sizeof(z) - s->zout.avail_out;
    f[0] = 0x80;
    f[1] = 3;
    f[2] = 0;
    f[3] = SPDY_SYN_REPLY;
    put32(f + 4, (uint32_t)(4 + zl));
    put32(f + 8, id & 0x7fffffff);
    memcpy(f + 12, z, zl);
    out_bytes(s, f, 12 + zl);
}

/*
 * Inflate one header block (the session's one zlib stream) into out. Returns 0, or -EPROTO for
 * a corrupt or oversized block.
 */
static int inflate_block(struct pf_session *s, const unsigned char *p, size_t n, struct buf *out)
{
    unsigned char tmp[4096];
    s->zin.next_in = (unsigned char *)p;
    s->zin.avail_in = (uInt)n;
    while (s->zin.avail_in) {
        int zr;
        s->zin.next_out = tmp;
        s->zin.avail_out = sizeof(tmp);
        zr = inflate(&s->zin, Z_SYNC_FLUSH);
        if (zr == Z_NEED_DICT) {
            size_t dl;
            const unsigned char *d = kl_pf_dictionary(&dl);
            if (inflateSetDictionary(&s->zin, d, (uInt)dl) != Z_OK)
                return -EPROTO;
            continue;
        }
        if (zr != Z_OK && zr != Z_BUF_ERROR)
            return -EPROTO;
        if (buf_append(out, tmp, sizeof(tmp) - s->zin.avail_out))
            return -ENOMEM;
        if (out->len > PF_HEADERS_MAX)
            return -EPROTO;
        if (zr == Z_BUF_ERROR && s->zin.avail_out)
            break;
    }
    return 0;
}

/*
 * The value of header name (lower case) in a decompressed name/value block, into out (values of
 * a repeated header are NUL-separated: the first is taken). Returns false when absent; -1 on a
 * malformed block.
 */
int kl_pf_header(const unsigned char *b, size_t len, const char *name, char *out, size_t outlen)
{
    size_t o = 4, nl = strlen(name);
    uint32_t count;
    if (len < 4)
        return -1;
    count = be32(b);
    for (uint32_t i = 0; i < count; i++) {
        uint32_t kl_, vl;
        const unsigned char *k, *v;
        if (len - o < 4)
            return -1;
        kl_ = be32(b + o);
        o += 4;
        if (len - o < kl_)
            return -1;
        k = b + o;
        o += kl_;
        if (len - o < 4)
            return -1;
        vl = be32(b + o);
        o += 4;
        if (len - o < vl)
            return -1;
        v = b + o;
        o += vl;
        if (kl_ == nl && strncasecmp((const char *)k, name, nl) == 0) {
            size_t m = strnlen((const char *)v, vl);
            if (m >= outlen)
                m = outlen - 1;
            memcpy(out, v, m);
            out[m] = '\0';
            return 1;
        }
    }
    return 0;
}

static struct pf_pair *pair_by_stream(struct pf_session *s, uint32_t id)
{
    for (size_t i = 0; i < s->npairs; i++) {
        struct pf_pair *p = s->pairs[i];
        if (!p->done && (p->err_id == id || p->data_id == id))
            return p;
    }
    return NULL;
}

static void pair_finish(struct pf_session *s, struct pf_pair *p, bool send_fins)
{
    if (p->done)
        return;
    if (send_fins) {
        send_data(s, p->data_id, true, NULL, 0);
        send_data(s, p->err_id, true, NULL, 0);
    }
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
    p->done = true;
}

/* Lower-case Go's wording of an errno ("connection refused"). */
static void go_errstr(int err, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s", strerror(err));
    if (out[0])
        out[0] = (char)tolower((unsigned char)out[0]);
}

/* The connection failed for good: say why on the error stream (kubectl prints it), end both. */
static void pair_fail(struct pf_session *s, struct pf_pair *p, const char *why)
{
    char msg[2200];
    int n = snprintf(msg, sizeof(msg), "error forwarding port %d to pod %s, uid %s: %s", p->port,
                     s->pod, s->uid, why);
    log_info("msg=\"port-forward failed\" pod=%s port=%d err=\"%s\"", s->pod, p->port, why);
    send_data(s, p->err_id, false, msg, (size_t)(n < (int)sizeof(msg) ? n : (int)sizeof(msg) - 1));
    pair_finish(s, p, true);
}

static void pair_connect(struct pf_session *s, struct pf_pair *p);

/* Connecting to the address of this attempt failed with err: the next address, or the end. */
static void pair_attempt_failed(struct pf_session *s, struct pf_pair *p, int err)
{
    char e6[96], why[1400];

    if (p->attempt == 0) {
        go_errstr(err, p->v4err, sizeof(p->v4err));
        p->attempt = 1;
        pair_connect(s, p);
        return;
    }
    go_errstr(err, e6, sizeof(e6));
    snprintf(why, sizeof(why),
             "failed to execute portforward in network namespace \"%s\": failed to connect to "
             "localhost:%d inside namespace \"%s\", IPv4: dial tcp4 127.0.0.1:%d: connect: %s "
             "IPv6 dial tcp6 [::1]:%d: connect: %s ",
             s->netns, p->port, s->netns, p->port, p->v4err, p->port, e6);
    pair_fail(s, p, why);
}

/*
 * Connect to the pod's port as containerd does: 127.0.0.1 first, then [::1]. Non-blocking: a
 * listener whose backlog is full must not hold the session.
 */
static void pair_connect(struct pf_session *s, struct pf_pair *p)
{
    struct sockaddr_in a4 = {0};
    struct sockaddr_in6 a6 = {0};
    int fam = p->attempt == 0 ? AF_INET : AF_INET6;
    int fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), err;

    if (fd < 0) {
        err = errno;
    } else if (fam == AF_INET) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)p->port);
        a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        err = connect(fd, (struct sockaddr *)&a4, sizeof(a4)) == 0 ? 0 : errno;
    } else {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)p->port);
        a6.sin6_addr = in6addr_loopback;
        err = connect(fd, (struct sockaddr *)&a6, sizeof(a6)) == 0 ? 0 : errno;
    }
    if (err == 0 || err == EINPROGRESS) {
        p->fd = fd;
        p->connecting = err == EINPROGRESS;
        p->connected = err == 0;
        return;
    }
    if (fd >= 0)
        close(fd);
    pair_attempt_failed(s, p, err);
}

/* A non-blocking connect finished (POLLOUT): connected, or the next address. */
static void pair_connect_done(struct pf_session *s, struct pf_pair *p)
{
    int err = 0;
    socklen_t l = sizeof(err);
    if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
        err = errno;
    p->connecting = false;
    if (!err) {
        p->connected = true;
        return;
    }
    close(p->fd);
    p->fd = -1;
    pair_attempt_failed(s, p, err);
}

/* A new stream from the client. */
static void on_syn_stream(struct pf_session *s, uint32_t id, bool fin, const unsigned char *hb,
                          size_t hl)
{
    struct buf nv;
    char type[16] = "", port[16] = "", reqid[64] = "", *end;
    struct pf_pair *p = NULL;
    long portn;
    int r1, r2, r3;

    buf_init(&nv);
    if (inflate_block(s, hb, hl, &nv)) {
        buf_release(&nv);
        send_goaway(s, SPDY_GOAWAY_PROTOCOL_ERROR);
        return;
    }
    r1 = kl_pf_header((unsigned char *)nv.p, nv.len, "streamtype", type, sizeof(type));
    r2 = kl_pf_header((unsigned char *)nv.p, nv.len, "port", port, sizeof(port));
    r3 = kl_pf_header((unsigned char *)nv.p, nv.len, "requestid", reqid, sizeof(reqid));
    buf_release(&nv);
    if (r1 < 0 || r2 < 0 || r3 < 0 || !(id & 1) || id <= s->last_id) {
        send_goaway(s, SPDY_GOAWAY_PROTOCOL_ERROR);
        return;
    }
    s->last_id = id;
    portn = strtol(port, &end, 10);
    if ((strcmp(type, "error") != 0 && strcmp(type, "data") != 0) || !reqid[0] || !port[0] ||
        *end || portn < 1 || portn > 65535) {
        log_info("msg=\"port-forward stream refused\" pod=%s streamType=\"%s\" port=\"%s\" "
                 "requestID=\"%s\"",
                 s->pod, type, port, reqid);
        send_rst(s, id, SPDY_RST_PROTOCOL_ERROR);
        return;
    }
    for (size_t i = 0; i < s->npairs; i++) {
        if (!s->pairs[i]->done && strcmp(s->pairs[i]->reqid, reqid) == 0)
            p = s->pairs[i];
    }
    if (!p) {
        if (s->npairs >= PF_MAX_PAIRS) {
            log_warn("msg=\"port-forward stream refused: too many\" pod=%s max=%d", s->pod,
                     PF_MAX_PAIRS);
            send_rst(s, id, SPDY_RST_REFUSED_STREAM);
            return;
        }
        p = calloc(1, sizeof(*p));
        if (!p) {
            send_rst(s, id, SPDY_RST_REFUSED_STREAM);
            return;
        }
        snprintf(p->reqid, sizeof(p->reqid), "%s", reqid);
        p->port = (int)portn;
        p->fd = -1;
        p->created = now_s();
        buf_init(&p->to_pod);
        s->pairs[s->npairs++] = p;
    }
    if ((type[0] == 'e' && p->err_id) || (type[0] == 'd' && p->data_id) || p->port != portn) {
        send_rst(s, id, SPDY_RST_STREAM_IN_USE);
        return;
    }
    send_syn_reply(s, id);
    if (type[0] == 'e') {
        p->err_id = id;
    } else {
        p->data_id = id;
        p->client_fin = fin;
    }
    if (p->err_id && p->data_id)
        pair_connect(s, p);
}

static void on_data(struct pf_session *s, uint32_t id, bool fin, const unsigned char *d, size_t n)
{
    struct pf_pair *p = pair_by_stream(s, id);
    if (!p || id != p->data_id || p->client_fin)
        return; /* the error stream carries nothing from the client; finished streams drop */
    if (n && buf_append(&p->to_pod, d, n)) {
        s->failed = true;
        return;
    }
    if (fin)
        p->client_fin = true;
}

/* Handle every whole SPDY frame in s->spdy (or s->in when not tunneled). */
static void spdy_process(struct pf_session *s, struct buf *b)
{
    size_t o = 0;
    while (!s->closing && !s->failed && b->len - o >= 8) {
        const unsigned char *f = (const unsigned char *)b->p + o;
        uint32_t len = be32(f + 4) & 0xffffff;
        int flags = f[4];
        if (len > PF_FRAME_MAX) {
            log_warn("msg=\"port-forward frame too large\" pod=%s len=%u", s->pod, len);
            send_goaway(s, SPDY_GOAWAY_PROTOCOL_ERROR);
            break;
        }
        if (b->len - o < 8 + (size_t)len)
            break;
        s->last_active = now_s();
        if (f[0] & 0x80) {
            int version = (f[0] & 0x7f) << 8 | f[1], type = f[2] << 8 | f[3];
            const unsigned char *body = f + 8;
            if (version != 3) {
                send_goaway(s, SPDY_GOAWAY_PROTOCOL_ERROR);
                break;
            }
            switch (type) {
            case SPDY_SYN_STREAM:
                if (len < 10) {
                    send_goaway(s, SPDY_GOAWAY_PROTOCOL_ERROR);
                    break;
                }
                on_syn_stream(s, be32(body) & 0x7fffffff, flags & SPDY_FLAG_FIN, body + 10,
                              len - 10);
                break;
            case SPDY_SYN_REPLY:
            case SPDY_HEADERS: {
                /* never expected, but the zlib stream must stay in step */
                struct buf nv;
                buf_init(&nv);
                if (len < 4 || inflate_block(s, body + 4, len - 4, &nv))
                    send_goaway(s, SPDY_GOAWAY_PROTOCOL_ERROR);
                buf_release(&nv);
                break;
            }
            case SPDY_RST_STREAM:
                if (len >= 8) {
                    struct pf_pair *p = pair_by_stream(s, be32(body) & 0x7fffffff);
                    if (p)
                        pair_finish(s, p, false);
                }
                break;
            case SPDY_PING:
                if (len == 4 && (be32(body) & 1))
                    ctrl_frame(s, SPDY_PING, 0, body, 4);
                break;
            case SPDY_GOAWAY:
                mark_closing(s);
                break;
            default: /* SETTINGS, WINDOW_UPDATE (no flow control here), unknown: ignored */
                break;
            }
        } else {
            on_data(s, be32(f) & 0x7fffffff, flags & SPDY_FLAG_FIN, f + 8, len);
        }
        o += 8 + len;
    }
    buf_consume(b, o);
}

/* Unwrap the whole WebSocket frames in s->in into s->spdy; control frames are answered. */
static void ws_process(struct pf_session *s)
{
    size_t o = 0;
    while (!s->closing && !s->failed && s->in.len - o >= 2) {
        const unsigned char *f = (const unsigned char *)s->in.p + o;
        int op = f[0] & 0x0f;
        bool masked = f[1] & 0x80;
        uint64_t n = f[1] & 0x7f;
        size_t hl = 2;
        unsigned char mask[4];
        if (n == 126) {
            if (s->in.len - o < 4)
                break;
            n = (uint64_t)f[2] << 8 | f[3];
            hl = 4;
        } else if (n == 127) {
            if (s->in.len - o < 10)
                break;
            n = 0;
            for (int i = 0; i < 8; i++)
                n = n << 8 | f[2 + i];
            hl = 10;
        }
        if (!masked || n > PF_FRAME_MAX) {
            log_warn("msg=\"port-forward websocket frame refused\" pod=%s masked=%d len=%llu",
                     s->pod, masked, (unsigned long long)n);
            s->failed = true;
            break;
        }
        if (s->in.len - o < hl + 4 + n)
            break;
        memcpy(mask, f + hl, 4);
        {
            unsigned char *pl = (unsigned char *)s->in.p + o + hl + 4;
            for (uint64_t i = 0; i < n; i++)
                pl[i] ^= mask[i & 3];
            switch (op) {
            case 0: /* continuation */
            case 2: /* binary */
                if (buf_append(&s->spdy, pl, (size_t)n))
                    s->failed = true;
                break;
            case 8: { /* close: answer it, end */
                unsigned char c[4] = {0x88, 2, 0x03, 0xe8};
                out_raw(s, c, 4);
                mark_closing(s);
                break;
            }
            case 9: { /* ping: pong */
                unsigned char h[4] = {0x8a, 0, 0, 0};
                if (n < 126) {
                    h[1] = (unsigned char)n;
                    out_raw(s, h, 2);
                    out_raw(s, pl, (size_t)n);
                }
                break;
            }
            case 10:
                break;
            default: /* text or unknown: the tunnel carries binary messages only */
                s->failed = true;
                break;
            }
        }
        s->last_active = now_s();
        o += hl + 4 + (size_t)n;
    }
    buf_consume(&s->in, o);
}

/* Read what the client sent. */
static void client_read(struct pf_session *s)
{
    for (int round = 0; round < 8; round++) {
        ssize_t n;
        if (buf_reserve(&s->in, PF_READ_CHUNK)) {
            s->failed = true;
            return;
        }
        if (s->ssl) {
            int r;
            ERR_clear_error();
            r = SSL_read(s->ssl, s->in.p + s->in.len, PF_READ_CHUNK);
            if (r <= 0) {
                int e = SSL_get_error(s->ssl, r);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                    s->failed = true;
                return;
            }
            n = r;
        } else {
            n = read(s->fd, s->in.p + s->in.len, PF_READ_CHUNK);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
            if (n <= 0) {
                s->failed = true;
                return;
            }
        }
        s->in.len += (size_t)n;
        if (s->ws) {
            ws_process(s);
            spdy_process(s, &s->spdy);
        } else {
            spdy_process(s, &s->in);
        }
        if (s->in.len + s->spdy.len > 2 * PF_FRAME_MAX + 64) {
            s->failed = true; /* cannot happen with whole frames consumed; a guard */
            return;
        }
    }
}

static void client_flush(struct pf_session *s)
{
    while (s->out_off < s->out.len) {
        size_t left = s->out.len - s->out_off;
        ssize_t n;
        if (s->ssl) {
            int r;
            ERR_clear_error();
            r = SSL_write(s->ssl, s->out.p + s->out_off, (int)(left > 65536 ? 65536 : left));
            if (r <= 0) {
                int e = SSL_get_error(s->ssl, r);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                    s->failed = true;
                break;
            }
            n = r;
        } else {
            n = write(s->fd, s->out.p + s->out_off, left);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                break;
            if (n <= 0) {
                s->failed = true;
                break;
            }
        }
        s->out_off += (size_t)n;
        s->last_active = now_s();
    }
    if (s->out_off == s->out.len) {
        buf_reset(&s->out);
        s->out_off = 0;
    } else if (s->out_off > (256u << 10)) {
        buf_consume(&s->out, s->out_off);
        s->out_off = 0;
    }
}

/* The pod's socket has bytes (or its end). */
static void pod_read(struct pf_session *s, struct pf_pair *p)
{
    char b[PF_READ_CHUNK];
    ssize_t n = read(p->fd, b, sizeof(b));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        pair_finish(s, p, true); /* the pod's end closed: both streams end */
        return;
    }
    send_data(s, p->data_id, false, b, (size_t)n);
    s->last_active = now_s();
}

static void pod_write(struct pf_session *s, struct pf_pair *p)
{
    while (p->to_pod.len) {
        ssize_t n = send(p->fd, p->to_pod.p, p->to_pod.len, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            pair_finish(s, p, true);
            return;
        }
        buf_consume(&p->to_pod, (size_t)n);
    }
    if (p->client_fin && !p->shut_wr) {
        shutdown(p->fd, SHUT_WR);
        p->shut_wr = true;
    }
}

static void pairs_sweep(struct pf_session *s)
{
    size_t j = 0;
    double t = now_s();
    for (size_t i = 0; i < s->npairs; i++) {
        struct pf_pair *p = s->pairs[i];
        if (!p->done && !(p->err_id && p->data_id) && t - p->created > PF_PAIR_TIMEOUT) {
            /* the kubelet: "timed out waiting for all streams" */
            log_info("msg=\"port-forward pair timed out\" pod=%s requestID=%s", s->pod, p->reqid);
            if (p->err_id)
                send_rst(s, p->err_id, SPDY_RST_CANCEL);
            if (p->data_id)
                send_rst(s, p->data_id, SPDY_RST_CANCEL);
            pair_finish(s, p, false);
        }
        if (p->done) {
            buf_release(&p->to_pod);
            free(p);
        } else {
            s->pairs[j++] = p;
        }
    }
    s->npairs = j;
}

static void session_free(struct pf_session *s)
{
    for (size_t i = 0; i < s->npairs; i++) {
        if (s->pairs[i]->fd >= 0)
            close(s->pairs[i]->fd);
        buf_release(&s->pairs[i]->to_pod);
        free(s->pairs[i]);
    }
    if (s->zin_ok)
        inflateEnd(&s->zin);
    if (s->zout_ok)
        deflateEnd(&s->zout);
    if (s->ssl) {
        SSL_shutdown(s->ssl);
        SSL_free(s->ssl);
    }
    if (s->fd >= 0)
        close(s->fd);
    if (s->netns_fd >= 0)
        close(s->netns_fd);
    buf_release(&s->in);
    buf_release(&s->spdy);
    buf_release(&s->out);
    free(s);
}

/* Is fd the network namespace this thread is in already (a hostNetwork pod)? */
static bool same_netns(int fd)
{
    struct stat a, b;
    return fstat(fd, &a) == 0 && stat("/proc/thread-self/ns/net", &b) == 0 &&
           a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static void *session_run(void *arg)
{
    struct pf_session *s = arg;
    struct kl_pf *pf = s->pf;
    struct pollfd pfd[1 + PF_MAX_PAIRS];
    struct pf_pair *polled[PF_MAX_PAIRS];

    if (s->netns_fd >= 0 && !same_netns(s->netns_fd) && setns(s->netns_fd, CLONE_NEWNET) < 0) {
        log_warn("msg=\"port-forward cannot enter the pod's network namespace\" pod=%s netns=%s "
                 "err=\"%s\"",
                 s->pod, s->netns, strerror(errno));
        s->failed = true;
    }
    log_info("msg=\"port-forward session\" pod=%s netns=%s protocol=%s", s->pod, s->netns,
             s->ws ? "websocket" : "spdy");
    s->last_active = now_s();
    while (!s->failed && !atomic_load(&pf->stop)) {
        size_t np = 0, backlog = 0;
        bool read_client = !s->closing;
        double t;
        int rc;

        for (size_t i = 0; i < s->npairs; i++) {
            if (s->pairs[i]->to_pod.len > PF_STREAM_BUF)
                read_client = false; /* one pod socket is slow: TCP pushes the client back */
        }
        backlog = s->out.len - s->out_off;
        if (backlog > PF_OUT_MAX)
            read_client = false; /* a client that does not read gets no more answers queued */
        if (s->closing && !backlog)
            break;
        if (s->closing && now_s() - s->closing_since > PF_CLOSE_GRACE)
            break; /* its GOAWAY was not taken */
        pfd[0].fd = s->fd;
        pfd[0].events = (short)((read_client ? POLLIN : 0) | (backlog ? POLLOUT : 0));
        pfd[0].revents = 0;
        for (size_t i = 0; i < s->npairs; i++) {
            struct pf_pair *p = s->pairs[i];
            short ev = 0;
            if (p->done || p->fd < 0)
                continue;
            if (p->connecting)
                ev = POLLOUT;
            else if (p->connected) {
                if (backlog < PF_OUT_MAX)
                    ev |= POLLIN;
                if (p->to_pod.len || (p->client_fin && !p->shut_wr))
                    ev |= POLLOUT;
            }
            pfd[1 + np].fd = p->fd;
            pfd[1 + np].events = ev;
            pfd[1 + np].revents = 0;
            polled[np++] = p;
        }
        rc = poll(pfd, 1 + np, s->ssl && SSL_pending(s->ssl) && read_client ? 0 : 500);
        if (rc < 0 && errno != EINTR) {
            s->failed = true;
            break;
        }
        if (pfd[0].revents & (POLLERR | POLLNVAL))
            s->failed = true;
        if (read_client &&
            ((pfd[0].revents & (POLLIN | POLLHUP)) || (s->ssl && SSL_pending(s->ssl))))
            client_read(s);
        for (size_t i = 0; i < np && !s->failed; i++) {
            struct pf_pair *p = polled[i];
            short re = pfd[1 + i].revents;
            if (p->done || !re)
                continue;
            if (p->connecting) {
                pair_connect_done(s, p);
                continue;
            }
            if (re & POLLOUT)
                pod_write(s, p);
            if (!p->done && (re & (POLLIN | POLLHUP | POLLERR)))
                pod_read(s, p);
        }
        /* bytes that arrived for sockets just connected, or with nothing polled yet */
        for (size_t i = 0; i < s->npairs; i++) {
            struct pf_pair *p = s->pairs[i];
            if (!p->done && p->connected && (p->to_pod.len || (p->client_fin && !p->shut_wr)))
                pod_write(s, p);
        }
        pairs_sweep(s);
        client_flush(s);
        t = now_s();
        if (t - s->last_active > s->idle_timeout && !s->closing) {
            log_info("msg=\"port-forward session idle, closing\" pod=%s idle_s=%.0f", s->pod,
                     s->idle_timeout);
            send_goaway(s, 0);
            client_flush(s);
        }
    }
    if (!s->failed && atomic_load(&pf->stop) && !s->closing) {
        send_goaway(s, 0);
        client_flush(s);
    }
    log_info("msg=\"port-forward session ended\" pod=%s", s->pod);
    session_free(s);
    atomic_fetch_sub(&pf->sessions, 1);
    return NULL;
}

/* Does the comma-separated header value list contain token (case-insensitive)? */
static bool hdr_has(const char *v, const char *token)
{
    size_t tl = strlen(token);
    while (v && *v) {
        const char *e;
        while (*v == ' ' || *v == ',' || *v == '\t')
            v++;
        e = v;
        while (*e && *e != ',')
            e++;
        {
            const char *t = e;
            while (t > v && (t[-1] == ' ' || t[-1] == '\t'))
                t--;
            if ((size_t)(t - v) == tl && strncasecmp(v, token, tl) == 0)
                return true;
        }
        v = e;
    }
    return false;
}

/* Every X-Stream-Protocol-Version value of the request (the header may repeat). */
static bool req_offers(const struct http_request *req, const char *name, const char *token)
{
    for (size_t i = 0; i < req->nhdrs; i++) {
        if (strcmp(req->hdr_names[i], name) == 0 && hdr_has(req->hdr_values[i], token))
            return true;
    }
    return false;
}

static void ws_accept_key(const char *key, char out[64])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdl = 0;
    char cat[256];
    snprintf(cat, sizeof(cat), "%s%s", key, guid);
    EVP_Digest(cat, strlen(cat), md, &mdl, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdl);
}

void kl_pod_portforward(struct kl *kl, struct http_conn *c, const struct http_request *req,
                        const char *ns, const char *name)
{
    struct rstore *pods = kl_store_get(kl, "", "pods", false);
    struct rstore *nodes = kl_store_get(kl, "", "nodes", false);
    const char *upgrade = http_req_header(req, "upgrade");
    const char *node_name, *dir, *uid;
    const json_t *pod, *node;
    char key[600], msg[1200], path[4400], netns[256] = "", resp[512];
    bool ws;
    struct pf_session *s = NULL;
    pthread_t th;
    pthread_attr_t attr;
    FILE *f;
    int netns_fd = -1, rc;

    if (strcmp(req->method, "POST") != 0 && strcmp(req->method, "GET") != 0) {
        kl_respond_status(c, 405, "MethodNotAllowed",
                          "the server does not allow this method on the requested resource", NULL,
                          NULL, NULL, NULL);
        return;
    }
    kl_key(ns, name, key, sizeof(key));
    pod = pods ? kl_store_lookup(pods, key) : NULL;
    if (!pod) {
        snprintf(msg, sizeof(msg), "pods \"%s\" not found", name);
        kl_respond_status(c, 404, "NotFound", msg, "pods", name, "", NULL);
        return;
    }
    node_name = jstr(json_object_get(pod, "spec"), "nodeName");
    if (!node_name || !*node_name) {
        snprintf(msg, sizeof(msg), "pod %s does not have a host assigned", name);
        kl_respond_status(c, 400, "BadRequest", msg, NULL, NULL, NULL, NULL);
        return;
    }
    ws = upgrade && strcasecmp(upgrade, "websocket") == 0;
    if (ws ? !req_offers(req, "sec-websocket-protocol", PF_WS_PROTOCOL) ||
                 !http_req_header(req, "sec-websocket-key")
           : !upgrade || !hdr_has(upgrade, "SPDY/3.1")) {
        /* a refused WebSocket upgrade makes kubectl fall back to SPDY */
        kl_respond_status(c, 400, "BadRequest",
                          ws ? "unable to upgrade: no supported WebSocket subprotocol (supported: "
                               "[" PF_WS_PROTOCOL "])"
                             : "unable to upgrade: missing upgrade headers in request",
                          NULL, NULL, NULL, NULL);
        return;
    }
    if (!ws && !req_offers(req, "x-stream-protocol-version", PF_PROTOCOL)) {
        kl_respond_status(c, 403, "Forbidden",
                          "unable to upgrade: unable to negotiate protocol: server supports "
                          "[" PF_PROTOCOL "]",
                          NULL, NULL, NULL, NULL);
        return;
    }
    kl_key(NULL, node_name, key, sizeof(key));
    node = nodes ? kl_store_lookup(nodes, key) : NULL;
    dir = jstr(jget2(node, "metadata", "annotations"), LOG_DIR_ANNOTATION);
    uid = jstr_or(json_object_get(pod, "metadata"), "uid", "");
    if (!dir || dir[0] != '/' || strchr(uid, '/') || !uid[0]) {
        snprintf(
            msg, sizeof(msg),
            "node %s cannot forward ports (kubelite enters the network namespaces of a "
            "kubelet-lite node, which names its pod directory in the annotation " LOG_DIR_ANNOTATION
            ")",
            node_name);
        kl_respond_status(c, 400, "BadRequest", msg, NULL, NULL, NULL, NULL);
        return;
    }
    snprintf(path, sizeof(path), "%s/%s/netns", dir, uid);
    f = fopen(path, "re");
    if (f) {
        if (!fgets(netns, sizeof(netns), f))
            netns[0] = '\0';
        fclose(f);
        netns[strcspn(netns, "\n")] = '\0';
    }
    if (netns[0] != '/') {
        /* the kubelet's answer for a pod it does not run (yet) */
        snprintf(msg, sizeof(msg), "pod not found (\"%s_%s\")", name, ns);
        kl_respond_status(c, 404, "NotFound", msg, NULL, NULL, NULL, NULL);
        return;
    }
    netns_fd = open(netns, O_RDONLY | O_CLOEXEC);
    if (netns_fd < 0) {
        snprintf(msg, sizeof(msg), "cannot open the network namespace %s of pod %s/%s: %s", netns,
                 ns, name, strerror(errno));
        kl_respond_status(c, 500, "InternalError", msg, NULL, NULL, NULL, NULL);
        return;
    }
    if (atomic_fetch_add(&kl->pf.sessions, 1) >= PF_MAX_SESSIONS) {
        atomic_fetch_sub(&kl->pf.sessions, 1);
        close(netns_fd);
        log_warn("msg=\"port-forward refused: too many sessions\" max=%d", PF_MAX_SESSIONS);
        kl_respond_status(c, 429, "TooManyRequests",
                          "too many port-forward connections at once, try again later", NULL, NULL,
                          NULL, NULL);
        return;
    }
    s = calloc(1, sizeof(*s));
    if (!s)
        goto fail;
    s->pf = &kl->pf;
    s->fd = -1;
    s->netns_fd = netns_fd;
    netns_fd = -1;
    s->ws = ws;
    s->idle_timeout = kl->pf.idle_timeout > 0 ? kl->pf.idle_timeout : 4 * 3600;
    snprintf(s->netns, sizeof(s->netns), "%s", netns);
    snprintf(s->pod, sizeof(s->pod), "%s/%s", ns, name);
    snprintf(s->uid, sizeof(s->uid), "%s", uid);
    buf_init(&s->in);
    buf_init(&s->spdy);
    buf_init(&s->out);
    if (inflateInit(&s->zin) != Z_OK)
        goto fail;
    s->zin_ok = true;
    if (deflateInit(&s->zout, Z_DEFAULT_COMPRESSION) != Z_OK)
        goto fail;
    s->zout_ok = true;
    {
        size_t dl;
        const unsigned char *d = kl_pf_dictionary(&dl);
        if (deflateSetDictionary(&s->zout, d, (uInt)dl) != Z_OK)
            goto fail;
    }
    if (ws) {
        char acc[64];
        ws_accept_key(http_req_header(req, "sec-websocket-key"), acc);
        snprintf(resp, sizeof(resp),
                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
                 "Upgrade\r\nSec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: " PF_WS_PROTOCOL
                 "\r\n\r\n",
                 acc);
    } else {
        snprintf(resp, sizeof(resp),
                 "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "
                 "SPDY/3.1\r\nX-Stream-Protocol-Version: " PF_PROTOCOL "\r\n\r\n");
    }
    if (buf_puts(&s->out, resp))
        goto fail;
    {
        char *early = NULL;
        size_t early_len = 0;
        rc = http_conn_takeover(c, &s->fd, &s->ssl, &early, &early_len);
        if (rc)
            goto fail;
        if (early_len && buf_append(&s->in, early, early_len)) {
            free(early);
            goto fail_taken;
        }
        free(early);
    }
    {
        /* the session thread does blocking-free I/O on non-blocking sockets */
        int fl = fcntl(s->fd, F_GETFL);
        if (fl >= 0)
            fcntl(s->fd, F_SETFL, fl | O_NONBLOCK);
    }
    if (s->ssl)
        SSL_set_mode(s->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (s->in.len) {
        if (s->ws) {
            ws_process(s);
            spdy_process(s, &s->spdy);
        } else {
            spdy_process(s, &s->in);
        }
    }
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&th, &attr, session_run, s);
    pthread_attr_destroy(&attr);
    if (rc) {
        log_warn("msg=\"port-forward: no thread\" err=\"%s\"", strerror(rc));
        goto fail_taken;
    }
    return;
fail_taken:
    /* the connection is ours: nothing can be answered on it any more */
    session_free(s);
    atomic_fetch_sub(&kl->pf.sessions, 1);
    return;
fail:
    if (s)
        session_free(s);
    if (netns_fd >= 0)
        close(netns_fd);
    atomic_fetch_sub(&kl->pf.sessions, 1);
    kl_respond_status(c, 500, "InternalError", "port-forward: out of memory", NULL, NULL, NULL,
                      NULL);
}

void kl_portforward_shutdown(struct kl *kl)
{
    atomic_store(&kl->pf.stop, true);
    for (int i = 0; i < 40 && atomic_load(&kl->pf.sessions) > 0; i++)
        usleep(50 * 1000);
}
