/*
 * issue.c - identities and leaf issuance.
 *
 * Certificates are assembled at the DER level from the signer's precomputed template: no
 * X509 object, no OpenSSL encoder, no per-leaf fetch. Every field is written here, from the
 * identity only; the CSR contributes nothing but its (validated) public key.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "ca/ca_int.h"

/* DER of attribute and extension OIDs (tag and length included) */
static const unsigned char oid_cn[] = {0x06, 0x03, 0x55, 0x04, 0x03};
static const unsigned char oid_o[] = {0x06, 0x03, 0x55, 0x04, 0x0a};
static const unsigned char oid_ou[] = {0x06, 0x03, 0x55, 0x04, 0x0b};
static const unsigned char oid_bc[] = {0x06, 0x03, 0x55, 0x1d, 0x13};
static const unsigned char oid_ku[] = {0x06, 0x03, 0x55, 0x1d, 0x0f};
static const unsigned char oid_eku[] = {0x06, 0x03, 0x55, 0x1d, 0x25};
static const unsigned char oid_skid[] = {0x06, 0x03, 0x55, 0x1d, 0x0e};
static const unsigned char oid_akid[] = {0x06, 0x03, 0x55, 0x1d, 0x23};
static const unsigned char oid_san[] = {0x06, 0x03, 0x55, 0x1d, 0x11};
/* CA_POD_EXT_OID, DER */
static const unsigned char oid_pod[] = {0x06, 0x13, 0x69, 0x92, 0xa0, 0xd1, 0xb9,
                                        0x86, 0xdd, 0x8a, 0x9c, 0xcd, 0x9f, 0xb5,
                                        0x81, 0x8d, 0x80, 0xef, 0xb1, 0xc0, 0x65};
static const unsigned char eku_server[] = {0x06, 0x08, 0x2b, 0x06, 0x01,
                                           0x05, 0x05, 0x07, 0x03, 0x01};
static const unsigned char eku_client[] = {0x06, 0x08, 0x2b, 0x06, 0x01,
                                           0x05, 0x05, 0x07, 0x03, 0x02};

/* ---- identities ---------------------------------------------------------------------------- */

static bool lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool dns_label_ok(const char *s, size_t n)
{
    if (n == 0 || !lower_alnum(s[0]) || !lower_alnum(s[n - 1]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!lower_alnum(s[i]) && s[i] != '-')
            return false;
    return true;
}

/* Kubernetes IsDNS1123Subdomain: dot-separated DNS-1123 labels, at most 253 bytes. */
static bool dns_subdomain_ok(const char *s)
{
    size_t n = strlen(s), start = 0;

    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '.') {
            if (!dns_label_ok(s + start, i - start))
                return false;
            start = i + 1;
        }
    }
    return true;
}

int ca__identity_check(const struct ca_identity *id)
{
    size_t n;

    if (!id || !id->trust_domain || !id->namespace_ || !id->serviceaccount)
        return -EINVAL;
    n = strlen(id->trust_domain);
    if (n == 0 || n > CA_CN_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        char c = id->trust_domain[i];

        if (!lower_alnum(c) && c != '.' && c != '-' && c != '_')
            return -EINVAL;
    }
    n = strlen(id->namespace_);
    if (n > 63 || !dns_label_ok(id->namespace_, n))
        return -EINVAL;
    if (!dns_subdomain_ok(id->serviceaccount))
        return -EINVAL;
    if (!id->pod_name != !id->pod_uid)
        return -EINVAL;
    if (id->pod_name) {
        n = strlen(id->pod_uid);
        if (!dns_subdomain_ok(id->pod_name) || n == 0 || n > CA_POD_UID_MAX)
            return -EINVAL;
        for (size_t i = 0; i < n; i++) {
            char c = id->pod_uid[i];

            if (!lower_alnum(c) && !(c >= 'A' && c <= 'Z') && c != '-')
                return -EINVAL;
        }
    }
    return 0;
}

int ca_identity_spiffe_id(const struct ca_identity *id, char out[CA_SPIFFE_ID_MAX + 1])
{
    if (ca__identity_check(id) < 0)
        return -EINVAL;
    snprintf(out, CA_SPIFFE_ID_MAX + 1, "spiffe://%s/ns/%s/sa/%s", id->trust_domain, id->namespace_,
             id->serviceaccount);
    return 0;
}

