/*
 * stream_load.c - N simulated weft-agents on the config stream, and a trivial TLS WebSocket
 * server to measure them against; driven by bench/stream_bench.py (BENCHMARKS.md, "config
 * stream").
 *
 *   stream_load --agents FILE --key FILE --trust FILE --port P [--host 127.0.0.1]
 *               [--server-name weftd.weft-system.svc] [--stalled-every K] [--protocol 1|2]
 *   stream_load --serve --cert FILE --key FILE --trust FILE --port P --doc FILE
 *
 * Agents (one process, one thread, one epoll set, one descriptor per agent): FILE has one line
 * per agent, "namespace name uid chain", chain being the PEM certificate chain weftd's
 * POST /v1/certificates issued for a token bound to that pod, base64-encoded on one line. Every
 * agent: non-blocking TCP from its own source address (127.1.x.y, 50 agents per address, so
 * weftd's per-address cap of 64 holds and repeated storms do not run out of ports), TLS with its
 * certificate (all share the --key: one P-256 key, many certificates), the WebSocket upgrade
 * (subprotocol weft-config-v1, or with --protocol 2 weft-config-v2 then v1, the protocol weftd
 * chose read from its answer; the Sec-WebSocket-Accept checked), `hello` with the last ACKed
 * hash; every `config` has its hash recomputed over the document bytes (SHA-256) and compared,
 * then is ACKed (a mismatch is NACKed and counted). Over v2 each agent keeps its own block
 * cache (push/'s, the one weft-agent uses, with 256 KiB of spare blocks): it asks for the
 * blocks it lacks (`need`), assembles the document and checks its hash the same way. Every K-th
 * agent (--stalled-every) is a slow reader: once it has ACKed the first config of a connection, or
 * at once after a hello carrying a hash, it stops reading (it still notices the peer closing, and
 * then reconnects). An attempt has the agent's deadlines: PUSH_CONNECT_TIMEOUT_S for the TCP
 * connect, PUSH_HANDSHAKE_TIMEOUT_S for the TLS handshake and the upgrade (the agent gives each of
 * these that long; here both together). A closed stream is reopened with the agent's backoff
 * (docs/config-stream.md): delay before attempt n uniform in [d/2, d], d = min(30 s, 0.5 s * 2^n);
 * n goes back to 0 once a hello was answered with a config or the stream stayed open 1 s, and an
 * attempt that made no TCP connection (refused, or past its connect deadline) uses at most step 2
 * (2 s).
 *
 * Commands on stdin, one per line; each answers one line on stdout:
 *   connect              open every agent's stream        -> "ok"
 *   synced T             wait (at most T s) until every agent has its stream open and has
 *                        ACKed a config (on it, or before when its hello carried that hash)
 *                        -> "synced n=N of=M secs=S"
 *   mark                 zero the per-change counters     -> "ok"
 *   wait NS|* T          wait (at most T s) until every non-stalled agent in namespace NS (or
 *                        all) ACKed a config received after the mark ->
 *                        "done n= want= p50_ms= p99_ms= max_ms= wire_bytes= payload_bytes=
 *                        configs= others= hash_errors=" (latency from the mark's time T0 given
 *                        as "wait NS T T0": CLOCK_MONOTONIC seconds of the API write)
 *   open T               wait (at most T s) until every agent has a stream open and its hello
 *                        sent -> "open n= of= secs= configs="
 *   reconnect            every agent drops its connection and opens a new one at once -> "ok"
 *   dump NS FILE         write the last document an agent of NS received to FILE -> "ok"
 *   stats                -> one line of counters
 *   quit
 *
 * Server (--serve): the baseline. Accepts TLS (client certificates verified against --trust),
 * answers the upgrade, and sends every agent after its hello the --doc document as a `config`
 * (hash computed once). Command "push NS|*" on stdin sends the next revision of the document
 * (one field changed; hash and frame built once) to every stream of namespace NS, "quit" ends.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <signal.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "push/push.h"
#include "push/push_int.h"

#define HASH_HEX 64
#define PER_ADDR 50
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define SUBPROTO "weft-config-v1"
#define SUBPROTO_V2 "weft-config-v2"
#define SPARE_BYTES (256 * 1024) /* v2: unpinned blocks each agent keeps */
#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 30000
#define REFUSED_STEP 2 /* push/client.c: no TCP connection: back off at most 0.5 s * 2^2 */

static _Noreturn void die(const char *what)
{
    fprintf(stderr, "stream_load: %s: %s\n", what, errno ? strerror(errno) : "failed");
    ERR_print_errors_fp(stderr);
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *p = NULL;
    long n;

    if (!f)
        die(path);
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0 ||
        !(p = malloc((size_t)n + 1)) || fread(p, 1, (size_t)n, f) != (size_t)n)
        die(path);
    p[n] = '\0';
    fclose(f);
    if (len)
        *len = (size_t)n;
    return p;
}

