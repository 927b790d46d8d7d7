/*
 * utf8_test.c - well-formed UTF-8: the boundaries of every row of the Unicode standard's table
 * 3-7, and scrubbing cut or invalid bytes.
 */
#include "core/utf8.h"
#include "tests/unit/core/core_test.h"
#include "tests/unit/unit.h"

static size_t len_of(const char *s, size_t n)
{
    return utf8_seq_len((const unsigned char *)s, (const unsigned char *)s + n);
}

#define LEN(lit) len_of(lit, sizeof(lit) - 1)

void t_seq_len(void)
{
    CHECK_INT(LEN("a"), 1);
    CHECK_INT(LEN("\x7f"), 1);
    CHECK_INT(LEN("\xC2\x80"), 2);         /* U+0080 */
    CHECK_INT(LEN("\xDF\xBF"), 2);         /* U+07FF */
    CHECK_INT(LEN("\xE0\xA0\x80"), 3);     /* U+0800 */
    CHECK_INT(LEN("\xED\x9F\xBF"), 3);     /* U+D7FF */
    CHECK_INT(LEN("\xEE\x80\x80"), 3);     /* U+E000 */
    CHECK_INT(LEN("\xEF\xBF\xBF"), 3);     /* U+FFFF */
    CHECK_INT(LEN("\xF0\x90\x80\x80"), 4); /* U+10000 */
    CHECK_INT(LEN("\xF4\x8F\xBF\xBF"), 4); /* U+10FFFF */
    /* overlong forms */
    CHECK_INT(LEN("\xC0\xAF"), 0);
    CHECK_INT(LEN("\xC1\xBF"), 0);
    CHECK_INT(LEN("\xE0\x9F\xBF"), 0);
    CHECK_INT(LEN("\xF0\x8F\xBF\xBF"), 0);
    /* surrogates, above U+10FFFF, bytes that never start a sequence */
    CHECK_INT(LEN("\xED\xA0\x80"), 0);
    CHECK_INT(LEN("\xED\xBF\xBF"), 0);
    CHECK_INT(LEN("\xF4\x90\x80\x80"), 0);
    CHECK_INT(LEN("\xF5\x80\x80\x80"), 0);
    CHECK_INT(LEN("\x80"), 0);
    CHECK_INT(LEN("\xBF"), 0);
    CHECK_INT(LEN("\xFF"), 0);
    /* cut short, or a bad continuation byte */
    CHECK_INT(len_of("\xE4\xB8\xAD", 2), 0);
    CHECK_INT(len_of("\xF0\x9F\x98\x80", 3), 0);
    CHECK_INT(LEN("\xE4(\xAD"), 0);
    CHECK_INT(LEN("\xF0\x9F\x98("), 0);
}

void t_scrub(void)
{
    char a[] = "caf\xC3\xA9 \xE4\xB8\xAD \xF0\x9F\x98\x80";
    char b[] = "cut \xE4\xB8";
    char c[] = "\xFF"
               "a\xC0\xAF"
               "b\xED\xA0\x80"
               "c\x80";
    char d[] = "";

    utf8_scrub(a);
    CHECK_STR(a, "caf\xC3\xA9 \xE4\xB8\xAD \xF0\x9F\x98\x80");
    utf8_scrub(b);
    CHECK_STR(b, "cut ");
    utf8_scrub(c);
    CHECK_STR(c, "abc");
    utf8_scrub(d);
    CHECK_STR(d, "");
}
