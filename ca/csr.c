/*
 * csr.c - PKCS#10 requests: strict parsing and proof-of-possession check on the CA side, key
 * and CSR generation on the agent side.
 *
 * The CA parses CSRs with its own strict DER reader instead of d2i_X509_REQ(): it needs only
 * the signed bytes, the key and the signature, and it must never act on anything else in the
 * request. The key is handed to OpenSSL only for the signature check.
 *
 * EC signatures (nearly every CSR) are checked with OpenSSL's EC_KEY/ECDSA_verify API, which
 * OpenSSL 3 deprecates but still ships: it runs the same ECDSA verification as the provider
 * path (ECDSA_verify is what the provider calls, strict DER check of the signature included)
 * without the provider framework around it, and lets every CSR key start from a copy of a
 * curve built once in ca_new() instead of building the curve (Montgomery setup) per key. That
 * is about 14 us of a 76 us check. The deprecation warnings are silenced for this file only.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include "ca/ca_int.h"

#define RSA_MAX_BITS 8192

/* OID contents (after tag and length) */
static const unsigned char oid_rsa[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01};
static const unsigned char oid_ecdsa_sha[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03};
static const unsigned char oid_rsa_sha[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01};

static bool rd_eq(const struct ca__rd *r, const unsigned char *p, size_t n)
{
    return r->len == n && memcmp(r->p, p, n) == 0;
}

/* Human name of an OID (contents only), for refusal texts. */
static void oid_name(const struct ca__rd *oid, char *out, size_t n)
{
    unsigned char der[80];
    const unsigned char *p = der;
    ASN1_OBJECT *o = NULL;

    snprintf(out, n, "unknown");
    if (oid->len + 2 > sizeof(der))
        return;
    der[0] = 0x06;
    der[1] = (unsigned char)oid->len;
    memcpy(der + 2, oid->p, oid->len);
    o = d2i_ASN1_OBJECT(NULL, &p, (long)(oid->len + 2));
    if (o)
        OBJ_obj2txt(out, (int)n, o, 0);
    ASN1_OBJECT_free(o);
    ERR_clear_error();
}

void ca_csr_free(struct ca_csr *csr)
{
    if (!csr)
        return;
    free(csr->spki);
    free(csr);
}

/* A CSR's key: EC keys as EC_KEY (verified with ECDSA_verify), RSA keys as EVP_PKEY. */
struct csr_key {
    EC_KEY *ec;
    EVP_PKEY *rsa;
};

static void csr_key_release(struct csr_key *k)
{
    EC_KEY_free(k->ec);
    EVP_PKEY_free(k->rsa);
}

/* Import an uncompressed EC point on the curve ca->ec_group[idx]. The group is only read (a
 * copy goes into the key), so concurrent parses are safe. EC_KEY_oct2key refuses points that
 * are not on the curve. Returns 0 or -1. */
static int ec_key_import(const struct ca *ca, int idx, const struct ca__rd *point, EC_KEY **out)
{
    EC_KEY *k = EC_KEY_new();

    if (!k || EC_KEY_set_group(k, ca->ec_group[idx]) != 1 ||
        EC_KEY_oct2key(k, point->p, point->len, NULL) != 1) {
        EC_KEY_free(k);
        return -1;
    }
    *out = k;
    return 0;
}

/* Check the SubjectPublicKeyInfo and import the key. Returns 0, ERR_INVALID (+diag), -ENOMEM. */
static int spki_accept(const struct ca *ca, const struct ca__rd *spki, struct ca_csr *csr,
                       struct csr_key *key, struct diag *diag)
{
    struct ca__rd r = *spki, body, algid, oid, bits, param;
    char name[64];
    BIGNUM *e = NULL;
    int rc;

