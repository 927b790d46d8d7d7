/*
 * codec_test.c - core/base64.h (both modes), core/pct.h and core/diag.h.
 */
#include <stdlib.h>

#include "core/base64.h"
#include "core/diag.h"
#include "core/pct.h"
#include "tests/unit/core/core_test.h"
#include "tests/unit/unit.h"

static int dec(const char *in, unsigned flags, char **out, size_t *n)
{
    return base64_decode_n(in, strlen(in), flags, out, n);
}

void t_base64_roundtrip(void)
{
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const enc[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                      "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    char *out = NULL, *e;
    size_t n = 0;

    for (size_t i = 0; i < ARRAY_LEN(plain); i++) {
        e = base64_encode(plain[i], strlen(plain[i]));
        REQUIRE(e != NULL);
        CHECK_STR(e, enc[i]);
        free(e);
        CHECK_INT(base64_decode(enc[i], &out, &n), 0);
        CHECK_INT(n, strlen(plain[i]));
        CHECK_STR(out, plain[i]);
        free(out);
        CHECK_INT(dec(enc[i], BASE64_PADDED, &out, &n), 0);
        CHECK_STR(out, plain[i]);
        free(out);
    }
    /* white space is skipped; padding optional by default */
    CHECK_INT(base64_decode(" Zm9v\r\nYg ", &out, &n), 0);
    CHECK_STR(out, "foob");
    free(out);
    CHECK_INT(base64_decode("Zm9vYg", &out, &n), 0);
    CHECK_STR(out, "foob");
    free(out);
    /* outside the alphabet, data after padding, a dangling character, non-zero leftover bits */
    CHECK_INT(base64_decode("Zm9v!", &out, &n), ERR_PARSE);
    CHECK_INT(base64_decode("Zg==Zg==", &out, &n), ERR_PARSE);
    CHECK_INT(base64_decode("Zm9vY", &out, &n), ERR_PARSE);
    CHECK_INT(base64_decode("Zh==", &out, &n), ERR_PARSE);
    /* a NUL inside the counted bytes is not skipped */
    CHECK_INT(base64_decode_n("Zm\0v", 4, 0, &out, &n), ERR_PARSE);
}

void t_base64_padded(void)
{
    char *out = NULL;
    size_t n = 0;

    CHECK_INT(dec("Zm9vYg==", BASE64_PADDED, &out, &n), 0);
    CHECK_INT(n, 4);
    free(out);
    CHECK_INT(dec("Zm9v\nYmE=\n", BASE64_PADDED, &out, &n), 0);
    CHECK_STR(out, "fooba");
    free(out);
    CHECK_INT(dec("Zm9vYg", BASE64_PADDED, &out, &n), ERR_PARSE);  /* padding missing */
    CHECK_INT(dec("Zm9vYg=", BASE64_PADDED, &out, &n), ERR_PARSE); /* one '=' short */
    CHECK_INT(dec("Zm9vYmE==", BASE64_PADDED, &out, &n), ERR_PARSE);
    CHECK_INT(dec("Zm9v=", BASE64_PADDED, &out, &n), ERR_PARSE);
    CHECK_INT(dec("Zm9v===", BASE64_PADDED, &out, &n), ERR_PARSE);
}

void t_pct_encode(void)
{
    struct buf b;

    buf_init(&b);
    CHECK_INT(pct_encode_buf(&b, "aZ09-._~", NULL), 0);
    CHECK_STR(b.p, "aZ09-._~");
    buf_reset(&b);
    CHECK_INT(pct_encode_buf(&b, "app=web,tier in (a b)/x:y%\xC3\xA9", NULL), 0);
    CHECK_STR(b.p, "app%3Dweb%2Ctier%20in%20%28a%20b%29%2Fx%3Ay%25%C3%A9");
    buf_reset(&b);
    CHECK_INT(buf_puts(&b, "/api/"), 0);
    CHECK_INT(pct_encode_buf(&b, "system:node/a b", ":"), 0);
    CHECK_STR(b.p, "/api/system:node%2Fa%20b");
    CHECK_INT(b.len, strlen(b.p));
    buf_reset(&b);
    CHECK_INT(pct_encode_buf(&b, "", NULL), 0);
    CHECK_STR(b.p, "");
    buf_release(&b);
}

void t_diag(void)
{
    struct diag d = {7, "old"};
    char big[DIAG_TEXT_MAX * 2];

    diag_clear(&d);
    CHECK_INT(d.code, 0);
    CHECK_STR(d.text, "");
    d.code = 3;
    diag_set(&d, "spec.backends[%d].service: %s", 0, "required");
    CHECK_STR(d.text, "spec.backends[0].service: required");
    CHECK_INT(d.code, 3); /* the text only */
    diag_set(&d, "second");
    CHECK_STR(d.text, "second"); /* overwrites */
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    diag_set(&d, "%s", big);
    CHECK_INT(strlen(d.text), DIAG_TEXT_MAX - 1);
    diag_set(NULL, "nobody listens");
    diag_clear(NULL);
}
