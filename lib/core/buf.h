/*
 * buf.h - a growable byte buffer, always NUL-terminated after len bytes.
 *
 * struct buf lives in caller storage: buf_init before use, buf_release after. On -ENOMEM the
 * buffer keeps its previous contents.
 */
#ifndef WEFT_CORE_BUF_H
#define WEFT_CORE_BUF_H

#include <stddef.h>

#include "core/err.h"

struct buf {
    char *p;
    size_t len;
    size_t cap;
};

void buf_init(struct buf *b);
void buf_release(struct buf *b);
void buf_reset(struct buf *b);
int buf_reserve(struct buf *b, size_t extra) WUR;
int buf_append(struct buf *b, const void *data, size_t n) WUR;
int buf_puts(struct buf *b, const char *s) WUR;
int buf_printf(struct buf *b, const char *fmt, ...) PRINTF_LIKE(2, 3) WUR;
/* Drop the first n bytes. */
void buf_consume(struct buf *b, size_t n);
/* Hand out the storage (caller frees with free()); the buffer is reset. Never NULL. */
char *buf_take(struct buf *b);

#endif
