/*
 * push_test.c - the config stream: codec, then server and client in one process on one libuv
 * loop over loopback TLS. Certificates are made once per run with the openssl CLI (a CA, a
 * server certificate, client certificates with URI SANs, one from an unknown CA). A raw
 * OpenSSL WebSocket client on a thread plays peers push_client cannot (no certificate, a peer
 * that stops reading, a malformed first frame), and a raw server on a thread a hostile weftd
 * speaking protocol v2 (bad, oversized and unknown blocks).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <jansson.h>
#include <time.h>

#include "core/buf.h"
#include "push/push.h"
#include "push/push_int.h"
#include "tls/tls.h"
#include "tests/unit/unit.h"

/* --- fixtures ------------------------------------------------------------------------------ */

static char fixdir[64];
static pid_t fixpid;

struct pem {
    char *cert, *key;
};

static struct {
    char *ca, *rogue_ca;
    struct pem srv, srv2, cli, cli2, rogue, nouri, multi;
} F;

static char *slurp(const char *name)
{
    char path[256];
    FILE *f;
    long n;
    char *s;

    snprintf(path, sizeof(path), "%s/%s", fixdir, name);
    f = fopen(path, "r");
    REQUIRE(f);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    s = calloc(1, (size_t)n + 1);
    REQUIRE(s && fread(s, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    return s;
}

static void sh(const char *fmt, ...) PRINTF_LIKE(1, 2);
static void sh(const char *fmt, ...)
{
    char cmd[2048];
    int n = snprintf(cmd, sizeof(cmd), "cd %s && (", fixdir);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cmd + n, sizeof(cmd) - (size_t)n, fmt, ap);
    va_end(ap);
    strncat(cmd, ") >/dev/null 2>&1", sizeof(cmd) - strlen(cmd) - 1);
    if (system(cmd) != 0) {
        fprintf(stderr, "fixture command failed: %s\n", cmd);
        exit(1);
    }
}

static void mk_ca(const char *name)
{
    sh("openssl ecparam -name prime256v1 -genkey -noout -out %s.key && "
       "openssl req -x509 -new -key %s.key -subj /CN=%s -days 2 -out %s.pem "
       "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign",
       name, name, name, name);
}

static void mk_leaf(const char *name, const char *ca, const char *san, struct pem *out)
{
    char c[64], k[64];

    sh("printf 'basicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth,clientAuth\\n%s%s\\n' "
       "> %s.ext && openssl ecparam -name prime256v1 -genkey -noout -out %s.key && "
       "openssl req -new -key %s.key -subj /CN=%s -out %s.csr && "
       "openssl x509 -req -in %s.csr -CA %s.pem -CAkey %s.key -set_serial 0x%lx -days 2 "
       "-extfile %s.ext -out %s.pem",
       san[0] ? "subjectAltName=" : "", san, name, name, name, name, name, name, ca, ca,
       (unsigned long)(uintptr_t)out & 0xffffff, name, name);
    snprintf(c, sizeof(c), "%s.pem", name);
    snprintf(k, sizeof(k), "%s.key", name);
    out->cert = slurp(c);
    out->key = slurp(k);
}

static void fixtures_cleanup(void)
{
    char cmd[128];

    if (getpid() != fixpid)
        return;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", fixdir);
    IGNORE_RESULT(system(cmd));
}

__attribute__((constructor)) static void fixtures_make(void)
{
    snprintf(fixdir, sizeof(fixdir), "/tmp/weft-push-test.XXXXXX");
    if (!mkdtemp(fixdir)) {
        perror("mkdtemp");
        exit(1);
    }
    fixpid = getpid();
    atexit(fixtures_cleanup);
    mk_ca("ca");
    mk_ca("rogueca");
    F.ca = slurp("ca.pem");
    F.rogue_ca = slurp("rogueca.pem");
    mk_leaf("srv", "ca", "DNS:weftd.weft-system.svc,IP:127.0.0.1", &F.srv);
    mk_leaf("srv2", "ca", "DNS:weftd.weft-system.svc", &F.srv2);
    mk_leaf("cli", "ca", "URI:spiffe://cluster.local/ns/default/sa/a", &F.cli);
    mk_leaf("cli2", "ca", "URI:spiffe://cluster.local/ns/default/sa/rotated", &F.cli2);
    mk_leaf("rogue", "rogueca", "URI:spiffe://cluster.local/ns/default/sa/a", &F.rogue);
    mk_leaf("nouri", "ca", "DNS:a.example", &F.nouri);
    mk_leaf("multi", "ca",
            "URI:https://example.com/x,DNS:b.example,URI:spiffe://cluster.local/ns/prod/sa/web",
            &F.multi);
}

/* --- loop helpers -------------------------------------------------------------------------- */

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void tick_cb(uv_timer_t *t)
{
    (void)t;
}

/* Run the loop until pred(arg) or ms elapse; returns pred's last value. */
static int spin(uv_loop_t *loop, int (*pred)(void *), void *arg, unsigned ms)
{
    uv_timer_t tick;
    uint64_t end = now_ms() + ms;
    int ok = 0;

    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, tick_cb, 5, 5);
    while (!(ok = pred ? pred(arg) : 0) && now_ms() < end)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return ok;
}

/* --- harness ------------------------------------------------------------------------------- */

#define MAXEV 64

struct h {
    uv_loop_t loop;
    struct push_server *srv;
    struct push_client *cli;
    int port;
    /* server side */
    int hellos, acks, nacks, disconnects;
    char spiffe[256], hello_ns[64], hello_name[256], hello_uid[64], hello_agent[64];
    char hello_cert[8192]; /* the client certificate push/ handed to on_hello */
    char hello_last_hash[PUSH_HASH_LEN + 1];
    int reject;
    uint64_t hello_at[MAXEV];
    char nack_reason[256];
    uint64_t nack_version;
    /* client side */
    int configs, connected, rejected, disconnected;
    uint64_t cfg_version;
    char cfg_hash[PUSH_HASH_LEN + 1];
    char *cfg_doc;
    int nack_with; /* on_config returns this with reason "render: bad route" */
    int apps_exited;
    char apps_reason[256];
    int configs_at_apps; /* configs received before the last appsExited */
    char rej_code[64], rej_reason[256];
    unsigned retry_ms[MAXEV];
    int trusts;           /* on_trust calls */
    int configs_at_trust; /* configs received when the last trust arrived */
    char *trust;          /* the last bundle */
    int converged;
    double converged_s;
};

static int s_on_hello(void *arg, const struct push_peer *p, struct push_reject *rej)
{
    struct h *h = arg;

    if (h->hellos < MAXEV)
        h->hello_at[h->hellos] = now_ms();
    h->hellos++;
    snprintf(h->spiffe, sizeof(h->spiffe), "%s", p->spiffe_id);
    snprintf(h->hello_cert, sizeof(h->hello_cert), "%s", p->cert_pem);
    snprintf(h->hello_ns, sizeof(h->hello_ns), "%s", p->ns);
    snprintf(h->hello_name, sizeof(h->hello_name), "%s", p->name);
    snprintf(h->hello_uid, sizeof(h->hello_uid), "%s", p->uid);
    snprintf(h->hello_agent, sizeof(h->hello_agent), "%s", p->agent);
    snprintf(h->hello_last_hash, sizeof(h->hello_last_hash), "%s", p->last_hash);
    if (h->reject) {
        snprintf(rej->code, sizeof(rej->code), "%s", PUSH_ERR_IDENTITY_MISMATCH);
        snprintf(rej->reason, sizeof(rej->reason), "want spiffe://cluster.local/ns/default/sa/b");
        return 1;
    }
    return 0;
}

static void s_on_ack(void *arg, const char *key, uint64_t version, const char *hash)
{
    struct h *h = arg;

    (void)key, (void)version, (void)hash;
    h->acks++;
}

static void s_on_nack(void *arg, const char *key, uint64_t version, const char *hash,
                      const char *reason)
{
    struct h *h = arg;

    (void)key, (void)hash;
    h->nacks++;
    h->nack_version = version;
    snprintf(h->nack_reason, sizeof(h->nack_reason), "%s", reason);
}

static void s_on_disconnect(void *arg, const char *key)
{
    struct h *h = arg;

    (void)key;
    h->disconnects++;
}

static void s_on_converged(void *arg, const char *key, double seconds)
{
    struct h *h = arg;

    (void)key;
    h->converged++;
    h->converged_s = seconds;
}

static const struct push_server_ops sops = {s_on_hello, s_on_ack, s_on_nack, s_on_disconnect,
                                            s_on_converged};

static int c_on_config(void *arg, uint64_t version, const char *hash, const char *doc, char *reason,
                       size_t n)
{
    struct h *h = arg;

    h->configs++;
    h->cfg_version = version;
    snprintf(h->cfg_hash, sizeof(h->cfg_hash), "%s", hash);
    free(h->cfg_doc);
    h->cfg_doc = strdup(doc);
    if (h->nack_with) {
        snprintf(reason, n, "render: bad route");
        return h->nack_with;
    }
    return 0;
}

static void c_on_state(void *arg, const struct push_client_event *ev)
{
    struct h *h = arg;

    switch (ev->state) {
    case PUSH_CLIENT_CONNECTED:
        h->connected++;
        break;
    case PUSH_CLIENT_REJECTED:
        h->rejected++;
        snprintf(h->rej_code, sizeof(h->rej_code), "%s", ev->code);
        snprintf(h->rej_reason, sizeof(h->rej_reason), "%s", ev->reason);
        break;
    case PUSH_CLIENT_DISCONNECTED:
        if (h->disconnected < MAXEV)
            h->retry_ms[h->disconnected] = ev->retry_ms;
        h->disconnected++;
        break;
    }
}

static void c_on_apps_exited(void *arg, const char *reason)
{
    struct h *h = arg;

    h->apps_exited++;
    h->configs_at_apps = h->configs;
    snprintf(h->apps_reason, sizeof(h->apps_reason), "%s", reason);
}

static void c_on_trust(void *arg, const char *bundle)
{
    struct h *h = arg;

    h->trusts++;
    h->configs_at_trust = h->configs;
    free(h->trust);
    h->trust = strdup(bundle);
}

static const struct push_client_ops cops = {c_on_config, c_on_state, c_on_apps_exited, c_on_trust};

static struct push_server_config server_cfg(int port, unsigned debounce)
{
    struct push_server_config sc = {
        .listen_addr = "127.0.0.1",
        .port = port,
        .cert_pem = F.srv.cert,
        .key_pem = F.srv.key,
        .trust_pem = F.ca,
        .debounce_ms = debounce,
    };
    return sc;
}

static void h_init(struct h *h, unsigned debounce)
{
    struct push_server_config sc = server_cfg(0, debounce);

    memset(h, 0, sizeof(*h));
    REQUIRE(uv_loop_init(&h->loop) == 0);
    REQUIRE(push_server_new(&h->loop, &sc, &sops, h, &h->srv) == 0);
    h->port = push_server_port(h->srv);
    REQUIRE(h->port > 0);
}

static struct push_client_config client_cfg(struct h *h, const struct pem *id)
{
    struct push_client_config cc = {
        .host = "127.0.0.1",
        .port = h->port,
        .server_name = "weftd.weft-system.svc",
        .cert_pem = id->cert,
        .key_pem = id->key,
        .trust_pem = F.ca,
        .pod_ns = "default",
        .pod_name = "web-1",
        .pod_uid = "0b4f3c1e-1111-2222-3333-444455556666",
        .agent_version = "weft-agent/0.1",
        .backoff_min_ms = 40,
        .backoff_max_ms = 320,
    };
    return cc;
}

static void h_client(struct h *h, const struct pem *id, const char *last_hash)
{
    struct push_client_config cc = client_cfg(h, id);

    cc.last_hash = last_hash;
    REQUIRE(push_client_new(&h->loop, &cc, &cops, h, &h->cli) == 0);
}

/* Free everything; every handle must close (uv_loop_close succeeds). */
static void h_done(struct h *h)
{
    push_client_free(h->cli);
    push_server_free(h->srv);
    h->cli = NULL;
    h->srv = NULL;
    while (uv_run(&h->loop, UV_RUN_DEFAULT))
        ;
    CHECK_INT(uv_loop_close(&h->loop), 0);
    free(h->cfg_doc);
    free(h->trust);
}

static int p_acks1(void *a)
{
    return ((struct h *)a)->acks >= 1;
}
static int p_acks2(void *a)
{
    return ((struct h *)a)->acks >= 2;
}
static int p_acks3(void *a)
{
    return ((struct h *)a)->acks >= 3;
}
static int p_hellos1(void *a)
{
    return ((struct h *)a)->hellos >= 1;
}
static int p_hellos2(void *a)
{
    return ((struct h *)a)->hellos >= 2;
}
static int p_nacks1(void *a)
{
    return ((struct h *)a)->nacks >= 1;
}

struct st_copy {
    int found;
    enum push_sync sync;
    int connected;
    char spiffe[256], desired[PUSH_HASH_LEN + 1], sent[PUSH_HASH_LEN + 1];
    char acked[PUSH_HASH_LEN + 1], nack_hash[PUSH_HASH_LEN + 1], nack_reason[256];
    uint64_t sent_version, acked_version, nack_version;
    int64_t nack_time_ms;
    char apps_exited[PUSH_REASON_MAX + 1];
    int apps_exited_sent;
    int in_flight;
};

static void st_visit(void *arg, const struct push_proxy_state *st)
{
    struct st_copy *c = arg;

    c->found++;
    c->sync = st->sync;
    c->connected = st->connected;
    snprintf(c->spiffe, sizeof(c->spiffe), "%s", st->spiffe_id);
    snprintf(c->desired, sizeof(c->desired), "%s", st->desired_hash);
    snprintf(c->sent, sizeof(c->sent), "%s", st->sent_hash);
    snprintf(c->acked, sizeof(c->acked), "%s", st->acked_hash);
    snprintf(c->nack_hash, sizeof(c->nack_hash), "%s", st->nack_hash);
    snprintf(c->nack_reason, sizeof(c->nack_reason), "%s", st->nack_reason);
    c->sent_version = st->sent_version;
    c->in_flight = st->in_flight;
    c->acked_version = st->acked_version;
    c->nack_version = st->nack_version;
    c->nack_time_ms = st->nack_time_ms;
    snprintf(c->apps_exited, sizeof(c->apps_exited), "%s", st->apps_exited);
    c->apps_exited_sent = st->apps_exited_sent;
}

static struct st_copy state_of(struct h *h, const char *key)
{
    struct st_copy c;

    memset(&c, 0, sizeof(c));
    if (push_server_proxy_state(h->srv, key, st_visit, &c) != 0)
        c.found = 0;
    return c;
}

static void hash_of(const char *doc, char out[PUSH_HASH_LEN + 1])
{
    char *canon = NULL;

    REQUIRE(push_doc_canonical(doc, &canon, out) == 0);
    free(canon);
}