#define CN_PREFIX 35
#define CN_HASH_HEX 28

int ca_identity_subject_cn(const struct ca_identity *id, char out[CA_CN_MAX + 1])
{
    char full[256 + 64 + 64 + 3], spiffe[CA_SPIFFE_ID_MAX + 1], hex[2 * SHA256_DIGEST_LENGTH + 1];
    unsigned char md[SHA256_DIGEST_LENGTH];
    int n;

    if (ca_identity_spiffe_id(id, spiffe) < 0)
        return -EINVAL;
    n = snprintf(full, sizeof(full), "%s.%s.%s", id->serviceaccount, id->namespace_,
                 id->trust_domain);
    if (n <= CA_CN_MAX) {
        memcpy(out, full, (size_t)n + 1);
        return 0;
    }
    /* '~' never occurs in a name, so hashed and plain forms cannot collide */
    SHA256((const unsigned char *)spiffe, strlen(spiffe), md);
    ca__hex(md, sizeof(md), hex);
    memcpy(out, full, CN_PREFIX);
    out[CN_PREFIX] = '~';
    memcpy(out + CN_PREFIX + 1, hex, CN_HASH_HEX);
    out[CA_CN_MAX] = '\0';
    return 0;
}

/* ---- DER building -------------------------------------------------------------------------- */

struct tbs_params {
    const unsigned char *spki;
    size_t spki_len;
    const unsigned char *skid; /* 20 bytes */
    bool key_encipherment;
    bool client_auth;
    const char *o, *ou, *cn;  /* NULL: attribute omitted */
    const unsigned char *san; /* GeneralNames contents */
    size_t san_len;
    const char *pod_ns, *pod_name, *pod_uid; /* the pod extension; NULL: none */
    time_t nb, na;
};

static void rdn(struct ca__der *d, const unsigned char *oid, size_t oid_len, const char *v)
{
    size_t set, seq;

    if (!v)
        return;
    set = ca__der_begin(d, 0x31);
    seq = ca__der_begin(d, 0x30);
    ca__der_raw(d, oid, oid_len);
    ca__der_tlv(d, 0x0c, v, strlen(v));
    ca__der_end(d, seq);
    ca__der_end(d, set);
}

static size_t ext_begin(struct ca__der *d, const unsigned char *oid, size_t oid_len, bool crit,
                        size_t *oct)
{
    static const unsigned char critical[] = {0x01, 0x01, 0xff};
    size_t m = ca__der_begin(d, 0x30);

    ca__der_raw(d, oid, oid_len);
    if (crit)
        ca__der_raw(d, critical, sizeof(critical));
    *oct = ca__der_begin(d, 0x04);
    return m;
}

static void ext_end(struct ca__der *d, size_t m, size_t oct)
{
    ca__der_end(d, oct);
    ca__der_end(d, m);
}

