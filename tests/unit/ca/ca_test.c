/*
 * ca_test.c - unit tests for ca/. Certificates are checked with the openssl CLI (popen), so the
 * assertions do not depend on our own parsing.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "ca/ca.h"
#include "tests/unit/unit.h"

/* ---- helpers ------------------------------------------------------------------------------- */

static char out_buf[65536];
static char tmpdir[64];

#define CHECK_HAS(hay, needle)                                                                     \
    do {                                                                                           \
        const char *unit__h = (hay), *unit__n = (needle);                                          \
        if (!unit__h || !strstr(unit__h, unit__n)) {                                               \
            fprintf(stderr, "  %s:%d: \"%s\" not found in:\n%s\n", __FILE__, __LINE__, unit__n,    \
                    unit__h ? unit__h : "(null)");                                                 \
            unit__failures++;                                                                      \
        }                                                                                          \
    } while (0)

#define CHECK_LACKS(hay, needle)                                                                   \
    do {                                                                                           \
        const char *unit__h = (hay), *unit__n = (needle);                                          \
        if (!unit__h || strstr(unit__h, unit__n)) {                                                \
            fprintf(stderr, "  %s:%d: \"%s\" unexpectedly in:\n%s\n", __FILE__, __LINE__, unit__n, \
                    unit__h ? unit__h : "(null)");                                                 \
            unit__failures++;                                                                      \
        }                                                                                          \
    } while (0)