    if (ca__rd_next(&r, 0x30, &body, NULL) < 0 || r.len ||
        ca__rd_next(&body, 0x30, &algid, NULL) < 0 || ca__rd_next(&body, 0x03, &bits, NULL) < 0 ||
        body.len || ca__rd_next(&algid, 0x06, &oid, NULL) < 0 || bits.len < 2 || bits.p[0] != 0)
        return ca__refuse(diag, CA_REFUSAL_MALFORMED, "malformed SubjectPublicKeyInfo");
    bits.p++, bits.len--;

    if (rd_eq(&oid, ca__oid_ec_pub + 2, sizeof(ca__oid_ec_pub) - 2)) {
        const char *group;
        size_t plen;
        int idx;

        if (ca__rd_next(&algid, 0x06, &param, NULL) < 0 || algid.len)
            return ca__refuse(diag, CA_REFUSAL_UNSUPPORTED_KEY,
                              "EC key without a named curve is not accepted");
        if (rd_eq(&param, ca__oid_p256 + 2, sizeof(ca__oid_p256) - 2)) {
            group = "P-256";
            plen = 65;
            idx = 0;
        } else if (rd_eq(&param, ca__oid_p384 + 2, sizeof(ca__oid_p384) - 2)) {
            group = "P-384";
            plen = 97;
            idx = 1;
        } else {
            oid_name(&param, name, sizeof(name));
            return ca__refuse(diag, CA_REFUSAL_UNSUPPORTED_KEY,
                              "EC curve %s is not accepted (P-256 or P-384 only)", name);
        }
        if (bits.len != plen || bits.p[0] != 0x04)
            return ca__refuse(diag, CA_REFUSAL_UNSUPPORTED_KEY,
                              "EC public key must be an uncompressed %s point", group);
        if (ec_key_import(ca, idx, &bits, &key->ec) < 0) {
            ERR_clear_error();
            return ca__refuse(diag, CA_REFUSAL_MALFORMED, "EC public key is not on the curve");
        }
        csr->kind = CA__KEY_EC;
    } else if (rd_eq(&oid, oid_rsa, sizeof(oid_rsa))) {
        const unsigned char *p = spki->p;
        int nbits;

        if (!(algid.len == 0 || (algid.len == 2 && algid.p[0] == 0x05 && algid.p[1] == 0)))
            return ca__refuse(diag, CA_REFUSAL_MALFORMED, "RSA key parameters must be NULL");
        key->rsa = d2i_PUBKEY(NULL, &p, (long)spki->len);
        if (!key->rsa || p != spki->p + spki->len) {
            ERR_clear_error();
            return ca__refuse(diag, CA_REFUSAL_MALFORMED, "malformed RSA public key");
        }
        nbits = EVP_PKEY_get_bits(key->rsa);
        if (nbits < 2048)
            return ca__refuse(diag, CA_REFUSAL_WEAK_KEY, "RSA key has %d bits (minimum 2048)",
                              nbits);
        if (nbits > RSA_MAX_BITS)
            return ca__refuse(diag, CA_REFUSAL_UNSUPPORTED_KEY, "RSA key has %d bits (maximum %d)",
                              nbits, RSA_MAX_BITS);
        if (!EVP_PKEY_get_bn_param(key->rsa, OSSL_PKEY_PARAM_RSA_E, &e)) {
            ERR_clear_error();
            return -ENOMEM;
        }
        rc = BN_is_odd(e) && BN_get_word(e) != 1 ? 0 : -1;
        BN_free(e);
        if (rc < 0)
            return ca__refuse(diag, CA_REFUSAL_WEAK_KEY, "RSA public exponent is unusable");
        csr->kind = CA__KEY_RSA;
    } else {
        oid_name(&oid, name, sizeof(name));
        return ca__refuse(diag, CA_REFUSAL_UNSUPPORTED_KEY,
                          "key algorithm %s is not accepted (EC P-256/P-384 or RSA only)", name);
    }
    SHA1(bits.p, bits.len, csr->skid);
    csr->spki = malloc(spki->len);
    if (!csr->spki)
        return -ENOMEM;
    memcpy(csr->spki, spki->p, spki->len);
    csr->spki_len = spki->len;
    return 0;
}