static int build_tbs(const struct ca_signer *s, const struct tbs_params *p, struct ca__der *d)
{
    static const unsigned char v3[] = {0xa0, 0x03, 0x02, 0x01, 0x02};
    static const unsigned char bc_leaf[] = {0x30, 0x00};
    static const unsigned char ku_ds[] = {0x03, 0x02, 0x07, 0x80};
    static const unsigned char ku_ds_ke[] = {0x03, 0x02, 0x05, 0xa0};
    unsigned char serial[16];
    size_t tbs, m, oct, seq, exts;

    if (RAND_bytes(serial, sizeof(serial)) != 1) {
        ERR_clear_error();
        return -EIO;
    }
    tbs = ca__der_begin(d, 0x30);
    ca__der_raw(d, v3, sizeof(v3));
    ca__der_uint(d, serial, sizeof(serial));
    ca__der_raw(d, s->sigalg, s->sigalg_len);
    ca__der_raw(d, s->issuer, s->issuer_len);
    m = ca__der_begin(d, 0x30);
    ca__der_time(d, p->nb);
    ca__der_time(d, p->na);
    ca__der_end(d, m);
    m = ca__der_begin(d, 0x30);
    rdn(d, oid_o, sizeof(oid_o), p->o);
    rdn(d, oid_ou, sizeof(oid_ou), p->ou);
    rdn(d, oid_cn, sizeof(oid_cn), p->cn);
    ca__der_end(d, m);
    ca__der_raw(d, p->spki, p->spki_len);

    exts = ca__der_begin(d, 0xa3);
    seq = ca__der_begin(d, 0x30);
    m = ext_begin(d, oid_ku, sizeof(oid_ku), true, &oct);
    if (p->key_encipherment)
        ca__der_raw(d, ku_ds_ke, sizeof(ku_ds_ke));
    else
        ca__der_raw(d, ku_ds, sizeof(ku_ds));
    ext_end(d, m, oct);
    m = ext_begin(d, oid_eku, sizeof(oid_eku), false, &oct);
    {
        size_t l = ca__der_begin(d, 0x30);

        ca__der_raw(d, eku_server, sizeof(eku_server));
        if (p->client_auth)
            ca__der_raw(d, eku_client, sizeof(eku_client));
        ca__der_end(d, l);
    }
    ext_end(d, m, oct);
    m = ext_begin(d, oid_bc, sizeof(oid_bc), true, &oct);
    ca__der_raw(d, bc_leaf, sizeof(bc_leaf));
    ext_end(d, m, oct);
    m = ext_begin(d, oid_skid, sizeof(oid_skid), false, &oct);
    ca__der_tlv(d, 0x04, p->skid, SHA_DIGEST_LENGTH);
    ext_end(d, m, oct);
    m = ext_begin(d, oid_akid, sizeof(oid_akid), false, &oct);
    {
        size_t l = ca__der_begin(d, 0x30);

        ca__der_tlv(d, 0x80, s->akid, s->akid_len);
        ca__der_end(d, l);
    }
    ext_end(d, m, oct);
    /* SAN is critical only when the subject is empty (RFC 5280 4.2.1.6) */
    m = ext_begin(d, oid_san, sizeof(oid_san), !p->o && !p->ou && !p->cn, &oct);
    ca__der_tlv(d, 0x30, p->san, p->san_len);
    ext_end(d, m, oct);
    if (p->pod_name) {
        size_t l;

        m = ext_begin(d, oid_pod, sizeof(oid_pod), false, &oct);
        l = ca__der_begin(d, 0x30);
        ca__der_tlv(d, 0x0c, p->pod_ns, strlen(p->pod_ns));
        ca__der_tlv(d, 0x0c, p->pod_name, strlen(p->pod_name));
        ca__der_tlv(d, 0x0c, p->pod_uid, strlen(p->pod_uid));
        ca__der_end(d, l);
        ext_end(d, m, oct);
    }
    ca__der_end(d, seq);
    ca__der_end(d, exts);
    ca__der_end(d, tbs);
    return d->err;
}

/* Validity for a leaf issued now with ttl. Returns 0, -EINVAL, -EKEYEXPIRED. */
static int leaf_validity(const struct ca *ca, long ttl, time_t *nb, time_t *na)
{
    const struct ca_signer *s = ca->signer;
    time_t now = ca__now(ca), back;

    if (ttl == 0)
        ttl = CA_TTL_DEFAULT;
    if (ttl < CA_TTL_MIN || ttl > CA_TTL_MAX)
        return -EINVAL;
    if (now >= s->not_after || now < s->not_before)
        return -EKEYEXPIRED;
    /* A fixed 60 s backdate would put a 60 s certificate's half-life at the moment of issue. */
    back = CA_LEAF_BACKDATE(ttl);
    *nb = now - back < s->not_before ? s->not_before : now - back;
    *na = now + ttl > s->not_after ? s->not_after : now + ttl;
    return 0;
}