/* Run a shell command in the test directory; stdout+stderr into out_buf. Returns exit code. */
static int sh(const char *fmt, ...) PRINTF_LIKE(1, 2);
static int sh(const char *fmt, ...)
{
    char cmd[4096], wrapped[4200];
    size_t n = 0;
    va_list ap;
    FILE *p;
    int st;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    snprintf(wrapped, sizeof(wrapped), "(%s) 2>&1", cmd);
    p = popen(wrapped, "r");
    REQUIRE(p != NULL);
    while (n < sizeof(out_buf) - 1) {
        size_t r = fread(out_buf + n, 1, sizeof(out_buf) - 1 - n, p);
        if (r == 0)
            break;
        n += r;
    }
    out_buf[n] = '\0';
    st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void enter_tmpdir(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/weft-ca-test.XXXXXX");
    REQUIRE(mkdtemp(tmpdir) != NULL);
    REQUIRE(chdir(tmpdir) == 0);
}

static void leave_tmpdir(void)
{
    REQUIRE(chdir("/") == 0);
    IGNORE_RESULT(sh("rm -rf '%s'", tmpdir));
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");

    REQUIRE(f != NULL);
    REQUIRE(fwrite(data, 1, n, f) == n);
    REQUIRE(fclose(f) == 0);
}

static void write_str(const char *path, const char *s)
{
    write_file(path, s, strlen(s));
}

/* Whole file, NUL-terminated; *n (may be NULL) gets its length. Caller frees. */
static char *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    char *p;
    long len;

    REQUIRE(f != NULL);
    REQUIRE(fseek(f, 0, SEEK_END) == 0);
    len = ftell(f);
    REQUIRE(len >= 0);
    rewind(f);
    p = malloc((size_t)len + 1);
    REQUIRE(p != NULL);
    REQUIRE(fread(p, 1, (size_t)len, f) == (size_t)len);
    p[len] = '\0';
    fclose(f);
    if (n)
        *n = (size_t)len;
    return p;
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;

    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static const struct ca_identity web = {"cluster.local", "default", "web", NULL, NULL};

static time_t fixed_now;
static time_t fixed_clock(void *arg)
{
    return *(const time_t *)arg;
}

/* A CA with a fresh generated root and a pinned clock (fixed_now = real now). */
static struct ca *new_ca(void)
{
    struct ca_signer *s = NULL;
    struct ca *ca = NULL;

    fixed_now = time(NULL);
    REQUIRE(ca_signer_generate_root(fixed_now, &s) == 0);
    REQUIRE(ca_new(s, &ca) == 0);
    ca_clock_set(ca, fixed_clock, &fixed_now);
    return ca;
}

static void write_bundle(struct ca *ca, const char *path)
{
    char *pem = NULL;
    size_t n = 0;

    REQUIRE(ca_bundle_pem(ca, &pem, &n) == 0);
    CHECK_INT(strlen(pem), n);
    write_str(path, pem);
    free(pem);
}

/* Issue for `id` from the CSR file at csr_path into leaf_path; returns ca_issue's code. */
static int issue_file(struct ca *ca, const char *csr_path, const struct ca_identity *id, long ttl,
                      const char *leaf_path, struct ca_leaf *leaf_out, struct diag *diag)
{
    struct ca_leaf leaf;
    size_t n;
    char *csr = read_file(csr_path, &n);
    int rc;

    memset(&leaf, 0, sizeof(leaf));
    rc = ca_issue(ca, csr, n, id, ttl, &leaf, diag);
    free(csr);
    if (rc == 0 && leaf_path)
        write_str(leaf_path, leaf.chain_pem);
    if (rc == 0 && leaf_out)
        *leaf_out = leaf;
    else
        ca_leaf_release(&leaf);
    return rc;
}

static void iso(time_t t, char *out, size_t n)
{
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%d %H:%M:%SZ", &tm);
}

/* ---- identity ------------------------------------------------------------------------------ */

static void t_identity_strings(void)
{
    char cn[CA_CN_MAX + 1], id[CA_SPIFFE_ID_MAX + 1], sa[300], expect[128];
    struct ca_identity x = {"cluster.local", "default", NULL, NULL, NULL};
    size_t base = strlen(".default.cluster.local");

    CHECK_INT(ca_identity_subject_cn(&web, cn), 0);
    CHECK_STR(cn, "web.default.cluster.local");
    CHECK_INT(ca_identity_spiffe_id(&web, id), 0);
    CHECK_STR(id, "spiffe://cluster.local/ns/default/sa/web");

    /* exactly 64 bytes: kept as is */
    memset(sa, 'a', 64 - base);
    sa[64 - base] = '\0';
    x.serviceaccount = sa;
    CHECK_INT(ca_identity_subject_cn(&x, cn), 0);
    CHECK_INT(strlen(cn), 64);
    CHECK_INT(strncmp(cn, sa, strlen(sa)), 0);
    CHECK_STR(cn + strlen(sa), ".default.cluster.local");

    /* 65 bytes: 35-byte prefix, '~', 28 hex of SHA-256(SPIFFE ID) (computed by the CLI) */
    memset(sa, 'a', 65 - base);
    sa[65 - base] = '\0';
    CHECK_INT(ca_identity_subject_cn(&x, cn), 0);
    CHECK_INT(strlen(cn), 64);
    CHECK_INT(sh("printf %%s 'spiffe://cluster.local/ns/default/sa/%s' | openssl dgst -sha256 -r "
                 "| cut -c1-28",
                 sa),
              0);
    snprintf(expect, sizeof(expect), "%.35s~%.28s", sa, out_buf);
    CHECK_STR(cn, expect);

    /* invalid identities */
    struct ca_identity bad[] = {
        {"cluster.local", "Default", "web", NULL, NULL},
        {"cluster.local", "default", "", NULL, NULL},
        {"cluster.local", "a.b", "web", NULL, NULL},
        {"cluster.local", "-ns", "web", NULL, NULL},
        {"cluster.local", "default", "a..b", NULL, NULL},
        {"cluster.local", "default", "web-", NULL, NULL},
        {"Cluster", "default", "web", NULL, NULL},
        {"", "default", "web", NULL, NULL},
        {"cluster/local", "default", "web", NULL, NULL},
        {NULL, "default", "web", NULL, NULL},
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        CHECK_INT(ca_identity_subject_cn(&bad[i], cn), -EINVAL);
        CHECK_INT(ca_identity_spiffe_id(&bad[i], id), -EINVAL);
    }
    memset(sa, 'b', 254);
    sa[254] = '\0';
    x.serviceaccount = sa;
    CHECK_INT(ca_identity_subject_cn(&x, cn), -EINVAL);
    sa[253] = '\0'; /* 253 is the Kubernetes maximum */
    CHECK_INT(ca_identity_subject_cn(&x, cn), 0);
    memset(sa, 'c', 65);
    sa[65] = '\0';
    x.serviceaccount = "web";
    x.trust_domain = sa;
    CHECK_INT(ca_identity_spiffe_id(&x, id), -EINVAL);
    CHECK_STR(ca_refusal_str(CA_REFUSAL_BAD_SIGNATURE), "BadSignature");
    CHECK_STR(ca_refusal_str(CA_REFUSAL_WEAK_KEY), "WeakKey");
}

/* ---- roots --------------------------------------------------------------------------------- */

static void t_root_generate(void)
{
    struct ca_signer *s = NULL, *s2 = NULL;
    struct ca_signer_pem pem = {0};
    struct ca_cert_info info;
    struct diag diag = {0};
    char expect[128];
    time_t now = time(NULL);

    enter_tmpdir();
    REQUIRE(ca_signer_generate_root(now, &s) == 0);
    REQUIRE(ca_signer_pem_get(s, &pem) == 0);
    CHECK_HAS(pem.tls_key, "-----BEGIN PRIVATE KEY-----\n");
    CHECK_INT(count(pem.tls_crt, "BEGIN CERTIFICATE"), 1);
    CHECK_STR(pem.tls_crt, pem.ca_crt);
    write_str("ca.crt", pem.ca_crt);
    write_str("tls.key", pem.tls_key);

    CHECK_INT(sh("openssl verify -check_ss_sig -CAfile ca.crt ca.crt"), 0);
    CHECK_HAS(out_buf, "ca.crt: OK");
    CHECK_INT(sh("openssl x509 -in ca.crt -noout -pubkey | openssl pkey -pubin -outform DER | "
                 "openssl dgst -sha256 -r | cut -c1-8"),
              0);
    out_buf[8] = '\0';
    snprintf(expect, sizeof(expect), "subject=CN=weft root %.8s,O=weft\n", out_buf);
    CHECK_INT(sh("openssl x509 -in ca.crt -noout -ext basicConstraints,keyUsage -text"), 0);
    CHECK_HAS(out_buf, "Basic Constraints: critical\n    CA:TRUE");
    CHECK_HAS(out_buf, "X509v3 Key Usage: critical\n    Certificate Sign, CRL Sign");
    CHECK_HAS(out_buf, "ASN1 OID: prime256v1");
    CHECK_HAS(out_buf, "Signature Algorithm: ecdsa-with-SHA256");
    CHECK_INT(sh("openssl x509 -in ca.crt -noout -subject -nameopt RFC2253"), 0);
    CHECK_STR(out_buf, expect);
    CHECK_INT(sh("openssl pkey -in tls.key -check -noout"), 0);
    CHECK_INT(sh("openssl x509 -in ca.crt -noout -pubkey > a.pub && openssl pkey -in tls.key "
                 "-pubout > b.pub && cmp a.pub b.pub"),
              0);

    REQUIRE(ca_cert_info(pem.ca_crt, strlen(pem.ca_crt), &info) == 0);
    CHECK_INT(info.not_before, now - CA_BACKDATE);
    CHECK_INT(info.not_after - info.not_before, 3650L * 86400);
    CHECK(info.is_ca);
    CHECK_STR(info.spiffe_id, "");
    CHECK_STR(info.fingerprint, ca_signer_root_fingerprint(s));
    CHECK_INT(ca_signer_not_after(s), info.not_after);

    /* round trip through the Secret fields */
    struct ca_signer_input in = {pem.tls_crt,         strlen(pem.tls_crt), pem.tls_key,
                                 strlen(pem.tls_key), pem.ca_crt,          strlen(pem.ca_crt)};
    CHECK_INT(ca_signer_load(&in, now, &s2, &diag), 0);
    REQUIRE(s2 != NULL);
    CHECK_STR(ca_signer_root_fingerprint(s2), ca_signer_root_fingerprint(s));
    ca_signer_free(s2);
    s2 = NULL;
    in.ca = NULL;
    in.ca_len = 0; /* a root needs no ca.crt */
    CHECK_INT(ca_signer_load(&in, now, &s2, &diag), 0);
    ca_signer_free(s2);

    ca_signer_pem_release(&pem);
    ca_signer_free(s);
    leave_tmpdir();
}

/* ---- issuance ------------------------------------------------------------------------------ */

static void t_issue_verifies(void)
{
    struct ca *ca = new_ca();
    struct ca_leaf leaf = {0}, leaf2 = {0};
    struct ca_cert_info info;
    struct diag diag = {0};
    char *key = NULL, *csr = NULL, nb[64], na[64], expect[160];

    enter_tmpdir();
    REQUIRE(ca_csr_new(CA_KEY_EC_P256, &key, &csr) == 0);
    write_str("agent.key", key);
    write_str("agent.csr", csr);
    CHECK_INT(sh("openssl req -in agent.csr -verify -noout"), 0);
    CHECK_HAS(out_buf, "verify OK");

    CHECK_INT(ca_issue(ca, csr, strlen(csr), &web, 0, &leaf, &diag), 0);
    REQUIRE(leaf.chain_pem != NULL);
    CHECK_INT(strlen(leaf.chain_pem), leaf.chain_len);
    CHECK_INT(count(leaf.chain_pem, "BEGIN CERTIFICATE"), 1); /* root signer: leaf only */
    CHECK_INT(leaf.not_before, fixed_now - 60);
    CHECK_INT(leaf.not_after, fixed_now + 86400);
    write_str("leaf.pem", leaf.chain_pem);
    write_bundle(ca, "bundle.pem");

    CHECK_INT(sh("openssl verify -x509_strict -CAfile bundle.pem leaf.pem"), 0);
    CHECK_STR(out_buf, "leaf.pem: OK\n");
    CHECK_INT(sh("openssl verify -purpose sslclient -CAfile bundle.pem leaf.pem"), 0);
    CHECK_INT(sh("openssl verify -purpose sslserver -CAfile bundle.pem leaf.pem"), 0);
    CHECK_INT(sh("openssl x509 -in leaf.pem -noout -ext "
                 "subjectAltName,extendedKeyUsage,keyUsage,basicConstraints"),
              0);
    CHECK_HAS(out_buf, "X509v3 Subject Alternative Name: \n"
                       "    URI:spiffe://cluster.local/ns/default/sa/web\n");
    CHECK_HAS(out_buf, "X509v3 Extended Key Usage: \n"
                       "    TLS Web Server Authentication, TLS Web Client Authentication\n");
    CHECK_HAS(out_buf, "X509v3 Key Usage: critical\n    Digital Signature\n");
    CHECK_HAS(out_buf, "X509v3 Basic Constraints: critical\n    CA:FALSE\n");
    CHECK_INT(sh("openssl x509 -in leaf.pem -noout -subject -nameopt RFC2253"), 0);
    CHECK_STR(out_buf, "subject=CN=web.default.cluster.local,OU=default,O=cluster.local\n");
    CHECK_INT(sh("openssl x509 -in leaf.pem -noout -dates -dateopt iso_8601"), 0);
    iso(fixed_now - 60, nb, sizeof(nb));
    iso(fixed_now + 86400, na, sizeof(na));
    snprintf(expect, sizeof(expect), "notBefore=%s\nnotAfter=%s\n", nb, na);
    CHECK_STR(out_buf, expect);
    /* the key is the agent's */
    CHECK_INT(sh("openssl x509 -in leaf.pem -noout -pubkey > a.pub && openssl pkey -in agent.key "
                 "-pubout > b.pub && cmp a.pub b.pub"),
              0);
    /* AKI = root's SKI; SKI present */
    CHECK_INT(sh("openssl x509 -in bundle.pem -noout -ext subjectKeyIdentifier | tail -1"), 0);
    snprintf(expect, sizeof(expect), "%.140s", out_buf + 4); /* drop indentation */
    CHECK_INT(sh("openssl x509 -in leaf.pem -noout -ext authorityKeyIdentifier,"
                 "subjectKeyIdentifier"),
              0);
    CHECK_HAS(out_buf, expect);
    CHECK_HAS(out_buf, "X509v3 Subject Key Identifier");
    /* strict DER all through */
    CHECK_INT(sh("openssl asn1parse -in leaf.pem -strictpem > /dev/null"), 0);
    /* fingerprint and info */
    CHECK_INT(sh("openssl x509 -in leaf.pem -noout -fingerprint -sha256 | cut -d= -f2 | "
                 "tr -d ':\\n' | tr A-F a-f"),
              0);
    CHECK_STR(leaf.fingerprint, out_buf);
    REQUIRE(ca_cert_info(leaf.chain_pem, leaf.chain_len, &info) == 0);
    CHECK_STR(info.fingerprint, leaf.fingerprint);
    CHECK_STR(info.spiffe_id, "spiffe://cluster.local/ns/default/sa/web");
    CHECK_INT(info.not_after, fixed_now + 86400);
    CHECK_INT(info.renew_at, fixed_now - 60 + (86400 + 60) / 2);
    CHECK(!info.is_ca);
    CHECK_INT(ca_cert_info("junk", 4, &info), ERR_PARSE);

    /* serials are random: a second leaf for the same CSR differs */
    CHECK_INT(ca_issue(ca, csr, strlen(csr), &web, 3600, &leaf2, &diag), 0);
    write_str("leaf2.pem", leaf2.chain_pem);
    CHECK_INT(sh("openssl x509 -in leaf.pem -noout -serial; openssl x509 -in leaf2.pem -noout "
                 "-serial"),
              0);
    {
        char *nl = strchr(out_buf, '\n');
        REQUIRE(nl != NULL);
        *nl = '\0';
        CHECK(strcmp(out_buf, nl + 1) != 0);
        CHECK(strlen(out_buf) >= strlen("serial=") + 28); /* ~128 bits */
        CHECK(strlen(out_buf) <= strlen("serial=") + 34);
    }
    CHECK_INT(leaf2.not_after, fixed_now + 3600);
    CHECK_INT(leaf2.not_before, fixed_now - 60); /* a tenth of 3600 s, capped at 60 s */
    ca_leaf_release(&leaf2);

    /* Short lifetimes: the backdate is a tenth of the lifetime, so a 60 s certificate is not
     * due for renewal (half-life) at the moment it is issued. */
    CHECK_INT(ca_issue(ca, csr, strlen(csr), &web, CA_TTL_MIN, &leaf2, &diag), 0);
    CHECK_INT(leaf2.not_before, fixed_now - 6);
    CHECK_INT(leaf2.not_after, fixed_now + 60);
    REQUIRE(ca_cert_info(leaf2.chain_pem, leaf2.chain_len, &info) == 0);
    CHECK_INT(info.renew_at, fixed_now + 27);
    CHECK(info.renew_at > fixed_now);
    write_str("leaf60.pem", leaf2.chain_pem);
    CHECK_INT(sh("openssl verify -x509_strict -CAfile bundle.pem leaf60.pem"), 0);
    ca_leaf_release(&leaf2);
    CHECK_INT(ca_issue(ca, csr, strlen(csr), &web, 300, &leaf2, &diag), 0);
    CHECK_INT(leaf2.not_before, fixed_now - 30);
    CHECK_INT(leaf2.not_after, fixed_now + 300);

    /* ttl bounds */
    CHECK_INT(ca_issue(ca, csr, strlen(csr), &web, -1, &leaf2, &diag), -EINVAL);
    CHECK_INT(ca_issue(ca, csr, strlen(csr), &web, CA_TTL_MAX + 1, &leaf2, &diag), -EINVAL);
    CHECK_INT(ca_issue(ca, csr, strlen(csr), &web, CA_TTL_MIN - 1, &leaf2, &diag), -EINVAL);
    CHECK_INT(ca_issue(ca, csr, strlen(csr), &web, 1, &leaf2, &diag), -EINVAL);
    struct ca_identity bad = {"cluster.local", "Default", "web", NULL, NULL};
    CHECK_INT(ca_issue(ca, csr, strlen(csr), &bad, 0, &leaf2, &diag), -EINVAL);

    ca_leaf_release(&leaf);
    ca_leaf_release(&leaf2);
    ca_key_pem_free(key);
    free(csr);
    ca_free(ca);
    leave_tmpdir();
}

/* The CSR asks for another identity, CA:TRUE, a DNS name and codeSigning: all ignored. */
static void t_identity_from_caller_only(void)
{
    struct ca *ca = new_ca();
    struct diag diag = {0};

    enter_tmpdir();
    REQUIRE(sh("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "
               "k.pem -subj '/O=cluster.local/OU=kube-system/CN=admin.kube-system.cluster.local' "
               "-addext 'subjectAltName=URI:spiffe://cluster.local/ns/kube-system/sa/admin,"
               "DNS:evil.example.com' -addext 'basicConstraints=critical,CA:TRUE' "
               "-addext 'extendedKeyUsage=codeSigning' -out evil.csr") == 0);
    CHECK_INT(issue_file(ca, "evil.csr", &web, 0, "leaf.pem", NULL, &diag), 0);
    write_bundle(ca, "bundle.pem");
    CHECK_INT(sh("openssl verify -CAfile bundle.pem leaf.pem"), 0);
    CHECK_INT(sh("openssl x509 -in leaf.pem -noout -subject -nameopt RFC2253 -ext "
                 "subjectAltName,extendedKeyUsage,basicConstraints"),
              0);
    CHECK_HAS(out_buf, "subject=CN=web.default.cluster.local,OU=default,O=cluster.local\n");
    CHECK_HAS(out_buf, "X509v3 Subject Alternative Name: \n"
                       "    URI:spiffe://cluster.local/ns/default/sa/web\n");
    CHECK_HAS(out_buf, "CA:FALSE");
    CHECK_LACKS(out_buf, "admin");
    CHECK_LACKS(out_buf, "evil");
    CHECK_LACKS(out_buf, "Code Signing");
    CHECK_LACKS(out_buf, "CA:TRUE");
    ca_free(ca);
    leave_tmpdir();
}

/* A bound token's pod goes into the leaf's pod extension; ca_cert_info reads it back. */
static void t_pod_extension(void)
{
    struct ca *ca = new_ca();
    struct diag diag = {0};
    struct ca_leaf leaf = {0};
    struct ca_cert_info info;
    char *key = NULL, *csr = NULL;
    const char uid[] = "0b4f3c2a-1d2e-4f5a-8b9c-0d1e2f3a4b5c";
    struct ca_identity pod = {"cluster.local", "default", "web", "web-7d9f-x2x", uid};

    enter_tmpdir();
    REQUIRE(ca_csr_new(CA_KEY_EC_P256, &key, &csr) == 0);
    CHECK_INT(ca_issue(ca, csr, strlen(csr), &pod, 0, &leaf, &diag), 0);
    write_str("leaf.pem", leaf.chain_pem);
    write_bundle(ca, "bundle.pem");
    /* unknown to OpenSSL, not critical: the chain still verifies */
    CHECK_INT(sh("openssl verify -x509_strict -CAfile bundle.pem leaf.pem"), 0);
    CHECK_INT(sh("openssl x509 -in leaf.pem -noout -text"), 0);
    CHECK_HAS(out_buf, "2.25.12132509292569909180439193538005852261: \n");
    CHECK_LACKS(out_buf, "2.25.12132509292569909180439193538005852261: critical");
    /* the SAN and the subject are those of the ServiceAccount alone */
    CHECK_HAS(out_buf, "URI:spiffe://cluster.local/ns/default/sa/web\n");
    CHECK_INT(sh("openssl x509 -in leaf.pem -noout -subject -nameopt RFC2253"), 0);
    CHECK_STR(out_buf, "subject=CN=web.default.cluster.local,OU=default,O=cluster.local\n");
    CHECK_INT(sh("openssl asn1parse -in leaf.pem -strictpem | grep -A1 ':2.25.1213' | tail -1 | "
                 "sed 's/.*:\\([0-9A-F]*\\)$/\\1/' | xxd -r -p | openssl asn1parse -inform DER"),
              0);
    CHECK_HAS(out_buf, "UTF8STRING        :default");
    CHECK_HAS(out_buf, "UTF8STRING        :web-7d9f-x2x");
    CHECK_HAS(out_buf, "UTF8STRING        :0b4f3c2a-1d2e-4f5a-8b9c-0d1e2f3a4b5c");
    REQUIRE(ca_cert_info(leaf.chain_pem, leaf.chain_len, &info) == 0);
    CHECK_STR(info.pod_namespace, "default");
    CHECK_STR(info.pod_name, "web-7d9f-x2x");
    CHECK_STR(info.pod_uid, uid);
    CHECK_STR(info.spiffe_id, "spiffe://cluster.local/ns/default/sa/web");
    ca_leaf_release(&leaf);

    /* without a pod: no extension */
    CHECK_INT(ca_issue(ca, csr, strlen(csr), &web, 0, &leaf, &diag), 0);
    REQUIRE(ca_cert_info(leaf.chain_pem, leaf.chain_len, &info) == 0);
    CHECK_STR(info.pod_name, "");
    CHECK_STR(info.pod_uid, "");
    write_str("leaf2.pem", leaf.chain_pem);
    CHECK_INT(sh("openssl x509 -in leaf2.pem -noout -text"), 0);
    CHECK_LACKS(out_buf, "2.25.");
    ca_leaf_release(&leaf);

    /* both or neither, and names that are names */
    {
        char long_uid[CA_POD_UID_MAX + 2];
        struct ca_identity bad[] = {
            {"cluster.local", "default", "web", "web-1", NULL},
            {"cluster.local", "default", "web", NULL, uid},
            {"cluster.local", "default", "web", "Web-1", uid},
            {"cluster.local", "default", "web", "", uid},
            {"cluster.local", "default", "web", "web-1", ""},
            {"cluster.local", "default", "web", "web-1", "0b4f/../x"},
            {"cluster.local", "default", "web", "web-1", long_uid},
        };
        memset(long_uid, 'a', sizeof(long_uid) - 1);
        long_uid[sizeof(long_uid) - 1] = '\0';
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
            CHECK_INT(ca_issue(ca, csr, strlen(csr), &bad[i], 0, &leaf, &diag), -EINVAL);
        long_uid[CA_POD_UID_MAX] = '\0';
        pod.pod_uid = long_uid;
        CHECK_INT(ca_issue(ca, csr, strlen(csr), &pod, 0, &leaf, &diag), 0);
        ca_leaf_release(&leaf);
    }
    ca_key_pem_free(key);
    free(csr);
    ca_free(ca);
    leave_tmpdir();
}

static void t_long_identity(void)
{
    struct ca *ca = new_ca();
    struct diag diag = {0};
    char sa[254], cn[CA_CN_MAX + 1], expect[512];
    struct ca_identity id = {"cluster.local", "payments", sa, NULL, NULL};

    memset(sa, 'x', 200);
    memcpy(sa + 100, ".y", 2);
    sa[200] = '\0';
    enter_tmpdir();
    REQUIRE(ca_identity_subject_cn(&id, cn) == 0);
    REQUIRE(sh("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout k.pem "
               "-subj /CN=x -out a.csr") == 0);
    CHECK_INT(issue_file(ca, "a.csr", &id, 0, "leaf.pem", NULL, &diag), 0);
    CHECK_INT(sh("openssl x509 -in leaf.pem -noout -subject -nameopt RFC2253 -ext subjectAltName"),
              0);
    snprintf(expect, sizeof(expect), "subject=CN=%s,OU=payments,O=cluster.local\n", cn);
    CHECK_HAS(out_buf, expect);
    snprintf(expect, sizeof(expect), "URI:spiffe://cluster.local/ns/payments/sa/%s\n", sa);
    CHECK_HAS(out_buf, expect);
    CHECK_INT(cn[35], '~');
    ca_free(ca);
    leave_tmpdir();
}

static void t_key_types(void)
{
    struct ca *ca = new_ca();
    struct diag diag = {0};
    char *key = NULL, *csr = NULL;
    struct ca_leaf leaf = {0};

    enter_tmpdir();
    write_bundle(ca, "bundle.pem");
    /* RSA 2048: accepted, keyEncipherment added */
    REQUIRE(sh("openssl req -new -newkey rsa:2048 -nodes -keyout k.pem -subj /CN=x -out r.csr") ==
            0);
    CHECK_INT(issue_file(ca, "r.csr", &web, 0, "r.pem", NULL, &diag), 0);
    CHECK_INT(sh("openssl verify -CAfile bundle.pem r.pem"), 0);
    CHECK_INT(sh("openssl x509 -in r.pem -noout -ext keyUsage"), 0);
    CHECK_HAS(out_buf, "critical\n    Digital Signature, Key Encipherment\n");
    /* P-384 from the CLI and from ca_csr_new */
    REQUIRE(sh("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -keyout k.pem "
               "-subj /CN=x -sha384 -out e.csr") == 0);
    CHECK_INT(issue_file(ca, "e.csr", &web, 0, "e.pem", NULL, &diag), 0);
    CHECK_INT(sh("openssl verify -CAfile bundle.pem e.pem"), 0);
    REQUIRE(ca_csr_new(CA_KEY_EC_P384, &key, &csr) == 0);
    CHECK_INT(ca_issue(ca, csr, strlen(csr), &web, 0, &leaf, &diag), 0);
    write_str("p.pem", leaf.chain_pem);
    CHECK_INT(sh("openssl x509 -in p.pem -noout -text"), 0);
    CHECK_HAS(out_buf, "ASN1 OID: secp384r1");
    CHECK_INT(ca_csr_new((enum ca_key_type)7, &key, &csr), -EINVAL);
    ca_leaf_release(&leaf);
    ca_key_pem_free(key);
    free(csr);
    ca_free(ca);
    leave_tmpdir();
}

/* ---- refusals ------------------------------------------------------------------------------ */

static void expect_refusal(struct ca *ca, const char *data, size_t n, enum ca_refusal code,
                           const char *text_part, int line)
{
    struct diag diag = {CA_REFUSAL_NONE, ""};
    struct ca_leaf leaf = {0};
    int rc = ca_issue(ca, data, n, &web, 0, &leaf, &diag);

    if (rc != ERR_INVALID || diag.code != (int)code ||
        (text_part && !strstr(diag.text, text_part))) {
        fprintf(stderr, "  line %d: rc %d code %s (\"%s\"), want %s \"%s\"\n", line, rc,
                ca_refusal_str(diag.code), diag.text, ca_refusal_str(code),
                text_part ? text_part : "");
        unit__failures++;
    }
    CHECK(leaf.chain_pem == NULL);
    ca_leaf_release(&leaf);
}

static void expect_refusal_file(struct ca *ca, const char *path, enum ca_refusal code,
                                const char *text_part, int line)
{
    size_t n;
    char *p = read_file(path, &n);

    expect_refusal(ca, p, n, code, text_part, line);
    free(p);
}

#define REFUSED(data, n, code, text) expect_refusal(ca, data, n, code, text, __LINE__)
#define REFUSED_FILE(path, code, text) expect_refusal_file(ca, path, code, text, __LINE__)

static void pem_wrap(const char *der_path, const char *pem_path)
{
    REQUIRE(sh("(echo '-----BEGIN CERTIFICATE REQUEST-----'; openssl base64 -in %s; "
               "echo '-----END CERTIFICATE REQUEST-----') > %s",
               der_path, pem_path) == 0);
}

static void t_csr_refusals(void)
{
    struct ca *ca = new_ca();
    size_t n, big = 1 << 20;
    char *good, *p, *der;

    enter_tmpdir();
    REQUIRE(
        sh("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout k.pem "
           "-subj /CN=x -out good.csr && openssl req -in good.csr -outform DER -out good.der") ==
        0);
    good = read_file("good.csr", &n);
    CHECK_INT(issue_file(ca, "good.csr", &web, 0, NULL, NULL, NULL), 0);

    REFUSED("", 0, CA_REFUSAL_NOT_PEM, NULL);
    REFUSED("hello world", 11, CA_REFUSAL_NOT_PEM, NULL);
    REFUSED_FILE("good.der", CA_REFUSAL_NOT_PEM, "PEM");
    /* truncated: END line missing */
    REFUSED(good, n / 2, CA_REFUSAL_NOT_PEM, NULL);
    /* trailing garbage, two blocks, wrong label */
    p = malloc(2 * n + 16);
    REQUIRE(p != NULL);
    memcpy(p, good, n);
    memcpy(p + n, "junk", 4);
    REFUSED(p, n + 4, CA_REFUSAL_NOT_PEM, NULL);
    memcpy(p + n, good, n);
    REFUSED(p, 2 * n, CA_REFUSAL_NOT_PEM, NULL);
    memcpy(p, good, n);
    memcpy(p + 11, "CERTIFICATE-----", 16); /* -----BEGIN CERTIFICATE----- */
    REFUSED(p, n, CA_REFUSAL_NOT_PEM, NULL);
    /* bad base64 character in the body */
    memcpy(p, good, n);
    p[50] = '*';
    REFUSED(p, n, CA_REFUSAL_NOT_PEM, NULL);
    free(p);
    /* 1 MiB of PEM-looking input */
    p = malloc(big);
    REQUIRE(p != NULL);
    memset(p, 'A', big);
    memcpy(p, good, 36);
    REFUSED(p, big, CA_REFUSAL_TOO_LARGE, NULL);
    free(p);

    /* DER truncated inside a valid PEM envelope */
    der = read_file("good.der", &n);
    write_file("trunc.der", der, n - 10);
    pem_wrap("trunc.der", "trunc.csr");
    REFUSED_FILE("trunc.csr", CA_REFUSAL_MALFORMED, NULL);
    /* trailing byte after the DER */
    write_file("long.der", der, n);
    REQUIRE(sh("printf '\\000' >> long.der") == 0);
    pem_wrap("long.der", "long.csr");
    REFUSED_FILE("long.csr", CA_REFUSAL_MALFORMED, NULL);
    /* bad signature: flip the last byte (inside the signature) */
    der[n - 1] ^= 0x01;
    write_file("badsig.der", der, n);
    pem_wrap("badsig.der", "badsig.csr");
    REFUSED_FILE("badsig.csr", CA_REFUSAL_BAD_SIGNATURE, "signature");
    der[n - 1] ^= 0x01;
    /* signed bytes altered: the subject's "x" becomes "y" */
    p = memchr(der + 10, 'x', n - 10);
    REQUIRE(p != NULL);
    *p = 'y';
    write_file("tamper.der", der, n);
    pem_wrap("tamper.der", "tamper.csr");
    REFUSED_FILE("tamper.csr", CA_REFUSAL_BAD_SIGNATURE, NULL);
    free(der);

    /* weak and unsupported keys */
    REQUIRE(sh("openssl req -new -newkey rsa:1024 -nodes -keyout k.pem -subj /CN=x -out "
               "rsa1024.csr") == 0);
    REFUSED_FILE("rsa1024.csr", CA_REFUSAL_WEAK_KEY, "1024 bits");
    REQUIRE(sh("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:secp256k1 -nodes -keyout "
               "k.pem -subj /CN=x -out k1.csr") == 0);
    REFUSED_FILE("k1.csr", CA_REFUSAL_UNSUPPORTED_KEY, "secp256k1");
    REQUIRE(sh("openssl req -new -newkey ed25519 -nodes -keyout k.pem -subj /CN=x -out "
               "ed.csr") == 0);
    REFUSED_FILE("ed.csr", CA_REFUSAL_UNSUPPORTED_KEY, "ED25519");
    REQUIRE(sh("openssl ecparam -name prime256v1 -param_enc explicit -genkey -noout -out ex.key && "
               "openssl req -new -key ex.key -subj /CN=x -out ex.csr") == 0);
    REFUSED_FILE("ex.csr", CA_REFUSAL_UNSUPPORTED_KEY, "named curve");
    REQUIRE(sh("openssl ecparam -name prime256v1 -genkey -noout -out c1.key && openssl ec -in "
               "c1.key -conv_form compressed -out c2.key && openssl req -new -key c2.key -subj "
               "/CN=x -out comp.csr") == 0);
    REFUSED_FILE("comp.csr", CA_REFUSAL_UNSUPPORTED_KEY, "uncompressed");
    /* weak signature algorithm */
    REQUIRE(sh("openssl req -new -newkey rsa:2048 -nodes -keyout k.pem -subj /CN=x -sha1 -out "
               "sha1.csr") == 0);
    REFUSED_FILE("sha1.csr", CA_REFUSAL_UNSUPPORTED_ALG, "sha1WithRSAEncryption");
    REQUIRE(sh("openssl req -new -newkey rsa:2048 -nodes -keyout k.pem -subj /CN=x -sigopt "
               "rsa_padding_mode:pss -out pss.csr") == 0);
    REFUSED_FILE("pss.csr", CA_REFUSAL_UNSUPPORTED_ALG, NULL);

    free(good);
    ca_free(ca);
    leave_tmpdir();
}

/* DER length octets for n; returns how many were written. */
static size_t der_len(unsigned char *o, size_t n)
{
    if (n < 0x80) {
        o[0] = (unsigned char)n;
        return 1;
    }
    if (n < 0x100) {
        o[0] = 0x81;
        o[1] = (unsigned char)n;
        return 2;
    }
    o[0] = 0x82;
    o[1] = (unsigned char)(n >> 8);
    o[2] = (unsigned char)n;
    return 3;
}

/* Size of the whole TLV at p (definite lengths up to 0x82 only, as in small CSRs). */
static size_t tlv_size(const unsigned char *p)
{
    if (p[1] < 0x80)
        return 2 + (size_t)p[1];
    if (p[1] == 0x81)
        return 3 + (size_t)p[2];
    return 4 + ((size_t)p[2] << 8 | p[3]);
}

/* Re-sign the CertificationRequestInfo of csr_der (optionally with its SubjectPublicKeyInfo
 * old_spki replaced by new_spki) with key_path via the CLI; write the result as PEM. */
static void csr_resign(const char *csr_der, const char *old_spki, const char *new_spki,
                       const char *key_path, const char *out_pem)
{
    static const unsigned char alg[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
                                        0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};
    size_t n, ns = 0, nos = 0, ncri, nsig, off, b = 0, k;
    char *der = read_file(csr_der, &n), *sig, *spki = NULL, *ospki = NULL, *at;
    unsigned char body[4096], out[4096];
    const unsigned char *u = (const unsigned char *)der;

    off = u[1] < 0x80 ? 2 : 2 + (u[1] & 0x7f); /* skip the outer header */
    ncri = tlv_size(u + off);
    REQUIRE(off + ncri < n && ncri + sizeof(alg) + 140 < sizeof(body));
    if (new_spki) {
        spki = read_file(new_spki, &ns);
        ospki = read_file(old_spki, &nos);
        REQUIRE(ns == nos);
        at = memmem(der + off, ncri, ospki, nos);
        REQUIRE(at != NULL);
        memcpy(at, spki, ns);
    }
    write_file("cri.der", der + off, ncri);
    REQUIRE(sh("openssl dgst -sha256 -sign %s -out sig.der cri.der", key_path) == 0);
    sig = read_file("sig.der", &nsig);
    REQUIRE(nsig < 128);
    /* CRI, AlgorithmIdentifier ecdsa-with-SHA256, BIT STRING signature */
    memcpy(body, der + off, ncri);
    b = ncri;
    memcpy(body + b, alg, sizeof(alg));
    b += sizeof(alg);
    body[b++] = 0x03;
    b += der_len(body + b, nsig + 1);
    body[b++] = 0x00;
    memcpy(body + b, sig, nsig);
    b += nsig;
    out[0] = 0x30;
    k = 1 + der_len(out + 1, b);
    memcpy(out + k, body, b);
    write_file("resigned.der", out, k + b);
    pem_wrap("resigned.der", out_pem);
    free(der);
    free(sig);
    free(spki);
    free(ospki);
}

/* Proof of possession: a CSR carrying B's public key but signed with A's key is refused, also
 * after A's key has been seen (the EC key template in csr.c is warm). */
static void t_csr_key_substitution(void)
{
    struct ca *ca = new_ca();
    struct diag diag = {0};

    enter_tmpdir();
    REQUIRE(sh("for k in a b; do openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
               "-nodes -keyout $k.key -subj /CN=$k -out $k.csr && openssl req -in $k.csr "
               "-outform DER -out $k.der && openssl pkey -in $k.key -pubout -outform DER -out "
               "$k.spki; done") == 0);
    CHECK_INT(issue_file(ca, "a.csr", &web, 0, NULL, NULL, &diag), 0);
    /* control: re-signing A's request with A's key through the same path is accepted */
    csr_resign("a.der", NULL, NULL, "a.key", "ctl.csr");
    CHECK_INT(issue_file(ca, "ctl.csr", &web, 0, NULL, NULL, &diag), 0);
    csr_resign("a.der", "a.spki", "b.spki", "a.key", "swap.csr");
    REFUSED_FILE("swap.csr", CA_REFUSAL_BAD_SIGNATURE, NULL);
    /* and B's key signed by B is fine again */
    CHECK_INT(issue_file(ca, "b.csr", &web, 0, NULL, NULL, &diag), 0);
    ca_free(ca);
    leave_tmpdir();
}

/* ---- rotation ------------------------------------------------------------------------------ */

static void t_root_rotation(void)
{
    struct ca *ca = new_ca();
    struct ca_signer *b = NULL, *b2 = NULL;
    struct ca_signer_pem bpem = {0};
    struct diag diag = {0};
    char old_fp[CA_FINGERPRINT_HEX + 1], new_fp[CA_FINGERPRINT_HEX + 1];
    unsigned long gen = ca_bundle_generation(ca);
    size_t added = 99;
    time_t later;

    enter_tmpdir();
    snprintf(old_fp, sizeof(old_fp), "%s", ca_signer_root_fingerprint(ca_signer_get(ca)));
    REQUIRE(sh("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout k.pem "
               "-subj /CN=x -out a.csr") == 0);
    CHECK_INT(issue_file(ca, "a.csr", &web, 0, "old.pem", NULL, &diag), 0);

    REQUIRE(ca_signer_generate_root(fixed_now, &b) == 0);
    REQUIRE(ca_signer_pem_get(b, &bpem) == 0);
    snprintf(new_fp, sizeof(new_fp), "%s", ca_signer_root_fingerprint(b));
    /* switching before the new root is published is refused (and consumes b) */
    CHECK_INT(ca_signer_set(ca, b, &diag), ERR_INVALID);
    CHECK_INT(diag.code, CA_REFUSAL_NOT_IN_BUNDLE);
    CHECK_STR(ca_signer_root_fingerprint(ca_signer_get(ca)), old_fp);

    /* step 1: publish the new root alongside the old */
    CHECK_INT(ca_bundle_add(ca, bpem.ca_crt, strlen(bpem.ca_crt), &added, &diag), 0);
    CHECK_INT(added, 1);
    CHECK_INT(ca_bundle_count(ca), 2);
    CHECK(ca_bundle_generation(ca) == gen + 1);
    CHECK_INT(ca_bundle_add(ca, bpem.ca_crt, strlen(bpem.ca_crt), &added, &diag), 0);
    CHECK_INT(added, 0);
    CHECK(ca_bundle_generation(ca) == gen + 1);

    /* step 2: switch the signer */
    struct ca_signer_input in = {
        bpem.tls_crt, strlen(bpem.tls_crt), bpem.tls_key, strlen(bpem.tls_key), NULL, 0};
    REQUIRE(ca_signer_load(&in, fixed_now, &b2, &diag) == 0);
    CHECK_INT(ca_signer_set(ca, b2, &diag), 0);
    CHECK_STR(ca_signer_root_fingerprint(ca_signer_get(ca)), new_fp);
    CHECK_INT(issue_file(ca, "a.csr", &web, 0, "new.pem", NULL, &diag), 0);

    write_bundle(ca, "both.pem");
    CHECK_INT(sh("grep -c 'BEGIN CERTIFICATE' both.pem"), 0);
    CHECK_STR(out_buf, "2\n");
    CHECK_INT(sh("openssl verify -CAfile both.pem old.pem new.pem"), 0);
    CHECK_STR(out_buf, "old.pem: OK\nnew.pem: OK\n");

    /* step 3: the old root cannot go while its leaf lives; the active root never */
    CHECK_INT(ca_bundle_remove(ca, old_fp, false), -EBUSY);
    CHECK_INT(ca_bundle_remove(ca, new_fp, true), -EBUSY);
    CHECK_INT(ca_bundle_remove(ca, "00", false), ERR_NOTFOUND);
    later = fixed_now + 86400 + 1;
    ca_clock_set(ca, fixed_clock, &later);
    CHECK_INT(ca_bundle_remove(ca, old_fp, false), 0);
    CHECK_INT(ca_bundle_count(ca), 1);
    CHECK(ca_bundle_generation(ca) == gen + 2);
    CHECK_INT(ca_bundle_remove(ca, old_fp, false), ERR_NOTFOUND);
    write_bundle(ca, "new-only.pem");
    CHECK_INT(sh("openssl verify -CAfile new-only.pem new.pem"), 0);
    CHECK_INT(sh("openssl verify -CAfile new-only.pem old.pem"), 2);
    CHECK_HAS(out_buf, "unable to get local issuer certificate");

    ca_signer_pem_release(&bpem);
    ca_free(ca);
    leave_tmpdir();
}

static void t_bundle_add_refusals(void)
{
    struct ca *ca = new_ca();
    struct diag diag = {0};
    struct ca_leaf leaf = {0};
    char *key = NULL, *csr = NULL, *both;
    const char *names[] = {"svc.example"};
    struct ca_signer *r2 = NULL;
    struct ca_signer_pem p2 = {0};
    unsigned long gen = ca_bundle_generation(ca);

    REQUIRE(ca_issue_server(ca, names, 1, NULL, 0, 0, &leaf, &key) == 0);
    REQUIRE(ca_signer_generate_root(fixed_now, &r2) == 0);
    REQUIRE(ca_signer_pem_get(r2, &p2) == 0);
    CHECK_INT(ca_bundle_add(ca, "nope", 4, NULL, &diag), ERR_INVALID);
    CHECK_INT(diag.code, CA_REFUSAL_NOT_PEM);
    CHECK_INT(ca_bundle_add(ca, leaf.chain_pem, leaf.chain_len, NULL, &diag), ERR_INVALID);
    CHECK_INT(diag.code, CA_REFUSAL_NOT_CA);
    /* all or nothing: a good root followed by a leaf adds nothing */
    both = malloc(strlen(p2.ca_crt) + leaf.chain_len + 1);
    REQUIRE(both != NULL);
    strcpy(both, p2.ca_crt);
    strcat(both, leaf.chain_pem);
    CHECK_INT(ca_bundle_add(ca, both, strlen(both), NULL, &diag), ERR_INVALID);
    CHECK_INT(ca_bundle_count(ca), 1);
    CHECK(ca_bundle_generation(ca) == gen);
    free(both);
    ca_leaf_release(&leaf);
    ca_key_pem_free(key);
    free(csr);
    ca_signer_pem_release(&p2);
    ca_signer_free(r2);
    ca_free(ca);
}

/* ---- operator-provided signers ------------------------------------------------------------- */

/* User root (EC P-256) and an RSA-2048 intermediate made with the CLI, valid `days`. */
static void make_user_chain(int days)
{
    REQUIRE(sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "
               "root.key -subj '/O=Example/CN=Example Root' -days 30 -addext "
               "basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign "
               "-out root.pem") == 0);
    write_str("inter.ext", "basicConstraints=critical,CA:TRUE,pathlen:0\n"
                           "keyUsage=critical,keyCertSign,cRLSign\n"
                           "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n");
    REQUIRE(sh("openssl req -new -newkey rsa:2048 -nodes -keyout inter.key -subj "
               "'/O=Example/CN=Example Weft Intermediate' -out inter.csr && openssl x509 -req -in "
               "inter.csr -CA root.pem -CAkey root.key -CAcreateserial -days %d -extfile "
               "inter.ext -out inter.pem",
               days) == 0);
}

