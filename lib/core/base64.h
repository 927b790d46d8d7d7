/*
 * base64.h - standard base64 (RFC 4648 section 4, with padding), as Kubernetes' JSON uses for
 * []byte fields, kubeconfig *-data fields and AdmissionReview patches.
 */
#ifndef WEFT_CORE_BASE64_H
#define WEFT_CORE_BASE64_H

#include <stddef.h>

#include "core/buf.h"
#include "core/err.h"

/* Encode n bytes; returns a NUL-terminated string (free()) or NULL on -ENOMEM. */
char *base64_encode(const void *data, size_t n);

/* Append the encoding of n bytes to out. Returns 0 or -ENOMEM (out unchanged). */
int base64_encode_buf(const void *data, size_t n, struct buf *out) WUR;

/*
 * Decode a NUL-terminated string, ignoring ASCII white space; padding optional. *out (free())
 * gets the bytes plus a terminating NUL not counted in *outlen. Returns 0, ERR_PARSE (a character
 * outside the alphabet, data after padding, a dangling 6 bits) or -ENOMEM.
 */
int base64_decode(const char *in, char **out, size_t *outlen) WUR;

/* base64_decode_n's flags. */
enum {
    /* Canonical padding (PEM bodies): the characters, white space aside, come in groups of
     * four, the last one padded with '=' as needed. */
    BASE64_PADDED = 1u << 0,
};

/*
 * base64_decode over the n bytes at in (no terminator needed; a NUL byte is an error), with
 * flags from the enum above. Same results and ownership as base64_decode.
 */
int base64_decode_n(const char *in, size_t n, unsigned flags, char **out, size_t *outlen) WUR;

#endif
