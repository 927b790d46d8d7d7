/*
 * tls_test.c - lib/tls: Weft's TLS policy as a peer sees it (a CBC or RSA-key-exchange suite and
 * TLS 1.1 are refused, AEAD suites and TLS 1.3 work; lib/http's servers speak it whatever
 * context they are given), PEM material into an SSL_CTX, the peer's SPIFFE ID, SHA-256.
 * Certificates come from ca/ (a generated root, a serving certificate, a workload leaf).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <time.h>

#include "ca/ca.h"
#include "http/http.h"
#include "tests/unit/unit.h"
#include "tls/tls.h"

/* A root, and a serving certificate for localhost issued by it (EC P-256). */
struct pki {
    struct ca *ca;
    char *root_pem;
    struct ca_leaf leaf;
    char *key_pem;
};

static void pki_make(struct pki *p)
{
    static const char *const dns[] = {"localhost"};
    struct ca_signer *signer = NULL;

    memset(p, 0, sizeof(*p));
    REQUIRE(ca_signer_generate_root(time(NULL), &signer) == 0);
    REQUIRE(ca_new(signer, &p->ca) == 0);
    REQUIRE(ca_bundle_pem(p->ca, &p->root_pem, NULL) == 0);
    REQUIRE(ca_issue_server(p->ca, dns, 1, NULL, 0, 3600, &p->leaf, &p->key_pem) == 0);
}

static void pki_free(struct pki *p)
{
    ca_leaf_release(&p->leaf);
    ca_key_pem_free(p->key_pem);
    free(p->root_pem);
    ca_free(p->ca);
}

/* A client context limited to one TLS 1.2 suite (or, with tls13, to TLS 1.3). */
static SSL_CTX *client_ctx(const char *tls12_suite, bool tls13)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());

    REQUIRE(c);
    if (tls13) {
        REQUIRE(SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION) == 1);
    } else {
        REQUIRE(SSL_CTX_set_max_proto_version(c, TLS1_2_VERSION) == 1);
        REQUIRE(SSL_CTX_set_cipher_list(c, tls12_suite) == 1);
    }
    return c;
}

/* Handshake in memory between fresh SSLs of sctx and cctx: 1 when both ends complete. */
static int handshake(SSL_CTX *sctx, SSL_CTX *cctx)
{
    SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
    BIO *sb = NULL, *cb = NULL;
    int s_done = 0, c_done = 0, ok = 0;

    REQUIRE(s && c && BIO_new_bio_pair(&sb, 0, &cb, 0) == 1);
    SSL_set_bio(s, sb, sb);
    SSL_set_bio(c, cb, cb);
    SSL_set_accept_state(s);
    SSL_set_connect_state(c);
    for (int i = 0; i < 20 && !(s_done && c_done); i++) {
        int rc;
        if (!c_done) {
            rc = SSL_do_handshake(c);
            if (rc == 1)
                c_done = 1;
            else if (SSL_get_error(c, rc) != SSL_ERROR_WANT_READ)
                break;
        }
        if (!s_done) {
            rc = SSL_do_handshake(s);
            if (rc == 1)
                s_done = 1;
            else if (SSL_get_error(s, rc) != SSL_ERROR_WANT_READ)
                break;
        }
    }
    ok = s_done && c_done;
    ERR_clear_error();
    SSL_free(s);
    SSL_free(c);
    return ok;
}