static int load_files(const char *crt, const char *key, const char *cafile, time_t now,
                      struct ca_signer **out, struct diag *diag)
{
    struct ca_signer_input in = {0};
    char *c = read_file(crt, &in.crt_len), *k = read_file(key, &in.key_len), *a = NULL;
    int rc;

    if (cafile)
        a = read_file(cafile, &in.ca_len);
    in.crt = c;
    in.key = k;
    in.ca = a;
    rc = ca_signer_load(&in, now, out, diag);
    free(c);
    free(k);
    free(a);
    return rc;
}

static void t_user_intermediate(void)
{
    struct ca_signer *s = NULL;
    struct ca *ca = NULL;
    struct diag diag = {0};
    struct ca_leaf leaf = {0};
    time_t now;

    enter_tmpdir();
    make_user_chain(10);
    now = time(NULL);
    CHECK_INT(load_files("inter.pem", "inter.key", "root.pem", now, &s, &diag), 0);
    REQUIRE(s != NULL);
    CHECK_INT(sh("openssl x509 -in root.pem -noout -fingerprint -sha256 | cut -d= -f2 | "
                 "tr -d ':\\n' | tr A-F a-f"),
              0);
    CHECK_STR(ca_signer_root_fingerprint(s), out_buf);
    REQUIRE(ca_new(s, &ca) == 0);
    write_bundle(ca, "bundle.pem");
    CHECK_INT(sh("cmp bundle.pem root.pem"), 0);
    REQUIRE(sh("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout k.pem "
               "-subj /CN=x -out a.csr") == 0);
    CHECK_INT(issue_file(ca, "a.csr", &web, 0, "chain.pem", &leaf, &diag), 0);
    CHECK_INT(count(leaf.chain_pem, "BEGIN CERTIFICATE"), 2);
    CHECK_INT(sh("openssl verify -CAfile bundle.pem -untrusted chain.pem chain.pem"), 0);
    CHECK_STR(out_buf, "chain.pem: OK\n");
    /* the leaf alone does not verify to the root without the intermediate */
    CHECK_INT(sh("openssl verify -CAfile bundle.pem chain.pem"), 2);
    CHECK_INT(sh("openssl x509 -in chain.pem -noout -text"), 0);
    CHECK_HAS(out_buf, "Signature Algorithm: sha256WithRSAEncryption");
    CHECK_HAS(out_buf, "Issuer: O = Example, CN = Example Weft Intermediate");
    CHECK_HAS(out_buf, "URI:spiffe://cluster.local/ns/default/sa/web");
    /* leaf lifetime never exceeds the intermediate's (10 days) */
    ca_leaf_release(&leaf);
    CHECK_INT(issue_file(ca, "a.csr", &web, 30L * 86400, NULL, &leaf, &diag), 0);
    CHECK_INT(leaf.not_after, ca_signer_not_after(ca_signer_get(ca)));
    CHECK(leaf.not_after < now + 11 * 86400);
    CHECK(leaf.not_after > now + 9 * 86400);
    ca_leaf_release(&leaf);
    /* expired signer: nothing issued */
    fixed_now = now + 11 * 86400;
    ca_clock_set(ca, fixed_clock, &fixed_now);
    CHECK_INT(issue_file(ca, "a.csr", &web, 0, NULL, NULL, &diag), -EKEYEXPIRED);
    ca_free(ca);

    /* root inside tls.crt instead of ca.crt */
    REQUIRE(sh("cat inter.pem root.pem > full.pem") == 0);
    s = NULL;
    CHECK_INT(load_files("full.pem", "inter.key", NULL, now, &s, &diag), 0);
    ca_signer_free(s);
    leave_tmpdir();
}