int ca__finish(struct ca *ca, struct ca__der *tbs, time_t nb, time_t na, struct ca_leaf *out)
{
    const struct ca_signer *s = ca->signer;
    unsigned char dgst[SHA384_DIGEST_LENGTH], sig[1 + 1100], fp[SHA256_DIGEST_LENGTH];
    size_t dlen, siglen = sizeof(sig) - 1, m;
    struct ca__der cert, pem;
    EVP_PKEY_CTX *sign = NULL;
    int rc = -EIO;

    ca__der_init(&cert);
    ca__der_init(&pem);
    if (s->md_bits == 384) {
        SHA384(tbs->p, tbs->len, dgst);
        dlen = SHA384_DIGEST_LENGTH;
    } else {
        SHA256(tbs->p, tbs->len, dgst);
        dlen = SHA256_DIGEST_LENGTH;
    }
    sig[0] = 0; /* BIT STRING: no unused bits */
    /* A copy of the prepared context (about 1 us; a fresh one costs 7 us of fetches): one
     * EVP_PKEY_CTX must not sign on two threads at once. */
    sign = EVP_PKEY_CTX_dup(s->sign);
    if (!sign || EVP_PKEY_sign(sign, sig + 1, &siglen, dgst, dlen) <= 0) {
        ERR_clear_error();
        goto out;
    }
    m = ca__der_begin(&cert, 0x30);
    ca__der_raw(&cert, tbs->p, tbs->len);
    ca__der_raw(&cert, s->sigalg, s->sigalg_len);
    ca__der_tlv(&cert, 0x03, sig, siglen + 1);
    ca__der_end(&cert, m);
    if (cert.err) {
        rc = cert.err;
        goto out;
    }
    SHA256(cert.p, cert.len, fp);
    ca__pem_append(&pem, "CERTIFICATE", cert.p, cert.len);
    ca__der_raw(&pem, s->chain_pem, s->chain_pem_len + 1);
    if (pem.err) {
        rc = pem.err;
        goto out;
    }
    out->chain_pem = (char *)pem.p;
    out->chain_len = pem.len - 1;
    out->not_before = nb;
    out->not_after = na;
    ca__hex(fp, sizeof(fp), out->fingerprint);
    pem.p = NULL;
    ca__note_leaf(ca, na);
    rc = 0;
out:
    EVP_PKEY_CTX_free(sign);
    ca__der_release(&cert);
    ca__der_release(&pem);
    return rc;
}

void ca_leaf_release(struct ca_leaf *leaf)
{
    if (!leaf)
        return;
    free(leaf->chain_pem);
    memset(leaf, 0, sizeof(*leaf));
}

int ca_issue_csr(struct ca *ca, const struct ca_csr *csr, const struct ca_identity *id,
                 long ttl_seconds, struct ca_leaf *out)
{
    char cn[CA_CN_MAX + 1], spiffe[CA_SPIFFE_ID_MAX + 1];
    struct tbs_params p;
    struct ca__der tbs, san;
    int rc;

    if (!csr || ca_identity_subject_cn(id, cn) < 0 || ca_identity_spiffe_id(id, spiffe) < 0)
        return -EINVAL;
    memset(&p, 0, sizeof(p));
    ca__der_init(&tbs);
    ca__der_init(&san);
    pthread_rwlock_rdlock(&ca->lock); /* one signer for the whole leaf (see ca_int.h) */
    rc = leaf_validity(ca, ttl_seconds, &p.nb, &p.na);
    if (rc < 0)
        goto out;
    p.spki = csr->spki;
    p.spki_len = csr->spki_len;
    p.skid = csr->skid;
    p.key_encipherment = csr->kind == CA__KEY_RSA;
    p.client_auth = true;
    p.o = id->trust_domain;
    p.ou = id->namespace_;
    p.cn = cn;
    if (id->pod_name) {
        p.pod_ns = id->namespace_;
        p.pod_name = id->pod_name;
        p.pod_uid = id->pod_uid;
    }

    /* GeneralNames contents: one uniformResourceIdentifier [6] */
    ca__der_tlv(&san, 0x86, spiffe, strlen(spiffe));
    p.san = san.p;
    p.san_len = san.len;
    rc = san.err ? san.err : build_tbs(ca->signer, &p, &tbs);
    if (rc == 0)
        rc = ca__finish(ca, &tbs, p.nb, p.na, out);
out:
    pthread_rwlock_unlock(&ca->lock);
    ca__der_release(&san);
    ca__der_release(&tbs);
    return rc;
}

