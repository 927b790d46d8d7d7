/*
 * push_bench.c - config stream fan-out: one push_server, N push_clients on one libuv loop over
 * loopback mTLS.
 *
 *   push_bench [--clients N] [--rounds R] [--doc-bytes B]
 *
 * Each round gives every proxy a changed document (push_server_send for all N, debounce off)
 * and measures, per proxy, the time from the first send of the round to that proxy's ACK at the
 * server; the round ends when all N ACKs are in. Reported: p50/p99 of the per-proxy latency and
 * the slowest round.
 *
 * Baseline, measured in the same run on the same loop: N plain loopback TCP connections (libuv,
 * no TLS, no WebSocket, no JSON) where the server writes the same number of document bytes to
 * every connection and each client answers with a 64-byte "ack" once it has read them all.
 * The ratio push/baseline is what compares across machines.
 *
 * Certificates come from the openssl CLI in a private temporary directory. RLIMIT_NOFILE is
 * raised to its hard limit (about 3 descriptors per client: both socket ends and the client
 * context's event pipe). Exit status 0 when every round got every ACK.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "push/push.h"

#define ACK_BYTES 64

static char dir[64];

static char *slurp(const char *name)
{
    char path[256];
    FILE *f;
    long n;
    char *s;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "r");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    s = calloc(1, (size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n)
        s[0] = '\0';
    fclose(f);
    return s;
}

static int make_certs(void)
{
    char cmd[2048];

    snprintf(cmd, sizeof(cmd),
             "(cd %s && openssl ecparam -name prime256v1 -genkey -noout -out ca.key && "
             "openssl req -x509 -new -key ca.key -subj /CN=bench-ca -days 1 -out ca.pem "
             "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign && "
             "printf 'subjectAltName=DNS:weftd.weft-system.svc\\n' > s.ext && "
             "printf 'subjectAltName=URI:spiffe://cluster.local/ns/bench/sa/default\\n' > c.ext && "
             "for n in s c; do openssl ecparam -name prime256v1 -genkey -noout -out $n.key && "
             "openssl req -new -key $n.key -subj /CN=$n -out $n.csr && "
             "openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 "
             "-extfile $n.ext -out $n.pem || exit 1; done) >/dev/null 2>&1",
             dir);
    return system(cmd) == 0 ? 0 : -1;
}

static uint64_t now_ns(void)
{
    return uv_hrtime();
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

struct stats {
    uint64_t *lat; /* ns, one per proxy per round */
    size_t n;
    uint64_t worst_round;
};

static double pct(struct stats *s, double p)
{
    size_t i;

    qsort(s->lat, s->n, sizeof(*s->lat), cmp_u64);
    i = (size_t)(p * (double)(s->n - 1) + 0.5);
    return (double)s->lat[i] / 1e6;
}

/* --- push ---------------------------------------------------------------------------------- */

struct bench {
    uv_loop_t *loop;
    int n;
    int hellos, acks;
    uint64_t t0;
    uint64_t *ack_at;
    char (*want)[PUSH_HASH_LEN + 1];
};

static int b_hello(void *arg, const struct push_peer *p, struct push_reject *rej)
{
    struct bench *b = arg;

    (void)p, (void)rej;
    b->hellos++;
    return 0;
}

static void b_ack(void *arg, const char *key, uint64_t version, const char *hash)
{
    struct bench *b = arg;
    int i = atoi(strchr(key, '/') + 2);

    (void)version;
    if (i >= 0 && i < b->n && !b->ack_at[i] && strcmp(hash, b->want[i]) == 0) {
        b->ack_at[i] = now_ns();
        b->acks++;
    }
}

static int c_config(void *arg, uint64_t version, const char *hash, const char *doc, char *r,
                    size_t n)
{
    (void)arg, (void)version, (void)hash, (void)doc, (void)r, (void)n;
    return 0;
}

static void tick(uv_timer_t *t)
{
    (void)t;
}

static int run_until(uv_loop_t *loop, int *counter, int target, unsigned ms)
{
    uv_timer_t t;
    uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000;

    uv_timer_init(loop, &t);
    uv_timer_start(&t, tick, 10, 10);
    while (*counter < target && uv_hrtime() < end)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return *counter >= target;
}