#define LOAD_REFUSED(crt, key, cafile, now, want)                                                  \
    do {                                                                                           \
        struct ca_signer *unit__s = NULL;                                                          \
        struct diag unit__d = {CA_REFUSAL_NONE, ""};                                               \
        CHECK_INT(load_files(crt, key, cafile, now, &unit__s, &unit__d), ERR_INVALID);             \
        CHECK(unit__s == NULL);                                                                    \
        if (unit__d.code != (want))                                                                \
            fprintf(stderr, "  line %d: got %s (%s)\n", __LINE__, ca_refusal_str(unit__d.code),    \
                    unit__d.text);                                                                 \
        CHECK_INT(unit__d.code, want);                                                             \
    } while (0)

static void t_signer_refusals(void)
{
    struct ca *ca = new_ca();
    struct ca_leaf leaf = {0};
    char *key = NULL;
    const char *names[] = {"svc.example"};
    time_t now;

    enter_tmpdir();
    make_user_chain(10);
    now = time(NULL);
    REQUIRE(
        sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "
           "other.key -subj '/CN=Other Root' -days 30 -addext basicConstraints=critical,CA:TRUE "
           "-out other.pem") == 0);
    LOAD_REFUSED("root.pem", "other.key", NULL, now, CA_REFUSAL_KEY_MISMATCH);
    LOAD_REFUSED("inter.pem", "root.key", "root.pem", now, CA_REFUSAL_KEY_MISMATCH);
    LOAD_REFUSED("inter.pem", "inter.key", NULL, now, CA_REFUSAL_NO_ROOT);
    LOAD_REFUSED("inter.pem", "inter.key", "other.pem", now, CA_REFUSAL_CHAIN_INVALID);
    LOAD_REFUSED("root.pem", "root.key", NULL, now + 31 * 86400, CA_REFUSAL_EXPIRED);
    LOAD_REFUSED("root.pem", "root.key", NULL, now - 86400, CA_REFUSAL_EXPIRED);
    LOAD_REFUSED("inter.pem", "inter.key", "root.pem", now + 15 * 86400, CA_REFUSAL_EXPIRED);
    write_str("garbage.pem", "not a certificate\n");
    LOAD_REFUSED("garbage.pem", "root.key", NULL, now, CA_REFUSAL_NOT_PEM);
    LOAD_REFUSED("root.pem", "garbage.pem", NULL, now, CA_REFUSAL_NOT_PEM);
    REQUIRE(sh("openssl pkey -in root.key -aes256 -passout pass:secret -out enc.key") == 0);
    LOAD_REFUSED("root.pem", "enc.key", NULL, now, CA_REFUSAL_ENCRYPTED_KEY);
    /* not a CA: a serving certificate and its key */
    REQUIRE(ca_issue_server(ca, names, 1, NULL, 0, 0, &leaf, &key) == 0);
    write_str("srv.pem", leaf.chain_pem);
    write_str("srv.key", key);
    write_bundle(ca, "ca.pem");
    LOAD_REFUSED("srv.pem", "srv.key", "ca.pem", now, CA_REFUSAL_NOT_CA);
    /* CA without keyCertSign */
    REQUIRE(sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "
               "nokcs.key -subj '/CN=No KCS' -days 30 -addext basicConstraints=critical,CA:TRUE "
               "-addext keyUsage=critical,digitalSignature -out nokcs.pem") == 0);
    LOAD_REFUSED("nokcs.pem", "nokcs.key", NULL, now, CA_REFUSAL_NOT_CA);
    /* weak RSA root */
    REQUIRE(sh("openssl req -x509 -newkey rsa:1024 -nodes -keyout weak.key -subj '/CN=Weak' "
               "-days 30 -addext basicConstraints=critical,CA:TRUE -out weak.pem") == 0);
    LOAD_REFUSED("weak.pem", "weak.key", NULL, now, CA_REFUSAL_WEAK_KEY);
    ca_leaf_release(&leaf);
    ca_key_pem_free(key);
    ca_free(ca);
    leave_tmpdir();
}

