/*
 * pct.c - percent-encoding, see pct.h.
 */
#include <string.h>

#include "core/pct.h"

static int unreserved(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

int pct_encode_buf(struct buf *b, const char *s, const char *keep)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s), o;
    int rc;

    if (n > ((size_t)-1 - b->len - 1) / 3)
        return -ENOMEM;
    if ((rc = buf_reserve(b, n * 3)) < 0)
        return rc;
    o = b->len;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;

        if (unreserved(ch) || (keep && *keep && strchr(keep, ch))) {
            b->p[o++] = (char)ch;
        } else {
            b->p[o++] = '%';
            b->p[o++] = hex[ch >> 4];
            b->p[o++] = hex[ch & 15];
        }
    }
    b->len = o;
    b->p[o] = '\0';
    return 0;
}