static int bench_push(uv_loop_t *loop, int n, int rounds, size_t doc_bytes, struct stats *st)
{
    struct push_server_ops sops = {.on_hello = b_hello, .on_ack = b_ack};
    struct push_client_ops cops = {c_config, NULL, NULL, NULL};
    struct push_server_config sc;
    struct push_client **cl = calloc((size_t)n, sizeof(*cl));
    struct push_server *srv = NULL;
    struct bench b = {loop, n, 0, 0, 0, NULL, NULL};
    char *ca = slurp("ca.pem"), *scert = slurp("s.pem"), *skey = slurp("s.key");
    char *ccert = slurp("c.pem"), *ckey = slurp("c.key");
    char *doc = malloc(doc_bytes + 128), *canon = NULL;
    uint64_t t_conn;
    int ok = 0;

    b.ack_at = calloc((size_t)n, sizeof(*b.ack_at));
    b.want = calloc((size_t)n, sizeof(*b.want));
    if (!cl || !ca || !scert || !skey || !ccert || !ckey || !doc || !b.ack_at || !b.want)
        goto out;
    memset(&sc, 0, sizeof(sc));
    sc.listen_addr = "127.0.0.1";
    sc.cert_pem = scert;
    sc.key_pem = skey;
    sc.trust_pem = ca;
    if (push_server_new(loop, &sc, &sops, &b, &srv) != 0) {
        fprintf(stderr, "push_bench: server failed\n");
        goto out;
    }
    t_conn = now_ns();
    for (int i = 0; i < n; i++) {
        char name[32];
        struct push_client_config cc = {
            .host = "127.0.0.1",
            .port = push_server_port(srv),
            .server_name = "weftd.weft-system.svc",
            .cert_pem = ccert,
            .key_pem = ckey,
            .trust_pem = ca,
            .pod_ns = "bench",
            .pod_name = name,
            .pod_uid = "uid",
            .agent_version = "bench",
            .backoff_min_ms = 100,
            .backoff_max_ms = 1000,
        };

        snprintf(name, sizeof(name), "p%d", i);
        if (push_client_new(loop, &cc, &cops, NULL, &cl[i]) != 0) {
            fprintf(stderr, "push_bench: client %d failed\n", i);
            goto out;
        }
        /* Connect in batches of 50 so the listen queue never overflows into backoff. */
        if ((i + 1) % 50 == 0)
            run_until(loop, &b.hellos, i + 1, 10000);
    }
    if (!run_until(loop, &b.hellos, n, 120000)) {
        fprintf(stderr, "push_bench: only %d of %d clients connected\n", b.hellos, n);
        goto out;
    }
    printf("  push: %d mTLS streams up in %.0f ms\n", n, (double)(now_ns() - t_conn) / 1e6);
    for (int r = 0; r < rounds; r++) {
        uint64_t t_end = 0;

        memset(b.ack_at, 0, (size_t)n * sizeof(*b.ack_at));
        b.acks = 0;
        /* Documents are prepared (and hashed) before the clock starts, per proxy. */
        for (int i = 0; i < n; i++) {
            int k = snprintf(doc, 128, "{\"round\":%d,\"proxy\":%d,\"pad\":\"", r, i);

            memset(doc + k, 'x', doc_bytes);
            strcpy(doc + k + doc_bytes, "\"}");
            if (push_doc_canonical(doc, &canon, b.want[i]) != 0)
                goto out;
            free(canon);
            canon = NULL;
        }
        b.t0 = now_ns();
        for (int i = 0; i < n; i++) {
            char key[32];
            int k = snprintf(doc, 128, "{\"round\":%d,\"proxy\":%d,\"pad\":\"", r, i);

            memset(doc + k, 'x', doc_bytes);
            strcpy(doc + k + doc_bytes, "\"}");
            snprintf(key, sizeof(key), "bench/p%d", i);
            if (push_server_send(srv, key, doc) != 0)
                goto out;
        }
        if (!run_until(loop, &b.acks, n, 60000)) {
            fprintf(stderr, "push_bench: round %d: %d of %d acks\n", r, b.acks, n);
            goto out;
        }
        for (int i = 0; i < n; i++) {
            st->lat[st->n++] = b.ack_at[i] - b.t0;
            if (b.ack_at[i] > t_end)
                t_end = b.ack_at[i];
        }
        if (t_end - b.t0 > st->worst_round)
            st->worst_round = t_end - b.t0;
    }
    ok = 1;
out:
    for (int i = 0; cl && i < n; i++)
        push_client_free(cl[i]);
    push_server_free(srv);
    while (uv_run(loop, UV_RUN_DEFAULT))
        ;
    free(cl);
    free(ca), free(scert), free(skey), free(ccert), free(ckey), free(doc);
    free(b.ack_at);
    free(b.want);
    return ok ? 0 : -1;
}

