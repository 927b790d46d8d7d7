/*
 * signer.c - signing certificates: root generation, loading operator PEM with validation,
 * serialization to the Secret layout, and the per-signer issuance template.
 *
 * Nothing here is on the per-leaf path except what ca__signer_prepare() precomputes.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "ca/ca_int.h"

static const unsigned char sigalg_ecdsa_sha256[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
                                                    0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};
static const unsigned char sigalg_ecdsa_sha384[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
                                                    0x48, 0xce, 0x3d, 0x04, 0x03, 0x03};
static const unsigned char sigalg_rsa_sha256[] = {0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                                  0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00};

enum key_class { KEY_P256, KEY_P384, KEY_RSA, KEY_WEAK, KEY_OTHER };

static enum key_class key_classify(EVP_PKEY *k)
{
    char group[64];

    if (EVP_PKEY_is_a(k, "EC")) {
        if (!EVP_PKEY_get_group_name(k, group, sizeof(group), NULL))
            return KEY_OTHER;
        if (!strcmp(group, "prime256v1") || !strcmp(group, "P-256"))
            return KEY_P256;
        if (!strcmp(group, "secp384r1") || !strcmp(group, "P-384"))
            return KEY_P384;
        return KEY_OTHER;
    }
    if (EVP_PKEY_is_a(k, "RSA")) {
        int bits = EVP_PKEY_get_bits(k);

        return bits < 2048 ? KEY_WEAK : bits <= 8192 ? KEY_RSA : KEY_OTHER;
    }
    return KEY_OTHER;
}

void ca_signer_free(struct ca_signer *s)
{
    if (!s)
        return;
    EVP_PKEY_CTX_free(s->sign);
    EVP_PKEY_free(s->key);
    X509_free(s->cert);
    X509_free(s->root);
    sk_X509_pop_free(s->inter, X509_free);
    free(s->issuer);
    free(s->chain_pem);
    free(s);
}

const char *ca_signer_root_fingerprint(const struct ca_signer *s)
{
    return s->root_fp;
}

time_t ca_signer_not_after(const struct ca_signer *s)
{
    return s->not_after;
}

int ca__signer_prepare(struct ca_signer *s)
{
    const ASN1_OCTET_STRING *skid;
    unsigned char *der = NULL;
    struct ca__der pem;
    int n, rc = -EIO;

    ca__der_init(&pem);
    if (ca__asn1_time(X509_get0_notBefore(s->cert), &s->not_before) < 0 ||
        ca__asn1_time(X509_get0_notAfter(s->cert), &s->not_after) < 0)
        goto out;
    if (ca__x509_fingerprint(s->root, s->root_fp) < 0) {
        rc = -ENOMEM;
        goto out;
    }

    /* the issuer name exactly as encoded in the signer's certificate */
    n = i2d_X509_NAME(X509_get_subject_name(s->cert), &der);
    if (n <= 0)
        goto out;
    s->issuer = malloc((size_t)n);
    if (!s->issuer) {
        rc = -ENOMEM;
        goto out;
    }
    memcpy(s->issuer, der, (size_t)n);
    s->issuer_len = (size_t)n;

    skid = X509_get0_subject_key_id(s->cert);
    if (skid && skid->length > 0 && (size_t)skid->length <= sizeof(s->akid)) {
        memcpy(s->akid, skid->data, (size_t)skid->length);
        s->akid_len = (size_t)skid->length;
    } else {
        ASN1_BIT_STRING *bits = X509_get0_pubkey_bitstr(s->cert);

        if (!bits)
            goto out;
        SHA1(bits->data, (size_t)bits->length, s->akid);
        s->akid_len = SHA_DIGEST_LENGTH;
    }

    switch (key_classify(s->key)) {
    case KEY_P256:
        s->sigalg = sigalg_ecdsa_sha256;
        s->sigalg_len = sizeof(sigalg_ecdsa_sha256);
        s->md_bits = 256;
        break;
    case KEY_P384:
        s->sigalg = sigalg_ecdsa_sha384;
        s->sigalg_len = sizeof(sigalg_ecdsa_sha384);
        s->md_bits = 384;
        break;
    case KEY_RSA:
        s->sigalg = sigalg_rsa_sha256;
        s->sigalg_len = sizeof(sigalg_rsa_sha256);
        s->md_bits = 256;
        break;
    default:
        rc = -EINVAL;
        goto out;
    }

    /* One context initialised once: EVP_PKEY_sign() on it is repeatable and skips the
     * per-call algorithm fetch and key export that EVP_DigestSignInit() does. */
    s->sign = EVP_PKEY_CTX_new_from_pkey(NULL, s->key, NULL);
    if (!s->sign || EVP_PKEY_sign_init(s->sign) <= 0 ||
        EVP_PKEY_CTX_set_signature_md(s->sign, s->md_bits == 384 ? EVP_sha384() : EVP_sha256()) <=
            0)
        goto out;
    if (EVP_PKEY_is_a(s->key, "RSA") &&
        EVP_PKEY_CTX_set_rsa_padding(s->sign, RSA_PKCS1_PADDING) <= 0)
        goto out;

    if (s->cert != s->root) {
        if (ca__x509_pem_append(&pem, s->cert) < 0)
            goto nomem;
        for (int i = 0; i < sk_X509_num(s->inter); i++)
            if (ca__x509_pem_append(&pem, sk_X509_value(s->inter, i)) < 0)
                goto nomem;
    }
    ca__der_raw(&pem, "", 1);
    if (pem.err)
        goto nomem;
    s->chain_pem = (char *)pem.p;
    s->chain_pem_len = pem.len - 1;
    pem.p = NULL;
    rc = 0;
    goto out;
