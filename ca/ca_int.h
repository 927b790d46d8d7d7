/*
 * ca_int.h - internals shared by the files of ca/. Never included outside ca/.
 *
 * The issuance fast path builds certificates at the DER level (der.c) from a template that
 * is computed once per signer (signer.c): issuer name bytes, authority key id, signature
 * algorithm and an EVP_PKEY_CTX already initialised for signing. Per leaf this leaves one
 * hash and one private-key operation plus a few hundred bytes of copying.
 */
#ifndef WEFT_CA_CA_INT_H
#define WEFT_CA_CA_INT_H

#include <pthread.h>
#include <stdint.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "ca/ca.h"

/* ---- DER writer --------------------------------------------------------------------------- */

/* Growable output; any failure sets err (-ENOMEM or -EINVAL) and later calls do nothing, so
 * a sequence of writes is checked once at the end. */
struct ca__der {
    unsigned char *p;
    size_t len;
    size_t cap;
    int err;
};

void ca__der_init(struct ca__der *d);
void ca__der_release(struct ca__der *d);
void ca__der_raw(struct ca__der *d, const void *p, size_t n);
/* Whole TLV with a short (single-byte) tag. */
void ca__der_tlv(struct ca__der *d, unsigned tag, const void *p, size_t n);
/* Open a constructed TLV; returns a mark for ca__der_end(), which fills in the length. */
size_t ca__der_begin(struct ca__der *d, unsigned tag);
void ca__der_end(struct ca__der *d, size_t mark);
/* INTEGER from unsigned big-endian bytes (minimal, positive). */
void ca__der_uint(struct ca__der *d, const unsigned char *be, size_t n);
/* UTCTime before 2050, GeneralizedTime from 2050 (RFC 5280 4.1.2.5). */
void ca__der_time(struct ca__der *d, time_t t);

/* ---- DER reader --------------------------------------------------------------------------- */

struct ca__rd {
    const unsigned char *p;
    size_t len;
};

/* Read one TLV with tag `tag` (strict DER lengths: definite, minimal, at most 3 length bytes).
 * On success *content is its value, *whole (may be NULL) the full TLV; r advances.
 * Returns 0 or -1. */
int ca__rd_next(struct ca__rd *r, unsigned tag, struct ca__rd *content, struct ca__rd *whole);
/* Peek at the next tag; -1 when empty. */
int ca__rd_peek(const struct ca__rd *r);

/* ---- PEM, hex ----------------------------------------------------------------------------- */

/* Decode exactly one PEM block labelled `label` (only whitespace around it; strict base64).
 * *der is allocated. Returns 0, ERR_PARSE, -ENOMEM. */
int ca__pem_decode(const char *pem, size_t len, const char *label, unsigned char **der,
                   size_t *der_len);
/* Append the PEM encoding of der to out. Returns 0 or -ENOMEM. */
int ca__pem_append(struct ca__der *out, const char *label, const unsigned char *der, size_t n);
void ca__hex(const unsigned char *p, size_t n, char *out);
/* SHA-256 fingerprint of a certificate's DER, 64 hex digits + NUL. Returns 0 or -ENOMEM. */
int ca__x509_fingerprint(X509 *x, char out[CA_FINGERPRINT_HEX + 1]);
/* ASN1_TIME to time_t; returns 0 or -1. */
int ca__asn1_time(const ASN1_TIME *t, time_t *out);
/* PEM of one certificate, appended. Returns 0 or -ENOMEM. */
int ca__x509_pem_append(struct ca__der *out, X509 *x);

/* PKCS#8 PEM of a private key, allocated (free with ca_key_pem_free()). 0 or -ENOMEM. */
int ca__key_pem(EVP_PKEY *k, char **out);

/* Append every certificate of a PEM string to sk (at most 1 MiB of input). Returns the count,
 * or -1 on a bad block or allocation failure. */