/* ---- serving certificates, key files ------------------------------------------------------- */

static void t_server_cert(void)
{
    struct ca *ca = new_ca();
    struct ca_leaf leaf = {0};
    char *key = NULL;
    const char *dns[] = {"weft-webhook.weft-system.svc",
                         "weft-webhook.weft-system.svc.cluster.local"};
    const char *ips[] = {"127.0.0.1", "::1"};
    const char *bad_ip[] = {"300.1.1.1"};
    const char *bad_dns[] = {"under_score.example"};

    enter_tmpdir();
    CHECK_INT(ca_issue_server(ca, dns, 2, ips, 2, 0, &leaf, &key), 0);
    REQUIRE(key != NULL);
    write_str("srv.pem", leaf.chain_pem);
    write_str("srv.key", key);
    write_bundle(ca, "bundle.pem");
    CHECK_INT(sh("openssl verify -purpose sslserver -CAfile bundle.pem srv.pem"), 0);
    CHECK_INT(sh("openssl x509 -in srv.pem -noout -subject -nameopt RFC2253 -ext "
                 "subjectAltName,extendedKeyUsage"),
              0);
    CHECK_HAS(out_buf, "subject=CN=weft-webhook.weft-system.svc,O=weft\n");
    CHECK_HAS(out_buf, "    DNS:weft-webhook.weft-system.svc, "
                       "DNS:weft-webhook.weft-system.svc.cluster.local, IP Address:127.0.0.1, "
                       "IP Address:0:0:0:0:0:0:0:1\n");
    CHECK_HAS(out_buf, "X509v3 Extended Key Usage: \n    TLS Web Server Authentication\n");
    CHECK_LACKS(out_buf, "Client");
    CHECK_INT(sh("openssl x509 -in srv.pem -noout -checkhost weft-webhook.weft-system.svc "
                 "-checkip 127.0.0.1"),
              0);
    CHECK_HAS(out_buf, "does match certificate");
    CHECK_LACKS(out_buf, "NOT");
    CHECK_INT(sh("openssl x509 -in srv.pem -noout -pubkey > a.pub && openssl pkey -in srv.key "
                 "-pubout > b.pub && cmp a.pub b.pub"),
              0);
    ca_leaf_release(&leaf);
    ca_key_pem_free(key);
    key = NULL;
    CHECK_INT(ca_issue_server(ca, NULL, 0, NULL, 0, 0, &leaf, &key), -EINVAL);
    CHECK_INT(ca_issue_server(ca, dns, 1, bad_ip, 1, 0, &leaf, &key), -EINVAL);
    CHECK_INT(ca_issue_server(ca, bad_dns, 1, NULL, 0, 0, &leaf, &key), -EINVAL);
    CHECK(key == NULL && leaf.chain_pem == NULL);
    ca_free(ca);
    leave_tmpdir();
}