nomem:
    rc = -ENOMEM;
out:
    OPENSSL_free(der);
    ca__der_release(&pem);
    ERR_clear_error();
    return rc;
}

/* ---- generation ---------------------------------------------------------------------------- */

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    int ok = ext && X509_add_ext(x, ext, -1);

    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

static int random_serial(X509 *x)
{
    unsigned char b[16];
    BIGNUM *bn = NULL;
    int ok;

    if (RAND_bytes(b, sizeof(b)) != 1)
        return -1;
    b[0] &= 0x7f;
    b[0] |= 0x40; /* 16 octets, positive */
    bn = BN_bin2bn(b, sizeof(b), NULL);
    ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    BN_free(bn);
    return ok ? 0 : -1;
}

int ca_signer_generate_root(time_t now, struct ca_signer **out)
{
    struct ca_signer *s = NULL;
    unsigned char *spki = NULL, md[SHA256_DIGEST_LENGTH];
    char cn[64], hex[2 * SHA256_DIGEST_LENGTH + 1];
    X509_NAME *name = NULL;
    X509V3_CTX v3;
    int n, rc = -EIO;

    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    s->cert = X509_new();
    name = X509_NAME_new();
    if (!s->key || !s->cert || !name)
        goto out;
    n = i2d_PUBKEY(s->key, &spki);
    if (n <= 0)
        goto out;
    SHA256(spki, (size_t)n, md);
    ca__hex(md, sizeof(md), hex);
    snprintf(cn, sizeof(cn), "weft root %.8s", hex);

    if (!X509_set_version(s->cert, X509_VERSION_3) || random_serial(s->cert) < 0 ||
        !ASN1_TIME_set(X509_getm_notBefore(s->cert), now - CA_BACKDATE) ||
        !ASN1_TIME_set(X509_getm_notAfter(s->cert), now - CA_BACKDATE + CA_ROOT_LIFETIME) ||
        !X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"weft", -1, -1,
                                    0) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                    0) ||
        !X509_set_subject_name(s->cert, name) || !X509_set_issuer_name(s->cert, name) ||
        !X509_set_pubkey(s->cert, s->key))
        goto out;
    X509V3_set_ctx(&v3, s->cert, s->cert, NULL, NULL, 0);
    if (add_ext(s->cert, &v3, NID_basic_constraints, "critical,CA:TRUE") < 0 ||
        add_ext(s->cert, &v3, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
        add_ext(s->cert, &v3, NID_subject_key_identifier, "hash") < 0 ||
        add_ext(s->cert, &v3, NID_authority_key_identifier, "keyid:always") < 0)
        goto out;
    if (X509_sign(s->cert, s->key, EVP_sha256()) <= 0)
        goto out;
    if (!X509_up_ref(s->cert))
        goto out;
    s->root = s->cert;
    rc = ca__signer_prepare(s);
    if (rc < 0)
        goto out;
    *out = s;
    s = NULL;
out:
    OPENSSL_free(spki);
    X509_NAME_free(name);
    ca_signer_free(s);
    ERR_clear_error();
    return rc;
}