/* --- baseline: plain loopback TCP on the same loop ---------------------------------------- */

struct tconn {
    uv_tcp_t h;
    struct tbase *tb;
    int idx;
    size_t got;
    int server_side;
};

struct tbase {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int n, accepted, connected, acks;
    size_t doc_len;
    char *doc;
    char ack[ACK_BYTES];
    struct tconn **srv; /* accepted, by arrival */
    struct tconn *cli;
    uint64_t t0;
    uint64_t *ack_at;
};

static void t_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf)
{
    static char slab[65536]; /* one loop thread; data is discarded */

    (void)h, (void)sz;
    buf->base = slab;
    buf->len = sizeof(slab);
}

static void t_written(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static void t_send(uv_stream_t *s, const char *p, size_t len)
{
    uv_write_t *w = malloc(sizeof(*w));
    uv_buf_t b = uv_buf_init((char *)(uintptr_t)p, (unsigned)len);

    if (w)
        uv_write(w, s, &b, 1, t_written);
}

static void t_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct tconn *c = s->data;
    struct tbase *tb = c->tb;

    (void)buf;
    if (nread <= 0)
        return;
    c->got += (size_t)nread;
    if (c->server_side) {
        while (c->got >= ACK_BYTES) { /* one ack per round */
            c->got -= ACK_BYTES;
            tb->ack_at[c->idx] = uv_hrtime();
            tb->acks++;
        }
    } else {
        while (c->got >= tb->doc_len) {
            c->got -= tb->doc_len;
            t_send(s, tb->ack, ACK_BYTES);
        }
    }
}

static void t_accept(uv_stream_t *l, int status)
{
    struct tbase *tb = l->data;
    struct tconn *c;

    if (status < 0 || tb->accepted >= tb->n)
        return;
    c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->tb = tb;
    c->idx = tb->accepted;
    c->server_side = 1;
    c->h.data = c;
    uv_tcp_init(tb->loop, &c->h);
    if (uv_accept(l, (uv_stream_t *)&c->h) == 0) {
        uv_tcp_nodelay(&c->h, 1);
        uv_read_start((uv_stream_t *)&c->h, t_alloc, t_read);
    }
    tb->srv[tb->accepted++] = c;
}

static void t_connected(uv_connect_t *req, int status)
{
    struct tconn *c = req->handle->data;

    free(req);
    if (status < 0)
        return;
    c->tb->connected++;
    uv_tcp_nodelay(&c->h, 1);
    uv_read_start((uv_stream_t *)&c->h, t_alloc, t_read);
}

static void t_close_free(uv_handle_t *h)
{
    free(h->data);
}

