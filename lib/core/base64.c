#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"

/* Write the encoding of n bytes to o, which has room for (n + 2) / 3 * 4 bytes. */
static void encode_to(const unsigned char *p, size_t n, char *o)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        size_t left = n - i;

        if (left > 1)
            v |= (uint32_t)p[i + 1] << 8;
        if (left > 2)
            v |= p[i + 2];
        *o++ = tab[(v >> 18) & 63];
        *o++ = tab[(v >> 12) & 63];
        *o++ = left > 1 ? tab[(v >> 6) & 63] : '=';
        *o++ = left > 2 ? tab[v & 63] : '=';
    }
}

char *base64_encode(const void *data, size_t n)
{
    char *out;

    if (n > (SIZE_MAX - 1) / 4 * 3 - 3)
        return NULL;
    out = malloc((n + 2) / 3 * 4 + 1);
    if (!out)
        return NULL;
    encode_to(data, n, out);
    out[(n + 2) / 3 * 4] = '\0';
    return out;
}

int base64_encode_buf(const void *data, size_t n, struct buf *out)
{
    size_t len;
    int rc;

    if (n > (SIZE_MAX - 1) / 4 * 3 - 3)
        return -ENOMEM;
    len = (n + 2) / 3 * 4;
    if ((rc = buf_reserve(out, len + 1)) < 0)
        return rc;
    encode_to(data, n, out->p + out->len);
    out->len += len;
    out->p[out->len] = '\0';
    return 0;
}

int base64_decode(const char *in, char **out, size_t *outlen)
{
    return base64_decode_n(in, strlen(in), 0, out, outlen);
}

int base64_decode_n(const char *in, size_t n, unsigned flags, char **out, size_t *outlen)
{
    size_t o = 0;
    char *res = malloc(n / 4 * 3 + 4);
    unsigned acc = 0;
    int bits = 0, pad = 0;

    if (!res)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)in[i];
        int v;
        if (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t')
            continue;
        if (ch == '=') {
            pad++;
            continue;
        }
        if (pad)
            goto bad; /* data after padding */
        if (ch >= 'A' && ch <= 'Z')
            v = ch - 'A';
        else if (ch >= 'a' && ch <= 'z')
            v = ch - 'a' + 26;
        else if (ch >= '0' && ch <= '9')
            v = ch - '0' + 52;
        else if (ch == '+')
            v = 62;
        else if (ch == '/')
            v = 63;
        else
            goto bad;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            res[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    /* Leftover bits must be the zero padding of a final partial group. */
    if (bits >= 6 || pad > 2 || (acc & ((1u << bits) - 1)) != 0)
        goto bad;
    /* Padded: 2 bits left over need one '=', 4 bits two, none none. */
    if ((flags & BASE64_PADDED) && pad != (bits == 2 ? 1 : bits == 4 ? 2 : 0))
        goto bad;
    res[o] = '\0';
    *out = res;
    *outlen = o;
    return 0;
bad:
    free(res);
    return ERR_PARSE;
}