/* ---- loading ------------------------------------------------------------------------------- */

int ca__read_certs(const char *pem, size_t len, STACK_OF(X509) * sk)
{
    BIO *b;
    X509 *x;
    int n = 0;
    unsigned long e;

    if (!pem || !len)
        return 0;
    if (len > 1u << 20)
        return -1;
    b = BIO_new_mem_buf(pem, (int)len);
    if (!b)
        return -1;
    ERR_clear_error();
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (!sk_X509_push(sk, x)) {
            X509_free(x);
            n = -1;
            break;
        }
        n++;
    }
    e = ERR_peek_last_error();
    if (n >= 0 && e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE))
        n = -1;
    BIO_free(b);
    ERR_clear_error();
    return n;
}

static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

bool ca__self_signed(X509 *x)
{
    return (X509_get_extension_flags(x) & EXFLAG_SS) != 0;
}

int ca__check_ca_cert(X509 *x, time_t now, const char *what, struct diag *diag)
{
    uint32_t fl = X509_get_extension_flags(x);
    char subj[96];
    time_t nb, na;

    X509_NAME_oneline(X509_get_subject_name(x), subj, sizeof(subj));
    if (!(fl & EXFLAG_BCONS) || !(fl & EXFLAG_CA))
        return ca__refuse(diag, CA_REFUSAL_NOT_CA, "%s %s is not a CA (basicConstraints)", what,
                          subj);
    if ((fl & EXFLAG_KUSAGE) && !(X509_get_key_usage(x) & KU_KEY_CERT_SIGN))
        return ca__refuse(diag, CA_REFUSAL_NOT_CA, "%s %s lacks keyUsage keyCertSign", what, subj);
    if (ca__asn1_time(X509_get0_notBefore(x), &nb) < 0 ||
        ca__asn1_time(X509_get0_notAfter(x), &na) < 0)
        return ca__refuse(diag, CA_REFUSAL_MALFORMED, "%s %s has unreadable validity", what, subj);
    if (now < nb)
        return ca__refuse(diag, CA_REFUSAL_EXPIRED, "%s %s is not valid yet", what, subj);
    if (now >= na)
        return ca__refuse(diag, CA_REFUSAL_EXPIRED, "%s %s has expired", what, subj);
    return 0;
}

int ca_signer_load(const struct ca_signer_input *in, time_t now, struct ca_signer **out,
                   struct diag *diag)
{
    STACK_OF(X509) *crt = sk_X509_new_null(), *cas = sk_X509_new_null();
    STACK_OF(X509) *untrusted = sk_X509_new_null(), *chain = NULL;
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *vctx = X509_STORE_CTX_new();
    struct ca_signer *s = NULL;
    BIO *kb = NULL;
    size_t ntrusted = 0;
    enum key_class kc;
    int n, rc = -ENOMEM;

