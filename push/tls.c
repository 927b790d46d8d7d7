/*
 * tls.c - the OpenSSL calls push/ makes: loading PEM certificates/keys from memory into a
 * libwebsockets SSL_CTX (so they can be swapped at run time without files) and reading the
 * peer's URI SAN. No crypto primitives here: key generation, signing and hashing of credentials
 * stay in ca/.
 */
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <string.h>

#include "push/push_int.h"

/* All certificates in pem, in order. NULL when none parse. */
static STACK_OF(X509) * pem_certs(const char *pem)
{
    STACK_OF(X509) *sk = NULL;
    BIO *bio = NULL;
    X509 *x;

    if (!pem)
        return NULL;
    bio = BIO_new_mem_buf(pem, -1);
    sk = sk_X509_new_null();
    if (!bio || !sk)
        goto fail;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
        if (!sk_X509_push(sk, x)) {
            X509_free(x);
            goto fail;
        }
    }
    ERR_clear_error(); /* the end of input reads as an error */
    BIO_free(bio);
    if (sk_X509_num(sk) == 0) {
        sk_X509_free(sk);
        return NULL;
    }
    return sk;
fail:
    ERR_clear_error();
    BIO_free(bio);
    sk_X509_pop_free(sk, X509_free);
    return NULL;
}

static EVP_PKEY *pem_key(const char *pem)
{
    BIO *bio;
    EVP_PKEY *k;

    if (!pem)
        return NULL;
    bio = BIO_new_mem_buf(pem, -1);
    if (!bio)
        return NULL;
    k = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    ERR_clear_error();
    BIO_free(bio);
    return k;
}

int push__tls_check_identity(const char *cert_pem, const char *key_pem)
{
    STACK_OF(X509) *sk = pem_certs(cert_pem);
    EVP_PKEY *k = pem_key(key_pem);
    int rc = ERR_INVALID;

    if (sk && k && X509_check_private_key(sk_X509_value(sk, 0), k) == 1)
        rc = 0;
    ERR_clear_error();
    sk_X509_pop_free(sk, X509_free);
    EVP_PKEY_free(k);
    return rc;
}

int push__tls_check_trust(const char *trust_pem)
{
    STACK_OF(X509) *sk = pem_certs(trust_pem);

    if (!sk)
        return ERR_INVALID;
    sk_X509_pop_free(sk, X509_free);
    return 0;
}

int push__tls_set_identity(void *ssl_ctx, const char *cert_pem, const char *key_pem)
{
    SSL_CTX *ctx = ssl_ctx;
    STACK_OF(X509) *sk = pem_certs(cert_pem);
    EVP_PKEY *k = pem_key(key_pem);
    int rc = ERR_INVALID;

    if (!sk || !k || X509_check_private_key(sk_X509_value(sk, 0), k) != 1)
        goto out;
    /* The pair is checked first so a failure here leaves the old identity in place. */
    if (SSL_CTX_use_certificate(ctx, sk_X509_value(sk, 0)) != 1 ||
        SSL_CTX_use_PrivateKey(ctx, k) != 1 || SSL_CTX_clear_chain_certs(ctx) != 1) {
        rc = -ENOMEM;
        goto out;
    }
    for (int i = 1; i < sk_X509_num(sk); i++)
        if (SSL_CTX_add1_chain_cert(ctx, sk_X509_value(sk, i)) != 1) {
            rc = -ENOMEM;
            goto out;
        }
    rc = 0;
out:
    ERR_clear_error();
    sk_X509_pop_free(sk, X509_free);
    EVP_PKEY_free(k);
    return rc;
}

int push__tls_set_trust(void *ssl_ctx, const char *trust_pem)
{
    STACK_OF(X509) *sk = pem_certs(trust_pem);
    X509_STORE *store = NULL;
    int rc = ERR_INVALID;

    if (!sk)
        goto out;
    rc = -ENOMEM;
    store = X509_STORE_new();
    if (!store)
        goto out;
    for (int i = 0; i < sk_X509_num(sk); i++)
        if (X509_STORE_add_cert(store, sk_X509_value(sk, i)) != 1)
            goto out;
    SSL_CTX_set_cert_store(ssl_ctx, store); /* takes the store, frees the old one */
    store = NULL;
    rc = 0;
out:
    ERR_clear_error();
    X509_STORE_free(store);
    sk_X509_pop_free(sk, X509_free);
    return rc;
}

int push__tls_peer_spiffe_id(void *ssl, char *out, size_t n)
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
    GENERAL_NAMES_free(names);
    X509_free(cert);
    return rc;
}

void *push__tls_client_ctx_new(void)
{
    return SSL_CTX_new(TLS_client_method());
}

void push__tls_ctx_free(void *ssl_ctx)
{
    SSL_CTX_free(ssl_ctx);
}
