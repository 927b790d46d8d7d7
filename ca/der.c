/*
 * der.c - minimal DER writer and reader, PEM and hex helpers for the issuance fast path.
 *
 * Only what certificates and CSRs need: single-byte tags, definite lengths below 16 MiB.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/sha.h>

#include "ca/ca_int.h"
#include "core/base64.h"

const unsigned char ca__oid_ec_pub[9] = {0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01};
const unsigned char ca__oid_p256[10] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
const unsigned char ca__oid_p384[7] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};

/* ---- writer -------------------------------------------------------------------------------- */

void ca__der_init(struct ca__der *d)
{
    memset(d, 0, sizeof(*d));
}

void ca__der_release(struct ca__der *d)
{
    free(d->p);
    ca__der_init(d);
}

static int der_grow(struct ca__der *d, size_t n)
{
    size_t cap;
    unsigned char *p;

    if (d->err)
        return -1;
    if (n > (1u << 24) || d->len + n > (1u << 24)) {
        d->err = -EINVAL;
        return -1;
    }
    if (d->len + n <= d->cap)
        return 0;
    cap = d->cap ? d->cap : 1024;
    while (cap < d->len + n + 1)
        cap *= 2;
    p = realloc(d->p, cap);
    if (!p) {
        d->err = -ENOMEM;
        return -1;
    }
    d->p = p;
    d->cap = cap;
    return 0;
}

void ca__der_raw(struct ca__der *d, const void *p, size_t n)
{
    if (der_grow(d, n) < 0)
        return;
    if (n)
        memcpy(d->p + d->len, p, n);
    d->len += n;
}

static size_t len_size(size_t n)
{
    return n < 0x80 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 4;
}

static void put_len(unsigned char *o, size_t n)
{
    size_t k = len_size(n);

    if (k == 1) {
        o[0] = (unsigned char)n;
        return;
    }
    o[0] = (unsigned char)(0x80 | (k - 1));
    for (size_t i = 1; i < k; i++)
        o[i] = (unsigned char)(n >> (8 * (k - 1 - i)));
}

void ca__der_tlv(struct ca__der *d, unsigned tag, const void *p, size_t n)
{
    unsigned char hdr[5];

    hdr[0] = (unsigned char)tag;
    put_len(hdr + 1, n);
    ca__der_raw(d, hdr, 1 + len_size(n));
    ca__der_raw(d, p, n);
}

size_t ca__der_begin(struct ca__der *d, unsigned tag)
{
    unsigned char hdr[2] = {(unsigned char)tag, 0};
    size_t mark = d->len;

    ca__der_raw(d, hdr, 2);
    return mark;
}

void ca__der_end(struct ca__der *d, size_t mark)
{
    size_t n, k;

    if (d->err)
        return;
    n = d->len - mark - 2;
    k = len_size(n);
    if (k > 1) {
        if (der_grow(d, k - 1) < 0)
            return;
        memmove(d->p + mark + 1 + k, d->p + mark + 2, n);
        d->len += k - 1;
    }
    put_len(d->p + mark + 1, n);
}

void ca__der_uint(struct ca__der *d, const unsigned char *be, size_t n)
{
    unsigned char tmp[80];

    while (n > 1 && be[0] == 0)
        be++, n--;
    if (n == 0 || n >= sizeof(tmp)) {
        d->err = d->err ? d->err : -EINVAL;
        return;
    }
    if (be[0] & 0x80) {
        tmp[0] = 0;
        memcpy(tmp + 1, be, n);
        ca__der_tlv(d, 0x02, tmp, n + 1);
    } else {
        ca__der_tlv(d, 0x02, be, n);
    }
}