/* Signature algorithm accepted for this key kind: sets *md. */
static int sigalg_accept(const struct ca__rd *algid_in, enum ca__key_kind kind, const EVP_MD **md,
                         struct diag *diag)
{
    struct ca__rd algid = *algid_in, oid;
    char name[64];
    unsigned last;

    if (ca__rd_next(&algid, 0x06, &oid, NULL) < 0)
        return ca__refuse(diag, CA_REFUSAL_MALFORMED, "malformed signature algorithm");
    if (oid.len == sizeof(oid_ecdsa_sha) + 1 &&
        !memcmp(oid.p, oid_ecdsa_sha, sizeof(oid_ecdsa_sha)) && kind == CA__KEY_EC &&
        algid.len == 0) {
        last = oid.p[oid.len - 1];
        *md = last == 2 ? EVP_sha256() : last == 3 ? EVP_sha384() : last == 4 ? EVP_sha512() : NULL;
    } else if (oid.len == sizeof(oid_rsa_sha) + 1 &&
               !memcmp(oid.p, oid_rsa_sha, sizeof(oid_rsa_sha)) && kind == CA__KEY_RSA &&
               (algid.len == 0 || (algid.len == 2 && algid.p[0] == 0x05 && algid.p[1] == 0x00))) {
        last = oid.p[oid.len - 1];
        *md = last == 11   ? EVP_sha256()
              : last == 12 ? EVP_sha384()
              : last == 13 ? EVP_sha512()
                           : NULL;
    } else {
        *md = NULL;
    }
    if (!*md) {
        oid_name(&oid, name, sizeof(name));
        return ca__refuse(diag, CA_REFUSAL_UNSUPPORTED_ALG,
                          "signature algorithm %s is not accepted for this key", name);
    }
    return 0;
}

static int signature_check(const struct csr_key *key, const EVP_MD *md, const struct ca__rd *tbs,
                           const struct ca__rd *sig)
{
    unsigned char dgst[EVP_MAX_MD_SIZE];
    EVP_PKEY_CTX *v = NULL;
    int ok = 0, bits = EVP_MD_get_size(md) * 8;

    if (bits == 256)
        SHA256(tbs->p, tbs->len, dgst);
    else if (bits == 384)
        SHA384(tbs->p, tbs->len, dgst);
    else
        SHA512(tbs->p, tbs->len, dgst);
    if (key->ec) {
        /* DER signature, re-encoded and compared (no BER, no trailing bytes), then verified */
        ok = sig->len <= INT_MAX &&
             ECDSA_verify(0, dgst, bits / 8, sig->p, (int)sig->len, key->ec) == 1;
    } else {
        v = EVP_PKEY_CTX_new_from_pkey(NULL, key->rsa, NULL);
        if (v && EVP_PKEY_verify_init(v) > 0 && EVP_PKEY_CTX_set_signature_md(v, md) > 0 &&
            EVP_PKEY_CTX_set_rsa_padding(v, RSA_PKCS1_PADDING) > 0)
            ok = EVP_PKEY_verify(v, sig->p, sig->len, dgst, (size_t)(bits / 8)) == 1;
        EVP_PKEY_CTX_free(v);
    }
    ERR_clear_error();
    return ok ? 0 : -1;
}

int ca_csr_parse(const struct ca *ca, const char *pem, size_t len, struct ca_csr **out,
                 struct diag *diag)
{
    struct ca__rd r, outer, cri_body, cri, algid, sig, version, spki;
    struct ca_csr *csr = NULL;
    unsigned char *der = NULL;
    struct csr_key key = {NULL, NULL};
    const EVP_MD *md = NULL;
    size_t der_len = 0;
    int rc;