static void sha256_hex(const void *p, size_t n, char out[HASH_HEX + 1])
{
    unsigned char md[32];
    unsigned int mdlen = 0;

    if (EVP_Digest(p, n, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        die("sha256");
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* --- byte buffers -------------------------------------------------------------------------- */

struct bytes {
    unsigned char *p;
    size_t len, cap, off; /* off: consumed (in) or written (out) */
};

static void bytes_add(struct bytes *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;

        while (cap < b->len + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p)
            die("out of memory");
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

/* Drop what was consumed; free the memory once empty (agents hold nothing between frames). */
static void bytes_compact(struct bytes *b)
{
    if (b->off == b->len) {
        free(b->p);
        memset(b, 0, sizeof(*b));
    } else if (b->off > 0 && b->off > b->len / 2) {
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
}

/* A WebSocket frame header (+ payload) onto b; client frames are masked. */
static void ws_frame(struct bytes *b, int opcode, const void *payload, size_t n, bool mask)
{
    unsigned char h[14];
    size_t hl = 2;
    uint32_t key = (uint32_t)rnd();
    unsigned char *dst;

    h[0] = (unsigned char)(0x80 | opcode);
    if (n < 126) {
        h[1] = (unsigned char)n;
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
    if (mask) {
        h[1] |= 0x80;
        memcpy(h + hl, &key, 4);
        hl += 4;
    }
    bytes_add(b, h, hl);
    bytes_add(b, payload, n);
    if (mask) {
        dst = b->p + b->len - n;
        for (size_t i = 0; i < n; i++)
            dst[i] ^= ((unsigned char *)&key)[i % 4];
    }
}

/* One complete frame at in->p + in->off: 1 (opcode, payload unmasked in place), 0 need more. */
static int ws_parse(struct bytes *in, int *opcode, unsigned char **payload, size_t *n, bool *fin)
{
    unsigned char *h = in->p + in->off;
    size_t avail = in->len - in->off, hl = 2, len;
    bool masked;

    if (avail < 2)
        return 0;
    *fin = h[0] & 0x80;
    *opcode = h[0] & 0x0f;
    masked = h[1] & 0x80;
    len = h[1] & 0x7f;
    if (len == 126) {
        if (avail < 4)
            return 0;
        len = (size_t)h[2] << 8 | h[3];
        hl = 4;
    } else if (len == 127) {
        if (avail < 10)
            return 0;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | h[2 + i];
        hl = 10;
    }
    if (masked)
        hl += 4;
    if (avail < hl + len)
        return 0;
    *payload = h + hl;
    if (masked)
        for (size_t i = 0; i < len; i++)
            h[hl + i] ^= h[hl - 4 + i % 4];
    *n = len;
    in->off += hl + len;
    return 1;
}

static void ws_accept_key(const char *key, char out[64])
{
    char cat[128];
    unsigned char md[20];
    unsigned int mdlen = 0;

    snprintf(cat, sizeof(cat), "%s%s", key, WS_GUID);
    if (EVP_Digest(cat, strlen(cat), md, &mdlen, EVP_sha1(), NULL) != 1)
        die("sha1");
    EVP_EncodeBlock((unsigned char *)out, md, 20);
}

/* --- agents -------------------------------------------------------------------------------- */

enum st { A_IDLE, A_CONNECTING, A_TLS, A_UPGRADE, A_OPEN };

struct agent {
    int fd;
    SSL *ssl;
    enum st st;
    unsigned events;
    X509 *leaf;
    STACK_OF(X509) * chain;
    char *ns, *name, *uid;
    int group; /* index of ns */
    struct sockaddr_in src;
    struct bytes in, out, msg; /* msg: a fragmented message being assembled */
    char ws_accept[64];
    char acked[HASH_HEX + 1]; /* the last ACKed hash, sent as lastHash */
    bool stalled;             /* a slow reader */
    bool reading_stopped;
    bool acked_on_conn; /* ACKed a config on this stream */
    bool hello_sent;
    bool refused;                /* this attempt made no TCP connection */
    unsigned attempt;            /* backoff step */
    uint64_t due_ns;             /* A_IDLE: next attempt */
    uint64_t opened_ns;          /* stream open */
    uint64_t ack_ns;             /* first ACK after the mark, 0 none */
    uint64_t configs;            /* since the mark */
    uint64_t backoff_ns;         /* since the mark: time waited in backoff */
    uint64_t connect_ns;         /* when the current attempt's connect() was made */
    uint64_t deadline_ns;        /* of the attempt's current step (connect, then handshakes) */
    unsigned attempts;           /* since the mark: connections made */
    char *last_doc;              /* kept for dump only by the first agent of each group */
    int proto;                   /* of the open stream: 1 or 2 */
    struct push__cache *cache;   /* v2 */
    char asm_hash[HASH_HEX + 1]; /* v2: of the config being assembled */
};

static struct {
    struct agent *a;
    size_t n;
    char **groups;
    size_t ngroups;
    SSL_CTX *ctx;
    struct sockaddr_in dst;
    const char *server_name;
    unsigned stalled_every;
    unsigned protocol; /* newest offered */
    int ep;
    /* since the mark */
    uint64_t wire_bytes, payload_bytes, configs, hash_errors, errors_rx, closes, connects;
    /* since the mark: why attempts failed (refused by the kernel: nothing listens; closed in
     * the TLS handshake: weftd closed it at accept or cut it; after the handshake) and how long
     * attempts took until the stream was open (the upgrade answered) */
    uint64_t fail_refused, fail_tls, fail_open, fail_timeout, open_ns_sum, open_ns_max, opens;
    uint64_t mark_ns;
    char cmd[4096];
    size_t cmdlen;
} g;

static int ep_fd; /* the process's epoll set (agents or server) */

static void watch(int fd, unsigned *cur, unsigned ev, void *ptr)
{
    struct epoll_event e = {.events = ev, .data.ptr = ptr};

    if (*cur == ev)
        return;
    if (ev == 0) {
        epoll_ctl(ep_fd, EPOLL_CTL_DEL, fd, NULL);
    } else if (epoll_ctl(ep_fd, *cur ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &e) < 0) {
        die("epoll_ctl");
    }
    *cur = ev;
}

static void agent_drop(struct agent *a, bool backoff)
{
    uint64_t d;

    if (backoff && a->st == A_CONNECTING)
        g.fail_refused++;
    else if (backoff && a->st == A_TLS)
        g.fail_tls++;
    else if (backoff && a->st != A_IDLE)
        g.fail_open++;
    if (a->ssl)
        SSL_free(a->ssl);
    a->ssl = NULL;
    if (a->fd >= 0) {
        epoll_ctl(g.ep, EPOLL_CTL_DEL, a->fd, NULL);
        close(a->fd);
    }
    a->fd = -1;
    a->events = 0;
    free(a->in.p);
    free(a->out.p);
    free(a->msg.p);
    memset(&a->in, 0, sizeof(a->in));
    memset(&a->out, 0, sizeof(a->out));
    memset(&a->msg, 0, sizeof(a->msg));
    a->st = A_IDLE;
    a->hello_sent = a->acked_on_conn = a->reading_stopped = false;
    if (!backoff) {
        a->due_ns = 0;
        return;
    }
    g.closes++;
    if (a->opened_ns && now_ns() - a->opened_ns > 1000000000u)
        a->attempt = 0;
    if (a->refused && a->attempt > REFUSED_STEP)
        a->attempt = REFUSED_STEP; /* nothing listens: retry soon (push/client.c, closed) */
    a->refused = false;
    d = (uint64_t)BACKOFF_MIN_MS << (a->attempt < 10 ? a->attempt : 10);
    if (d > BACKOFF_MAX_MS)
        d = BACKOFF_MAX_MS;
    a->attempt++;
    d = d / 2 + rnd() % (d / 2 + 1);
    a->backoff_ns += d * 1000000u;
    a->due_ns = now_ns() + d * 1000000u;
    a->opened_ns = 0;
}

static void agent_connect(struct agent *a)
{
    int one = 1;

    a->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (a->fd < 0)
        die("socket (at most one descriptor per agent: raise ulimit -n)");
    setsockopt(a->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(a->fd, (struct sockaddr *)&a->src, sizeof(a->src)) < 0)
        die("bind to the agent's source address");
    if (connect(a->fd, (struct sockaddr *)&g.dst, sizeof(g.dst)) < 0 && errno != EINPROGRESS) {
        a->refused = errno == ECONNREFUSED;
        a->st = A_CONNECTING; /* counted as a connect failure */
        agent_drop(a, true);
        return;
    }
    setsockopt(a->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    a->st = A_CONNECTING;
    a->connect_ns = now_ns();
    a->deadline_ns = a->connect_ns + PUSH_CONNECT_TIMEOUT_S * 1000000000ull;
    a->attempts++;
    g.connects++;
    watch(a->fd, &a->events, EPOLLOUT, a);
}

static void send_text(struct agent *a, const char *s)
{
    ws_frame(&a->out, 1, s, strlen(s), true);
}

static void send_upgrade(struct agent *a)
{
    unsigned char raw[16];
    char key[32], req[512];

    for (int i = 0; i < 16; i++)
        raw[i] = (unsigned char)rnd();
    EVP_EncodeBlock((unsigned char *)key, raw, 16);
    ws_accept_key(key, a->ws_accept);
    snprintf(req, sizeof(req),
             "GET /v1/stream HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
             "Sec-WebSocket-Protocol: %s\r\n\r\n",
             g.server_name, key, g.protocol >= 2 ? SUBPROTO_V2 ", " SUBPROTO : SUBPROTO);
    bytes_add(&a->out, req, strlen(req));
}

static void send_hello(struct agent *a)
{
    char m[1024];

    snprintf(m, sizeof(m),
             "{\"type\":\"hello\",\"pod\":{\"namespace\":\"%s\",\"name\":\"%s\",\"uid\":\"%s\"},"
             "\"agent\":\"stream_load\"%s%s%s}",
             a->ns, a->name, a->uid, a->acked[0] ? ",\"lastHash\":\"" : "", a->acked,
             a->acked[0] ? "\"" : "");
    send_text(a, m);
    a->hello_sent = true;
    a->opened_ns = now_ns();
    /* a slow reader that already has a document stalls at once: weftd sends it nothing unless
     * that document is no longer current, so waiting for a config would make it a normal agent */
    if (a->stalled && a->acked[0])
        a->reading_stopped = true;
}

static void acked(struct agent *a, uint64_t version, const char *hash)
{
    char reply[512];

    snprintf(reply, sizeof(reply), "{\"type\":\"ack\",\"version\":%llu,\"hash\":\"%s\"}",
             (unsigned long long)version, hash);
    send_text(a, reply);
    memcpy(a->acked, hash, sizeof(a->acked));
    if (!a->ack_ns && g.mark_ns)
        a->ack_ns = now_ns();
    a->acked_on_conn = true;
    a->attempt = 0;
    if (a->stalled)
        a->reading_stopped = true;
}

/* A v2 frame (config or blocks), through push/'s cache as weft-agent does it. */
static void on_message_v2(struct agent *a, const char *p, size_t n)
{
    struct push__asm_out o;
    struct push_msg m, out;
    char *frame = NULL;
    int rc;

    if (push_msg_parse(p, n, &m) != 0 || (m.type != PUSH_MSG_CONFIG && m.type != PUSH_MSG_BLOCKS)) {
        g.errors_rx++;
        push_msg_release(&m);
        return;
    }
    if (m.type == PUSH_MSG_CONFIG) {
        g.configs++;
        a->configs++;
        memcpy(a->asm_hash, m.hash, sizeof(a->asm_hash));
        rc = push__cache_config(a->cache, &m, &o);
    } else {
        rc = push__cache_blocks(a->cache, &m, &o);
    }
    memset(&out, 0, sizeof(out));
    out.version = m.version;
    if (rc == PUSH__ASM_DONE) {
        if (a->last_doc) {
            free(a->last_doc);
            a->last_doc = strdup(o.doc);
        }
        acked(a, m.version, a->asm_hash);
    } else if (rc == PUSH__ASM_NEED) {
        out.type = PUSH_MSG_NEED;
        out.hashes = o.need;
        out.nhashes = o.nneed;
        if (push_msg_encode(&out, &frame) == 0)
            send_text(a, frame);
    } else if (rc == PUSH__ASM_FAIL) {
        g.hash_errors++;
        fprintf(stderr, "stream_load: agent %s/%s: %s\n", a->ns, a->name, o.reason);
        out.type = PUSH_MSG_NACK;
        memcpy(out.hash, a->asm_hash, sizeof(out.hash));
        out.reason = o.reason;
        if (push_msg_encode(&out, &frame) == 0)
            send_text(a, frame);
    }
    free(frame);
    free(o.doc);
    free(o.need);
    push_msg_release(&m);
}

/* A complete text message from weftd. */
static void on_message(struct agent *a, const char *p, size_t n)
{
    static const char pre[] = "{\"type\":\"config\",\"version\":";
    char hash[HASH_HEX + 1], want[HASH_HEX + 1], reply[512];
    unsigned long long version;
    const char *q, *doc;
    char *end;

    g.payload_bytes += n;
    if (a->proto == 2) {
        on_message_v2(a, p, n);
        return;
    }
    if (n < sizeof(pre) || memcmp(p, pre, sizeof(pre) - 1) != 0) {
        g.errors_rx++;
        if (getenv("STREAM_LOAD_DEBUG"))
            fprintf(stderr, "agent %s/%s: %.*s\n", a->ns, a->name, (int)(n > 300 ? 300 : n), p);
        return;
    }
    version = strtoull(p + sizeof(pre) - 1, &end, 10);
    q = end;
    if ((size_t)(q - p) + 9 + HASH_HEX + 12 > n || memcmp(q, ",\"hash\":\"", 9) != 0 ||
        memcmp(q + 9 + HASH_HEX, "\",\"config\":", 11) != 0 || p[n - 1] != '}') {
        g.errors_rx++;
        return;
    }
    memcpy(want, q + 9, HASH_HEX);
    want[HASH_HEX] = '\0';
    doc = q + 9 + HASH_HEX + 11;
    sha256_hex(doc, (size_t)(p + n - 1 - doc), hash);
    g.configs++;
    a->configs++;
    if (a->last_doc) {
        free(a->last_doc);
        a->last_doc = strndup(doc, (size_t)(p + n - 1 - doc));
    }
    if (strcmp(hash, want) != 0) {
        g.hash_errors++;
        snprintf(reply, sizeof(reply),
                 "{\"type\":\"nack\",\"version\":%llu,\"hash\":\"%s\",\"reason\":\"HashMismatch: "
                 "computed %s\"}",
                 version, want, hash);
        send_text(a, reply);
        return;
    }
    acked(a, version, hash);
}

/* Frames in a->in; false when the stream must be dropped. */
static bool on_frames(struct agent *a)
{
    int op;
    unsigned char *pl;
    size_t n;
    bool fin;

    while (!a->reading_stopped && ws_parse(&a->in, &op, &pl, &n, &fin) == 1) {
        if (op == 8) /* close */
            return false;
        if (op == 9) { /* ping */
            ws_frame(&a->out, 10, pl, n, true);
            continue;
        }
        if (op == 10)
            continue;
        if (op == 1 && fin && !a->msg.len) {
            on_message(a, (const char *)pl, n);
            continue;
        }
        bytes_add(&a->msg, pl, n); /* fragments (text then continuation) */
        if (fin) {
            on_message(a, (const char *)a->msg.p, a->msg.len);
            free(a->msg.p);
            memset(&a->msg, 0, sizeof(a->msg));
        }
    }
    bytes_compact(&a->in);
    return true;
}

static bool upgrade_done(struct agent *a)
{
    char *end, *acc;

    if (a->in.len < 4)
        return false;
    bytes_add(&a->in, "", 1); /* NUL for the string functions, then taken back */
    a->in.len--;
    end = strstr((char *)a->in.p, "\r\n\r\n");
    if (!end)
        return false;
    *end = '\0';
    acc = strcasestr((char *)a->in.p, "\r\nSec-WebSocket-Accept: ");
    if (strncmp((char *)a->in.p, "HTTP/1.1 101", 12) != 0 || !acc ||
        strncmp(acc + 24, a->ws_accept, strlen(a->ws_accept)) != 0) {
        fprintf(stderr, "stream_load: upgrade refused: %.200s\n", (char *)a->in.p);
        agent_drop(a, true);
        return false;
    }
    {
        const char *pr = strcasestr((char *)a->in.p, "\r\nSec-WebSocket-Protocol: ");

        a->proto = pr && strncmp(pr + 26, SUBPROTO_V2, strlen(SUBPROTO_V2)) == 0 ? 2 : 1;
    }
    a->in.off = (size_t)(end - (char *)a->in.p) + 4;
    a->st = A_OPEN;
    {
        uint64_t took = now_ns() - a->connect_ns;

        g.open_ns_sum += took;
        g.open_ns_max = took > g.open_ns_max ? took : g.open_ns_max;
        g.opens++;
    }
    send_hello(a);
    return true;
}

static void agent_io(struct agent *a, unsigned ev)
{
    unsigned char buf[65536];
    int r, err;

    if (a->st == A_CONNECTING) {
        socklen_t l = sizeof(err);

        if (getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0 || err) {
            a->refused = err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH;
            agent_drop(a, true);
            return;
        }
        a->ssl = SSL_new(g.ctx);
        if (!a->ssl || SSL_set_fd(a->ssl, a->fd) != 1 ||
            SSL_use_certificate(a->ssl, a->leaf) != 1 || SSL_set1_chain(a->ssl, a->chain) != 1 ||
            SSL_set_tlsext_host_name(a->ssl, g.server_name) != 1 ||
            SSL_set1_host(a->ssl, g.server_name) != 1)
            die("SSL_new");
        SSL_set_connect_state(a->ssl);
        a->st = A_TLS;
        /* the agent's deadline for the TLS handshake and (here, together) the upgrade */
        a->deadline_ns = now_ns() + PUSH_HANDSHAKE_TIMEOUT_S * 1000000000ull;
    }
    if (a->st == A_TLS) {
        r = SSL_do_handshake(a->ssl);
        if (r != 1) {
            err = SSL_get_error(a->ssl, r);
            if (err == SSL_ERROR_WANT_READ)
                watch(a->fd, &a->events, EPOLLIN, a);
            else if (err == SSL_ERROR_WANT_WRITE)
                watch(a->fd, &a->events, EPOLLOUT, a);
            else
                agent_drop(a, true);
            return;
        }
        a->st = A_UPGRADE;
        send_upgrade(a);
    }
    if (a->reading_stopped && (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
        agent_drop(a, true);
        return;
    }
    /* read */
    while (!a->reading_stopped) {
        r = SSL_read(a->ssl, buf, sizeof(buf));
        if (r <= 0) {
            err = SSL_get_error(a->ssl, r);
            if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
                break;
            agent_drop(a, true);
            return;
        }
        g.wire_bytes += (uint64_t)r;
        bytes_add(&a->in, buf, (size_t)r);
        if (a->st == A_UPGRADE && !upgrade_done(a)) {
            if (a->st == A_IDLE)
                return;
            continue;
        }
        if (!on_frames(a)) {
            agent_drop(a, true);
            return;
        }
    }
    /* write */
    while (a->out.off < a->out.len) {
        r = SSL_write(a->ssl, a->out.p + a->out.off, (int)(a->out.len - a->out.off));
        if (r <= 0) {
            err = SSL_get_error(a->ssl, r);
            if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ)
                break;
            agent_drop(a, true);
            return;
        }
        a->out.off += (size_t)r;
    }
    bytes_compact(&a->out);
    if (a->reading_stopped)
        watch(a->fd, &a->events, EPOLLRDHUP | (a->out.len ? EPOLLOUT : 0u), a);
    else
        watch(a->fd, &a->events, EPOLLIN | EPOLLRDHUP | (a->out.len ? EPOLLOUT : 0u), a);
}

/* --- agents: setup and commands ------------------------------------------------------------ */

static void load_agents(const char *path)
{
    char *all = slurp(path, NULL), *save = NULL, *line;

    for (line = strtok_r(all, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char ns[128], name[300], uid[80], *b64 = malloc(strlen(line) + 1), *pem;
        struct agent *a;
        BIO *bio;
        X509 *x;
        int n;
        size_t k;

        if (!b64 || sscanf(line, "%127s %299s %79s %s", ns, name, uid, b64) != 4)
            die("agents file: want \"namespace name uid base64-chain\" per line");
        g.a = realloc(g.a, (g.n + 1) * sizeof(*g.a));
        if (!g.a)
            die("out of memory");
        a = &g.a[g.n];
        memset(a, 0, sizeof(*a));
        a->fd = -1;
        pem = malloc(strlen(b64) + 1);
        n = pem ? EVP_DecodeBlock((unsigned char *)pem, (unsigned char *)b64, (int)strlen(b64))
                : -1;
        if (n <= 0)
            die("agents file: bad base64 chain");
        bio = BIO_new_mem_buf(pem, n);
        a->chain = sk_X509_new_null();
        while (bio && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
            if (!a->leaf)
                a->leaf = x;
            else
                sk_X509_push(a->chain, x);
        }
        ERR_clear_error();
        BIO_free(bio);
        free(pem);
        free(b64);
        if (!a->leaf)
            die("agents file: no certificate in a chain");
        a->ns = strdup(ns);
        a->name = strdup(name);
        a->uid = strdup(uid);
        for (k = 0; k < g.ngroups && strcmp(g.groups[k], ns) != 0; k++)
            ;
        if (k == g.ngroups) {
            g.groups = realloc(g.groups, (g.ngroups + 1) * sizeof(*g.groups));
            g.groups[g.ngroups++] = strdup(ns);
            a->last_doc = strdup(""); /* the group's first agent keeps its document for dump */
        }
        a->group = (int)k;
        a->src.sin_family = AF_INET;
        a->src.sin_addr.s_addr =
            htonl((127u << 24) | (1u << 16) | (unsigned)((g.n / PER_ADDR) / 250) << 8 |
                  (unsigned)((g.n / PER_ADDR) % 250 + 1));
        a->stalled = g.stalled_every && g.n % g.stalled_every == g.stalled_every - 1;
        g.n++;
    }
    free(all);
    if (!g.n)
        die("agents file: no agents");
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

    return a < b ? -1 : a > b;
}

static double pct_ms(const uint64_t *v, size_t n, double p)
{
    size_t i;

    if (!n)
        return 0;
    i = (size_t)ceil(p * (double)n) - 1;
    if (i >= n)
        i = n - 1;
    return (double)v[i] / 1e6;
}

enum waiting { W_NONE, W_SYNCED, W_CHANGE, W_OPEN };

static struct {
    enum waiting what;
    uint64_t deadline, start, t0;
    int group; /* -1 all */
} w;

static int group_of(const char *ns)
{
    if (strcmp(ns, "*") == 0)
        return -1;
    for (size_t k = 0; k < g.ngroups; k++)
        if (strcmp(g.groups[k], ns) == 0)
            return (int)k;
    return -2;
}

/* Whether the wait is over; prints its answer if so. */
static bool wait_check(bool timeout)
{
    size_t done = 0, want = 0, others = 0, configs = 0;
    uint64_t *lat;

    if (w.what == W_SYNCED || w.what == W_OPEN) {
        for (size_t i = 0; i < g.n; i++) {
            /* synced: a stream open, and a config ACKed on it or earlier (a reconnect whose
             * hello carries the current hash gets none) */
            done += g.a[i].st == A_OPEN && g.a[i].hello_sent &&
                    (w.what == W_OPEN || g.a[i].acked_on_conn || g.a[i].acked[0]);
            configs += g.a[i].configs;
        }
        if (done < g.n && !timeout)
            return false;
        printf("%s n=%zu of=%zu secs=%.3f configs=%zu\n", w.what == W_SYNCED ? "synced" : "open",
               done, g.n, (double)(now_ns() - w.start) / 1e9, configs);
        fflush(stdout);
        w.what = W_NONE;
        return true;
    }
    lat = calloc(g.n + 1, sizeof(*lat));
    if (!lat)
        die("out of memory");
    for (size_t i = 0; i < g.n; i++) {
        struct agent *a = &g.a[i];
        bool in = w.group == -1 || a->group == w.group;

        if (!in) {
            others += a->configs > 0;
            continue;
        }
        if (a->stalled)
            continue;
        want++;
        if (a->ack_ns)
            lat[done++] = a->ack_ns > w.t0 ? a->ack_ns - w.t0 : 0;
    }
    if (done < want && !timeout) {
        free(lat);
        return false;
    }
    qsort(lat, done, sizeof(*lat), cmp_u64);
    printf("done n=%zu want=%zu p50_ms=%.2f p99_ms=%.2f max_ms=%.2f wire_bytes=%llu "
           "payload_bytes=%llu configs=%llu others=%zu hash_errors=%llu\n",
           done, want, pct_ms(lat, done, 0.5), pct_ms(lat, done, 0.99), pct_ms(lat, done, 1.0),
           (unsigned long long)g.wire_bytes, (unsigned long long)g.payload_bytes,
           (unsigned long long)g.configs, others, (unsigned long long)g.hash_errors);
    fflush(stdout);
    free(lat);
    w.what = W_NONE;
    return true;
}

static void reply(const char *s)
{
    printf("%s\n", s);
    fflush(stdout);
}

static void command(char *line)
{
    char verb[32] = "", arg[4096] = "", arg2[4096] = "";
    double t = 0, t0 = 0;
    int n = sscanf(line, "%31s %4095s %4095s %lf", verb, arg, arg2, &t0);

    if (strcmp(verb, "connect") == 0) {
        for (size_t i = 0; i < g.n; i++)
            if (g.a[i].st == A_IDLE)
                agent_connect(&g.a[i]);
        reply("ok");
    } else if (strcmp(verb, "synced") == 0 || strcmp(verb, "open") == 0) {
        w.what = verb[0] == 's' ? W_SYNCED : W_OPEN;
        w.start = now_ns();
        w.deadline = w.start + (uint64_t)(atof(arg) * 1e9);
        wait_check(false);
    } else if (strcmp(verb, "mark") == 0) {
        g.wire_bytes = g.payload_bytes = g.configs = g.hash_errors = g.errors_rx = 0;
        for (size_t i = 0; i < g.n; i++) {
            g.a[i].ack_ns = 0;
            g.a[i].configs = 0;
            g.a[i].backoff_ns = 0;
            g.a[i].attempts = 0;
        }
        g.fail_refused = g.fail_tls = g.fail_open = g.fail_timeout = g.open_ns_sum = g.open_ns_max =
            g.opens = 0;
        g.mark_ns = now_ns();
        reply("ok");
    } else if (strcmp(verb, "wait") == 0 && n == 4) {
        t = atof(arg2);
        w.group = group_of(arg);
        if (w.group == -2) {
            reply("error unknown namespace");
            return;
        }
        w.what = W_CHANGE;
        w.t0 = (uint64_t)(t0 * 1e9);
        w.start = now_ns();
        w.deadline = w.start + (uint64_t)(t * 1e9);
        wait_check(false);
    } else if (strcmp(verb, "reconnect") == 0) {
        for (size_t i = 0; i < g.n; i++) {
            agent_drop(&g.a[i], false);
            agent_connect(&g.a[i]);
        }
        reply("ok");
    } else if (strcmp(verb, "dump") == 0) {
        int k = group_of(arg);
        FILE *f;

        for (size_t i = 0; i < g.n; i++)
            if (k >= 0 && g.a[i].group == k && g.a[i].last_doc && g.a[i].last_doc[0]) {
                f = fopen(arg2, "w");
                if (!f || fputs(g.a[i].last_doc, f) < 0 || fclose(f) != 0)
                    die(arg2);
                reply("ok");
                return;
            }
        reply("error no document");
    } else if (strcmp(verb, "stats") == 0) {
        size_t open = 0, stalled = 0;
        uint64_t bo_sum = 0, bo_max = 0, att = 0;
        unsigned att_max = 0;

        for (size_t i = 0; i < g.n; i++) {
            open += g.a[i].st == A_OPEN;
            stalled += g.a[i].reading_stopped;
            bo_sum += g.a[i].backoff_ns;
            bo_max = g.a[i].backoff_ns > bo_max ? g.a[i].backoff_ns : bo_max;
            att_max = g.a[i].attempts > att_max ? g.a[i].attempts : att_max;
            att += g.a[i].attempts;
        }
        printf("stats agents=%zu open=%zu stalled_now=%zu connects=%llu closes=%llu "
               "errors_rx=%llu fail_refused=%llu fail_tls=%llu fail_open=%llu fail_timeout=%llu "
               "backoff_mean_ms=%.0f backoff_max_ms=%.0f attempts=%llu attempts_max=%u "
               "open_mean_ms=%.0f open_max_ms=%.0f\n",
               g.n, open, stalled, (unsigned long long)g.connects, (unsigned long long)g.closes,
               (unsigned long long)g.errors_rx, (unsigned long long)g.fail_refused,
               (unsigned long long)g.fail_tls, (unsigned long long)g.fail_open,
               (unsigned long long)g.fail_timeout, g.n ? (double)bo_sum / (double)g.n / 1e6 : 0.0,
               (double)bo_max / 1e6, (unsigned long long)att, att_max,
               g.opens ? (double)g.open_ns_sum / (double)g.opens / 1e6 : 0.0,
               (double)g.open_ns_max / 1e6);
        fflush(stdout);
    } else if (strcmp(verb, "quit") == 0) {
        exit(0);
    } else {
        reply("error unknown command");
    }
}

static void on_stdin(void)
{
    ssize_t r = read(0, g.cmd + g.cmdlen, sizeof(g.cmd) - 1 - g.cmdlen);
    char *nl;

    if (r <= 0)
        exit(0);
    g.cmdlen += (size_t)r;
    g.cmd[g.cmdlen] = '\0';
    while ((nl = strchr(g.cmd, '\n')) != NULL) {
        *nl = '\0';
        command(g.cmd);
        memmove(g.cmd, nl + 1, g.cmdlen - (size_t)(nl + 1 - g.cmd) + 1);
        g.cmdlen -= (size_t)(nl + 1 - g.cmd);
    }
}

static int agents_main(const char *agents, const char *key_path, const char *trust, int port,
                       const char *host)
{
    static int stdin_tag;
    struct epoll_event evs[256];
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = &stdin_tag};
    uint64_t next_scan = 0;
    EVP_PKEY *key;
    FILE *f;

    g.ctx = SSL_CTX_new(TLS_client_method());
    if (!g.ctx || SSL_CTX_load_verify_locations(g.ctx, trust, NULL) != 1)
        die("client TLS context (--trust)");
    SSL_CTX_set_verify(g.ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_min_proto_version(g.ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(g.ctx, SSL_MODE_RELEASE_BUFFERS);
    f = fopen(key_path, "r");
    key = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    if (!key || SSL_CTX_use_PrivateKey(g.ctx, key) != 1)
        die("--key");
    load_agents(agents);
    for (size_t i = 0; i < g.n; i++) {
        if (X509_check_private_key(g.a[i].leaf, key) != 1)
            die("an agent's certificate does not match --key");
        if (push__cache_new(SPARE_BYTES, &g.a[i].cache) != 0)
            die("block cache");
    }
    g.dst.sin_family = AF_INET;
    g.dst.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &g.dst.sin_addr) != 1)
        die("--host");
    ep_fd = g.ep = epoll_create1(EPOLL_CLOEXEC);
    if (g.ep < 0 || epoll_ctl(g.ep, EPOLL_CTL_ADD, 0, &e) < 0)
        die("epoll");
    fprintf(stderr, "stream_load: %zu agents in %zu namespaces, %u source addresses\n", g.n,
            g.ngroups, (unsigned)((g.n + PER_ADDR - 1) / PER_ADDR));
    reply("ready");
    for (;;) {
        int n = epoll_wait(g.ep, evs, 256, 5);
        uint64_t now;

        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &stdin_tag)
                on_stdin();
            else
                agent_io(evs[i].data.ptr, evs[i].events);
        }
        now = now_ns();
        if (now >= next_scan) { /* backoff timers and waits, every 5 ms at most */
            next_scan = now + 5000000u;
            for (size_t i = 0; i < g.n; i++) {
                struct agent *a = &g.a[i];

                if (a->st == A_IDLE && a->due_ns && a->due_ns <= now)
                    agent_connect(a);
                else if (a->st != A_IDLE && a->st != A_OPEN && a->deadline_ns <= now) {
                    g.fail_timeout++;
                    a->refused = a->st == A_CONNECTING; /* no TCP connection: like refused */
                    agent_drop(a, true); /* the agent's connect or handshake deadline */
                }
            }
            if (w.what != W_NONE)
                wait_check(now >= w.deadline);
        }
    }
}

/* --- the baseline server ------------------------------------------------------------------- */

struct frame {
    unsigned refs;
    struct bytes b;
};

struct sconn {
    int fd;
    SSL *ssl;
    unsigned events;
    bool tls_done, open, hello;
    int group;
    struct bytes in, out;
    struct frame *fr; /* a shared config frame being written, at fr_off */
    size_t fr_off;
};

static struct {
    SSL_CTX *ctx;
    int lfd, ep;
    char *doc;
    size_t doclen;
    unsigned rev;
    struct frame *cur;
    char **groups;
    size_t ngroups;
    char cmd[4096];
    size_t cmdlen;
} s;

static void frame_put(struct frame *f)
{
    if (f && --f->refs == 0) {
        free(f->b.p);
        free(f);
    }
}

/* The document of revision rev as a config frame (built once, shared by every stream). */
static struct frame *frame_build(unsigned rev)
{
    struct frame *f = calloc(1, sizeof(*f));
    char hash[HASH_HEX + 1], *doc = NULL, *msg = NULL;
    int dl, ml;

    if (!f)
        die("out of memory");
    dl = asprintf(&doc, "{\"baselineRevision\":%u,%s", rev, s.doc + 1);
    if (dl < 0)
        die("out of memory");
    sha256_hex(doc, (size_t)dl, hash);
    ml = asprintf(&msg, "{\"type\":\"config\",\"version\":%u,\"hash\":\"%s\",\"config\":%s}",
                  rev + 1, hash, doc);
    if (ml < 0)
        die("out of memory");
    ws_frame(&f->b, 1, msg, (size_t)ml, false);
    free(doc);
    free(msg);
    f->refs = 1;
    return f;
}

static struct sconn **s_all; /* by descriptor */
static size_t s_nall;

static void sconn_close(struct sconn *c)
{
    s_all[c->fd] = NULL;
    epoll_ctl(s.ep, EPOLL_CTL_DEL, c->fd, NULL);
    SSL_free(c->ssl);
    close(c->fd);
    free(c->in.p);
    free(c->out.p);
    frame_put(c->fr);
    free(c);
}

static void sconn_queue(struct sconn *c)
{
    if (c->fr) {
        if (c->fr_off == 0) { /* not started: the newer revision replaces it */
            frame_put(c->fr);
            c->fr = NULL;
        } else {
            return; /* the newest goes after; good enough for a baseline */
        }
    }
    c->fr = s.cur;
    s.cur->refs++;
    c->fr_off = 0;
}

/* The group of a hello's namespace (added when new). */
static int s_group(const char *hello)
{
    const char *p = strstr(hello, "\"namespace\":\"");
    char ns[128];
    size_t k, n;

    if (!p)
        return -1;
    p += 13;
    n = strcspn(p, "\"");
    if (n >= sizeof(ns))
        return -1;
    memcpy(ns, p, n);
    ns[n] = '\0';
    for (k = 0; k < s.ngroups && strcmp(s.groups[k], ns) != 0; k++)
        ;
    if (k == s.ngroups) {
        s.groups = realloc(s.groups, (s.ngroups + 1) * sizeof(*s.groups));
        s.groups[s.ngroups++] = strdup(ns);
    }
    return (int)k;
}

static void sconn_io(struct sconn *c)
{
    unsigned char buf[16384];
    int r, err, op;
    unsigned char *pl;
    size_t n;
    bool fin;

    if (!c->tls_done) {
        r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            err = SSL_get_error(c->ssl, r);
            if (err == SSL_ERROR_WANT_READ)
                watch(c->fd, &c->events, EPOLLIN, c);
            else if (err == SSL_ERROR_WANT_WRITE)
                watch(c->fd, &c->events, EPOLLOUT, c);
            else
                sconn_close(c);
            return;
        }
        c->tls_done = true;
    }
    for (;;) {
        r = SSL_read(c->ssl, buf, sizeof(buf));
        if (r <= 0) {
            err = SSL_get_error(c->ssl, r);
            if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
                break;
            sconn_close(c);
            return;
        }
        bytes_add(&c->in, buf, (size_t)r);
        if (!c->open) {
            char *end, *key, acc[64], resp[512];

            bytes_add(&c->in, "", 1);
            c->in.len--;
            end = strstr((char *)c->in.p, "\r\n\r\n");
            if (!end)
                continue;
            key = strcasestr((char *)c->in.p, "\r\nSec-WebSocket-Key: ");
            if (!key || strncmp((char *)c->in.p, "GET /v1/stream ", 15) != 0) {
                sconn_close(c);
                return;
            }
            key += 21;
            key[strcspn(key, "\r")] = '\0';
            ws_accept_key(key, acc);
            snprintf(resp, sizeof(resp),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
                     "Upgrade\r\nSec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: " SUBPROTO
                     "\r\n\r\n",
                     acc);
            bytes_add(&c->out, resp, strlen(resp));
            c->in.off = (size_t)(end - (char *)c->in.p) + 4;
            c->open = true;
        }
        while (ws_parse(&c->in, &op, &pl, &n, &fin) == 1) {
            if (op == 8) {
                sconn_close(c);
                return;
            }
            if (op != 1 || c->hello)
                continue; /* acks */
            {
                char *h = strndup((char *)pl, n); /* the hello: its namespace is the group */

                c->group = h ? s_group(h) : -1;
                free(h);
            }
            c->hello = true;
            sconn_queue(c);
        }
        bytes_compact(&c->in);
    }
    while (c->out.off < c->out.len || c->fr) {
        struct bytes *b = c->out.off < c->out.len ? &c->out : &c->fr->b;
        size_t off = b == &c->out ? c->out.off : c->fr_off;

        r = SSL_write(c->ssl, b->p + off, (int)(b->len - off));
        if (r <= 0) {
            err = SSL_get_error(c->ssl, r);
            if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ)
                break;
            sconn_close(c);
            return;
        }
        if (b == &c->out) {
            c->out.off += (size_t)r;
            bytes_compact(&c->out);
        } else if ((c->fr_off += (size_t)r) == c->fr->b.len) {
            frame_put(c->fr);
            c->fr = NULL;
        }
    }
    watch(c->fd, &c->events, EPOLLIN | (c->out.off < c->out.len || c->fr ? (unsigned)EPOLLOUT : 0u),
          c);
}

static void s_command(char *line)
{
    char verb[32] = "", arg[256] = "";
    int k = -1;

    sscanf(line, "%31s %255s", verb, arg);
    if (strcmp(verb, "quit") == 0)
        exit(0);
    if (strcmp(verb, "push") != 0) {
        reply("error unknown command");
        return;
    }
    if (strcmp(arg, "*") != 0) {
        for (k = 0; k < (int)s.ngroups && strcmp(s.groups[k], arg) != 0; k++)
            ;
    }
    frame_put(s.cur);
    s.cur = frame_build(++s.rev);
    for (size_t i = 0; i < s_nall; i++)
        if (s_all[i] && s_all[i]->hello && (k == -1 || s_all[i]->group == k)) {
            sconn_queue(s_all[i]);
            sconn_io(s_all[i]);
        }
    reply("ok");
}

static int serve_main(const char *cert, const char *key, const char *trust, int port,
                      const char *docfile)
{
    static int stdin_tag, listen_tag;
    struct epoll_event evs[256], e;
    struct sockaddr_in sa;
    int one = 1;

    s.doc = slurp(docfile, &s.doclen);
    if (s.doclen < 2 || s.doc[0] != '{')
        die("--doc: want a JSON object");
    s.cur = frame_build(0);
    s.ctx = SSL_CTX_new(TLS_server_method());
    if (!s.ctx || SSL_CTX_use_certificate_chain_file(s.ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(s.ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_load_verify_locations(s.ctx, trust, NULL) != 1)
        die("server TLS context");
    SSL_CTX_set_verify(s.ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_mode(s.ctx, SSL_MODE_RELEASE_BUFFERS);
    s.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(s.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (s.lfd < 0 || bind(s.lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s.lfd, 4096) < 0)
        die("listen");
    ep_fd = s.ep = epoll_create1(EPOLL_CLOEXEC);
    e.events = EPOLLIN;
    e.data.ptr = &stdin_tag;
    epoll_ctl(s.ep, EPOLL_CTL_ADD, 0, &e);
    e.data.ptr = &listen_tag;
    epoll_ctl(s.ep, EPOLL_CTL_ADD, s.lfd, &e);
    reply("ready");
    for (;;) {
        int n = epoll_wait(s.ep, evs, 256, -1);

        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &stdin_tag) {
                ssize_t r = read(0, s.cmd + s.cmdlen, sizeof(s.cmd) - 1 - s.cmdlen);
                char *nl;

                if (r <= 0)
                    exit(0);
                s.cmdlen += (size_t)r;
                s.cmd[s.cmdlen] = '\0';
                while ((nl = strchr(s.cmd, '\n')) != NULL) {
                    *nl = '\0';
                    s_command(s.cmd);
                    memmove(s.cmd, nl + 1, s.cmdlen - (size_t)(nl + 1 - s.cmd) + 1);
                    s.cmdlen -= (size_t)(nl + 1 - s.cmd);
                }
            } else if (evs[i].data.ptr == &listen_tag) {
                int fd;

                while ((fd = accept4(s.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    struct sconn *c = calloc(1, sizeof(*c));

                    if (!c)
                        die("out of memory");
                    c->fd = fd;
                    c->group = -1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    c->ssl = SSL_new(s.ctx);
                    if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1)
                        die("SSL_new");
                    SSL_set_accept_state(c->ssl);
                    if ((size_t)fd >= s_nall) {
                        size_t m = (size_t)fd * 2 + 16;

                        s_all = realloc(s_all, m * sizeof(*s_all));
                        memset(s_all + s_nall, 0, (m - s_nall) * sizeof(*s_all));
                        s_nall = m;
                    }
                    s_all[fd] = c;
                    watch(fd, &c->events, EPOLLIN, c);
                }
            } else {
                sconn_io(evs[i].data.ptr);
            }
        }
    }
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"agents", 1, NULL, 'a'},        {"key", 1, NULL, 'k'},      {"trust", 1, NULL, 't'},
        {"port", 1, NULL, 'p'},          {"host", 1, NULL, 'h'},     {"server-name", 1, NULL, 'n'},
        {"stalled-every", 1, NULL, 's'}, {"serve", 0, NULL, 'S'},    {"cert", 1, NULL, 'c'},
        {"doc", 1, NULL, 'd'},           {"protocol", 1, NULL, 'P'}, {NULL, 0, NULL, 0}};
    const char *agents = NULL, *key = NULL, *trust = NULL, *host = "127.0.0.1", *cert = NULL,
               *doc = NULL;
    int port = 0, c;
    bool serve = false;

    g.server_name = "weftd.weft-system.svc";
    signal(SIGPIPE, SIG_IGN); /* a peer gone mid-write is an error return, not the end */
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'a':
            agents = optarg;
            break;
        case 'k':
            key = optarg;
            break;
        case 't':
            trust = optarg;
            break;
        case 'p':
            port = atoi(optarg);
            break;
        case 'h':
            host = optarg;
            break;
        case 'n':
            g.server_name = optarg;
            break;
        case 's':
            g.stalled_every = (unsigned)atoi(optarg);
            break;
        case 'S':
            serve = true;
            break;
        case 'c':
            cert = optarg;
            break;
        case 'd':
            doc = optarg;
            break;
        case 'P':
            g.protocol = (unsigned)atoi(optarg);
            break;
        default:
            fprintf(stderr, "usage: see the comment at the top of bench/stream_load.c\n");
            return 2;
        }
    }
    if (serve && cert && key && trust && port && doc)
        return serve_main(cert, key, trust, port, doc);
    if (!serve && agents && key && trust && port)
        return agents_main(agents, key, trust, port, host);
    fprintf(stderr, "stream_load: missing options (see bench/stream_load.c)\n");
    return 2;
}
