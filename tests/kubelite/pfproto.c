/*
 * pfproto.c - SPDY/3.1 and its WebSocket tunnel for kubelite's pods/portforward (pfproto.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "tests/kubelite/pfproto.h"

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

double kl_pf_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

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
        s->closing_since = kl_pf_now();
    s->closing = true;
}

static void send_rst(struct pf_session *s, uint32_t id, uint32_t status)
{
    unsigned char b[8];
    put32(b, id & 0x7fffffff);
    put32(b + 4, status);
    ctrl_frame(s, SPDY_RST_STREAM, 0, b, 8);
}

void kl_pf_send_goaway(struct pf_session *s, uint32_t status)
{
    unsigned char b[8];
    put32(b, s->last_id & 0x7fffffff);
    put32(b + 4, status);
    ctrl_frame(s, SPDY_GOAWAY, 0, b, 8);
    mark_closing(s);
}

/* A DATA frame (payload may be empty, e.g. a lone FIN). */
void kl_pf_send_data(struct pf_session *s, uint32_t id, bool fin, const void *p, size_t n)
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

void kl_pf_pair_finish(struct pf_session *s, struct pf_pair *p, bool send_fins)
{
    if (p->done)
        return;
    if (send_fins) {
        kl_pf_send_data(s, p->data_id, true, NULL, 0);
        kl_pf_send_data(s, p->err_id, true, NULL, 0);
    }
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
    p->done = true;
}

/* The connection failed for good: say why on the error stream (kubectl prints it), end both. */
void kl_pf_pair_fail(struct pf_session *s, struct pf_pair *p, const char *why)
{
    char msg[2200];
    int n = snprintf(msg, sizeof(msg), "error forwarding port %d to pod %s, uid %s: %s", p->port,
                     s->pod, s->uid, why);
    log_info("msg=\"port-forward failed\" pod=%s port=%d err=\"%s\"", s->pod, p->port, why);
    kl_pf_send_data(s, p->err_id, false, msg,
                    (size_t)(n < (int)sizeof(msg) ? n : (int)sizeof(msg) - 1));
    kl_pf_pair_finish(s, p, true);
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
        kl_pf_send_goaway(s, SPDY_GOAWAY_PROTOCOL_ERROR);
        return;
    }
    r1 = kl_pf_header((unsigned char *)nv.p, nv.len, "streamtype", type, sizeof(type));
    r2 = kl_pf_header((unsigned char *)nv.p, nv.len, "port", port, sizeof(port));
    r3 = kl_pf_header((unsigned char *)nv.p, nv.len, "requestid", reqid, sizeof(reqid));
    buf_release(&nv);
    if (r1 < 0 || r2 < 0 || r3 < 0 || !(id & 1) || id <= s->last_id) {
        kl_pf_send_goaway(s, SPDY_GOAWAY_PROTOCOL_ERROR);
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
        p->created = kl_pf_now();
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
        s->pair_ready(s, p);
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
            kl_pf_send_goaway(s, SPDY_GOAWAY_PROTOCOL_ERROR);
            break;
        }
        if (b->len - o < 8 + (size_t)len)
            break;
        s->last_active = kl_pf_now();
        if (f[0] & 0x80) {
            int version = (f[0] & 0x7f) << 8 | f[1], type = f[2] << 8 | f[3];
            const unsigned char *body = f + 8;
            if (version != 3) {
                kl_pf_send_goaway(s, SPDY_GOAWAY_PROTOCOL_ERROR);
                break;
            }
            switch (type) {
            case SPDY_SYN_STREAM:
                if (len < 10) {
                    kl_pf_send_goaway(s, SPDY_GOAWAY_PROTOCOL_ERROR);
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
                    kl_pf_send_goaway(s, SPDY_GOAWAY_PROTOCOL_ERROR);
                buf_release(&nv);
                break;
            }
            case SPDY_RST_STREAM:
                if (len >= 8) {
                    struct pf_pair *p = pair_by_stream(s, be32(body) & 0x7fffffff);
                    if (p)
                        kl_pf_pair_finish(s, p, false);
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
                /* its frames are handled before the next message (a close after them) */
                if (buf_append(&s->spdy, pl, (size_t)n))
                    s->failed = true;
                else
                    spdy_process(s, &s->spdy);
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
        s->last_active = kl_pf_now();
        o += hl + 4 + (size_t)n;
    }
    buf_consume(&s->in, o);
}

void kl_pf_sweep(struct pf_session *s)
{
    size_t j = 0;
    double t = kl_pf_now();
    for (size_t i = 0; i < s->npairs; i++) {
        struct pf_pair *p = s->pairs[i];
        if (!p->done && !(p->err_id && p->data_id) && t - p->created > PF_PAIR_TIMEOUT) {
            /* the kubelet: "timed out waiting for all streams" */
            log_info("msg=\"port-forward pair timed out\" pod=%s requestID=%s", s->pod, p->reqid);
            if (p->err_id)
                send_rst(s, p->err_id, SPDY_RST_CANCEL);
            if (p->data_id)
                send_rst(s, p->data_id, SPDY_RST_CANCEL);
            kl_pf_pair_finish(s, p, false);
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

int kl_pf_init(struct pf_session *s, bool ws)
{
    size_t dl;
    const unsigned char *d = kl_pf_dictionary(&dl);

    s->ws = ws;
    buf_init(&s->in);
    buf_init(&s->spdy);
    buf_init(&s->out);
    if (inflateInit(&s->zin) != Z_OK)
        return -ENOMEM;
    s->zin_ok = true;
    if (deflateInit(&s->zout, Z_DEFAULT_COMPRESSION) != Z_OK)
        return -ENOMEM;
    s->zout_ok = true;
    if (deflateSetDictionary(&s->zout, d, (uInt)dl) != Z_OK)
        return -ENOMEM;
    s->last_active = kl_pf_now();
    return 0;
}

void kl_pf_release(struct pf_session *s)
{
    for (size_t i = 0; i < s->npairs; i++) {
        if (s->pairs[i]->fd >= 0)
            close(s->pairs[i]->fd);
        buf_release(&s->pairs[i]->to_pod);
        free(s->pairs[i]);
    }
    s->npairs = 0;
    if (s->zin_ok)
        inflateEnd(&s->zin);
    if (s->zout_ok)
        deflateEnd(&s->zout);
    s->zin_ok = s->zout_ok = false;
    buf_release(&s->in);
    buf_release(&s->spdy);
    buf_release(&s->out);
}

void kl_pf_input(struct pf_session *s)
{
    if (s->ws)
        ws_process(s);
    else
        spdy_process(s, &s->in);
}
