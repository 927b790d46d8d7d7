/*
 * fuzz_portforward.c - kubelite's port-forward protocol (tests/kubelite/pfproto.c): the bytes a
 * client sends after the pods/portforward upgrade (any pod can reach the API server), SPDY/3.1
 * frames bare or tunneled in WebSocket messages.
 *
 * The first input byte picks the tunnel (bit 0) and where the rest is split into two reads (as
 * the session thread reads whatever has arrived); the rest is the client's bytes. Pairs
 * "connect" without sockets: a pair for a port divisible by 3 fails as a refused port does.
 *
 * Invariants, for any bytes:
 *   - what is queued for the client is a sequence of whole, well-formed frames: WebSocket frames
 *     unmasked (binary, pong, close) each binary one holding whole SPDY frames; SPDY control
 *     frames of version 3 (SYN_REPLY, RST_STREAM with a known status, PING of 4 bytes, GOAWAY of
 *     8), data frames on odd (client-opened) streams with no flag but FIN; every SYN_REPLY's
 *     header block inflates, in one zlib stream primed with the SPDY/3 dictionary, to an empty
 *     name/value block (what kubectl's spdystream will read);
 *   - at most PF_MAX_PAIRS pairs, each with both stream ids distinct, odd and answered;
 *   - the output does not depend on how the bytes were split between the two reads;
 *   - kl_pf_header never reads past its block.
 */
#include <string.h>
#include <zlib.h>

#include "core/buf.h"
#include "core/log.h"
#include "tests/fuzz/fuzz.h"
#include "tests/kubelite/pfproto.h"

static void ready(struct pf_session *s, struct pf_pair *p)
{
    if (p->port % 3 == 0)
        kl_pf_pair_fail(s, p, "connect: connection refused");
    else
        p->connected = true;
}