void ca__der_time(struct ca__der *d, time_t t)
{
    struct tm tm;
    char s[32];
    int n;

    if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 1950) {
        d->err = d->err ? d->err : -EINVAL;
        return;
    }
    if (tm.tm_year + 1900 < 2050) {
        n = snprintf(s, sizeof(s), "%02d%02d%02d%02d%02d%02dZ", tm.tm_year % 100, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        ca__der_tlv(d, 0x17, s, (size_t)n);
    } else {
        n = snprintf(s, sizeof(s), "%04d%02d%02d%02d%02d%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        ca__der_tlv(d, 0x18, s, (size_t)n);
    }
}

/* ---- reader -------------------------------------------------------------------------------- */

int ca__rd_peek(const struct ca__rd *r)
{
    return r->len ? r->p[0] : -1;
}

int ca__rd_next(struct ca__rd *r, unsigned tag, struct ca__rd *content, struct ca__rd *whole)
{
    size_t n, hl = 2;

    if (r->len < 2 || r->p[0] != tag)
        return -1;
    n = r->p[1];
    if (n & 0x80) {
        size_t k = n & 0x7f;

        if (k == 0 || k > 3 || r->len < 2 + k || r->p[2] == 0)
            return -1; /* indefinite, too long, or non-minimal */
        n = 0;
        for (size_t i = 0; i < k; i++)
            n = (n << 8) | r->p[2 + i];
        if (n < 0x80 || len_size(n) != k + 1)
            return -1;
        hl = 2 + k;
    }
    if (n > r->len - hl)
        return -1;
    if (content) {
        content->p = r->p + hl;
        content->len = n;
    }
    if (whole) {
        whole->p = r->p;
        whole->len = hl + n;
    }
    r->p += hl + n;
    r->len -= hl + n;
    return 0;
}

/* ---- PEM ----------------------------------------------------------------------------------- */

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int ca__pem_decode(const char *pem, size_t len, const char *label, unsigned char **der,
                   size_t *der_len)
{
    char begin[80], end[80];
    size_t bl, el, i = 0, j, body_end, o = 0;
    char *out = NULL;
    int rc;

    bl = (size_t)snprintf(begin, sizeof(begin), "-----BEGIN %s-----", label);
    el = (size_t)snprintf(end, sizeof(end), "-----END %s-----", label);
    while (i < len && is_ws(pem[i]))
        i++;
    if (len - i < bl || memcmp(pem + i, begin, bl) != 0)
        return ERR_PARSE;
    i += bl;
    /* find the END line */
    for (j = i; j + el <= len; j++)
        if (pem[j] == '-' && memcmp(pem + j, end, el) == 0)
            break;
    if (j + el > len)
        return ERR_PARSE;
    body_end = j;
    for (j += el; j < len; j++)
        if (!is_ws(pem[j]))
            return ERR_PARSE;
    /* canonical: padding makes a multiple of 4 characters and leftover bits are zero */
    rc = base64_decode_n(pem + i, body_end - i, BASE64_PADDED, &out, &o);
    if (rc < 0)
        return rc;
    if (o == 0) {
        free(out);
        return ERR_PARSE;
    }
    *der = (unsigned char *)out;
    *der_len = o;
    return 0;
}

int ca__pem_append(struct ca__der *out, const char *label, const unsigned char *der, size_t n)
{
    char line[80];
    int k;

    k = snprintf(line, sizeof(line), "-----BEGIN %s-----\n", label);
    ca__der_raw(out, line, (size_t)k);
    for (size_t i = 0; i < n; i += 48) {
        size_t c = n - i < 48 ? n - i : 48;
        int w;

        if (der_grow(out, 66) < 0)
            break;
        w = EVP_EncodeBlock(out->p + out->len, der + i, (int)c);
        out->len += (size_t)w;
        out->p[out->len++] = '\n';
    }
    k = snprintf(line, sizeof(line), "-----END %s-----\n", label);
    ca__der_raw(out, line, (size_t)k);
    return out->err;
}

void ca__hex(const unsigned char *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

int ca__x509_fingerprint(X509 *x, char out[CA_FINGERPRINT_HEX + 1])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);

    if (n <= 0)
        return -ENOMEM;
    SHA256(der, (size_t)n, md);
    OPENSSL_free(der);
    ca__hex(md, sizeof(md), out);
    return 0;
}

int ca__x509_pem_append(struct ca__der *out, X509 *x)
{
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der), rc;

    if (n <= 0)
        return -ENOMEM;
    rc = ca__pem_append(out, "CERTIFICATE", der, (size_t)n);
    OPENSSL_free(der);
    return rc;
}

int ca__asn1_time(const ASN1_TIME *t, time_t *out)
{
    struct tm tm;

    if (!t || !ASN1_TIME_to_tm(t, &tm))
        return -1;
    *out = timegm(&tm);
    return 0;
}

int ca__refuse(struct diag *diag, enum ca_refusal code, const char *fmt, ...)
{
    va_list ap;

    if (diag) {
        diag->code = code;
        va_start(ap, fmt);
        diag_vset(diag, fmt, ap);
        va_end(ap);
    }
    return ERR_INVALID;
}

const char *ca_refusal_str(enum ca_refusal r)
{
    switch (r) {
    case CA_REFUSAL_NONE:
        return "None";
    case CA_REFUSAL_TOO_LARGE:
        return "TooLarge";
    case CA_REFUSAL_NOT_PEM:
        return "NotPEM";
    case CA_REFUSAL_MALFORMED:
        return "Malformed";
    case CA_REFUSAL_BAD_SIGNATURE:
        return "BadSignature";
    case CA_REFUSAL_UNSUPPORTED_ALG:
        return "UnsupportedAlgorithm";
    case CA_REFUSAL_WEAK_KEY:
        return "WeakKey";
    case CA_REFUSAL_UNSUPPORTED_KEY:
        return "UnsupportedKey";
    case CA_REFUSAL_KEY_MISMATCH:
        return "KeyMismatch";
    case CA_REFUSAL_NOT_CA:
        return "NotCA";
    case CA_REFUSAL_EXPIRED:
        return "Expired";
    case CA_REFUSAL_CHAIN_INVALID:
        return "ChainInvalid";
    case CA_REFUSAL_NO_ROOT:
        return "NoRoot";
    case CA_REFUSAL_ENCRYPTED_KEY:
        return "EncryptedKey";
    case CA_REFUSAL_NOT_IN_BUNDLE:
        return "NotInBundle";
    case CA_REFUSAL_NREASONS:
        break;
    }
    return "Unknown";
}