static void t_policy_suites(void)
{
    SSL_CTX *ctx = NULL;
    STACK_OF(SSL_CIPHER) * sk;
    int tls12 = 0, tls13 = 0;

    REQUIRE(tls_server_ctx_new(&ctx) == 0);
    CHECK_INT(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
    sk = SSL_CTX_get_ciphers(ctx);
    REQUIRE(sk);
    for (int i = 0; i < sk_SSL_CIPHER_num(sk); i++) {
        const SSL_CIPHER *c = sk_SSL_CIPHER_value(sk, i);
        if (strcmp(SSL_CIPHER_get_version(c), "TLSv1.3") == 0) {
            tls13++;
            CHECK(SSL_CIPHER_is_aead(c));
            continue;
        }
        tls12++;
        if (SSL_CIPHER_get_kx_nid(c) != NID_kx_ecdhe || !SSL_CIPHER_is_aead(c))
            fprintf(stderr, "  suite %s is not ECDHE with AEAD\n", SSL_CIPHER_get_name(c));
        CHECK(SSL_CIPHER_get_kx_nid(c) == NID_kx_ecdhe);
        CHECK(SSL_CIPHER_is_aead(c));
    }
    CHECK_INT(tls12, 6);
    CHECK(tls13 >= 3);
    SSL_CTX_free(ctx);
}

/* The same clients against a server without and with the policy: only AEAD suites and TLS 1.3
 * pass the policy; without it the refused clients do connect (so it is the policy refusing). */
static void t_policy_handshakes(void)
{
    static const char *const refused[] = {
        "ECDHE-ECDSA-AES128-SHA",    /* CBC */
        "ECDHE-ECDSA-AES256-SHA384", /* CBC */
    };
    static const char *const accepted[] = {
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    };
    struct pki p;
    SSL_CTX *open = SSL_CTX_new(TLS_server_method()), *strict = NULL, *c;

    pki_make(&p);
    REQUIRE(open && SSL_CTX_set_cipher_list(open, "ALL:@SECLEVEL=0") == 1);
    REQUIRE(tls_set_identity(open, p.leaf.chain_pem, p.key_pem) == 0);
    REQUIRE(tls_server_ctx_new(&strict) == 0);
    REQUIRE(tls_set_identity(strict, p.leaf.chain_pem, p.key_pem) == 0);
    for (size_t i = 0; i < ARRAY_LEN(refused); i++) {
        c = client_ctx(refused[i], false);
        REQUIRE(SSL_CTX_set_cipher_list(c, refused[i]) == 1);
        if (!handshake(open, c) || handshake(strict, c))
            fprintf(stderr, "  %s: without the policy %d, with it %d\n", refused[i],
                    handshake(open, c), handshake(strict, c));
        CHECK(handshake(open, c));
        CHECK(!handshake(strict, c));
        SSL_CTX_free(c);
    }
    for (size_t i = 0; i < ARRAY_LEN(accepted); i++) {
        c = client_ctx(accepted[i], false);
        if (!handshake(strict, c))
            fprintf(stderr, "  %s refused\n", accepted[i]);
        CHECK(handshake(strict, c));
        SSL_CTX_free(c);
    }
    c = client_ctx(NULL, true);
    CHECK(handshake(strict, c));
    SSL_CTX_free(c);
    /* TLS 1.1 with a suite the policy would take in 1.2 if it were not for the version */
    c = SSL_CTX_new(TLS_client_method());
    REQUIRE(c && SSL_CTX_set_min_proto_version(c, TLS1_1_VERSION) == 1 &&
            SSL_CTX_set_max_proto_version(c, TLS1_1_VERSION) == 1 &&
            SSL_CTX_set_cipher_list(c, "ALL:@SECLEVEL=0") == 1);
    REQUIRE(SSL_CTX_set_min_proto_version(open, TLS1_1_VERSION) == 1);
    CHECK(handshake(open, c));
    CHECK(!handshake(strict, c));
    SSL_CTX_free(c);
    SSL_CTX_free(open);
    SSL_CTX_free(strict);
    pki_free(&p);
}

static void hello(void *arg, struct http_conn *c, const struct http_request *req)
{
    (void)arg;
    (void)req;
    http_respond(c, 200, "text/plain", "hello", 5, NULL);
}

/* Connect to 127.0.0.1:port with cctx and GET /: the status line, or "refused" when the
 * handshake fails. */
static char *https_get(int port, SSL_CTX *cctx)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    static const char req[] = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    char buf[512];
    int fd = socket(AF_INET, SOCK_STREAM, 0), n = 0, r;
    SSL *ssl = SSL_new(cctx);
    char *out;

    REQUIRE(fd >= 0 && ssl);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) != 1) {
        out = strdup("refused");
        goto done;
    }
    REQUIRE(SSL_write(ssl, req, sizeof(req) - 1) == (int)sizeof(req) - 1);
    while (n < (int)sizeof(buf) - 1 && (r = SSL_read(ssl, buf + n, (int)sizeof(buf) - 1 - n)) > 0)
        n += r;
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    out = strdup(buf);
done:
    ERR_clear_error();
    SSL_free(ssl);
    close(fd);
    REQUIRE(out);
    return out;
}

/* lib/http puts the policy on the context it is given, even one made without it. */
static void t_http_server_policy(void)
{
    struct http_server *s = NULL;
    SSL_CTX *plain = SSL_CTX_new(TLS_server_method()), *c;
    struct pki p;
    pid_t pid;
    int port;
    char *got;

    pki_make(&p);
    REQUIRE(plain && SSL_CTX_set_cipher_list(plain, "ALL:@SECLEVEL=0") == 1);
    REQUIRE(tls_set_identity(plain, p.leaf.chain_pem, p.key_pem) == 0);
    REQUIRE(http_server_new("127.0.0.1:0", plain, 4096, hello, NULL, &s) == 0);
    port = http_server_port(s);
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        IGNORE_RESULT(http_server_run(s));
        _exit(0);
    }
    http_server_free(s);
    c = client_ctx("ECDHE-ECDSA-AES128-SHA", false);
    got = https_get(port, c);
    CHECK_STR(got, "refused");
    free(got);
    SSL_CTX_free(c);
    c = client_ctx("ECDHE-ECDSA-AES128-GCM-SHA256", false);
    got = https_get(port, c);
    CHECK_STR(got, "HTTP/1.1 200 OK");
    free(got);
    SSL_CTX_free(c);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    SSL_CTX_free(plain);
    pki_free(&p);
}