static void t_key_file_write(void)
{
    struct stat st;
    char *back;

    enter_tmpdir();
    umask(0);
    write_str("tls.key", "old");
    REQUIRE(chmod("tls.key", 0644) == 0);
    CHECK_INT(ca_key_file_write("tls.key", "secret\n", 7), 0);
    REQUIRE(stat("tls.key", &st) == 0);
    CHECK_INT(st.st_mode & 0777, 0600);
    back = read_file("tls.key", NULL);
    CHECK_STR(back, "secret\n");
    free(back);
    CHECK_INT(ca_key_file_write("new.key", "x", 1), 0);
    REQUIRE(stat("new.key", &st) == 0);
    CHECK_INT(st.st_mode & 0777, 0600);
    CHECK_INT(ca_key_file_write("missing/dir.key", "x", 1), -ENOENT);
    CHECK_INT(sh("ls | wc -l"), 0);
    CHECK_STR(out_buf, "2\n"); /* no temporary left behind */
    leave_tmpdir();
}

/* ---- threads ------------------------------------------------------------------------------- */

#define MT_THREADS 4
#define MT_PER_THREAD 60

struct mt_arg {
    struct ca *ca;
    char **csrs;
    size_t ncsrs;
    atomic_int *issued;
    int failures;
    char *leaves[MT_PER_THREAD];
};