#define DOC1 "{\"listeners\": [{\"port\": 15006}], \"version\": \"a\"}"
#define DOC1_CANON "{\"listeners\":[{\"port\":15006}],\"version\":\"a\"}"
#define DOC1_REORDERED "{ \"version\":\"a\",\n \"listeners\":[ {\"port\":15006} ] }"
#define DOC2 "{\"listeners\": [], \"version\": \"b\"}"
#define KEY "default/web-1"
#define SPIFFE_A "spiffe://cluster.local/ns/default/sa/a"

/* --- codec --------------------------------------------------------------------------------- */

static void t_sha256_vectors(void)
{
    char hex[PUSH_HASH_LEN + 1];
    char *million = malloc(1000000);

    REQUIRE(tls_sha256_hex("", 0, hex) == 0);
    CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    REQUIRE(tls_sha256_hex("abc", 3, hex) == 0);
    CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    REQUIRE(tls_sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, hex) ==
            0);
    CHECK_STR(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    REQUIRE(million);
    memset(million, 'a', 1000000);
    REQUIRE(tls_sha256_hex(million, 1000000, hex) == 0);
    CHECK_STR(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    /* 55, 63 and 64 bytes straddle the padding boundary. */
    REQUIRE(tls_sha256_hex(million, 55, hex) == 0);
    CHECK_STR(hex, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
    REQUIRE(tls_sha256_hex(million, 64, hex) == 0);
    CHECK_STR(hex, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
    free(million);
}

static void t_canonical(void)
{
    char h1[PUSH_HASH_LEN + 1], h2[PUSH_HASH_LEN + 1], h3[PUSH_HASH_LEN + 1] = "untouched";
    char *c1 = NULL, *c2 = NULL, *c3 = NULL;

    CHECK_INT(push_doc_canonical(DOC1, &c1, h1), 0);
    CHECK_INT(push_doc_canonical(DOC1_REORDERED, &c2, h2), 0);
    CHECK_STR(c1, DOC1_CANON);
    CHECK_STR(c2, DOC1_CANON);
    CHECK_STR(h1, h2);
    REQUIRE(tls_sha256_hex(DOC1_CANON, strlen(DOC1_CANON), h3) == 0);
    CHECK_STR(h1, h3);
    CHECK_INT(push_doc_canonical("{\"a\":\"\\u00e9\"}", &c3, h3), 0);
    CHECK_STR(c3, "{\"a\":\"\xc3\xa9\"}"); /* UTF-8, not \u escapes */
    free(c3);
    c3 = NULL;
    strcpy(h3, "untouched");
    CHECK_INT(push_doc_canonical("[1,2]", &c3, h3), ERR_INVALID);
    CHECK_INT(push_doc_canonical("{\"a\":", &c3, h3), ERR_PARSE);
    CHECK_INT(push_doc_canonical("{\"a\":1,\"a\":2}", &c3, h3), ERR_PARSE);
    CHECK_INT(push_doc_canonical("", &c3, h3), ERR_PARSE);
    CHECK(c3 == NULL);
    CHECK_STR(h3, "untouched");
    free(c1);
    free(c2);
}

#define H64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void t_msg_encode_exact(void)
{
    struct push_msg m;
    char *s = NULL;

    memset(&m, 0, sizeof(m));
    m.type = PUSH_MSG_HELLO;
    strcpy(m.pod.ns, "default");
    strcpy(m.pod.name, "web-1");
    strcpy(m.pod.uid, "u1");
    strcpy(m.agent, "0.1");
    CHECK_INT(push_msg_encode(&m, &s), 0);
    CHECK_STR(s, "{\"type\":\"hello\",\"pod\":{\"namespace\":\"default\",\"name\":\"web-1\","
                 "\"uid\":\"u1\"},\"agent\":\"0.1\"}");
    free(s);
    strcpy(m.last_hash, H64);
    CHECK_INT(push_msg_encode(&m, &s), 0);
    CHECK(strstr(s, ",\"lastHash\":\"" H64 "\"}") != NULL);
    free(s);

    memset(&m, 0, sizeof(m));
    m.type = PUSH_MSG_NACK;
    m.version = 7;
    strcpy(m.hash, H64);
    m.reason = (char *)(uintptr_t) "haproxy -c: \"x\"";
    CHECK_INT(push_msg_encode(&m, &s), 0);
    CHECK_STR(s, "{\"type\":\"nack\",\"version\":7,\"hash\":\"" H64
                 "\",\"reason\":\"haproxy -c: \\\"x\\\"\"}");
    free(s);

    memset(&m, 0, sizeof(m));
    m.type = PUSH_MSG_CONFIG;
    m.version = 2;
    strcpy(m.hash, H64);
    m.config = (char *)(uintptr_t)DOC1_CANON;
    CHECK_INT(push_msg_encode(&m, &s), 0);
    CHECK_STR(s,
              "{\"type\":\"config\",\"version\":2,\"hash\":\"" H64 "\",\"config\":" DOC1_CANON "}");
    free(s);
    s = NULL;
    m.version = 0;
    CHECK_INT(push_msg_encode(&m, &s), ERR_INVALID);
    m.version = 1;
    m.config = (char *)(uintptr_t) "[1]";
    CHECK_INT(push_msg_encode(&m, &s), ERR_INVALID);
    m.type = PUSH_MSG_NONE;
    CHECK_INT(push_msg_encode(&m, &s), ERR_INVALID);
    CHECK(s == NULL);
}

static void t_msg_parse(void)
{
    struct push_msg m;
    const char *cfg = "{\"type\":\"config\",\"version\":3,\"hash\":\"" H64
                      "\",\"config\":{\"b\":1, \"a\":2},\"extra\":true}";

    CHECK_INT(push_msg_parse(cfg, strlen(cfg), &m), 0);
    CHECK_INT(m.type, PUSH_MSG_CONFIG);
    CHECK_INT(m.version, 3);
    CHECK_STR(m.hash, H64);
    CHECK_STR(m.config, "{\"a\":2,\"b\":1}");
    push_msg_release(&m);

    {
        const char *hello = "{\"type\":\"hello\",\"pod\":{\"namespace\":\"ns1\",\"name\":\"p\","
                            "\"uid\":\"u\"},\"agent\":\"v1\",\"lastHash\":\"" H64 "\"}";

        CHECK_INT(push_msg_parse(hello, strlen(hello), &m), 0);
        CHECK_INT(m.type, PUSH_MSG_HELLO);
        CHECK_STR(m.pod.ns, "ns1");
        CHECK_STR(m.pod.name, "p");
        CHECK_STR(m.pod.uid, "u");
        CHECK_STR(m.agent, "v1");
        CHECK_STR(m.last_hash, H64);
        push_msg_release(&m);
    }
    {
        const char *ax = "{\"type\":\"appsExited\",\"reason\":\"app exited 0\"}";
        char *s = NULL;

        CHECK_INT(push_msg_parse(ax, strlen(ax), &m), 0);
        CHECK_INT(m.type, PUSH_MSG_APPS_EXITED);
        CHECK_STR(m.reason, "app exited 0");
        CHECK_INT(push_msg_encode(&m, &s), 0);
        CHECK_STR(s, ax);
        free(s);
        push_msg_release(&m);
    }
    {
        const char *err = "{\"type\":\"error\",\"code\":\"UnknownPod\",\"reason\":\"no pod\"}";

        CHECK_INT(push_msg_parse(err, strlen(err), &m), 0);
        CHECK_STR(m.code, "UnknownPod");
        CHECK_STR(m.reason, "no pod");
        push_msg_release(&m);
    }
    {
        const char *tr = "{\"type\":\"trust\",\"bundle\":\"-----BEGIN CERTIFICATE-----\\nA\\n\"}";
        struct push_msg e;
        char *out = NULL;

        CHECK_INT(push_msg_parse(tr, strlen(tr), &m), 0);
        CHECK_INT(m.type, PUSH_MSG_TRUST);
        CHECK_STR(m.bundle, "-----BEGIN CERTIFICATE-----\nA\n");
        CHECK_INT(push_msg_encode(&m, &out), 0);
        CHECK_STR(out, tr);
        free(out);
        push_msg_release(&m);
        /* an empty bundle, a missing one, one of the wrong type; one with a NUL is not JSON here */
        CHECK_INT(push_msg_parse("{\"type\":\"trust\",\"bundle\":\"\"}",
                                 sizeof("{\"type\":\"trust\",\"bundle\":\"\"}") - 1, &m),
                  ERR_INVALID);
        CHECK_INT(push_msg_parse("{\"type\":\"trust\"}", sizeof("{\"type\":\"trust\"}") - 1, &m),
                  ERR_INVALID);
        CHECK_INT(push_msg_parse("{\"type\":\"trust\",\"bundle\":1}",
                                 sizeof("{\"type\":\"trust\",\"bundle\":1}") - 1, &m),
                  ERR_INVALID);
        CHECK_INT(push_msg_parse("{\"type\":\"trust\",\"bundle\":\"a\\u0000b\"}",
                                 sizeof("{\"type\":\"trust\",\"bundle\":\"a\\u0000b\"}") - 1, &m),
                  ERR_PARSE);
        memset(&e, 0, sizeof(e));
        e.type = PUSH_MSG_TRUST;
        CHECK_INT(push_msg_encode(&e, &out), ERR_INVALID);
    }
}

static void t_msg_parse_invalid(void)
{
    static const struct {
        const char *text;
        int rc;
    } cases[] = {
        {"", ERR_PARSE},
        {"not json", ERR_PARSE},
        {"[1]", ERR_PARSE},
        {"{\"type\":\"ack\",\"version\":1,\"hash\":\"" H64 "\",\"hash\":\"" H64 "\"}", ERR_PARSE},
        {"{}", ERR_INVALID},
        {"{\"type\":\"bogus\"}", ERR_INVALID},
        {"{\"type\":7}", ERR_INVALID},
        {"{\"type\":\"hello\"}", ERR_INVALID},
        {"{\"type\":\"hello\",\"pod\":{\"namespace\":\"a/b\",\"name\":\"p\",\"uid\":\"u\"}}",
         ERR_INVALID},
        {"{\"type\":\"hello\",\"pod\":{\"namespace\":\"\",\"name\":\"p\",\"uid\":\"u\"}}",
         ERR_INVALID},
        {"{\"type\":\"hello\",\"pod\":{\"namespace\":\"n\",\"name\":\"p\"}}", ERR_INVALID},
        {"{\"type\":\"hello\",\"pod\":{\"namespace\":\"n\",\"name\":\"p\",\"uid\":\"u\"},"
         "\"lastHash\":\"0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef\"}",
         ERR_INVALID},
        {"{\"type\":\"ack\",\"version\":0,\"hash\":\"" H64 "\"}", ERR_INVALID},
        {"{\"type\":\"ack\",\"version\":\"1\",\"hash\":\"" H64 "\"}", ERR_INVALID},
        {"{\"type\":\"ack\",\"version\":1,\"hash\":\"abc\"}", ERR_INVALID},
        {"{\"type\":\"nack\",\"version\":1,\"hash\":\"" H64 "\"}", ERR_INVALID},
        {"{\"type\":\"config\",\"version\":1,\"hash\":\"" H64 "\",\"config\":[1]}", ERR_INVALID},
        {"{\"type\":\"error\",\"code\":\"\",\"reason\":\"x\"}", ERR_INVALID},
        {"{\"type\":\"error\",\"code\":\"X\"}", ERR_INVALID},
        {"{\"type\":\"appsExited\"}", ERR_INVALID},
        {"{\"type\":\"appsExited\",\"reason\":1}", ERR_INVALID},
    };
    char longname[400];
    char text[600];
    struct push_msg m;

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        int rc = push_msg_parse(cases[i].text, strlen(cases[i].text), &m);

        if (rc != cases[i].rc)
            fprintf(stderr, "  case %zu: %s\n", i, cases[i].text);
        CHECK_INT(rc, cases[i].rc);
        CHECK_INT(m.type, PUSH_MSG_NONE);
        CHECK(m.reason == NULL && m.config == NULL);
    }
    memset(longname, 'x', 254);
    longname[254] = '\0';
    snprintf(text, sizeof(text),
             "{\"type\":\"hello\",\"pod\":{\"namespace\":\"n\",\"name\":\"%s\",\"uid\":\"u\"}}",
             longname);
    CHECK_INT(push_msg_parse(text, strlen(text), &m), ERR_INVALID);
    longname[253] = '\0';
    snprintf(text, sizeof(text),
             "{\"type\":\"hello\",\"pod\":{\"namespace\":\"n\",\"name\":\"%s\",\"uid\":\"u\"}}",
             longname);
    CHECK_INT(push_msg_parse(text, strlen(text), &m), 0);
    CHECK_INT(strlen(m.pod.name), 253);
    push_msg_release(&m);
}

/* --- argument checks ----------------------------------------------------------------------- */

static void t_bad_arguments(void)
{
    struct h h;
    struct push_server_config sc = server_cfg(0, 0);
    struct push_server_ops noh = {.on_hello = NULL};
    struct push_server *s = (struct push_server *)&h;
    struct push_client *c = (struct push_client *)&h;
    struct push_client_config cc;

    h_init(&h, 0);
    CHECK_INT(push_server_new(&h.loop, &sc, &noh, NULL, &s), -EINVAL);
    sc.cert_pem = "garbage";
    CHECK_INT(push_server_new(&h.loop, &sc, &sops, NULL, &s), ERR_INVALID);
    sc = server_cfg(0, 0);
    sc.key_pem = F.cli.key; /* does not match the certificate */
    CHECK_INT(push_server_new(&h.loop, &sc, &sops, NULL, &s), ERR_INVALID);
    sc = server_cfg(0, 0);
    sc.trust_pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    CHECK_INT(push_server_new(&h.loop, &sc, &sops, NULL, &s), ERR_INVALID);
    sc = server_cfg(h.port, 0); /* taken */
    CHECK_INT(push_server_new(&h.loop, &sc, &sops, NULL, &s), -EADDRINUSE);
    CHECK(s == (struct push_server *)&h);

    CHECK_INT(push_server_send(h.srv, "nokey", DOC1), ERR_INVALID);
    CHECK_INT(push_server_send(h.srv, "a/b/c", DOC1), ERR_INVALID);
    CHECK_INT(push_server_send(h.srv, "/b", DOC1), ERR_INVALID);
    CHECK_INT(push_server_send(h.srv, KEY, "[1]"), ERR_INVALID);
    CHECK_INT(push_server_send(h.srv, KEY, "{"), ERR_PARSE);
    CHECK_INT(push_server_proxy_state(h.srv, KEY, st_visit, NULL), ERR_NOTFOUND);
    CHECK_INT(push_server_set_certs(h.srv, "x", F.srv.key), ERR_INVALID);
    CHECK_INT(push_server_set_certs(h.srv, F.srv2.cert, F.srv.key), ERR_INVALID);
    CHECK_INT(push_server_set_trust(h.srv, "nothing"), ERR_INVALID);

    cc = client_cfg(&h, &F.cli);
    cc.pod_uid = NULL;
    CHECK_INT(push_client_new(&h.loop, &cc, &cops, NULL, &c), -EINVAL);
    cc = client_cfg(&h, &F.cli);
    cc.key_pem = F.srv.key;
    CHECK_INT(push_client_new(&h.loop, &cc, &cops, NULL, &c), ERR_INVALID);
    cc = client_cfg(&h, &F.cli);
    cc.last_hash = "short";
    CHECK_INT(push_client_new(&h.loop, &cc, &cops, NULL, &c), ERR_INVALID);
    cc = client_cfg(&h, &F.cli);
    cc.pod_ns = "";
    CHECK_INT(push_client_new(&h.loop, &cc, &cops, NULL, &c), ERR_INVALID);
    CHECK(c == (struct push_client *)&h);
    h_done(&h);
}

/* --- streams ------------------------------------------------------------------------------- */

static void t_hello_config_ack(void)
{
    struct h h;
    struct st_copy st;
    char h1[PUSH_HASH_LEN + 1];

    h_init(&h, 0);
    hash_of(DOC1, h1);
    CHECK_INT(push_server_send(h.srv, KEY, DOC1), 0);
    st = state_of(&h, KEY);
    CHECK_INT(st.found, 1);
    CHECK_INT(st.sync, PUSH_SYNC_DISCONNECTED);
    CHECK_STR(st.desired, h1);
    h_client(&h, &F.cli, NULL);
    REQUIRE(spin(&h.loop, p_acks1, &h, 5000));
    CHECK_INT(h.hellos, 1);
    CHECK_STR(h.spiffe, SPIFFE_A);
    CHECK_STR(h.hello_ns, "default");
    CHECK_STR(h.hello_name, "web-1");
    CHECK_STR(h.hello_uid, "0b4f3c1e-1111-2222-3333-444455556666");
    CHECK_STR(h.hello_agent, "weft-agent/0.1");
    CHECK_STR(h.hello_last_hash, "");
    CHECK_INT(h.connected, 1);
    CHECK_INT(h.configs, 1);
    CHECK_INT(h.cfg_version, 1);
    CHECK_STR(h.cfg_hash, h1);
    CHECK_STR(h.cfg_doc, DOC1_CANON);
    CHECK_STR(push_client_last_hash(h.cli), h1);
    st = state_of(&h, KEY);
    CHECK_INT(st.sync, PUSH_SYNC_SYNCED);
    CHECK_INT(st.connected, 1);
    CHECK_STR(st.spiffe, SPIFFE_A);
    CHECK_INT(st.sent_version, 1);
    CHECK_STR(st.sent, h1);
    CHECK_INT(st.acked_version, 1);
    CHECK_STR(st.acked, h1);
    CHECK_STR(st.nack_reason, "");
    CHECK_INT(h.disconnects, 0);
    h_done(&h);
}

static void t_identical_not_resent(void)
{
    struct h h;
    struct st_copy st;
    char h2[PUSH_HASH_LEN + 1];

    h_init(&h, 0);
    h_client(&h, &F.cli, NULL);
    REQUIRE(spin(&h.loop, p_hellos1, &h, 5000));
    spin(&h.loop, NULL, NULL, 50);
    CHECK_INT(h.configs, 0); /* no document yet: nothing sent */
    CHECK_INT(state_of(&h, KEY).sync, PUSH_SYNC_PENDING);
    CHECK_INT(push_server_send(h.srv, KEY, DOC1), 0);
    REQUIRE(spin(&h.loop, p_acks1, &h, 5000));
    CHECK_INT(push_server_send(h.srv, KEY, DOC1_REORDERED), 0); /* same canonical document */
    CHECK_INT(push_server_send(h.srv, KEY, DOC1), 0);
    spin(&h.loop, NULL, NULL, 300);
    CHECK_INT(h.configs, 1);
    CHECK_INT(h.acks, 1);
    CHECK_INT(push_server_send(h.srv, KEY, DOC2), 0);
    REQUIRE(spin(&h.loop, p_acks2, &h, 5000));
    hash_of(DOC2, h2);
    CHECK_INT(h.configs, 2);
    CHECK_INT(h.cfg_version, 2);
    CHECK_STR(h.cfg_hash, h2);
    st = state_of(&h, KEY);
    CHECK_INT(st.sent_version, 2);
    CHECK_INT(st.acked_version, 2);
    CHECK_INT(st.sync, PUSH_SYNC_SYNCED);
    h_done(&h);
}

/* push_server_send_json: the same canonical text and hash as push_server_send of the text;
 * on_converged once per changed document, after its ACK, not for the first document. */
static void t_send_json_converged(void)
{
    struct h h;
    char h1[PUSH_HASH_LEN + 1], h2[PUSH_HASH_LEN + 1];
    json_t *d1 = json_loads(DOC1_REORDERED, 0, NULL), *d2 = json_loads(DOC2, 0, NULL);
    json_t *arr = json_array();

    REQUIRE(d1 && d2 && arr);
    hash_of(DOC1, h1);
    hash_of(DOC2, h2);
    h_init(&h, 0);
    CHECK_INT(push_server_send_json(h.srv, KEY, arr), ERR_INVALID);
    CHECK_INT(push_server_send_json(h.srv, "nokey", d1), ERR_INVALID);
    CHECK_INT(push_server_send_json(h.srv, KEY, d1), 0);
    CHECK_STR(state_of(&h, KEY).desired, h1);
    h_client(&h, &F.cli, NULL);
    REQUIRE(spin(&h.loop, p_acks1, &h, 5000));
    CHECK_STR(h.cfg_doc, DOC1_CANON);
    CHECK_STR(h.cfg_hash, h1);
    CHECK_INT(h.converged, 0);                        /* the first document is no change */
    CHECK_INT(push_server_send(h.srv, KEY, DOC1), 0); /* the same document as text */
    spin(&h.loop, NULL, NULL, 200);
    CHECK_INT(h.configs, 1);
    CHECK_INT(h.converged, 0);
    CHECK_INT(push_server_send_json(h.srv, KEY, d2), 0);
    REQUIRE(spin(&h.loop, p_acks2, &h, 5000));
    CHECK_STR(h.cfg_hash, h2);
    CHECK_INT(h.converged, 1);
    CHECK(h.converged_s >= 0 && h.converged_s < 5);
    CHECK_INT(state_of(&h, KEY).sync, PUSH_SYNC_SYNCED);
    json_decref(d1);
    json_decref(d2);
    json_decref(arr);
    h_done(&h);
}

static void t_reconnect_last_hash(void)
{
    struct h h;
    struct st_copy st;
    char h1[PUSH_HASH_LEN + 1], h2[PUSH_HASH_LEN + 1];

    h_init(&h, 0);
    hash_of(DOC1, h1);
    hash_of(DOC2, h2);
    CHECK_INT(push_server_send(h.srv, KEY, DOC1), 0);
    /* An agent restarting while it serves DOC1: nothing is resent. */
    h_client(&h, &F.cli, h1);
    REQUIRE(spin(&h.loop, p_hellos1, &h, 5000));
    spin(&h.loop, NULL, NULL, 300);
    CHECK_STR(h.hello_last_hash, h1);
    CHECK_INT(h.configs, 0);
    st = state_of(&h, KEY);
    CHECK_INT(st.sync, PUSH_SYNC_SYNCED);
    CHECK_STR(st.acked, h1);
    CHECK_INT(st.acked_version, 0);
    CHECK_INT(st.sent_version, 0);
    push_client_free(h.cli);
    h.cli = NULL;
    spin(&h.loop, NULL, NULL, 200);
    CHECK_INT(h.disconnects, 1);
    CHECK_INT(state_of(&h, KEY).sync, PUSH_SYNC_DISCONNECTED);
    /* One serving DOC2 while DOC1 is current: DOC1 is sent again. */
    h_client(&h, &F.cli, h2);
    REQUIRE(spin(&h.loop, p_acks1, &h, 5000));
    CHECK_INT(h.hellos, 2);
    CHECK_STR(h.hello_last_hash, h2);
    CHECK_INT(h.configs, 1);
    CHECK_INT(h.cfg_version, 1);
    CHECK_STR(h.cfg_hash, h1);
    h_done(&h);
}

static void t_last_hash_before_document(void)
{
    struct h h;
    char h1[PUSH_HASH_LEN + 1];

    /* weftd restarted: the agent says it serves DOC1 before the controller recomputed it. */
    h_init(&h, 0);
    hash_of(DOC1, h1);
    h_client(&h, &F.cli, h1);
    REQUIRE(spin(&h.loop, p_hellos1, &h, 5000));
    CHECK_INT(state_of(&h, KEY).sync, PUSH_SYNC_PENDING);
    CHECK_INT(push_server_send(h.srv, KEY, DOC1), 0);
    spin(&h.loop, NULL, NULL, 200);
    CHECK_INT(h.configs, 0);
    CHECK_INT(state_of(&h, KEY).sync, PUSH_SYNC_SYNCED);
    CHECK_STR(state_of(&h, KEY).acked, h1);
    CHECK_INT(push_server_send(h.srv, KEY, DOC2), 0);
    REQUIRE(spin(&h.loop, p_acks1, &h, 5000));
    CHECK_INT(h.cfg_version, 1);
    h_done(&h);
}

static void t_nack_recorded(void)
{
    struct h h;
    struct st_copy st;
    char h1[PUSH_HASH_LEN + 1];
    int64_t before;

    h_init(&h, 0);
    hash_of(DOC1, h1);
    h.nack_with = -EINVAL;
    before = (int64_t)time(NULL) * 1000 - 1000;
    CHECK_INT(push_server_send(h.srv, KEY, DOC1), 0);
    h_client(&h, &F.cli, NULL);
    REQUIRE(spin(&h.loop, p_nacks1, &h, 5000));
    CHECK_STR(h.nack_reason, "render: bad route");
    CHECK_INT(h.nack_version, 1);
    CHECK_INT(h.acks, 0);
    CHECK_STR(push_client_last_hash(h.cli), ""); /* a NACKed document is not lastHash */
    st = state_of(&h, KEY);
    CHECK_INT(st.sync, PUSH_SYNC_REJECTED);
    CHECK_STR(st.nack_reason, "render: bad route");
    CHECK_INT(st.nack_version, 1);
    CHECK_STR(st.nack_hash, h1);
    CHECK(st.nack_time_ms >= before);
    CHECK(st.nack_time_ms <= (int64_t)time(NULL) * 1000 + 1000);
    if (st.nack_time_ms < before)
        fprintf(stderr, "  nack_time_ms=%lld before=%lld\n", (long long)st.nack_time_ms,
                (long long)before);
    CHECK_STR(st.acked, "");
    /* A fixed document is ACKed; the last NACK stays on record. */
    h.nack_with = 0;
    CHECK_INT(push_server_send(h.srv, KEY, DOC2), 0);
    REQUIRE(spin(&h.loop, p_acks1, &h, 5000));
    st = state_of(&h, KEY);
    CHECK_INT(st.sync, PUSH_SYNC_SYNCED);
    CHECK_INT(st.acked_version, 2);
    CHECK_STR(st.nack_reason, "render: bad route");
    h_done(&h);
}

static int p_configs1(void *a)
{
    return ((struct h *)a)->configs >= 1;
}

static int p_configs2(void *a)
{
    return ((struct h *)a)->configs >= 2;
}

/* A harness whose agent answers later (push_client_answer), with DOC1 received and unanswered. */
static void h_deferred(struct h *h)
{
    h_init(h, 0);
    h->nack_with = PUSH_CONFIG_LATER;
    CHECK_INT(push_server_send(h->srv, KEY, DOC1), 0);
    h_client(h, &F.cli, NULL);
    REQUIRE(spin(&h->loop, p_configs1, h, 5000));
}

/* The agent applies off the loop: on_config says PUSH_CONFIG_LATER, push_client_answer() ACKs
 * or NACKs later; nothing is answered meanwhile. */
static void t_deferred_answer(void)
{
    struct h h;
    struct st_copy st;
    char h1[PUSH_HASH_LEN + 1];

    hash_of(DOC1, h1);
    h_deferred(&h);
    spin(&h.loop, p_acks1, &h, 200); /* no answer goes out by itself */
    CHECK_INT(h.acks + h.nacks, 0);
    CHECK_INT(state_of(&h, KEY).sync, PUSH_SYNC_PENDING);
    CHECK_INT(push_client_answer(h.cli, h.cfg_version, "nothex", 0, NULL), -EINVAL);
    CHECK_INT(push_client_answer(h.cli, h.cfg_version, h.cfg_hash, 0, NULL), 0);
    REQUIRE(spin(&h.loop, p_acks1, &h, 5000));
    st = state_of(&h, KEY);
    CHECK_INT(st.sync, PUSH_SYNC_SYNCED);
    CHECK_INT(st.acked_version, 1);
    CHECK_STR(push_client_last_hash(h.cli), h1);
    /* a later one refused: the NACK carries the reason given to push_client_answer */
    CHECK_INT(push_server_send(h.srv, KEY, DOC2), 0);
    REQUIRE(spin(&h.loop, p_configs2, &h, 5000));
    CHECK_INT(push_client_answer(h.cli, h.cfg_version, h.cfg_hash, ERR_INVALID,
                                 "haproxy -c refused the configuration"),
              0);
    REQUIRE(spin(&h.loop, p_nacks1, &h, 5000));
    CHECK_STR(h.nack_reason, "haproxy -c refused the configuration");
    CHECK_INT(h.nack_version, 2);
    CHECK_STR(push_client_last_hash(h.cli), h1);
    CHECK_INT(state_of(&h, KEY).sync, PUSH_SYNC_REJECTED);
    h_done(&h);
}

static int p_configs3(void *a)
{
    return ((struct h *)a)->configs >= 3;
}

/* A change and its undoing sent before the agent answered the first: the acked hash equals
 * the desired one again, but the agent may serve the change (flip_bench caught an agent on the
 * 0/100 document while weftd called it synced). Pending until the last version sent is
 * answered. */
static void t_in_flight_not_synced(void)
{
    struct h h;
    struct st_copy st;
    char h2[PUSH_HASH_LEN + 1];
    uint64_t v2;

    h_deferred(&h);
    CHECK_INT(push_client_answer(h.cli, h.cfg_version, h.cfg_hash, 0, NULL), 0);
    REQUIRE(spin(&h.loop, p_acks1, &h, 5000));
    CHECK_INT(state_of(&h, KEY).sync, PUSH_SYNC_SYNCED);
    /* DOC2 goes out; before the agent answers, DOC1 again */
    CHECK_INT(push_server_send(h.srv, KEY, DOC2), 0);
    REQUIRE(spin(&h.loop, p_configs2, &h, 5000));
    v2 = h.cfg_version;
    memcpy(h2, h.cfg_hash, sizeof(h2));
    st = state_of(&h, KEY);
    CHECK_INT(st.sync, PUSH_SYNC_PENDING);
    CHECK(st.in_flight);
    CHECK_INT(push_server_send(h.srv, KEY, DOC1), 0);
    REQUIRE(spin(&h.loop, p_configs3, &h, 5000));
    st = state_of(&h, KEY);
    CHECK_INT(st.acked_version, 1);
    CHECK_STR(st.acked, st.desired); /* what used to read as synced */
    CHECK_INT(st.sync, PUSH_SYNC_PENDING);
    CHECK(st.in_flight);
    /* the answer to DOC2 arrives: version 3 is still unanswered */
    CHECK_INT(push_client_answer(h.cli, v2, h2, 0, NULL), 0);
    REQUIRE(spin(&h.loop, p_acks2, &h, 5000));
    st = state_of(&h, KEY);
    CHECK_INT(st.acked_version, 2);
    CHECK_INT(st.sync, PUSH_SYNC_PENDING);
    CHECK(st.in_flight);
    CHECK_INT(push_client_answer(h.cli, h.cfg_version, h.cfg_hash, 0, NULL), 0);
    REQUIRE(spin(&h.loop, p_acks3, &h, 5000));
    st = state_of(&h, KEY);
    CHECK_INT(st.acked_version, 3);
    CHECK_INT(st.sync, PUSH_SYNC_SYNCED);
    CHECK(!st.in_flight);
    h_done(&h);
}

static int p_three_disconnects(void *a)
{
    return ((struct h *)a)->disconnected >= 4;
}

static void t_reject_backs_off(void)
{
    struct h h;

    h_init(&h, 0);
    h.reject = 1;
    CHECK_INT(push_server_send(h.srv, KEY, DOC1), 0);
    h_client(&h, &F.cli, NULL);
    REQUIRE(spin(&h.loop, p_three_disconnects, &h, 5000));
    CHECK_INT(h.configs, 0);
    CHECK(h.rejected >= 3);
    CHECK_STR(h.rej_code, PUSH_ERR_IDENTITY_MISMATCH);
    CHECK_STR(h.rej_reason, "want spiffe://cluster.local/ns/default/sa/b");
    /* Delays double from 40 ms, each jittered into [d/2, d], capped at 320. */
    for (int i = 0; i < 4; i++) {
        unsigned d = 40u << i;

        CHECK(h.retry_ms[i] >= d / 2 && h.retry_ms[i] <= d);
    }
    /* The attempts really were that far apart (hello to hello). */
    for (int i = 1; i < 4 && i < h.hellos; i++)
        CHECK(h.hello_at[i] - h.hello_at[i - 1] + 2 >= h.retry_ms[i - 1]);
    CHECK_INT(state_of(&h, KEY).sync, PUSH_SYNC_DISCONNECTED);
    CHECK_INT(h.disconnects, 0); /* never accepted */
    h_done(&h);
}

static int p_seven_disconnects(void *a)
{
    return ((struct h *)a)->disconnected >= 7;
}

/* Nothing listens (weftd restarting): refused connects back off at most step 2 (4 x the
 * minimum: 2 s by default) however many fail, and the client is back within that once the
 * server listens. */
static void t_refused_retries_soon(void)
{
    struct h h;
    struct push_server_config sc;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    uint64_t t0;

    /* a bound port nobody listens on: connects to it are refused */
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
            getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
    memset(&h, 0, sizeof(h));
    REQUIRE(uv_loop_init(&h.loop) == 0);
    h.port = ntohs(sa.sin_port);
    h_client(&h, &F.cli, NULL);
    REQUIRE(spin(&h.loop, p_seven_disconnects, &h, 5000));
    for (int i = 0; i < 7; i++) {
        unsigned d = 40u << (i < 2 ? i : 2); /* 40, 80, then 160 (not up to 320) */

        CHECK(h.retry_ms[i] >= d / 2 && h.retry_ms[i] <= d);
    }
    CHECK_INT(h.connected, 0);
    close(fd);
    sc = server_cfg(h.port, 0);
    REQUIRE(push_server_new(&h.loop, &sc, &sops, &h, &h.srv) == 0);
    t0 = now_ms();
    REQUIRE(spin(&h.loop, p_hellos1, &h, 2000));
    CHECK(now_ms() - t0 <= 160 + 100);
    h_done(&h);
}

static void t_unknown_ca_refused(void)
{
    struct h h;

    h_init(&h, 0);
    h_client(&h, &F.rogue, NULL);
    spin(&h.loop, p_three_disconnects, &h, 3000);
    CHECK(h.disconnected >= 2);
    CHECK_INT(h.connected, 0);
    CHECK_INT(h.hellos, 0);
    h_done(&h);
}

static void t_client_checks_server_cert(void)
{
    struct h h;
    struct push_client_config cc;

    h_init(&h, 0);
    /* Right CA, wrong name. */
    cc = client_cfg(&h, &F.cli);
    cc.server_name = "other.weft-system.svc";
    REQUIRE(push_client_new(&h.loop, &cc, &cops, &h, &h.cli) == 0);
    spin(&h.loop, p_three_disconnects, &h, 3000);
    CHECK(h.disconnected >= 2);
    CHECK_INT(h.connected, 0);
    push_client_free(h.cli);
    /* Right name, a bundle without weftd's CA. */
    cc = client_cfg(&h, &F.cli);
    cc.trust_pem = F.rogue_ca;
    h.disconnected = 0;
    REQUIRE(push_client_new(&h.loop, &cc, &cops, &h, &h.cli) == 0);
    spin(&h.loop, p_three_disconnects, &h, 3000);
    CHECK(h.disconnected >= 2);
    CHECK_INT(h.connected, 0);
    CHECK_INT(h.hellos, 0);
    h_done(&h);
}

static void t_spiffe_extraction(void)
{
    struct h h;

    h_init(&h, 0);
    h_client(&h, &F.multi, NULL);
    REQUIRE(spin(&h.loop, p_hellos1, &h, 5000));
    CHECK_STR(h.spiffe, "spiffe://cluster.local/ns/prod/sa/web");
    /* on_hello gets the verified client certificate itself: the client's leaf, as PEM */
    REQUIRE(strlen(h.hello_cert) > 100);
    CHECK(strncmp(h.hello_cert, "-----BEGIN CERTIFICATE-----\n", 28) == 0);
    CHECK(strncmp(h.hello_cert, F.multi.cert, strlen(h.hello_cert)) == 0);
    push_client_free(h.cli);
    h_client(&h, &F.nouri, NULL);
    REQUIRE(spin(&h.loop, p_hellos2, &h, 5000));
    CHECK_STR(h.spiffe, "");
    h_done(&h);
}

/* A burst: the first change goes out at once, the other 49 inside its window become one
 * `config` with the newest document when the window closes. */
static void t_debounce(void)
{
    struct h h;
    struct push_server_stats st;
    char doc[128], want[PUSH_HASH_LEN + 1];
    uint64_t t0;

    h_init(&h, 200); /* wider than 100 ms so the 50 sends fit under valgrind too */
    h_client(&h, &F.cli, NULL);
    REQUIRE(spin(&h.loop, p_hellos1, &h, 5000));
    t0 = now_ms();
    for (int i = 0; i < 50; i++) {
        snprintf(doc, sizeof(doc), "{\"n\":%d}", i);
        CHECK_INT(push_server_send(h.srv, KEY, doc), 0);
        uv_run(&h.loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    REQUIRE(now_ms() - t0 < 200); /* all 50 inside one window */
    hash_of(doc, want);
    REQUIRE(spin(&h.loop, p_acks2, &h, 5000));
    spin(&h.loop, NULL, NULL, 300);
    CHECK_INT(h.configs, 2);
    CHECK_STR(h.cfg_doc, "{\"n\":49}");
    CHECK_STR(h.cfg_hash, want);
    CHECK_INT(h.cfg_version, 2);
    push_server_stats(h.srv, &st);
    CHECK_INT(st.changes_immediate, 1);
    CHECK_INT(st.changes_deferred, 1);
    CHECK_INT(st.changes_superseded, 48);
    CHECK_INT(st.configs_sent, 2);
    CHECK_INT(st.acks, 2);
    CHECK_INT(st.streams, 1);
    h_done(&h);
}

/*
 * After a quiet period a change is not held for the window: shown by the server's own counters
 * (released at once, nothing deferred), not by timing. The control: a change right after it,
 * inside the window it opened, is deferred.
 */
static void t_debounce_quiet(void)
{
    struct h h;
    struct push_server_stats st;

    h_init(&h, 500);
    h_client(&h, &F.cli, NULL);
    REQUIRE(spin(&h.loop, p_hellos1, &h, 5000));
    CHECK_INT(push_server_send(h.srv, KEY, DOC1), 0);
    REQUIRE(spin(&h.loop, p_acks1, &h, 5000));
    spin(&h.loop, NULL, NULL, 600); /* quiet: longer than the window */
    CHECK_INT(push_server_send(h.srv, KEY, DOC2), 0);
    push_server_stats(h.srv, &st);
    CHECK_INT(st.changes_immediate, 2);
    CHECK_INT(st.changes_deferred, 0);
    REQUIRE(spin(&h.loop, p_acks2, &h, 5000));
    CHECK_INT(push_server_send(h.srv, KEY, DOC1), 0); /* inside DOC2's window */
    push_server_stats(h.srv, &st);
    CHECK_INT(st.changes_immediate, 2);
    CHECK_INT(st.changes_deferred, 1);
    REQUIRE(spin(&h.loop, p_acks3, &h, 5000));
    CHECK_INT(h.configs, 3);
    CHECK_INT(st.changes_superseded, 0);
    h_done(&h);
}

/* A plain TCP connection to 127.0.0.1:port (no TLS: the caps act at accept). -1 on failure. */
static int tcp_open(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

struct caps_wait {
    struct push_server *srv;
    uint64_t want_addr, want_total;
};

static int p_refused(void *a)
{
    struct caps_wait *w = a;
    struct push_server_stats st;

    push_server_stats(w->srv, &st);
    return st.refused_per_addr >= w->want_addr && st.refused_max_conns >= w->want_total;
}

/* 1 when the server closed fd (EOF or reset within ms), 0 when it stays open. */
static int closed_by_server(uv_loop_t *loop, int fd, unsigned ms)
{
    char c;
    uint64_t end = now_ms() + ms;

    while (now_ms() < end) {
        ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);

        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            return 1;
        spin(loop, NULL, NULL, 10);
    }
    return 0;
}

/* The listener's caps: connections from one address, then in all; the stats count refusals,
 * and a closed connection's place is free again. */
static void t_conn_caps(void)
{
    struct h h;
    struct push_server_config sc = server_cfg(0, 0);
    struct caps_wait w;
    int fd[4];

    memset(&h, 0, sizeof(h));
    REQUIRE(uv_loop_init(&h.loop) == 0);
    sc.max_conns_per_addr = 2;
    sc.max_conns = 3;
    REQUIRE(push_server_new(&h.loop, &sc, &sops, &h, &h.srv) == 0);
    h.port = push_server_port(h.srv);
    w.srv = h.srv;
    for (int i = 0; i < 3; i++)
        REQUIRE((fd[i] = tcp_open(h.port)) >= 0);
    w.want_addr = 1;
    w.want_total = 0;
    REQUIRE(spin(&h.loop, p_refused, &w, 5000));
    CHECK(closed_by_server(&h.loop, fd[2], 500));
    CHECK(!closed_by_server(&h.loop, fd[0], 200));
    CHECK(!closed_by_server(&h.loop, fd[1], 50));
    /* one closes: its place is free again */
    close(fd[2]);
    close(fd[1]);
    spin(&h.loop, NULL, NULL, 100);
    REQUIRE((fd[1] = tcp_open(h.port)) >= 0);
    CHECK(!closed_by_server(&h.loop, fd[1], 200));
    {
        struct push_server_stats st;

        push_server_stats(h.srv, &st);
        CHECK_INT(st.refused_per_addr, 1);
        CHECK_INT(st.conns, 2);
    }
    close(fd[0]);
    close(fd[1]);
    push_server_free(h.srv);
    h.srv = NULL;
    while (uv_run(&h.loop, UV_RUN_DEFAULT))
        ;
    CHECK_INT(uv_loop_close(&h.loop), 0);

    /* the total: four slots of one per address would pass, the cap of 3 does not */
    memset(&h, 0, sizeof(h));
    REQUIRE(uv_loop_init(&h.loop) == 0);
    sc.max_conns_per_addr = 64;
    sc.max_conns = 3;
    REQUIRE(push_server_new(&h.loop, &sc, &sops, &h, &h.srv) == 0);
    h.port = push_server_port(h.srv);
    w.srv = h.srv;
    for (int i = 0; i < 3; i++) {
        REQUIRE((fd[i] = tcp_open(h.port)) >= 0);
        spin(&h.loop, NULL, NULL, 30);
    }
    REQUIRE((fd[3] = tcp_open(h.port)) >= 0);
    w.want_addr = 0;
    w.want_total = 1;
    REQUIRE(spin(&h.loop, p_refused, &w, 5000));
    CHECK(closed_by_server(&h.loop, fd[3], 500));
    CHECK(!closed_by_server(&h.loop, fd[0], 100));
    for (int i = 0; i < 4; i++)
        close(fd[i]);
    push_server_free(h.srv);
    h.srv = NULL;
    while (uv_run(&h.loop, UV_RUN_DEFAULT))
        ;
    CHECK_INT(uv_loop_close(&h.loop), 0);

    /* handshakes at once: connections before their accepted hello count, streams do not; at
     * the cap the server stops accepting, and a connection waits in the listen backlog (not
     * closed: the agent neither fails nor backs off) until a slot frees */
    memset(&h, 0, sizeof(h));
    REQUIRE(uv_loop_init(&h.loop) == 0);
    sc.max_conns = 64;
    sc.max_handshakes = 2;
    REQUIRE(push_server_new(&h.loop, &sc, &sops, &h, &h.srv) == 0);
    h.port = push_server_port(h.srv);
    for (int i = 0; i < 2; i++) {
        REQUIRE((fd[i] = tcp_open(h.port)) >= 0); /* stalled before TLS: each holds a slot */
        spin(&h.loop, NULL, NULL, 30);
    }
    {
        struct push_server_stats st;

        push_server_stats(h.srv, &st);
        CHECK_INT(st.conns, 2);
        CHECK_INT(st.accept_paused, 1);
        CHECK_INT(st.accept_pauses, 1);
    }
    REQUIRE((fd[2] = tcp_open(h.port)) >= 0); /* the kernel completes it: in the backlog */
    h_client(&h, &F.cli, NULL);
    spin(&h.loop, NULL, NULL, 800);
    CHECK_INT(h.hellos, 0);
    CHECK_INT(h.disconnected, 0);
    CHECK(!closed_by_server(&h.loop, fd[2], 100));
    {
        struct push_server_stats st;

        push_server_stats(h.srv, &st);
        CHECK_INT(st.conns, 2); /* neither the client nor fd[2] was accepted */
        CHECK_INT(st.refused_handshakes, 0);
        CHECK(st.accept_paused_ms >= 700);
    }
    /* a stalled one leaves: fd[2] (first in the backlog) and the client are accepted in turn,
     * the client on the connection it opened (no failure, no backoff) */
    close(fd[0]);
    close(fd[2]);
    REQUIRE(spin(&h.loop, p_hellos1, &h, 5000));
    CHECK_INT(h.disconnected, 0);
    spin(&h.loop, NULL, NULL, 50);
    {
        struct push_server_stats st;

        push_server_stats(h.srv, &st);
        CHECK_INT(st.accept_paused, 0); /* fd[1] handshaking, the client's stream past its hello */
        CHECK_INT(st.streams, 1);
        CHECK_INT(st.refused_handshakes, 0);
    }
    REQUIRE((fd[0] = tcp_open(h.port)) >= 0);
    spin(&h.loop, NULL, NULL, 50);
    CHECK(!closed_by_server(&h.loop, fd[0], 100));
    {
        struct push_server_stats st;

        push_server_stats(h.srv, &st);
        CHECK_INT(st.conns, 3);
        CHECK_INT(st.accept_paused, 1); /* fd[0] and fd[1]: the cap again */
        CHECK_INT(st.refused_max_conns, 0);
        CHECK_INT(st.refused_per_addr, 0);
    }
    close(fd[0]);
    close(fd[1]);
    h_done(&h);
}

static void t_server_restart(void)
{
    struct h h;
    struct push_server_config sc;
    char h1[PUSH_HASH_LEN + 1], h2[PUSH_HASH_LEN + 1];

    h_init(&h, 0);
    hash_of(DOC1, h1);
    hash_of(DOC2, h2);
    CHECK_INT(push_server_send(h.srv, KEY, DOC1), 0);
    h_client(&h, &F.cli, NULL);
    REQUIRE(spin(&h.loop, p_acks1, &h, 5000));
    push_server_free(h.srv);
    h.srv = NULL;
    spin(&h.loop, NULL, NULL, 100);
    CHECK(h.disconnected >= 1);
    /* A new weftd on the same port whose current document changed meanwhile. */
    sc = server_cfg(h.port, 0);
    REQUIRE(push_server_new(&h.loop, &sc, &sops, &h, &h.srv) == 0);
    CHECK_INT(push_server_send(h.srv, KEY, DOC2), 0);
    REQUIRE(spin(&h.loop, p_acks2, &h, 5000));
    CHECK_INT(h.hellos, 2);
    CHECK_STR(h.hello_last_hash, h1); /* lastHash kept across reconnects */
    CHECK_INT(h.configs, 2);
    CHECK_INT(h.cfg_version, 1); /* versions count per connection */
    CHECK_STR(h.cfg_hash, h2);
    CHECK_INT(state_of(&h, KEY).sync, PUSH_SYNC_SYNCED);
    h_done(&h);
}

static int p_trusts2(void *a)
{
    return ((struct h *)a)->trusts >= 2;
}

/* weftd's bundle reaches the agent after the hello, before the document, and again when it
 * changes; the stream's own verification follows it; an unchanged bundle is not resent */
static void t_trust_follows(void)
{
    struct h h;
    struct push_server_stats st;
    char *both = NULL;

    h_init(&h, 0);
    CHECK_INT(push_server_send(h.srv, KEY, DOC1), 0);
    h_client(&h, &F.cli, NULL);
    REQUIRE(spin(&h.loop, p_acks1, &h, 5000));
    CHECK_INT(h.trusts, 1);
    CHECK_INT(h.configs_at_trust, 0);
    CHECK_STR(h.trust, F.ca);
    REQUIRE(asprintf(&both, "%s%s", F.ca, F.rogue_ca) > 0);
    CHECK_INT(push_server_set_trust(h.srv, both), 0);
    REQUIRE(spin(&h.loop, p_trusts2, &h, 5000));
    CHECK_STR(h.trust, both);
    CHECK_INT(push_server_set_trust(h.srv, both), 0);
    spin(&h.loop, NULL, NULL, 200);
    CHECK_INT(h.trusts, 2);
    push_server_stats(h.srv, &st);
    CHECK_INT((int)st.trusts_sent, 2);
    CHECK_INT(h.configs, 1);
    /* the stream's next handshake needs the new bundle: weftd now serves from the other CA's
     * pair... here the same pair, with the client's trust now the two roots: still verifies */
    CHECK_INT(push_client_set_certs(h.cli, F.cli.cert, F.cli.key, NULL), 0);
    {
        int want = h.hellos + 1;

        for (uint64_t end = now_ms() + 5000; h.hellos < want && now_ms() < end;)
            spin(&h.loop, NULL, NULL, 20);
        CHECK_INT(h.hellos, want);
    }
    free(both);
    h_done(&h);
}

static void t_cert_rotation(void)
{
    struct h h;

    h_init(&h, 0);
    CHECK_INT(push_server_send(h.srv, KEY, DOC1), 0);
    h_client(&h, &F.cli, NULL);
    REQUIRE(spin(&h.loop, p_acks1, &h, 5000));
    /* Agent rotates: the stream is reopened with the new certificate; nothing resent. */
    CHECK_INT(push_client_set_certs(h.cli, F.cli2.cert, F.cli2.key, NULL), 0);
    REQUIRE(spin(&h.loop, p_hellos2, &h, 5000));
    CHECK_STR(h.spiffe, "spiffe://cluster.local/ns/default/sa/rotated");
    CHECK_INT(h.retry_ms[0], 0);
    spin(&h.loop, NULL, NULL, 100);
    CHECK_INT(h.configs, 1);
    CHECK_INT(push_client_set_certs(h.cli, F.cli2.cert, F.cli.key, NULL), ERR_INVALID);
    /* weftd rotates its serving pair: open stream untouched, new handshakes work. */
    CHECK_INT(push_server_set_certs(h.srv, F.srv2.cert, F.srv2.key), 0);
    CHECK_INT(push_client_set_certs(h.cli, F.cli.cert, F.cli.key, NULL), 0);
    {
        int want = h.hellos + 1;

        for (uint64_t end = now_ms() + 5000; h.hellos < want && now_ms() < end;)
            spin(&h.loop, NULL, NULL, 20);
        CHECK_INT(h.hellos, want);
        CHECK_STR(h.spiffe, SPIFFE_A);
    }
    /* weftd trusts only another CA now: the agent's next handshake fails. */
    CHECK_INT(push_server_set_trust(h.srv, F.rogue_ca), 0);
    CHECK_INT(push_client_set_certs(h.cli, F.cli.cert, F.cli.key, NULL), 0);
    {
        int hellos = h.hellos, disc = h.disconnected;

        for (uint64_t end = now_ms() + 3000; h.disconnected < disc + 3 && now_ms() < end;)
            spin(&h.loop, NULL, NULL, 20);
        CHECK(h.disconnected >= disc + 3);
        CHECK_INT(h.hellos, hellos);
    }
    h_done(&h);
}

/* --- a raw WebSocket peer on a thread ------------------------------------------------------ */

struct raw {
    int port;
    const char *cert, *key;   /* file names in fixdir, or NULL */
    const char *first;        /* first frame to send, or NULL */
    int stall;                /* stop reading after the upgrade until drain is set */
    const char *tls12_cipher; /* offer only TLS 1.2 with this suite, or NULL: OpenSSL's defaults */
    int handshake_only;       /* close once the TLS handshake is done */
    atomic_int ready, drain;
    char want_hash[PUSH_HASH_LEN + 1];
    /* results */
    int handshake_ok, status;
    int frames, configs, saw_want;
    char last[512];
    char first_text[512];
    int close_code;
};

static int raw_read_full(SSL *ssl, void *p, size_t n)
{
    size_t got = 0;

    while (got < n) {
        int r = SSL_read(ssl, (char *)p + got, (int)(n - got));

        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static int raw_write_frame(SSL *ssl, const char *text)
{
    unsigned char hdr[8] = {0x81, 0x80};
    size_t len = strlen(text), hl = 2;
    unsigned char mask[4] = {1, 2, 3, 4};
    unsigned char *b;
    int rc;

    if (len < 126) {
        hdr[1] |= (unsigned char)len;
    } else {
        hdr[1] |= 126;
        hdr[2] = (unsigned char)(len >> 8);
        hdr[3] = (unsigned char)len;
        hl = 4;
    }
    b = malloc(hl + 4 + len);
    memcpy(b, hdr, hl);
    memcpy(b + hl, mask, 4);
    for (size_t i = 0; i < len; i++)
        b[hl + 4 + i] = (unsigned char)text[i] ^ mask[i % 4];
    rc = SSL_write(ssl, b, (int)(hl + 4 + len)) == (int)(hl + 4 + len) ? 0 : -1;
    free(b);
    return rc;
}

/* A WebSocket frame's first two bytes into h and its payload length (RFC 6455 5.2) into *len. */
static int raw_read_head(SSL *ssl, unsigned char h[2], uint64_t *len)
{
    unsigned char ext[8];

    if (raw_read_full(ssl, h, 2) < 0)
        return -1;
    *len = h[1] & 0x7f;
    if (*len == 126) {
        if (raw_read_full(ssl, ext, 2) < 0)
            return -1;
        *len = (uint64_t)ext[0] << 8 | ext[1];
    } else if (*len == 127) {
        if (raw_read_full(ssl, ext, 8) < 0)
            return -1;
        *len = 0;
        for (int i = 0; i < 8; i++)
            *len = *len << 8 | ext[i];
    }
    return 0;
}

/* Read one frame; returns its opcode or -1. The payload (truncated) goes to r->last. */
static int raw_read_frame(SSL *ssl, struct raw *r, char **payload)
{
    unsigned char h[2];
    uint64_t len;
    char *p;

    if (raw_read_head(ssl, h, &len) < 0)
        return -1;
    p = malloc(len + 1);
    if (!p || raw_read_full(ssl, p, len) < 0) {
        free(p);
        return -1;
    }
    p[len] = '\0';
    snprintf(r->last, sizeof(r->last), "%s", p);
    if ((h[0] & 0x0f) == 8 && len >= 2)
        r->close_code = (unsigned char)p[0] << 8 | (unsigned char)p[1];
    *payload = p;
    return h[0] & 0x0f;
}

static void *raw_thread(void *arg)
{
    struct raw *r = arg;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)r->port)};
    struct timeval tv = {5, 0};
    char path[256], resp[1024];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = NULL;
    int fd = socket(AF_INET, SOCK_STREAM, 0), rcvbuf = 4096;
    size_t n = 0;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (r->stall)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        goto out;
    snprintf(path, sizeof(path), "%s/ca.pem", fixdir);
    SSL_CTX_load_verify_locations(ctx, path, NULL);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (r->cert) {
        snprintf(path, sizeof(path), "%s/%s", fixdir, r->cert);
        SSL_CTX_use_certificate_file(ctx, path, SSL_FILETYPE_PEM);
        snprintf(path, sizeof(path), "%s/%s", fixdir, r->key);
        SSL_CTX_use_PrivateKey_file(ctx, path, SSL_FILETYPE_PEM);
    }
    if (r->tls12_cipher && (SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION) != 1 ||
                            SSL_CTX_set_cipher_list(ctx, r->tls12_cipher) != 1))
        goto out;
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "weftd.weft-system.svc");
    if (SSL_connect(ssl) != 1)
        goto out;
    r->handshake_ok = 1;
    if (r->handshake_only)
        goto out;
    snprintf(resp, sizeof(resp),
             "GET " PUSH_PATH " HTTP/1.1\r\nHost: weftd\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: " PUSH_SUBPROTOCOL "\r\n\r\n");
    if (SSL_write(ssl, resp, (int)strlen(resp)) <= 0)
        goto out;
    /* TLS 1.3: a refused client certificate shows up here, as an alert instead of a reply. */
    resp[0] = '\0';
    while (n < sizeof(resp) - 1 && !strstr(resp, "\r\n\r\n")) {
        int k = SSL_read(ssl, resp + n, 1);

        if (k <= 0)
            goto out;
        resp[++n] = '\0';
    }
    resp[n] = '\0';
    if (sscanf(resp, "HTTP/1.1 %d", &r->status) != 1)
        goto out;
    if (r->first && raw_write_frame(ssl, r->first) < 0)
        goto out;
    atomic_store(&r->ready, 1);
    if (r->stall)
        while (!atomic_load(&r->drain))
            usleep(1000);
    for (;;) {
        char *p = NULL;
        int op = raw_read_frame(ssl, r, &p);

        if (op < 0) {
            free(p);
            break;
        }
        r->frames++;
        if (op == 1 && !r->first_text[0])
            snprintf(r->first_text, sizeof(r->first_text), "%s", p);
        if (op == 1 && strstr(p, "\"type\":\"config\"")) {
            r->configs++;
            if (r->want_hash[0] && strstr(p, r->want_hash))
                r->saw_want = 1;
        }
        free(p);
        if (op == 8 || r->saw_want)
            break;
    }
out:
    atomic_store(&r->ready, 1);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    return NULL;
}

static int p_raw_ready(void *a)
{
    return atomic_load(&((struct raw *)a)->ready);
}

static void raw_go(struct h *h, struct raw *r, pthread_t *th)
{
    r->port = h->port;
    REQUIRE(pthread_create(th, NULL, raw_thread, r) == 0);
}

static void raw_wait(struct h *h, pthread_t th)
{
    /* Keep the loop turning while the peer finishes. */
    for (int i = 0; i < 400; i++) {
        if (pthread_tryjoin_np(th, NULL) == 0)
            return;
        spin(&h->loop, NULL, NULL, 10);
    }
    REQUIRE(!"raw peer did not finish");
}

static void t_no_client_cert_refused(void)
{
    struct h h;
    struct raw good, none, rogue;
    pthread_t th;

    h_init(&h, 0);
    /* Control: the raw peer with a valid certificate gets its upgrade. */
    memset(&good, 0, sizeof(good));
    good.cert = "cli.pem";
    good.key = "cli.key";
    good.first = "{\"type\":\"hello\",\"pod\":{\"namespace\":\"default\",\"name\":\"web-1\","
                 "\"uid\":\"u\"}}";
    raw_go(&h, &good, &th);
    REQUIRE(spin(&h.loop, p_hellos1, &h, 5000));
    CHECK_INT(good.status, 101);
    CHECK_STR(h.spiffe, SPIFFE_A);
    push_server_free(h.srv); /* closes the control stream so the thread ends */
    h.srv = NULL;
    raw_wait(&h, th);
    {
        struct push_server_config sc = server_cfg(h.port, 0);

        REQUIRE(push_server_new(&h.loop, &sc, &sops, &h, &h.srv) == 0);
    }
    memset(&none, 0, sizeof(none));
    none.first = good.first;
    raw_go(&h, &none, &th);
    raw_wait(&h, th);
    CHECK_INT(none.status, 0);
    memset(&rogue, 0, sizeof(rogue));
    rogue.cert = "rogue.pem";
    rogue.key = "rogue.key";
    rogue.first = good.first;
    raw_go(&h, &rogue, &th);
    raw_wait(&h, th);
    CHECK_INT(rogue.status, 0);
    CHECK_INT(h.hellos, 1);
    h_done(&h);
}

/* Weft's TLS policy on the vhost context libwebsockets made: a TLS 1.2 CBC suite is refused, an
 * ECDHE AEAD one is served (with the same client certificate). */
static void t_tls_policy(void)
{
    static const char *const refused[] = {"ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384"};
    struct h h;
    struct raw r;
    pthread_t th;

    h_init(&h, 0);
    for (size_t i = 0; i < ARRAY_LEN(refused); i++) {
        memset(&r, 0, sizeof(r));
        r.cert = "cli.pem";
        r.key = "cli.key";
        r.tls12_cipher = refused[i];
        r.handshake_only = 1;
        raw_go(&h, &r, &th);
        raw_wait(&h, th);
        if (r.handshake_ok)
            fprintf(stderr, "  %s accepted\n", refused[i]);
        CHECK_INT(r.handshake_ok, 0);
    }
    memset(&r, 0, sizeof(r));
    r.cert = "cli.pem";
    r.key = "cli.key";
    r.tls12_cipher = "ECDHE-ECDSA-AES128-GCM-SHA256";
    r.first = "{\"type\":\"hello\",\"pod\":{\"namespace\":\"default\",\"name\":\"web-1\","
              "\"uid\":\"u\"}}";
    raw_go(&h, &r, &th);
    REQUIRE(spin(&h.loop, p_hellos1, &h, 5000));
    CHECK_INT(r.handshake_ok, 1);
    CHECK_INT(r.status, 101);
    push_server_free(h.srv); /* closes the stream so the thread ends */
    h.srv = NULL;
    raw_wait(&h, th);
    h_done(&h);
}

static void t_bad_first_frame(void)
{
    struct h h;
    struct raw r;
    pthread_t th;

    h_init(&h, 0);
    memset(&r, 0, sizeof(r));
    r.cert = "cli.pem";
    r.key = "cli.key";
    r.first = "{\"type\":\"ack\",\"version\":1,\"hash\":\"" H64 "\"}";
    raw_go(&h, &r, &th);
    raw_wait(&h, th);
    CHECK_INT(r.status, 101);
    CHECK_INT(h.hellos, 0);
    CHECK_INT(r.frames, 2);
    CHECK_INT(r.close_code, 1008);
    CHECK_STR(r.first_text, "{\"type\":\"error\",\"code\":\"BadHello\","
                            "\"reason\":\"the first frame must be a valid hello\"}");
    CHECK_INT(r.configs, 0);
    h_done(&h);
}

static int p_sent_bigger(void *a)
{
    return state_of(a, KEY).sent_version >= 1;
}

static void t_slow_peer_bounded(void)
{
    enum { NDOCS = 100, DOCSZ = 512 * 1024 };
    struct h h;
    struct raw r;
    pthread_t th;
    char *doc = malloc(DOCSZ + 64);
    struct st_copy st;

    REQUIRE(doc);
    h_init(&h, 0);
    memset(&r, 0, sizeof(r));
    r.cert = "cli.pem";
    r.key = "cli.key";
    r.first = "{\"type\":\"hello\",\"pod\":{\"namespace\":\"default\",\"name\":\"web-1\","
              "\"uid\":\"u\"}}";
    r.stall = 1;
    raw_go(&h, &r, &th);
    REQUIRE(spin(&h.loop, p_raw_ready, &r, 5000));
    REQUIRE(spin(&h.loop, p_hellos1, &h, 5000));
    for (int i = 0; i < NDOCS; i++) {
        int n = snprintf(doc, 64, "{\"i\":%d,\"pad\":\"", i);

        memset(doc + n, 'x', DOCSZ);
        strcpy(doc + n + DOCSZ, "\"}");
        CHECK_INT(push_server_send(h.srv, KEY, doc), 0);
        spin(&h.loop, NULL, NULL, 2);
    }
    REQUIRE(spin(&h.loop, p_sent_bigger, &h, 1000));
    st = state_of(&h, KEY);
    /* The peer reads nothing: a handful of frames fit in socket buffers, no queue beyond. */
    CHECK(st.sent_version >= 1 && st.sent_version <= 25);
    CHECK(strcmp(st.desired, st.sent) != 0);
    snprintf(r.want_hash, sizeof(r.want_hash), "%s", st.desired);
    atomic_store(&r.drain, 1);
    raw_wait(&h, th);
    CHECK_INT(r.saw_want, 1); /* the newest document arrives once the peer reads */
    st = state_of(&h, KEY);
    CHECK_STR(st.sent, st.desired);
    CHECK(st.sent_version <= 26);
    CHECK_INT(r.configs, (int)st.sent_version);
    free(doc);
    h_done(&h);
}

static int p_apps1(void *a)
{
    return ((struct h *)a)->apps_exited >= 1;
}

static int p_apps2(void *a)
{
    return ((struct h *)a)->apps_exited >= 2;
}

/* appsExited: to the open stream at once (and only once), to a new stream after its hello,
 * before any document; it cannot be taken back; /debug/proxies' fields follow. */
static void t_apps_exited(void)
{
    struct h h;
    struct st_copy st;
    struct push_server_stats ss;
    char big[PUSH_REASON_MAX + 100];

    h_init(&h, 0);
    CHECK_INT(push_server_apps_exited(h.srv, "noslash", "x"), ERR_INVALID);
    CHECK_INT(push_server_send(h.srv, KEY, DOC1), 0);
    h_client(&h, &F.cli, NULL);
    REQUIRE(spin(&h.loop, p_acks1, &h, 5000));
    CHECK_INT(h.apps_exited, 0);
    CHECK_STR(state_of(&h, KEY).apps_exited, "");
    CHECK_INT(push_server_apps_exited(h.srv, KEY, "app exited 0; restartPolicy Never"), 0);
    REQUIRE(spin(&h.loop, p_apps1, &h, 5000));
    CHECK_STR(h.apps_reason, "app exited 0; restartPolicy Never");
    CHECK_INT(push_server_apps_exited(h.srv, KEY, "said again"), 0);
    spin(&h.loop, NULL, NULL, 200);
    CHECK_INT(h.apps_exited, 1);
    push_server_stats(h.srv, &ss);
    CHECK_INT(ss.apps_exited_sent, 1);
    st = state_of(&h, KEY);
    CHECK_STR(st.apps_exited, "app exited 0; restartPolicy Never");
    CHECK_INT(st.apps_exited_sent, 1);
    /* a new stream (agent restarted, or reconnected) hears it after its hello, before the
     * document it lacks */
    push_client_free(h.cli);
    h.cli = NULL;
    spin(&h.loop, NULL, NULL, 200);
    h.configs = 0;
    CHECK_INT(push_server_send(h.srv, KEY, DOC2), 0);
    h_client(&h, &F.cli, NULL);
    REQUIRE(spin(&h.loop, p_apps2, &h, 5000));
    CHECK_INT(h.configs_at_apps, 0);
    CHECK_STR(h.apps_reason, "app exited 0; restartPolicy Never");
    REQUIRE(spin(&h.loop, p_acks2, &h, 5000)); /* the document still follows */
    st = state_of(&h, KEY);
    CHECK_INT(st.sync, PUSH_SYNC_SYNCED);
    /* a reason over the limit is cut, not refused */
    memset(big, 'r', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    CHECK_INT(push_server_apps_exited(h.srv, "default/other", big), 0);
    st = state_of(&h, "default/other");
    CHECK_INT(strlen(st.apps_exited), PUSH_REASON_MAX);
    CHECK_INT(st.apps_exited_sent, 0);
    h_done(&h);
}

/* Streams silent for three ping intervals are dropped; an agent answering pings stays. */
static void t_keepalive(void)
{
    struct h h;
    struct push_server_config sc = server_cfg(0, 0);
    struct raw r;
    pthread_t th;

    memset(&h, 0, sizeof(h));
    REQUIRE(uv_loop_init(&h.loop) == 0);
    sc.ping_interval_s = 1;
    REQUIRE(push_server_new(&h.loop, &sc, &sops, &h, &h.srv) == 0);
    h.port = push_server_port(h.srv);
    h_client(&h, &F.cli, NULL); /* pings every 15 s itself: idle here, but answers weftd's */
    REQUIRE(spin(&h.loop, p_hellos1, &h, 5000));
    memset(&r, 0, sizeof(r));
    r.cert = "cli.pem";
    r.key = "cli.key";
    r.first = "{\"type\":\"hello\",\"pod\":{\"namespace\":\"default\",\"name\":\"web-2\","
              "\"uid\":\"u\"}}";
    r.stall = 1; /* reads nothing, so answers no ping */
    raw_go(&h, &r, &th);
    REQUIRE(spin(&h.loop, p_raw_ready, &r, 5000));
    spin(&h.loop, NULL, NULL, 1500);
    CHECK_INT(h.hellos, 2);
    CHECK_INT(h.disconnects, 0); /* pinged, not yet dropped */
    spin(&h.loop, NULL, NULL, 3500);
    CHECK_INT(h.disconnects, 1); /* the silent peer, 3 s after its hello (+1 s to cut it) */
    CHECK_INT(state_of(&h, "default/web-2").connected, 0);
    CHECK_INT(state_of(&h, KEY).connected, 1);
    CHECK_INT(h.disconnected, 0);
    atomic_store(&r.drain, 1);
    raw_wait(&h, th);
    CHECK(r.frames >= 1); /* the ping (and nothing else: it has no document) */
    h_done(&h);
}

static void t_forget(void)
{
    struct h h;
    int n = 0;

    h_init(&h, 0);
    CHECK_INT(push_server_send(h.srv, "ns1/a", DOC1), 0);
    CHECK_INT(push_server_send(h.srv, "ns1/b", DOC1), 0);
    push_server_forget(h.srv, "ns1/a");
    push_server_forget(h.srv, "ns1/zzz");
    CHECK_INT(push_server_proxy_state(h.srv, "ns1/a", st_visit, NULL), ERR_NOTFOUND);
    {
        struct st_copy c;

        memset(&c, 0, sizeof(c));
        push_server_sync_state(h.srv, st_visit, &c);
        n = c.found;
    }
    CHECK_INT(n, 1);
    h_done(&h);
}

/* --- protocol v2 --------------------------------------------------------------------------- */

/* A document split into members and blocks joins back to exactly v1's canonical text. */
static void t_v2_doc_exact(void)
{
    static const char *const docs[] = {
        DOC1,
        DOC2,
        "{}",
        "{\"outbound\":[{\"b\":1,\"a\":[1,2.5,-3e-7,null,true]},{\"\\u00e9\\\"x\\n\":\"\\u001f\"}],"
        "\"inbound\":[{\"port\":1}],\"mixed\":[{\"a\":1},2],\"z\":{\"y\":[]},\"a b\":\"\\u2603\"}",
        "{\"outbound\":[{\"a\":1},{\"a\":1},{\"a\":2}],\"schemaVersion\":1}",
    };
    struct push__store st;

    push__store_init(&st);
    for (size_t i = 0; i < ARRAY_LEN(docs); i++) {
        json_t *j = json_loads(docs[i], JSON_REJECT_DUPLICATES, NULL);
        char want[PUSH_HASH_LEN + 1], *canon = NULL, *v1 = NULL;
        struct push__doc *d = NULL;
        struct push_msg m;
        struct buf b;

        REQUIRE(j);
        buf_init(&b);
        REQUIRE(push_doc_canonical(docs[i], &canon, want) == 0);
        REQUIRE(push__doc_from_json(&st, j, &d) == 0);
        REQUIRE(push__doc_text(d, &b) == 0);
        CHECK_STR(b.p, canon);
        CHECK_STR(d->hash, want);
        CHECK_INT((long long)d->len, (long long)strlen(canon));
        /* the v1 frame carries that text */
        REQUIRE(push__doc_frame_v1(d, 3, &v1) == 0);
        REQUIRE(push_msg_parse(v1, strlen(v1), &m) == 0);
        CHECK_STR(m.config, canon);
        CHECK_STR(m.hash, want);
        push_msg_release(&m);
        free(v1);
        buf_release(&b);
        free(canon);
        push__doc_unref(&st, d);
        json_decref(j);
    }
    CHECK_INT((long long)st.nblocks, 0); /* every block went with its documents */
    push__store_release(&st);
}

/* Blocks are stored once however many documents hold them; the compiler's shared objects are
 * found by identity; v2 frames carry only what the previous document did not hold. */
static void t_v2_store_shared(void)
{
    json_t *blk = json_pack("{s:s,s:i}", "service", "api", "port", 80);
    json_t *d1 = json_pack("{s:[O,{s:s}],s:s}", "outbound", blk, "service", "web", "mode", "a");
    json_t *d2 = json_pack("{s:[O,{s:s}],s:s}", "outbound", blk, "service", "db", "mode", "a");
    struct push__doc *a = NULL, *b = NULL;
    struct push__store st;
    struct push_msg m;
    char *f = NULL;
    size_t inl = 9;

    REQUIRE(blk && d1 && d2);
    push__store_init(&st);
    REQUIRE(push__doc_from_json(&st, d1, &a) == 0);
    REQUIRE(push__doc_from_json(&st, d2, &b) == 0);
    CHECK_INT((long long)st.nblocks, 3); /* api, web, db */
    CHECK_INT((long long)a->nblocks, 2);
    CHECK(a->blocks[0] == b->blocks[0]);
    /* first config on a stream: no block inline (the agent asks for what it lacks) */
    REQUIRE(push__doc_frame_v2(a, 1, NULL, 0, &f, &inl) == 0);
    CHECK_INT((long long)inl, 0);
    REQUIRE(push_msg_parse(f, strlen(f), &m) == 0);
    CHECK(m.config == NULL);
    CHECK_INT((long long)m.nmembers, 2);
    CHECK_STR(m.members[0].key, "mode");
    CHECK_STR(m.members[0].text, "\"a\"");
    CHECK_STR(m.members[1].key, "outbound");
    CHECK_INT((long long)m.members[1].nrefs, 2);
    CHECK_STR(m.members[1].refs[0].h, push__doc_block(a, 0)->hash);
    push_msg_release(&m);
    free(f);
    /* after a, b carries only its own block */
    REQUIRE(push__doc_frame_v2(b, 2, a, 0, &f, &inl) == 0);
    CHECK_INT((long long)inl, 1);
    REQUIRE(push_msg_parse(f, strlen(f), &m) == 0);
    CHECK_INT((long long)m.nblocks, 1);
    CHECK_STR(m.blocks[0].hash, push__doc_block(b, 1)->hash);
    CHECK_STR(m.blocks[0].text, "{\"service\":\"db\"}");
    push_msg_release(&m);
    free(f);
    push__doc_unref(&st, a);
    CHECK_INT((long long)st.nblocks, 2);
    push__doc_unref(&st, b);
    CHECK_INT((long long)st.nblocks, 0);
    push__store_release(&st);
    json_decref(blk);
    json_decref(d1);
    json_decref(d2);
}

/* need and blocks frames round-trip; malformed ones are refused. */
static void t_v2_msgs(void)
{
    static const char *const bad[] = {
        "{\"type\":\"need\",\"version\":1,\"blocks\":[]}",
        "{\"type\":\"need\",\"version\":0,\"blocks\":[\""
        "0000000000000000000000000000000000000000000000000000000000000000"
        "\"]}",
        "{\"type\":\"need\",\"version\":1,\"blocks\":[\"abc\"]}",
        "{\"type\":\"blocks\",\"version\":1}",
        "{\"type\":\"blocks\",\"version\":1,\"blocks\":{\"xyz\":{}}}",
        "{\"type\":\"blocks\",\"version\":1,\"blocks\":{\""
        "0000000000000000000000000000000000000000000000000000000000000000"
        "\":[1]}}",
        "{\"type\":\"config\",\"version\":1,\"hash\":\""
        "0000000000000000000000000000000000000000000000000000000000000000"
        "\",\"skeleton\":{},\"config\":{}}",
        "{\"type\":\"config\",\"version\":1,\"hash\":\""
        "0000000000000000000000000000000000000000000000000000000000000000"
        "\",\"skeleton\":{\"a\":1},\"refs\":{\"a\":[]}}",
        "{\"type\":\"config\",\"version\":1,\"hash\":\""
        "0000000000000000000000000000000000000000000000000000000000000000"
        "\",\"skeleton\":[]}",
    };
    const char *need = "{\"type\":\"need\",\"version\":4,\"blocks\":[\""
                       "1111111111111111111111111111111111111111111111111111111111111111"
                       "\"]}";
    const char *blocks = "{\"type\":\"blocks\",\"version\":4,\"blocks\":{\""
                         "2222222222222222222222222222222222222222222222222222222222222222"
                         "\":{\"a\":1}},\"missing\":[\""
                         "1111111111111111111111111111111111111111111111111111111111111111"
                         "\"]}";
    struct push_msg m;
    char *f = NULL;

    REQUIRE(push_msg_parse(need, strlen(need), &m) == 0);
    CHECK_INT(m.type, PUSH_MSG_NEED);
    CHECK_INT((long long)m.version, 4);
    CHECK_INT((long long)m.nhashes, 1);
    REQUIRE(push_msg_encode(&m, &f) == 0);
    CHECK_STR(f, need);
    free(f);
    push_msg_release(&m);
    REQUIRE(push_msg_parse(blocks, strlen(blocks), &m) == 0);
    CHECK_INT(m.type, PUSH_MSG_BLOCKS);
    CHECK_INT((long long)m.nblocks, 1);
    CHECK_STR(m.blocks[0].text, "{\"a\":1}");
    CHECK_INT((long long)m.nhashes, 1);
    REQUIRE(push_msg_encode(&m, &f) == 0);
    CHECK_STR(f, blocks);
    free(f);
    push_msg_release(&m);
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        if (push_msg_parse(bad[i], strlen(bad[i]), &m) != ERR_INVALID)
            CHECK(!bad[i]);
    }
}

/* Build a v2 config frame for doc (text) as weftd would after `have` (NULL: first), parse it. */
static void v2_config(struct push__store *st, const char *doc, const char *have, uint64_t version,
                      struct push_msg *m, char hash[PUSH_HASH_LEN + 1])
{
    json_t *j = json_loads(doc, 0, NULL), *jh = have ? json_loads(have, 0, NULL) : NULL;
    struct push__doc *d = NULL, *dh = NULL;
    char *f = NULL;

    REQUIRE(j && push__doc_from_json(st, j, &d) == 0);
    if (jh)
        REQUIRE(push__doc_from_json(st, jh, &dh) == 0);
    REQUIRE(push__doc_frame_v2(d, version, dh, 0, &f, NULL) == 0);
    REQUIRE(push_msg_parse(f, strlen(f), m) == 0);
    memcpy(hash, d->hash, PUSH_HASH_LEN + 1);
    free(f);
    push__doc_unref(st, d);
    push__doc_unref(st, dh);
    json_decref(j);
    json_decref(jh);
}

#define V2A "{\"outbound\":[{\"s\":\"api\"},{\"s\":\"db\"}],\"inbound\":[{\"p\":1}],\"mode\":\"x\"}"
#define V2B                                                                                        \
    "{\"outbound\":[{\"s\":\"api\"},{\"s\":\"db2\"}],\"inbound\":[{\"p\":1}],\"mode\":\"x\"}"
#define V2C                                                                                        \
    "{\"outbound\":[{\"s\":\"api\"},{\"s\":\"db3\"}],\"inbound\":[{\"p\":1}],\"mode\":\"y\"}"

/* The agent's side: asks for what it lacks, assembles the exact document, keeps the last
 * document's blocks; hostile answers (a block not named by its hash, one over the limit, one
 * weftd says it lacks, a document whose hash does not match) are refused with a reason and
 * never disturb the last document's blocks. */
static void t_v2_cache(void)
{
    struct push__store st;
    struct push__cache *c = NULL;
    struct push__asm_out o;
    struct push_msg m, ans;
    char ha[PUSH_HASH_LEN + 1], hb[PUSH_HASH_LEN + 1], hc[PUSH_HASH_LEN + 1], *canon = NULL;
    size_t n, bytes;
    int rc;

    push__store_init(&st);
    REQUIRE(push__cache_new(0, &c) == 0); /* no spare: only pinned blocks stay */
    /* first document: nothing cached, the agent asks for its three blocks */
    v2_config(&st, V2A, NULL, 1, &m, ha);
    rc = push__cache_config(c, &m, &o);
    CHECK_INT(rc, PUSH__ASM_NEED);
    CHECK_INT((long long)o.nneed, 3);
    push_msg_release(&m);
    /* answer with the blocks, as weftd would */
    memset(&ans, 0, sizeof(ans));
    ans.type = PUSH_MSG_BLOCKS;
    ans.version = 1;
    ans.blocks = calloc(3, sizeof(*ans.blocks));
    {
        json_t *j = json_loads(V2A, 0, NULL);
        struct push__doc *d = NULL;

        REQUIRE(push__doc_from_json(&st, j, &d) == 0);
        for (size_t i = 0; i < o.nneed; i++) {
            int k = push__doc_find(&st, d, o.need[i].h);

            REQUIRE(k >= 0);
            ans.blocks[ans.nblocks] = *push__doc_block(d, (size_t)k);
            ans.blocks[ans.nblocks].text = strdup(ans.blocks[ans.nblocks].text);
            ans.nblocks++;
        }
        push__doc_unref(&st, d);
        json_decref(j);
    }
    free(o.need);
    rc = push__cache_blocks(c, &ans, &o);
    CHECK_INT(rc, PUSH__ASM_DONE);
    REQUIRE(push_doc_canonical(V2A, &canon, hb) == 0);
    CHECK_STR(o.doc, canon);
    CHECK_STR(hb, ha);
    free(o.doc);
    free(canon);
    /* a late answer for the same version is ignored */
    CHECK_INT(push__cache_blocks(c, &ans, &o), PUSH__ASM_IGNORE);
    push_msg_release(&ans);
    push__cache_stats(c, &n, &bytes);
    CHECK_INT((long long)n, 3);

    /* second document after the first: only db2 travels, nothing to ask */
    v2_config(&st, V2B, V2A, 2, &m, hb);
    CHECK_INT((long long)m.nblocks, 1);
    rc = push__cache_config(c, &m, &o);
    CHECK_INT(rc, PUSH__ASM_DONE);
    REQUIRE(push_doc_canonical(V2B, &canon, hc) == 0);
    CHECK_STR(o.doc, canon);
    free(o.doc);
    free(canon);
    push_msg_release(&m);
    push__cache_stats(c, &n, &bytes);
    CHECK_INT((long long)n, 3); /* db went with the spare budget of 0 */

    /* hostile: the inline block is not named by its hash */
    v2_config(&st, V2C, V2B, 3, &m, hc);
    REQUIRE(m.nblocks == 1);
    m.blocks[0].text[7] = 'X'; /* {"s":"dX3"} */
    CHECK_INT(push__cache_config(c, &m, &o), PUSH__ASM_FAIL);
    CHECK(strncmp(o.reason, "BadBlock: block ", 16) == 0);
    push_msg_release(&m);
    /* hostile: an inline block over the limit (checked before its hash) */
    v2_config(&st, V2C, V2B, 4, &m, hc);
    m.blocks[0].len = PUSH_BLOCK_MAX + 1;
    CHECK_INT(push__cache_config(c, &m, &o), PUSH__ASM_FAIL);
    CHECK(strncmp(o.reason, "BlockTooLarge: block ", 21) == 0);
    m.blocks[0].len = strlen(m.blocks[0].text);
    push_msg_release(&m);
    /* hostile: a skeleton whose block weftd then says it does not hold */
    v2_config(&st, V2C, NULL, 5, &m, hc);
    CHECK_INT(push__cache_config(c, &m, &o), PUSH__ASM_NEED);
    CHECK_INT((long long)o.nneed, 1);
    memset(&ans, 0, sizeof(ans));
    ans.type = PUSH_MSG_BLOCKS;
    ans.version = 5;
    ans.hashes = o.need;
    ans.nhashes = o.nneed;
    CHECK_INT(push__cache_blocks(c, &ans, &o), PUSH__ASM_FAIL);
    CHECK(strncmp(o.reason, "UnknownBlock: weftd does not hold block ", 40) == 0);
    free(ans.hashes);
    push_msg_release(&m);
    /* hostile: an answer that carries nothing for what was asked */
    v2_config(&st, V2C, NULL, 6, &m, hc);
    CHECK_INT(push__cache_config(c, &m, &o), PUSH__ASM_NEED);
    free(o.need);
    memset(&ans, 0, sizeof(ans));
    ans.type = PUSH_MSG_BLOCKS;
    ans.version = 6;
    CHECK_INT(push__cache_blocks(c, &ans, &o), PUSH__ASM_FAIL);
    CHECK(strncmp(o.reason, "UnknownBlock: weftd's answer lacks block ", 41) == 0);
    push_msg_release(&m);
    /* hostile: right blocks, wrong document hash */
    v2_config(&st, V2B, V2A, 7, &m, hb);
    memcpy(m.hash, ha, sizeof(m.hash));
    CHECK_INT(push__cache_config(c, &m, &o), PUSH__ASM_FAIL);
    CHECK(strncmp(o.reason, "HashMismatch: ", 14) == 0);
    push_msg_release(&m);

    /* through all of it the last good document's blocks stayed: B again needs nothing */
    v2_config(&st, V2B, NULL, 8, &m, hb);
    CHECK_INT((long long)m.nblocks, 0);
    CHECK_INT(push__cache_config(c, &m, &o), PUSH__ASM_DONE);
    REQUIRE(push_doc_canonical(V2B, &canon, hc) == 0);
    CHECK_STR(o.doc, canon);
    free(o.doc);
    free(canon);
    push_msg_release(&m);
    push__cache_free(c);
    CHECK_INT((long long)st.nblocks, 0);
    push__store_release(&st);
}

/* A peer cannot make the agent pin more than a document's worth of blocks: 17 distinct blocks
 * just under the block limit (68 MiB, over the 64 MiB document limit) are refused as they come,
 * and the last good document's blocks stay. */
static void t_v2_cache_bounded(void)
{
    enum { NB = 17 };
    struct push__cache *c = NULL;
    struct push__asm_out o;
    struct push_msg m;
    size_t n, bytes;

    REQUIRE(push__cache_new(0, &c) == 0);
    memset(&m, 0, sizeof(m));
    m.type = PUSH_MSG_CONFIG;
    m.version = 1;
    memset(m.hash, 'a', PUSH_HASH_LEN);
    m.members = calloc(1, sizeof(*m.members));
    m.blocks = calloc(NB, sizeof(*m.blocks));
    REQUIRE(m.members && m.blocks);
    m.nmembers = 1;
    m.members[0].key = strdup("outbound");
    m.members[0].refs = calloc(NB, sizeof(*m.members[0].refs));
    m.members[0].nrefs = NB;
    for (int i = 0; i < NB; i++) {
        size_t len = PUSH_BLOCK_MAX;
        char *t = malloc(len + 1);

        REQUIRE(t);
        memset(t, 'x', len);
        snprintf(t, 16, "{\"%02d\":\"", i);
        t[7] = 'x'; /* snprintf's NUL */
        t[len - 2] = '"';
        t[len - 1] = '}';
        t[len] = '\0';
        m.blocks[i].text = t;
        m.blocks[i].len = len;
        REQUIRE(tls_sha256_hex(t, len, m.blocks[i].hash) == 0);
        memcpy(m.members[0].refs[i].h, m.blocks[i].hash, PUSH_HASH_LEN + 1);
    }
    m.nblocks = NB;
    CHECK_INT(push__cache_config(c, &m, &o), PUSH__ASM_FAIL);
    CHECK(strncmp(o.reason, "DocumentTooLarge: its blocks alone are ", 39) == 0);
    push__cache_stats(c, &n, &bytes);
    CHECK_INT((long long)n, 0); /* nothing pinned, no spare: all dropped */
    push_msg_release(&m);
    push__cache_free(c);
}

static int p_acks3b(void *a)
{
    return ((struct h *)a)->acks >= 3;
}

/* Negotiation and the wire: a default client and server speak v2 and deliver the same
 * documents as v1; a change sends only the changed block; a reconnecting agent asks only for
 * what it lacks; v1 on either side falls back to v1. */
static void t_v2_stream(void)
{
    struct push_server_stats ss;
    struct h h;
    char h1[PUSH_HASH_LEN + 1], h2[PUSH_HASH_LEN + 1];
    uint64_t b1;

    hash_of(V2A, h1);
    hash_of(V2B, h2);
    h_init(&h, 0);
    CHECK_INT(push_server_send(h.srv, KEY, V2A), 0);
    h_client(&h, &F.cli, NULL);
    REQUIRE(spin(&h.loop, p_acks1, &h, 5000));
    CHECK_INT(push_client_protocol(h.cli), 2);
    CHECK_STR(h.cfg_hash, h1);
    push_server_stats(h.srv, &ss);
    CHECK_INT(ss.streams_v2, 1);
    CHECK_INT((long long)ss.needs, 0);       /* no lastHash: every block came inline */
    CHECK_INT((long long)ss.blocks_sent, 3); /* api, db, the inbound listener */
    b1 = ss.bytes_sent;
    CHECK_INT(push_server_send(h.srv, KEY, V2B), 0);
    REQUIRE(spin(&h.loop, p_acks2, &h, 5000));
    CHECK_STR(h.cfg_hash, h2);
    {
        char *canon = NULL;

        REQUIRE(push_doc_canonical(V2B, &canon, h2) == 0);
        CHECK_STR(h.cfg_doc, canon);
        free(canon);
    }
    push_server_stats(h.srv, &ss);
    CHECK_INT((long long)ss.needs, 0);
    CHECK_INT((long long)ss.blocks_sent, 4); /* db2 only, inline */
    CHECK(ss.bytes_sent > b1);
    /* a new stream (its hello names B): the agent keeps its blocks and asks only for db3 */
    CHECK_INT(push_client_set_certs(h.cli, F.cli.cert, F.cli.key, NULL), 0);
    REQUIRE(spin(&h.loop, p_hellos2, &h, 5000));
    CHECK_INT(push_server_send(h.srv, KEY, V2C), 0);
    REQUIRE(spin(&h.loop, p_acks3b, &h, 5000));
    push_server_stats(h.srv, &ss);
    CHECK_INT((long long)ss.needs, 1);
    CHECK_INT((long long)ss.blocks_sent, 5);
    CHECK_INT((long long)ss.blocks_frames, 1);
    CHECK_INT(state_of(&h, KEY).sync, PUSH_SYNC_SYNCED);
    push_client_free(h.cli);
    h.cli = NULL;

    /* an agent that offers only v1 gets v1 from this server */
    {
        struct push_client_config cc = client_cfg(&h, &F.cli);
        int acks = h.acks;

        cc.max_protocol = 1;
        CHECK_INT(push_server_send(h.srv, KEY, V2A), 0);
        REQUIRE(push_client_new(&h.loop, &cc, &cops, &h, &h.cli) == 0);
        for (uint64_t end = now_ms() + 5000; h.acks == acks && now_ms() < end;)
            spin(&h.loop, NULL, NULL, 20);
        CHECK_INT(push_client_protocol(h.cli), 1);
        CHECK_STR(h.cfg_hash, h1);
    }
    h_done(&h);

    /* a v1-only server: the v2 agent falls back and gets the same document */
    {
        struct push_server_config sc = server_cfg(0, 0);

        memset(&h, 0, sizeof(h));
        REQUIRE(uv_loop_init(&h.loop) == 0);
        sc.max_protocol = 1;
        REQUIRE(push_server_new(&h.loop, &sc, &sops, &h, &h.srv) == 0);
        h.port = push_server_port(h.srv);
        CHECK_INT(push_server_send(h.srv, KEY, V2A), 0);
        h_client(&h, &F.cli, NULL);
        REQUIRE(spin(&h.loop, p_acks1, &h, 5000));
        CHECK_INT(push_client_protocol(h.cli), 1);
        CHECK_STR(h.cfg_hash, h1);
        push_server_stats(h.srv, &ss);
        CHECK_INT(ss.streams_v2, 0);
        CHECK_INT((long long)ss.blocks_sent, 0);
        h_done(&h);
    }
}

/* --- a hostile v2 server on a thread (for the agent's side) -------------------------------- */

struct hsrv {
    int lfd, port;
    char *frames[8];  /* scripted frames to send, in order; "NEED" waits for a need and answers
                       * it with that block missing */
    char got[8][512]; /* the client's frames after its hello (truncated) */
    int ngot;
    atomic_int done;
};

static int hs_write(SSL *ssl, const char *text)
{
    size_t len = strlen(text), hl = 2;
    unsigned char hdr[10] = {0x81};
    int rc;
    unsigned char *b;

    if (len < 126) {
        hdr[1] = (unsigned char)len;
    } else if (len < 65536) {
        hdr[1] = 126;
        hdr[2] = (unsigned char)(len >> 8);
        hdr[3] = (unsigned char)len;
        hl = 4;
    } else {
        hdr[1] = 127;
        for (int i = 0; i < 8; i++)
            hdr[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
        hl = 10;
    }
    b = malloc(hl + len);
    memcpy(b, hdr, hl);
    memcpy(b + hl, text, len);
    rc = SSL_write(ssl, b, (int)(hl + len)) == (int)(hl + len) ? 0 : -1;
    free(b);
    return rc;
}

/* One frame from the client (masked); its text in *out (free()); the opcode or -1. */
static int hs_read(SSL *ssl, char **out)
{
    unsigned char h[2], mask[4];
    uint64_t len;
    char *p;

    if (raw_read_head(ssl, h, &len) < 0)
        return -1;
    if (!(h[1] & 0x80) || raw_read_full(ssl, mask, 4) < 0 || len > (1u << 20))
        return -1;
    p = malloc(len + 1);
    if (!p || raw_read_full(ssl, p, len) < 0) {
        free(p);
        return -1;
    }
    for (uint64_t i = 0; i < len; i++)
        p[i] ^= (char)mask[i % 4];
    p[len] = '\0';
    *out = p;
    return h[0] & 0x0f;
}

/* The next text frame from the client (pings are not sent by it within the test). */
static char *hs_next(SSL *ssl)
{
    for (;;) {
        char *p = NULL;
        int op = hs_read(ssl, &p);

        if (op == 1)
            return p;
        free(p);
        if (op < 0 || op == 8)
            return NULL;
    }
}

static void *hs_thread(void *arg)
{
    struct hsrv *hs = arg;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    char path[256], req[2048], key[64] = "", acc[64], resp[512];
    unsigned char md[20];
    unsigned int mdlen = 0;
    struct timeval tv = {5, 0};
    SSL *ssl = NULL;
    size_t n = 0;
    int fd;

    fd = accept(hs->lfd, NULL, NULL);
    if (fd < 0)
        goto out;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    snprintf(path, sizeof(path), "%s/srv.pem", fixdir);
    SSL_CTX_use_certificate_file(ctx, path, SSL_FILETYPE_PEM);
    snprintf(path, sizeof(path), "%s/srv.key", fixdir);
    SSL_CTX_use_PrivateKey_file(ctx, path, SSL_FILETYPE_PEM);
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) != 1)
        goto out;
    req[0] = '\0';
    while (n < sizeof(req) - 1 && !strstr(req, "\r\n\r\n")) {
        if (SSL_read(ssl, req + n, 1) <= 0)
            goto out;
        req[++n] = '\0';
    }
    {
        const char *k = strcasestr(req, "\r\nSec-WebSocket-Key: ");
        char src[128];

        if (!k || sscanf(k + 21, "%40s", key) != 1)
            goto out;
        snprintf(src, sizeof(src), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
        EVP_Digest(src, strlen(src), md, &mdlen, EVP_sha1(), NULL);
        EVP_EncodeBlock((unsigned char *)acc, md, (int)mdlen);
    }
    snprintf(resp, sizeof(resp),
             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: " PUSH_SUBPROTOCOL_V2 "\r\n\r\n",
             acc);
    if (SSL_write(ssl, resp, (int)strlen(resp)) <= 0)
        goto out;
    free(hs_next(ssl)); /* the hello */
    for (int i = 0; i < 8 && hs->frames[i]; i++) {
        char *p;

        if (strncmp(hs->frames[i], "NEED ", 5) == 0) {
            /* answer the client's need: the block is missing */
            p = hs_next(ssl);
            if (!p)
                goto out;
            snprintf(hs->got[hs->ngot++], sizeof(hs->got[0]), "%s", p);
            free(p);
            if (hs_write(ssl, hs->frames[i] + 5) < 0)
                goto out;
        } else if (hs_write(ssl, hs->frames[i]) < 0) {
            goto out;
        }
        if (hs->frames[i + 1] && strncmp(hs->frames[i + 1], "NEED ", 5) == 0)
            continue;     /* the answer to this one is a need */
        p = hs_next(ssl); /* ack or nack */
        if (!p)
            goto out;
        snprintf(hs->got[hs->ngot++], sizeof(hs->got[0]), "%s", p);
        free(p);
    }
out:
    atomic_store(&hs->done, 1);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    if (fd >= 0)
        close(fd);
    return NULL;
}

static int p_hs_done(void *a)
{
    return atomic_load(&((struct hsrv *)a)->done);
}

/* The agent's side of v2 against a hostile weftd, on the wire: a good document is ACKed; a
 * block not named by its hash, one over the limit and one the server then says it lacks are
 * each NACKed with the reason, on_config never sees them, and the last good hash stays. */
static void t_v2_hostile_server(void)
{
    struct push__store st;
    struct push_client_config cc;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sa);
    char h1[PUSH_HASH_LEN + 1], h2[PUSH_HASH_LEN + 1], need_blocks[256];
    struct hsrv hs;
    pthread_t th;
    struct push_msg m;
    struct h h;
    char *good = NULL, *bad = NULL, *big = NULL, *unknown = NULL;

    push__store_init(&st);
    {
        json_t *j = json_loads(V2A, 0, NULL), *jb = json_loads(V2B, 0, NULL);
        struct push__doc *d = NULL, *db = NULL;

        REQUIRE(j && jb && push__doc_from_json(&st, j, &d) == 0);
        REQUIRE(push__doc_from_json(&st, jb, &db) == 0);
        memcpy(h1, d->hash, sizeof(h1));
        memcpy(h2, db->hash, sizeof(h2));
        REQUIRE(push__doc_frame_v2(d, 1, NULL, 1, &good, NULL) == 0);
        /* B after A carries db2 inline: spoil its content, keep its name */
        REQUIRE(push__doc_frame_v2(db, 2, d, 0, &bad, NULL) == 0);
        REQUIRE(strstr(bad, "\"db2\""));
        memcpy(strstr(bad, "\"db2\"") + 1, "dbX", 3);
        /* B with nothing inline: the agent asks for db2 */
        REQUIRE(push__doc_frame_v2(db, 4, NULL, 0, &unknown, NULL) == 0);
        REQUIRE(push_msg_parse(unknown, strlen(unknown), &m) == 0);
        snprintf(need_blocks, sizeof(need_blocks),
                 "NEED {\"type\":\"blocks\",\"version\":4,\"blocks\":{},\"missing\":[\"%s\"]}",
                 push__doc_block(db, 2)->hash); /* inbound p, outbound api, db2 */
        push_msg_release(&m);
        push__doc_unref(&st, d);
        push__doc_unref(&st, db);
        json_decref(j);
        json_decref(jb);
    }
    {
        /* a block over PUSH_BLOCK_MAX, named by its real hash */
        size_t len = PUSH_BLOCK_MAX + 16;
        char *blk = malloc(len + 1), hb[PUSH_HASH_LEN + 1];
        struct buf b;

        REQUIRE(blk);
        memset(blk, 'y', len);
        memcpy(blk, "{\"s\":\"", 6);
        blk[len - 2] = '"';
        blk[len - 1] = '}';
        blk[len] = '\0';
        REQUIRE(tls_sha256_hex(blk, len, hb) == 0);
        buf_init(&b);
        REQUIRE(buf_printf(&b,
                           "{\"type\":\"config\",\"version\":3,\"hash\":\"%s\",\"skeleton\":{},"
                           "\"refs\":{\"outbound\":[\"%s\"]},\"blocks\":{\"%s\":",
                           h2, hb, hb) == 0);
        REQUIRE(buf_puts(&b, blk) == 0 && buf_puts(&b, "}}") == 0);
        big = buf_take(&b);
        free(blk);
    }
    memset(&hs, 0, sizeof(hs));
    hs.frames[0] = good;
    hs.frames[1] = bad;
    hs.frames[2] = big;
    hs.frames[3] = unknown;
    hs.frames[4] = need_blocks;
    hs.lfd = socket(AF_INET, SOCK_STREAM, 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(hs.lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(hs.lfd, 4) == 0);
    REQUIRE(getsockname(hs.lfd, (struct sockaddr *)&sa, &sl) == 0);
    memset(&h, 0, sizeof(h));
    REQUIRE(uv_loop_init(&h.loop) == 0);
    h.port = ntohs(sa.sin_port);
    REQUIRE(pthread_create(&th, NULL, hs_thread, &hs) == 0);
    cc = client_cfg(&h, &F.cli);
    REQUIRE(push_client_new(&h.loop, &cc, &cops, &h, &h.cli) == 0);
    REQUIRE(spin(&h.loop, p_hs_done, &hs, 10000));
    pthread_join(th, NULL);
    close(hs.lfd);
    CHECK_INT(h.configs, 1); /* only the good document reached on_config */
    CHECK_STR(h.cfg_hash, h1);
    CHECK_STR(push_client_last_hash(h.cli), h1);
    CHECK_INT(hs.ngot, 5);
    CHECK(strstr(hs.got[0], "\"type\":\"ack\"") && strstr(hs.got[0], h1));
    CHECK(strstr(hs.got[1], "\"type\":\"nack\"") && strstr(hs.got[1], "BadBlock: block "));
    CHECK(strstr(hs.got[2], "\"type\":\"nack\"") && strstr(hs.got[2], "BlockTooLarge: block "));
    CHECK(strstr(hs.got[3], "\"type\":\"need\"") && strstr(hs.got[3], "\"version\":4"));
    CHECK(strstr(hs.got[4], "\"type\":\"nack\"") &&
          strstr(hs.got[4], "UnknownBlock: weftd does not hold block "));
    free(good);
    free(bad);
    free(big);
    free(unknown);
    h_done(&h);
    push__store_release(&st);
}

UNIT_MAIN(UNIT(t_v2_doc_exact), UNIT(t_v2_store_shared), UNIT(t_v2_msgs), UNIT(t_v2_cache),
          UNIT(t_v2_cache_bounded), UNIT(t_v2_stream), UNIT(t_v2_hostile_server),
          UNIT(t_sha256_vectors), UNIT(t_canonical), UNIT(t_msg_encode_exact), UNIT(t_msg_parse),
          UNIT(t_msg_parse_invalid), UNIT(t_bad_arguments), UNIT(t_hello_config_ack),
          UNIT(t_identical_not_resent), UNIT(t_send_json_converged), UNIT(t_reconnect_last_hash),
          UNIT(t_last_hash_before_document), UNIT(t_nack_recorded), UNIT(t_deferred_answer),
          UNIT(t_in_flight_not_synced), UNIT(t_reject_backs_off), UNIT(t_refused_retries_soon),
          UNIT(t_unknown_ca_refused), UNIT(t_client_checks_server_cert), UNIT(t_spiffe_extraction),
          UNIT(t_debounce), UNIT(t_debounce_quiet), UNIT(t_conn_caps), UNIT(t_server_restart),
          UNIT(t_cert_rotation), UNIT(t_no_client_cert_refused), UNIT(t_tls_policy),
          UNIT(t_bad_first_frame), UNIT(t_slow_peer_bounded), UNIT(t_keepalive), UNIT(t_forget),
          UNIT(t_apps_exited), UNIT(t_trust_follows))