int ca__read_certs(const char *pem, size_t len, STACK_OF(X509) * sk);
/* Issuer and subject names match and key identifiers (if any) agree; signature not checked. */
bool ca__self_signed(X509 *x);
/* A certificate usable as a CA at now: CA:TRUE, keyCertSign if keyUsage is present, within its
 * validity. Returns 0 or ERR_INVALID (+diag naming `what`). */
int ca__check_ca_cert(X509 *x, time_t now, const char *what, struct diag *diag);

/* ---- objects ------------------------------------------------------------------------------ */

struct ca_signer {
    EVP_PKEY *key;
    X509 *cert;
    STACK_OF(X509) * inter; /* between cert and root, cert-side first; excludes both */
    X509 *root;             /* referenced; == cert for a self-signed signer */
    char root_fp[CA_FINGERPRINT_HEX + 1];
    time_t not_before;
    time_t not_after;
    /* issuance template */
    unsigned char *issuer; /* DER of the signer's subject, exactly as in its certificate */
    size_t issuer_len;
    unsigned char akid[64]; /* the signer's key identifier */
    size_t akid_len;
    const unsigned char *sigalg; /* AlgorithmIdentifier DER */
    size_t sigalg_len;
    int md_bits;        /* 256, 384 */
    EVP_PKEY_CTX *sign; /* initialised for EVP_PKEY_sign; never used directly, only copied
                         * (EVP_PKEY_CTX_dup) for each leaf, so issuers can run in parallel */
    char *chain_pem;    /* cert + inter as PEM, "" for a root signer */
    size_t chain_pem_len;
};

/* Compute the issuance template of s (called by every constructor). Returns 0, -ENOMEM, -EIO. */
int ca__signer_prepare(struct ca_signer *s);

enum ca__key_kind { CA__KEY_EC, CA__KEY_RSA };

struct ca_csr {
    unsigned char *spki; /* canonical SubjectPublicKeyInfo DER */
    size_t spki_len;
    enum ca__key_kind kind;
    unsigned char skid[20]; /* SHA-1 of the subjectPublicKey bits (RFC 5280 method 1) */
};

struct ca_root {
    X509 *cert;
    char fp[CA_FINGERPRINT_HEX + 1];
    time_t leaves_until; /* latest notAfter issued under this root by this struct ca */
};

/*
 * Threads (ca.h): one owner thread makes every call except ca_csr_parse, ca_issue_csr,
 * ca_issue and ca_issue_server, which any number of threads may make at once. Issuers hold
 * `lock` for reading for the whole issuance (the signer cannot change or be freed under them);
 * the owner takes it for writing only around the changes themselves (signer switch, bundle
 * array, clock), so its own reads of the bundle need no lock. `leaf_mu` guards leaves_until,
 * which issuers update.
 */
struct ca {
    pthread_rwlock_t lock;
    pthread_mutex_t leaf_mu;
    struct ca_signer *signer;
    struct ca_root *roots;
    size_t nroots;
    unsigned long generation;
    time_t (*now)(void *arg);
    void *now_arg;
    EC_GROUP *ec_group[2]; /* P-256, P-384: built once, read-only (see csr.c) */
};

time_t ca__now(const struct ca *ca);
/* Record that a leaf valid until not_after was issued under the active signer's root. Called
 * with the read lock held. */
void ca__note_leaf(struct ca *ca, time_t not_after);
/* Validate an identity (see ca.h). Returns 0 or -EINVAL. */
int ca__identity_check(const struct ca_identity *id);
/* Sign tbs with the active signer and wrap it as a Certificate; fills out. */
int ca__finish(struct ca *ca, struct ca__der *tbs, time_t nb, time_t na, struct ca_leaf *out);

/* Fill diag (may be NULL) and return ERR_INVALID. */
int ca__refuse(struct diag *diag, enum ca_refusal code, const char *fmt, ...) PRINTF_LIKE(3, 4);

/* Well-known DER snippets. */
extern const unsigned char ca__oid_ec_pub[9];
extern const unsigned char ca__oid_p256[10];
extern const unsigned char ca__oid_p384[7];

#endif