    if (!pem || len > CA_CSR_MAX_PEM)
        return ca__refuse(diag, CA_REFUSAL_TOO_LARGE, "CSR is larger than %d bytes",
                          CA_CSR_MAX_PEM);
    rc = ca__pem_decode(pem, len, "CERTIFICATE REQUEST", &der, &der_len);
    if (rc == ERR_PARSE)
        rc = ca__pem_decode(pem, len, "NEW CERTIFICATE REQUEST", &der, &der_len);
    if (rc == ERR_PARSE)
        return ca__refuse(diag, CA_REFUSAL_NOT_PEM,
                          "body is not one PEM CERTIFICATE REQUEST block");
    if (rc < 0)
        return rc;
    csr = calloc(1, sizeof(*csr));
    if (!csr) {
        rc = -ENOMEM;
        goto out;
    }

    r.p = der;
    r.len = der_len;
    if (ca__rd_next(&r, 0x30, &outer, NULL) < 0 || r.len ||
        ca__rd_next(&outer, 0x30, &cri_body, &cri) < 0 ||
        ca__rd_next(&outer, 0x30, &algid, NULL) < 0 || ca__rd_next(&outer, 0x03, &sig, NULL) < 0 ||
        outer.len || ca__rd_next(&cri_body, 0x02, &version, NULL) < 0 || version.len != 1 ||
        version.p[0] != 0 || ca__rd_next(&cri_body, 0x30, NULL, NULL) < 0 ||
        ca__rd_next(&cri_body, 0x30, NULL, &spki) < 0 ||
        (ca__rd_peek(&cri_body) == 0xa0 && ca__rd_next(&cri_body, 0xa0, NULL, NULL) < 0) ||
        cri_body.len || sig.len < 2 || sig.p[0] != 0) {
        rc = ca__refuse(diag, CA_REFUSAL_MALFORMED, "not a well-formed DER PKCS#10 request");
        goto out;
    }
    sig.p++, sig.len--;

    rc = spki_accept(ca, &spki, csr, &key, diag);
    if (rc < 0)
        goto out;
    rc = sigalg_accept(&algid, csr->kind, &md, diag);
    if (rc < 0)
        goto out;
    if (signature_check(&key, md, &cri, &sig) < 0) {
        rc = ca__refuse(diag, CA_REFUSAL_BAD_SIGNATURE, "CSR signature does not verify");
        goto out;
    }
    *out = csr;
    csr = NULL;
    rc = 0;
out:
    csr_key_release(&key);
    ca_csr_free(csr);
    free(der);
    return rc;
}

/* ---- agent side ---------------------------------------------------------------------------- */

int ca_csr_new(enum ca_key_type type, char **key_pem, char **csr_pem)
{
    const char *group = type == CA_KEY_EC_P256 ? "P-256" : type == CA_KEY_EC_P384 ? "P-384" : NULL;
    EVP_PKEY *key = NULL;
    X509_REQ *req = NULL;
    BIO *b = NULL;
    BUF_MEM *m = NULL;
    char *kp = NULL, *cp = NULL;
    int rc = -EIO;

    if (!group)
        return -EINVAL;
    key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", group);
    req = X509_REQ_new();
    b = BIO_new(BIO_s_mem());
    if (!key || !req || !b)
        goto out;
    if (!X509_REQ_set_version(req, X509_REQ_VERSION_1) || !X509_REQ_set_pubkey(req, key) ||
        X509_REQ_sign(req, key, type == CA_KEY_EC_P384 ? EVP_sha384() : EVP_sha256()) <= 0 ||
        !PEM_write_bio_X509_REQ(b, req))
        goto out;
    BIO_get_mem_ptr(b, &m);
    rc = -ENOMEM;
    cp = malloc(m->length + 1);
    if (!cp)
        goto out;
    memcpy(cp, m->data, m->length);
    cp[m->length] = '\0';
    rc = ca__key_pem(key, &kp);
    if (rc < 0)
        goto out;
    *key_pem = kp;
    *csr_pem = cp;
    cp = NULL;
out:
    free(cp);
    BIO_free(b);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return rc;
}