int ca_issue(struct ca *ca, const char *csr_pem, size_t len, const struct ca_identity *id,
             long ttl_seconds, struct ca_leaf *out, struct diag *diag)
{
    struct ca_csr *csr = NULL;
    int rc;

    rc = ca__identity_check(id);
    if (rc < 0)
        return rc;
    rc = ca_csr_parse(ca, csr_pem, len, &csr, diag);
    if (rc < 0)
        return rc;
    rc = ca_issue_csr(ca, csr, id, ttl_seconds, out);
    ca_csr_free(csr);
    return rc;
}

/* ---- serving certificates ------------------------------------------------------------------ */

static bool dns_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];

        if (!lower_alnum(c) && !(c >= 'A' && c <= 'Z') && c != '-' && c != '.' &&
            !(c == '*' && i == 0 && n > 2 && s[1] == '.'))
            return false;
    }
    return true;
}

int ca_issue_server(struct ca *ca, const char *const *dns, size_t ndns, const char *const *ips,
                    size_t nips, long ttl_seconds, struct ca_leaf *out, char **key_pem)
{
    EVP_PKEY *key = NULL;
    unsigned char *spki = NULL, skid[SHA_DIGEST_LENGTH];
    struct ca__der san, tbs;
    struct tbs_params p;
    struct ca__rd r, body, bits;
    struct ca_leaf leaf;
    char *kp = NULL;
    int n, rc;

    if (ndns + nips == 0 || (ndns && !dns) || (nips && !ips))
        return -EINVAL;
    ca__der_init(&san);
    ca__der_init(&tbs);
    memset(&p, 0, sizeof(p));
    for (size_t i = 0; i < ndns; i++) {
        if (!dns_name_ok(dns[i])) {
            rc = -EINVAL;
            goto out;
        }
        ca__der_tlv(&san, 0x82, dns[i], strlen(dns[i]));
    }
    for (size_t i = 0; i < nips; i++) {
        unsigned char a[16];

        if (ips[i] && inet_pton(AF_INET, ips[i], a) == 1) {
            ca__der_tlv(&san, 0x87, a, 4);
        } else if (ips[i] && inet_pton(AF_INET6, ips[i], a) == 1) {
            ca__der_tlv(&san, 0x87, a, 16);
        } else {
            rc = -EINVAL;
            goto out;
        }
    }
    rc = san.err;
    if (rc < 0)
        goto out;

    rc = -EIO;
    key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"); /* slow: before taking the lock */
    if (!key || (n = i2d_PUBKEY(key, &spki)) <= 0)
        goto out;
    r.p = spki;
    r.len = (size_t)n;
    if (ca__rd_next(&r, 0x30, &body, NULL) < 0 || ca__rd_next(&body, 0x30, NULL, NULL) < 0 ||
        ca__rd_next(&body, 0x03, &bits, NULL) < 0 || bits.len < 2)
        goto out;
    SHA1(bits.p + 1, bits.len - 1, skid);

    p.spki = spki;
    p.spki_len = (size_t)n;
    p.skid = skid;
    p.o = "weft";
    p.cn = ndns && strlen(dns[0]) <= CA_CN_MAX ? dns[0] : NULL;
    p.san = san.p;
    p.san_len = san.len;
    rc = ca__key_pem(key, &kp);
    if (rc < 0)
        goto out;
    pthread_rwlock_rdlock(&ca->lock);
    rc = leaf_validity(ca, ttl_seconds, &p.nb, &p.na);
    if (rc == 0)
        rc = build_tbs(ca->signer, &p, &tbs);
    if (rc == 0)
        rc = ca__finish(ca, &tbs, p.nb, p.na, &leaf);
    pthread_rwlock_unlock(&ca->lock);
    if (rc < 0)
        goto out;
    *out = leaf;
    *key_pem = kp;
    kp = NULL;
out:
    ca_key_pem_free(kp);
    OPENSSL_free(spki);
    EVP_PKEY_free(key);
    ca__der_release(&san);
    ca__der_release(&tbs);
    ERR_clear_error();
    return rc;
}
