/*
 * utf8.h - well-formed UTF-8 (RFC 3629; table 3-7 of the Unicode standard): no overlong forms,
 * no surrogates (U+D800..U+DFFF), nothing above U+10FFFF. Pure functions, any thread.
 */
#ifndef WEFT_CORE_UTF8_H
#define WEFT_CORE_UTF8_H

#include <stddef.h>

/* Length (1 to 4) of the well-formed sequence starting at p (p < end), or 0 when there is none. */
size_t utf8_seq_len(const unsigned char *p, const unsigned char *end);

/*
 * Drop from the NUL-terminated s, in place, every byte that is not part of a well-formed
 * sequence: for text cut at a byte count (printf precisions, fixed buffers) that must stay
 * valid UTF-8, as JSON strings must.
 */
void utf8_scrub(char *s);

#endif
