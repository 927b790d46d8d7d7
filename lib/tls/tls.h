/*
 * tls.h - TLS plumbing shared by weftd, lib/http, push/ and the agent: Weft's TLS policy, PEM
 * material loaded from memory into an SSL_CTX, the peer's SPIFFE ID, and SHA-256.
 *
 * Policy (tls_policy_apply; every context made here has it, and lib/http applies it to the
 * contexts it is given): TLS 1.2 at least; TLS 1.2 suites only with ECDHE key exchange and an
 * AEAD cipher (AES-GCM, ChaCha20-Poly1305: no CBC, no RSA key exchange, no DHE); TLS 1.3 with
 * OpenSSL's default suites (all AEAD); no renegotiation. A peer that offers nothing else fails
 * the handshake.
 *
 * PEM input is a NUL-terminated string: a certificate chain is the leaf (or the signer) first,
 * then its intermediates; a trust bundle is one or more certificates. Setters check everything
 * first and change the context only when all of it is usable, so a failure leaves the previous
 * identity or trust in place. Key material is never logged and OpenSSL's error queue is left
 * empty.
 *
 * This module and ca/ are the only ones that call OpenSSL's crypto API (here: the SHA-256
 * digest); ca/ keeps key generation, signing and certificate issuance. No global state: any
 * function may run on any thread, on distinct objects.
 *
 * Errors: 0, ERR_INVALID (input that does not parse or does not match), -ENOMEM, -EIO (OpenSSL
 * refused a setting), as named per function.
 */
#ifndef WEFT_TLS_TLS_H
#define WEFT_TLS_TLS_H

#include <openssl/types.h>
#include <stddef.h>

#include "core/err.h"

/* Length of a lowercase hex SHA-256 digest, without the NUL. */
#define TLS_SHA256_HEX 64

/* Put Weft's policy (above) on ctx, server or client. 0 or -EIO. */
int tls_policy_apply(SSL_CTX *ctx) WUR;

/* A new server (or client) context with the policy, no certificate and no trust. Free with
 * SSL_CTX_free. 0, -ENOMEM or -EIO. */
int tls_server_ctx_new(SSL_CTX **out) WUR;

/* For servers holding many mostly idle connections: OpenSSL frees a connection's read and write
 * buffers (some 34 KiB) whenever they are empty (SSL_MODE_RELEASE_BUFFERS). */
void tls_release_buffers(SSL_CTX *ctx);
int tls_client_ctx_new(SSL_CTX **out) WUR;

/* Whether chain_pem parses (at least one certificate) and its first certificate matches
 * key_pem. 0 or ERR_INVALID. */
int tls_check_identity(const char *chain_pem, const char *key_pem) WUR;
/* Whether trust_pem holds at least one certificate. 0 or ERR_INVALID. */
int tls_check_trust(const char *trust_pem) WUR;

/* Install chain_pem (leaf, then chain) and key_pem as ctx's identity. 0, ERR_INVALID (as
 * tls_check_identity) or -ENOMEM; ctx is unchanged on failure. */
int tls_set_identity(SSL_CTX *ctx, const char *chain_pem, const char *key_pem) WUR;
/* Replace ctx's verification store with the certificates of trust_pem. 0, ERR_INVALID or
 * -ENOMEM; ctx is unchanged on failure. */
int tls_set_trust(SSL_CTX *ctx, const char *trust_pem) WUR;

/* Copy the first URI SAN starting "spiffe://" of ssl's peer certificate into out (size n).
 * 0, ERR_NOTFOUND (no certificate, or no such SAN) or -ENAMETOOLONG. */
int tls_peer_spiffe_id(const SSL *ssl, char *out, size_t n) WUR;

/* ssl's verified peer certificate (the leaf) as PEM into *out (free()). 0, ERR_NOTFOUND (no
 * certificate) or -ENOMEM. */
int tls_peer_cert_pem(const SSL *ssl, char **out) WUR;

/* SHA-256 of len bytes at data as lowercase hex into out. 0 or -ENOMEM (out untouched). */
int tls_sha256_hex(const void *data, size_t len, char out[TLS_SHA256_HEX + 1]) WUR;

#endif