static void t_identity(void)
{
    struct pki p, q;
    SSL_CTX *ctx = NULL;
    X509 *before;

    pki_make(&p);
    pki_make(&q);
    CHECK_INT(tls_check_identity(p.leaf.chain_pem, p.key_pem), 0);
    CHECK_INT(tls_check_identity(p.leaf.chain_pem, q.key_pem), ERR_INVALID); /* not its key */
    CHECK_INT(tls_check_identity("not PEM", p.key_pem), ERR_INVALID);
    CHECK_INT(tls_check_identity(p.leaf.chain_pem, "not PEM"), ERR_INVALID);
    CHECK_INT(tls_check_identity(NULL, p.key_pem), ERR_INVALID);
    REQUIRE(tls_server_ctx_new(&ctx) == 0);
    CHECK_INT(tls_set_identity(ctx, p.leaf.chain_pem, p.key_pem), 0);
    before = SSL_CTX_get0_certificate(ctx);
    REQUIRE(before && X509_up_ref(before) == 1); /* kept past the replacement below */
    /* a refused pair leaves the identity in place */
    CHECK_INT(tls_set_identity(ctx, q.leaf.chain_pem, p.key_pem), ERR_INVALID);
    CHECK(SSL_CTX_get0_certificate(ctx) == before);
    CHECK_INT(tls_set_identity(ctx, q.leaf.chain_pem, q.key_pem), 0);
    CHECK(X509_cmp(SSL_CTX_get0_certificate(ctx), before) != 0);
    X509_free(before);
    CHECK_INT(tls_check_trust(p.root_pem), 0);
    CHECK_INT(tls_check_trust("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
              ERR_INVALID);
    CHECK_INT(tls_set_trust(ctx, ""), ERR_INVALID);
    CHECK_INT(tls_set_trust(ctx, p.root_pem), 0);
    CHECK_INT(ERR_peek_error(), 0); /* nothing left on OpenSSL's error queue */
    SSL_CTX_free(ctx);
    pki_free(&p);
    pki_free(&q);
}

/* A client with a workload certificate: the server reads its SPIFFE ID after verifying it
 * against the trust set by tls_set_trust; a serving certificate has none. */
static void t_peer_spiffe_id(void)
{
    struct ca_identity id = {"cluster.local", "default", "web", NULL, NULL};
    struct ca_leaf wl;
    struct pki p;
    SSL_CTX *sctx = NULL, *cctx = NULL;
    SSL *s, *c;
    BIO *sb, *cb;
    char *wkey = NULL, *csr = NULL, out[256], small[16];

    pki_make(&p);
    REQUIRE(ca_csr_new(CA_KEY_EC_P256, &wkey, &csr) == 0);
    REQUIRE(ca_issue(p.ca, csr, strlen(csr), &id, 3600, &wl, NULL) == 0);
    REQUIRE(tls_server_ctx_new(&sctx) == 0 && tls_client_ctx_new(&cctx) == 0);
    REQUIRE(tls_set_identity(sctx, p.leaf.chain_pem, p.key_pem) == 0);
    REQUIRE(tls_set_trust(sctx, p.root_pem) == 0);
    REQUIRE(tls_set_identity(cctx, wl.chain_pem, wkey) == 0);
    REQUIRE(tls_set_trust(cctx, p.root_pem) == 0);
    SSL_CTX_set_verify(sctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
    s = SSL_new(sctx);
    c = SSL_new(cctx);
    REQUIRE(s && c && BIO_new_bio_pair(&sb, 0, &cb, 0) == 1);
    SSL_set_bio(s, sb, sb);
    SSL_set_bio(c, cb, cb);
    SSL_set_accept_state(s);
    SSL_set_connect_state(c);
    for (int i = 0; i < 20 && !(SSL_is_init_finished(s) && SSL_is_init_finished(c)); i++) {
        IGNORE_RESULT(SSL_do_handshake(c) == 1);
        IGNORE_RESULT(SSL_do_handshake(s) == 1);
    }
    REQUIRE(SSL_is_init_finished(s) && SSL_is_init_finished(c));
    CHECK_INT(tls_peer_spiffe_id(s, out, sizeof(out)), 0);
    CHECK_STR(out, "spiffe://cluster.local/ns/default/sa/web");
    CHECK_INT(tls_peer_spiffe_id(s, small, sizeof(small)), -ENAMETOOLONG);
    CHECK_INT(tls_peer_spiffe_id(c, out, sizeof(out)), ERR_NOTFOUND); /* the serving cert */
    CHECK_INT(tls_peer_spiffe_id(NULL, out, sizeof(out)), ERR_NOTFOUND);
    SSL_free(s);
    SSL_free(c);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    ca_leaf_release(&wl);
    ca_key_pem_free(wkey);
    free(csr);
    pki_free(&p);
}

static void t_sha256(void)
{
    char hex[TLS_SHA256_HEX + 1];

    CHECK_INT(tls_sha256_hex("abc", 3, hex), 0);
    CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK_INT(tls_sha256_hex("", 0, hex), 0);
    CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

UNIT_MAIN(UNIT(t_policy_suites), UNIT(t_policy_handshakes), UNIT(t_http_server_policy),
          UNIT(t_identity), UNIT(t_peer_spiffe_id), UNIT(t_sha256))