static void *mt_issue(void *p)
{
    struct mt_arg *a = p;

    for (int i = 0; i < MT_PER_THREAD; i++) {
        const char *csr = a->csrs[(size_t)i % a->ncsrs];
        struct ca_leaf leaf;

        if (ca_issue(a->ca, csr, strlen(csr), &web, 0, &leaf, NULL) != 0) {
            a->failures++;
            continue;
        }
        a->leaves[i] = leaf.chain_pem; /* taken over */
        atomic_fetch_add(a->issued, 1);
    }
    OPENSSL_thread_stop();
    return NULL;
}

/* Which of the two roots signed pem: 0 (a), 1 (b), -1 (neither, or a broken certificate). The
 * issuer name must be that root's subject: a leaf is issued entirely by one signer. */
static int signed_by(const char *pem, X509 *ra, X509 *rb)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    int who = -1;

    if (x && X509_verify(x, X509_get0_pubkey(ra)) == 1 &&
        X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(ra)) == 0)
        who = 0;
    else if (x && X509_verify(x, X509_get0_pubkey(rb)) == 1 &&
             X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(rb)) == 0)
        who = 1;
    X509_free(x);
    BIO_free(b);
    return who;
}

static X509 *pem_x509(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;

    BIO_free(b);
    REQUIRE(x != NULL);
    return x;
}

