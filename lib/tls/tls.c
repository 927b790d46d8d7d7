/*
 * tls.c - Weft's TLS policy, PEM into SSL_CTX, peer SPIFFE ID, SHA-256 (see tls.h).
 */
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

#include "tls/tls.h"

/*
 * TLS 1.2: ECDHE key exchange with an AEAD cipher only, ECDSA certificates first (Weft's own
 * are P-256), then RSA ones (an operator's). TLS 1.3 keeps OpenSSL's default suites, which are
 * all AEAD with (EC)DHE.
 */
static const char tls12_ciphers[] = "ECDHE-ECDSA-AES128-GCM-SHA256:"
                                    "ECDHE-ECDSA-AES256-GCM-SHA384:"
                                    "ECDHE-ECDSA-CHACHA20-POLY1305:"
                                    "ECDHE-RSA-AES128-GCM-SHA256:"
                                    "ECDHE-RSA-AES256-GCM-SHA384:"
                                    "ECDHE-RSA-CHACHA20-POLY1305";

int tls_policy_apply(SSL_CTX *ctx)
{
    int rc = 0;

    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, tls12_ciphers) != 1)
        rc = -EIO;
    else
        SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    ERR_clear_error();
    return rc;
}

static int ctx_new(const SSL_METHOD *method, SSL_CTX **out)
{
    SSL_CTX *ctx = SSL_CTX_new(method);
    int rc;

    if (!ctx) {
        ERR_clear_error();
        return -ENOMEM;
    }
    rc = tls_policy_apply(ctx);
    if (rc) {
        SSL_CTX_free(ctx);
        return rc;
    }
    *out = ctx;
    return 0;
}

int tls_server_ctx_new(SSL_CTX **out)
{
    return ctx_new(TLS_server_method(), out);
}

void tls_release_buffers(SSL_CTX *ctx)
{
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
}

int tls_client_ctx_new(SSL_CTX **out)
{
    return ctx_new(TLS_client_method(), out);
}

/* All certificates of pem, in order, into *out. 0, ERR_INVALID (none), -ENOMEM. */
static int pem_certs(const char *pem, STACK_OF(X509) * *out)
{
    STACK_OF(X509) *sk = NULL;
    BIO *bio = NULL;
    X509 *x;
    int rc = -ENOMEM;

    if (!pem)
        return ERR_INVALID;
    bio = BIO_new_mem_buf(pem, -1);
    sk = sk_X509_new_null();
    if (!bio || !sk)
        goto out;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (!sk_X509_push(sk, x)) {
            X509_free(x);
            goto out;
        }
    }
    rc = ERR_INVALID;
    if (sk_X509_num(sk) == 0)
        goto out;
    *out = sk;
    sk = NULL;
    rc = 0;
out:
    ERR_clear_error(); /* the end of input reads as an error */
    BIO_free(bio);
    sk_X509_pop_free(sk, X509_free);
    return rc;
}

/* The private key of pem into *out. 0, ERR_INVALID, -ENOMEM. */
static int pem_key(const char *pem, EVP_PKEY **out)
{
    BIO *bio;

    if (!pem)
        return ERR_INVALID;
    bio = BIO_new_mem_buf(pem, -1);
    if (!bio)
        return -ENOMEM;
    *out = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    ERR_clear_error();
    BIO_free(bio);
    return *out ? 0 : ERR_INVALID;
}

/* The parsed, matching pair of chain_pem and key_pem. */
static int identity_load(const char *chain_pem, const char *key_pem, STACK_OF(X509) * *sk,
                         EVP_PKEY **key)
{
    int rc = pem_certs(chain_pem, sk);

    if (rc)
        return rc;
    rc = pem_key(key_pem, key);
    if (!rc && X509_check_private_key(sk_X509_value(*sk, 0), *key) != 1) {
        EVP_PKEY_free(*key);
        rc = ERR_INVALID;
    }
    ERR_clear_error();
    if (rc)
        sk_X509_pop_free(*sk, X509_free);
    return rc;
}

int tls_check_identity(const char *chain_pem, const char *key_pem)
{
    STACK_OF(X509) * sk;
    EVP_PKEY *k;
    int rc = identity_load(chain_pem, key_pem, &sk, &k);

    if (rc)
        return rc == -ENOMEM ? rc : ERR_INVALID;
    sk_X509_pop_free(sk, X509_free);
    EVP_PKEY_free(k);
    return 0;
}