static void feed(struct pf_session *s, const uint8_t *d, size_t n)
{
    if (s->closing || s->failed || !n)
        return; /* the session reads no more */
    FUZZ_ASSERT(buf_append(&s->in, d, n) == 0);
    kl_pf_input(s);
    FUZZ_ASSERT(s->npairs <= PF_MAX_PAIRS);
    for (size_t i = 0; i < s->npairs; i++) {
        const struct pf_pair *p = s->pairs[i];
        FUZZ_ASSERT(!p->err_id || (p->err_id & 1));
        FUZZ_ASSERT(!p->data_id || (p->data_id & 1));
        FUZZ_ASSERT(!p->err_id || p->err_id != p->data_id);
        FUZZ_ASSERT(p->port >= 1 && p->port <= 65535);
    }
    kl_pf_sweep(s);
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Whole SPDY frames in b[0..n), as the server may send them; SYN_REPLY blocks inflated in z. */
static void check_spdy(z_stream *z, const unsigned char *b, size_t n)
{
    size_t o = 0;
    while (o < n) {
        uint32_t len;
        FUZZ_ASSERTF(n - o >= 8, "%zu bytes of a frame head", n - o);
        len = be32(b + o + 4) & 0xffffff;
        FUZZ_ASSERTF(n - o - 8 >= len, "frame of %u with %zu bytes", len, n - o - 8);
        if (b[o] & 0x80) {
            int type = b[o + 2] << 8 | b[o + 3];
            FUZZ_ASSERT(b[o] == 0x80 && b[o + 1] == 3);
            switch (type) {
            case 2: { /* SYN_REPLY: stream id, header block */
                unsigned char nv[64];
                FUZZ_ASSERT(len > 4 && (be32(b + o + 8) & 1));
                z->next_in = (unsigned char *)b + o + 12;
                z->avail_in = len - 4;
                z->next_out = nv;
                z->avail_out = sizeof(nv);
                for (;;) {
                    int zr = inflate(z, Z_SYNC_FLUSH);
                    if (zr == Z_NEED_DICT) {
                        size_t dl;
                        const unsigned char *d = kl_pf_dictionary(&dl);
                        FUZZ_ASSERT(inflateSetDictionary(z, d, (uInt)dl) == Z_OK);
                        continue;
                    }
                    FUZZ_ASSERTF(zr == Z_OK, "inflate: %d", zr);
                    if (!z->avail_in)
                        break;
                }
                FUZZ_ASSERTF(sizeof(nv) - z->avail_out == 4 && !memcmp(nv, "\0\0\0\0", 4),
                             "a SYN_REPLY block of %zu bytes", sizeof(nv) - z->avail_out);
                break;
            }
            case 3: { /* RST_STREAM */
                uint32_t st;
                FUZZ_ASSERT(len == 8);
                st = be32(b + o + 12);
                FUZZ_ASSERTF(st == 1 || st == 3 || st == 5 || st == 8, "RST status %u", st);
                break;
            }
            case 6:
                FUZZ_ASSERT(len == 4 && (be32(b + o + 8) & 1));
                break;
            case 7:
                FUZZ_ASSERT(len == 8);
                break;
            default:
                FUZZ_ASSERTF(0, "control frame type %d sent", type);
            }
        } else {
            uint32_t id = be32(b + o) & 0x7fffffff;
            FUZZ_ASSERTF(id & 1, "data on stream %u", id);
            FUZZ_ASSERTF((b[o + 4] & ~1) == 0, "data flags %#x", b[o + 4]);
        }
        o += 8 + len;
    }
}

static void check_output(const struct buf *out, bool ws)
{
    const unsigned char *b = (const unsigned char *)out->p;
    z_stream z;
    size_t o = 0;

    memset(&z, 0, sizeof(z));
    FUZZ_ASSERT(inflateInit(&z) == Z_OK);
    if (!ws) {
        check_spdy(&z, b, out->len);
        inflateEnd(&z);
        return;
    }
    while (o < out->len) {
        size_t hl = 2;
        uint64_t n;
        FUZZ_ASSERT(out->len - o >= 2);
        FUZZ_ASSERTF(b[o] == 0x82 || b[o] == 0x88 || b[o] == 0x8a, "WebSocket byte %#x", b[o]);
        FUZZ_ASSERT(!(b[o + 1] & 0x80)); /* a server never masks */
        n = b[o + 1] & 0x7f;
        if (n == 126) {
            FUZZ_ASSERT(out->len - o >= 4);
            n = (uint64_t)b[o + 2] << 8 | b[o + 3];
            hl = 4;
        } else if (n == 127) {
            FUZZ_ASSERT(out->len - o >= 10);
            n = 0;
            for (int i = 0; i < 8; i++)
                n = n << 8 | b[o + 2 + i];
            hl = 10;
        }
        FUZZ_ASSERT(out->len - o - hl >= n);
        if (b[o] == 0x82)
            check_spdy(&z, b + o + hl, (size_t)n);
        o += hl + (size_t)n;
    }
    inflateEnd(&z);
}

static void run(const uint8_t *d, size_t n, bool ws, size_t split, struct buf *out)
{
    struct pf_session *s = calloc(1, sizeof(*s));

    FUZZ_ASSERT(s);
    s->fd = s->netns_fd = -1;
    snprintf(s->pod, sizeof(s->pod), "default/app");
    snprintf(s->uid, sizeof(s->uid), "0000");
    snprintf(s->netns, sizeof(s->netns), "/var/run/netns/kl-fuzz");
    s->pair_ready = ready;
    FUZZ_ASSERT(kl_pf_init(s, ws) == 0);
    feed(s, d, split);
    feed(s, d + split, n - split);
    check_output(&s->out, ws);
    FUZZ_ASSERT(buf_append(out, s->out.p, s->out.len) == 0);
    kl_pf_release(s);
    free(s);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR); /* every refused frame is logged at warn */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct buf one, two;
    char v[32];
    bool ws;
    size_t split;

    if (size < 1)
        return 0;
    ws = data[0] & 1;
    split = (size_t)(data[0] >> 1) * (size - 1) / 127;
    buf_init(&one);
    buf_init(&two);
    run(data + 1, size - 1, ws, size - 1, &one);
    run(data + 1, size - 1, ws, split, &two);
    FUZZ_ASSERTF(one.len == two.len && (!one.len || !memcmp(one.p, two.p, one.len)),
                 "output of one read (%zu bytes) and of two split at %zu (%zu bytes) differ",
                 one.len, split, two.len);
    buf_release(&one);
    buf_release(&two);
    /* the input as a decompressed name/value block */
    (void)kl_pf_header(data, size, "streamtype", v, sizeof(v));
    (void)kl_pf_header(data, size, "", v, 1);
    return 0;
}