static int bench_tcp(uv_loop_t *loop, int n, int rounds, size_t doc_len, struct stats *st)
{
    struct tbase tb;
    struct sockaddr_in sa;
    int namelen = sizeof(sa), ok = 0;

    memset(&tb, 0, sizeof(tb));
    tb.loop = loop;
    tb.n = n;
    tb.doc_len = doc_len;
    tb.doc = malloc(doc_len);
    tb.srv = calloc((size_t)n, sizeof(*tb.srv));
    tb.cli = calloc((size_t)n, sizeof(*tb.cli));
    tb.ack_at = calloc((size_t)n, sizeof(*tb.ack_at));
    if (!tb.doc || !tb.srv || !tb.cli || !tb.ack_at)
        goto out;
    memset(tb.doc, 'x', doc_len);
    memset(tb.ack, 'a', sizeof(tb.ack));
    uv_tcp_init(loop, &tb.listener);
    tb.listener.data = &tb;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    if (uv_tcp_bind(&tb.listener, (struct sockaddr *)&sa, 0) ||
        uv_listen((uv_stream_t *)&tb.listener, 4096, t_accept) ||
        uv_tcp_getsockname(&tb.listener, (struct sockaddr *)&sa, &namelen))
        goto out_close;
    for (int i = 0; i < n; i++) {
        uv_connect_t *req = malloc(sizeof(*req));

        tb.cli[i].tb = &tb;
        tb.cli[i].h.data = &tb.cli[i];
        uv_tcp_init(loop, &tb.cli[i].h);
        if (!req || uv_tcp_connect(req, &tb.cli[i].h, (struct sockaddr *)&sa, t_connected)) {
            free(req);
            goto out_close;
        }
    }
    if (!run_until(loop, &tb.connected, n, 60000) || !run_until(loop, &tb.accepted, n, 60000))
        goto out_close;
    for (int r = 0; r < rounds; r++) {
        uint64_t t_end = 0;

        tb.acks = 0;
        memset(tb.ack_at, 0, (size_t)n * sizeof(*tb.ack_at));
        tb.t0 = uv_hrtime();
        for (int i = 0; i < n; i++)
            t_send((uv_stream_t *)&tb.srv[i]->h, tb.doc, doc_len);
        if (!run_until(loop, &tb.acks, n, 60000))
            goto out_close;
        for (int i = 0; i < n; i++) {
            st->lat[st->n++] = tb.ack_at[i] - tb.t0;
            if (tb.ack_at[i] > t_end)
                t_end = tb.ack_at[i];
        }
        if (t_end - tb.t0 > st->worst_round)
            st->worst_round = t_end - tb.t0;
    }
    ok = 1;
out_close:
    uv_close((uv_handle_t *)&tb.listener, NULL);
    for (int i = 0; i < tb.accepted; i++)
        uv_close((uv_handle_t *)&tb.srv[i]->h, t_close_free);
    for (int i = 0; i < n; i++)
        if (tb.cli[i].tb)
            uv_close((uv_handle_t *)&tb.cli[i].h, NULL);
    while (uv_run(loop, UV_RUN_DEFAULT))
        ;
out:
    free(tb.doc);
    free(tb.srv);
    free(tb.cli);
    free(tb.ack_at);
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    int n = 1000, rounds = 5, rc = 1;
    size_t doc_bytes = 2048;
    struct rlimit rl;
    struct stats sp = {0}, sb = {0};
    uv_loop_t loop;
    char cmd[128];

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--clients") && i + 1 < argc)
            n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--doc-bytes") && i + 1 < argc)
            doc_bytes = (size_t)atol(argv[++i]);
        else {
            fprintf(stderr, "usage: push_bench [--clients N] [--rounds R] [--doc-bytes B]\n");
            return 2;
        }
    }
    if (n < 1 || rounds < 1 || doc_bytes < 16) {
        fprintf(stderr, "push_bench: bad arguments\n");
        return 2;
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < (rlim_t)(3 * n + 64))
            fprintf(stderr, "push_bench: RLIMIT_NOFILE %llu may be too low for %d clients\n",
                    (unsigned long long)rl.rlim_cur, n);
    }
    snprintf(dir, sizeof(dir), "/tmp/weft-push-bench.XXXXXX");
    if (!mkdtemp(dir) || make_certs() < 0) {
        fprintf(stderr, "push_bench: cannot make certificates in %s\n", dir);
        goto out;
    }
    sp.lat = calloc((size_t)n * (size_t)rounds, sizeof(uint64_t));
    sb.lat = calloc((size_t)n * (size_t)rounds, sizeof(uint64_t));
    if (!sp.lat || !sb.lat || uv_loop_init(&loop) != 0)
        goto out;
    printf("push fan-out: %d clients, %d rounds, document %zu bytes\n", n, rounds, doc_bytes);
    if (bench_push(&loop, n, rounds, doc_bytes, &sp) < 0)
        goto out_loop;
    /* The baseline moves the same bytes: the config frame is ~doc_bytes + 150. */
    if (bench_tcp(&loop, n, rounds, doc_bytes + 150, &sb) < 0) {
        fprintf(stderr, "push_bench: baseline failed\n");
        goto out_loop;
    }
    {
        double p50 = pct(&sp, 0.50), p99 = pct(&sp, 0.99);
        double b50 = pct(&sb, 0.50), b99 = pct(&sb, 0.99);

        printf("  %-10s p50 %8.2f ms  p99 %8.2f ms  slowest round %8.2f ms\n", "push", p50, p99,
               (double)sp.worst_round / 1e6);
        printf("  %-10s p50 %8.2f ms  p99 %8.2f ms  slowest round %8.2f ms\n", "tcp", b50, b99,
               (double)sb.worst_round / 1e6);
        printf("  ratio      p50 %7.1fx     p99 %7.1fx     slowest round %7.1fx\n", p50 / b50,
               p99 / b99, (double)sp.worst_round / (double)sb.worst_round);
    }
    rc = 0;
out_loop:
    uv_loop_close(&loop);
out:
    free(sp.lat);
    free(sb.lat);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (dir[0] && system(cmd) != 0)
        rc = 1;
    return rc;
}