int tls_check_trust(const char *trust_pem)
{
    STACK_OF(X509) * sk;
    int rc = pem_certs(trust_pem, &sk);

    if (rc)
        return rc == -ENOMEM ? rc : ERR_INVALID;
    sk_X509_pop_free(sk, X509_free);
    return 0;
}

int tls_set_identity(SSL_CTX *ctx, const char *chain_pem, const char *key_pem)
{
    STACK_OF(X509) *sk = NULL;
    EVP_PKEY *k = NULL;
    int rc = identity_load(chain_pem, key_pem, &sk, &k);

    if (rc)
        return rc;
    /* The pair was checked first, so a failure below is an allocation failure. */
    rc = -ENOMEM;
    if (SSL_CTX_use_certificate(ctx, sk_X509_value(sk, 0)) != 1 ||
        SSL_CTX_use_PrivateKey(ctx, k) != 1 || SSL_CTX_clear_chain_certs(ctx) != 1)
        goto out;
    for (int i = 1; i < sk_X509_num(sk); i++)
        if (SSL_CTX_add1_chain_cert(ctx, sk_X509_value(sk, i)) != 1)
            goto out;
    rc = 0;
out:
    ERR_clear_error();
    sk_X509_pop_free(sk, X509_free);
    EVP_PKEY_free(k);
    return rc;
}

int tls_set_trust(SSL_CTX *ctx, const char *trust_pem)
{
    STACK_OF(X509) *sk = NULL;
    X509_STORE *store = NULL;
    int rc = pem_certs(trust_pem, &sk);

    if (rc)
        return rc;
    rc = -ENOMEM;
    store = X509_STORE_new();
    if (!store)
        goto out;
    for (int i = 0; i < sk_X509_num(sk); i++)
        if (X509_STORE_add_cert(store, sk_X509_value(sk, i)) != 1)
            goto out;
    SSL_CTX_set_cert_store(ctx, store); /* takes the store, frees the old one */
    store = NULL;
    rc = 0;
out:
    ERR_clear_error();
    X509_STORE_free(store);
    sk_X509_pop_free(sk, X509_free);
    return rc;
}

int tls_peer_spiffe_id(const SSL *ssl, char *out, size_t n)
{
    X509 *cert = ssl ? SSL_get1_peer_certificate(ssl) : NULL;
    GENERAL_NAMES *names = NULL;
    int rc = ERR_NOTFOUND;

    if (!cert)
        goto out;
    names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        const unsigned char *p;
        int len;

        if (gn->type != GEN_URI)
            continue;
        p = ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
        len = ASN1_STRING_length(gn->d.uniformResourceIdentifier);
        /* A URI with an embedded NUL is not an identity. */
        if (len < 9 || memchr(p, '\0', (size_t)len) || memcmp(p, "spiffe://", 9) != 0)
            continue;
        if ((size_t)len >= n) {
            rc = -ENAMETOOLONG;
            goto out;
        }
        memcpy(out, p, (size_t)len);
        out[len] = '\0';
        rc = 0;
        goto out;
    }
out:
    ERR_clear_error();
    GENERAL_NAMES_free(names);
    X509_free(cert);
    return rc;
}

int tls_peer_cert_pem(const SSL *ssl, char **out)
{
    X509 *cert = ssl ? SSL_get1_peer_certificate(ssl) : NULL;
    BIO *b = NULL;
    BUF_MEM *mem = NULL;
    char *s;
    int rc = -ENOMEM;

    if (!cert)
        return ERR_NOTFOUND;
    b = BIO_new(BIO_s_mem());
    if (!b || !PEM_write_bio_X509(b, cert))
        goto out;
    BIO_get_mem_ptr(b, &mem);
    s = malloc(mem->length + 1);
    if (!s)
        goto out;
    memcpy(s, mem->data, mem->length);
    s[mem->length] = '\0';
    *out = s;
    rc = 0;
out:
    ERR_clear_error();
    BIO_free(b);
    X509_free(cert);
    return rc;
}

int tls_sha256_hex(const void *data, size_t len, char out[TLS_SHA256_HEX + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[32];
    unsigned int mdlen = 0;

    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != sizeof(md)) {
        ERR_clear_error();
        return -ENOMEM;
    }
    for (size_t i = 0; i < sizeof(md); i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[TLS_SHA256_HEX] = '\0';
    return 0;
}