    if (!crt || !cas || !untrusted || !store || !vctx)
        goto out;
    s = calloc(1, sizeof(*s));
    if (!s)
        goto out;
    n = ca__read_certs(in->crt, in->crt_len, crt);
    if (n <= 0) {
        rc = ca__refuse(diag, CA_REFUSAL_NOT_PEM, "tls.crt holds no readable certificate");
        goto out;
    }
    if (ca__read_certs(in->ca, in->ca_len, cas) < 0) {
        rc = ca__refuse(diag, CA_REFUSAL_NOT_PEM, "ca.crt is not a PEM certificate list");
        goto out;
    }
    if (!in->key || !in->key_len || in->key_len > 1u << 20) {
        rc = ca__refuse(diag, CA_REFUSAL_NOT_PEM, "tls.key is empty");
        goto out;
    }
    kb = BIO_new_mem_buf(in->key, (int)in->key_len);
    if (!kb)
        goto out;
    s->key = PEM_read_bio_PrivateKey(kb, NULL, no_password, NULL);
    if (!s->key) {
        bool enc = memmem(in->key, in->key_len, "ENCRYPTED", 9) != NULL;

        rc = ca__refuse(diag, enc ? CA_REFUSAL_ENCRYPTED_KEY : CA_REFUSAL_NOT_PEM,
                        enc ? "tls.key is encrypted" : "tls.key holds no readable private key");
        goto out;
    }
    s->cert = sk_X509_shift(crt);
    if (X509_check_private_key(s->cert, s->key) != 1) {
        rc = ca__refuse(diag, CA_REFUSAL_KEY_MISMATCH,
                        "tls.key does not belong to the first certificate of tls.crt");
        goto out;
    }
    kc = key_classify(s->key);
    if (kc == KEY_WEAK) {
        rc = ca__refuse(diag, CA_REFUSAL_WEAK_KEY, "signer RSA key has %d bits (minimum 2048)",
                        EVP_PKEY_get_bits(s->key));
        goto out;
    }
    if (kc == KEY_OTHER) {
        rc = ca__refuse(diag, CA_REFUSAL_UNSUPPORTED_KEY,
                        "signer key must be EC P-256, P-384 or RSA 2048..8192");
        goto out;
    }
    rc = ca__check_ca_cert(s->cert, now, "signer", diag);
    if (rc < 0)
        goto out;