/* Issuers on several threads share one struct ca while the owner rotates the signer under
 * them: every issuance succeeds, every leaf comes whole from one of the two roots, both roots
 * are used, and the live-leaf record written by the issuers keeps the old root in the bundle. */
static void t_concurrent_issue(void)
{
    struct ca *ca = new_ca();
    struct ca_signer *b = NULL;
    struct ca_signer_pem apem = {0}, bpem = {0};
    struct diag diag = {0};
    struct mt_arg args[MT_THREADS];
    pthread_t th[MT_THREADS];
    char *csrs[8], old_fp[CA_FINGERPRINT_HEX + 1];
    atomic_int issued = 0;
    int count[2] = {0, 0};
    X509 *ra, *rb;

    for (size_t i = 0; i < ARRAY_LEN(csrs); i++) {
        char *key = NULL;

        REQUIRE(ca_csr_new(i % 2 ? CA_KEY_EC_P384 : CA_KEY_EC_P256, &key, &csrs[i]) == 0);
        ca_key_pem_free(key);
    }
    REQUIRE(ca_signer_pem_get(ca_signer_get(ca), &apem) == 0);
    snprintf(old_fp, sizeof(old_fp), "%s", ca_signer_root_fingerprint(ca_signer_get(ca)));
    REQUIRE(ca_signer_generate_root(fixed_now, &b) == 0);
    REQUIRE(ca_signer_pem_get(b, &bpem) == 0);
    ra = pem_x509(apem.ca_crt);
    rb = pem_x509(bpem.ca_crt);

    for (int t = 0; t < MT_THREADS; t++) {
        args[t] =
            (struct mt_arg){.ca = ca, .csrs = csrs, .ncsrs = ARRAY_LEN(csrs), .issued = &issued};
        REQUIRE(pthread_create(&th[t], NULL, mt_issue, &args[t]) == 0);
    }
    /* rotate while they issue: add the new root, then switch */
    while (atomic_load(&issued) < MT_THREADS * MT_PER_THREAD / 4)
        sched_yield();
    CHECK_INT(ca_bundle_add(ca, bpem.ca_crt, strlen(bpem.ca_crt), NULL, &diag), 0);
    CHECK_INT(ca_signer_set(ca, b, &diag), 0);
    for (int t = 0; t < MT_THREADS; t++)
        pthread_join(th[t], NULL);

    for (int t = 0; t < MT_THREADS; t++) {
        CHECK_INT(args[t].failures, 0);
        for (int i = 0; i < MT_PER_THREAD; i++) {
            int who = args[t].leaves[i] ? signed_by(args[t].leaves[i], ra, rb) : -1;

            CHECK(who >= 0);
            if (who >= 0)
                count[who]++;
            free(args[t].leaves[i]);
        }
    }
    CHECK_INT(count[0] + count[1], MT_THREADS * MT_PER_THREAD);
    CHECK(count[0] >= MT_THREADS * MT_PER_THREAD / 4);
    CHECK(count[1] > 0);
    /* leaves under the old root are live: not removable without force */
    CHECK_INT(ca_bundle_remove(ca, old_fp, false), -EBUSY);
    CHECK_INT(ca_bundle_count(ca), 2);

    X509_free(ra);
    X509_free(rb);
    for (size_t i = 0; i < ARRAY_LEN(csrs); i++)
        free(csrs[i]);
    ca_signer_pem_release(&apem);
    ca_signer_pem_release(&bpem);
    ca_free(ca);
}

UNIT_MAIN(UNIT(t_identity_strings), UNIT(t_root_generate), UNIT(t_issue_verifies),
          UNIT(t_identity_from_caller_only), UNIT(t_pod_extension), UNIT(t_long_identity),
          UNIT(t_key_types), UNIT(t_csr_refusals), UNIT(t_csr_key_substitution),
          UNIT(t_root_rotation), UNIT(t_bundle_add_refusals), UNIT(t_user_intermediate),
          UNIT(t_signer_refusals), UNIT(t_server_cert), UNIT(t_key_file_write),
          UNIT(t_concurrent_issue))