    /* Trust anchors are the self-signed certificates offered; everything else is untrusted
     * chain material. The signer itself may be the root. */
    rc = -ENOMEM;
    if (ca__self_signed(s->cert)) {
        if (!X509_STORE_add_cert(store, s->cert))
            goto out;
        ntrusted++;
    }
    while (sk_X509_num(crt) > 0 || sk_X509_num(cas) > 0) {
        X509 *x = sk_X509_num(crt) > 0 ? sk_X509_shift(crt) : sk_X509_shift(cas);

        if (ca__self_signed(x)) {
            int ok = X509_STORE_add_cert(store, x);

            X509_free(x);
            if (!ok)
                goto out;
            ntrusted++;
        } else if (!sk_X509_push(untrusted, x)) {
            X509_free(x);
            goto out;
        }
    }
    ERR_clear_error();
    if (!ntrusted) {
        rc = ca__refuse(diag, CA_REFUSAL_NO_ROOT,
                        "no self-signed root in tls.crt or ca.crt to anchor the signer");
        goto out;
    }
    if (!X509_STORE_CTX_init(vctx, store, s->cert, untrusted))
        goto out;
    X509_STORE_CTX_set_time(vctx, 0, now);
    X509_STORE_CTX_set_flags(vctx, X509_V_FLAG_CHECK_SS_SIGNATURE);
    if (X509_verify_cert(vctx) != 1) {
        int e = X509_STORE_CTX_get_error(vctx);

        rc = ca__refuse(diag,
                        e == X509_V_ERR_CERT_HAS_EXPIRED || e == X509_V_ERR_CERT_NOT_YET_VALID
                            ? CA_REFUSAL_EXPIRED
                            : CA_REFUSAL_CHAIN_INVALID,
                        "signer chain does not verify: %s", X509_verify_cert_error_string(e));
        goto out;
    }
    chain = X509_STORE_CTX_get1_chain(vctx);
    if (!chain || sk_X509_num(chain) < 1)
        goto out;
    s->root = sk_X509_pop(chain); /* the anchor, referenced */
    if (sk_X509_num(chain) > 0)
        X509_free(sk_X509_shift(chain)); /* the signer itself (held already) */
    if (X509_cmp(s->root, s->cert) == 0) {
        /* the signer is its own root: keep one object so cert == root marks it */
        X509_free(s->root);
        s->root = NULL;
        if (!X509_up_ref(s->cert))
            goto out;
        s->root = s->cert;
    }
    s->inter = chain;
    chain = NULL;
    for (int i = 0; i < sk_X509_num(s->inter); i++) {
        rc = ca__check_ca_cert(sk_X509_value(s->inter, i), now, "intermediate", diag);
        if (rc < 0)
            goto out;
    }
    rc = ca__signer_prepare(s);
    if (rc < 0)
        goto out;
    *out = s;
    s = NULL;
out:
    BIO_free(kb);
    sk_X509_pop_free(crt, X509_free);
    sk_X509_pop_free(cas, X509_free);
    sk_X509_pop_free(untrusted, X509_free);
    sk_X509_pop_free(chain, X509_free);
    X509_STORE_CTX_free(vctx);
    X509_STORE_free(store);
    ca_signer_free(s);
    ERR_clear_error();
    return rc;
}

/* ---- serialization ------------------------------------------------------------------------- */

int ca__key_pem(EVP_PKEY *k, char **out)
{
    BIO *b = BIO_new(BIO_s_mem());
    BUF_MEM *m = NULL;
    char *p = NULL;
    int rc = -ENOMEM;

    if (!b || !PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL))
        goto out;
    BIO_get_mem_ptr(b, &m);
    p = malloc(m->length + 1);
    if (!p)
        goto out;
    memcpy(p, m->data, m->length);
    p[m->length] = '\0';
    *out = p;
    rc = 0;
out:
    BIO_free(b); /* the memory BIO wipes its buffer on free */
    ERR_clear_error();
    return rc;
}

void ca_key_pem_free(char *key_pem)
{
    if (!key_pem)
        return;
    OPENSSL_cleanse(key_pem, strlen(key_pem));
    free(key_pem);
}

void ca_signer_pem_release(struct ca_signer_pem *p)
{
    if (!p)
        return;
    free(p->tls_crt);
    ca_key_pem_free(p->tls_key);
    free(p->ca_crt);
    memset(p, 0, sizeof(*p));
}

int ca_signer_pem_get(const struct ca_signer *s, struct ca_signer_pem *out)
{
    struct ca__der crt, root;
    char *key = NULL;
    int rc = -ENOMEM;

    ca__der_init(&crt);
    ca__der_init(&root);
    if (ca__x509_pem_append(&crt, s->cert) < 0)
        goto out;
    for (int i = 0; i < sk_X509_num(s->inter); i++)
        if (ca__x509_pem_append(&crt, sk_X509_value(s->inter, i)) < 0)
            goto out;
    ca__der_raw(&crt, "", 1);
    if (ca__x509_pem_append(&root, s->root) < 0)
        goto out;
    ca__der_raw(&root, "", 1);
    if (crt.err || root.err || ca__key_pem(s->key, &key) < 0)
        goto out;
    out->tls_crt = (char *)crt.p;
    out->ca_crt = (char *)root.p;
    out->tls_key = key;
    crt.p = root.p = NULL;
    rc = 0;
out:
    ca__der_release(&crt);
    ca__der_release(&root);
    return rc;
}
