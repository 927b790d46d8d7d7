/*
 * fuzz_json.c - conf_json_loadb/conf_json_dump (lib/conf/jsonio.h) against jansson, the
 * reference jsonio.h promises to match.
 *
 * Invariants, for any bytes:
 *   - conf_json_loadb and json_loadb(flags 0) both accept or both refuse, with the one
 *     documented exception: jansson skips a NUL byte after a number, ours refuses any input
 *     with a NUL byte that jansson accepts;
 *   - a refusal says what and where: err.text non-empty, 0 <= position <= len, line and column
 *     >= 1, code json_error_invalid_syntax (never "out of memory" here);
 *   - when both accept, the values are json_equal and conf_json_dump writes exactly the bytes
 *     of json_dumps(v, JSON_COMPACT), for our value and for jansson's.
 */
#include <jansson.h>
#include <string.h>

#include "conf/jsonio.h"
#include "core/buf.h"
#include "tests/fuzz/fuzz.h"

/* conf_json_dump must give exactly json_dumps(v, JSON_COMPACT). */
static void check_dump(const json_t *v)
{
    char *ref = json_dumps(v, JSON_COMPACT);
    struct buf b;
    int rc;

    buf_init(&b);
    rc = conf_json_dump(v, &b);
    FUZZ_ASSERTF(ref != NULL, "jansson cannot write a value it read");
    FUZZ_ASSERTF(rc == 0, "conf_json_dump refused a value jansson writes: %d", rc);
    FUZZ_ASSERTF(b.len == strlen(ref) && memcmp(b.p, ref, b.len) == 0,
                 "dumps differ:\n  jansson %.400s\n  ours    %.400s", ref, b.p);
    free(ref);
    buf_release(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    json_error_t je, oe;
    json_t *ref, *got;

    memset(&oe, 0, sizeof(oe));
    ref = json_loadb(text, size, 0, &je);
    got = conf_json_loadb(text, size, &oe);
    if (ref && memchr(text, '\0', size)) {
        /* the documented difference: a NUL byte is never JSON */
        FUZZ_ASSERTF(got == NULL, "a NUL byte outside a string was accepted");
        goto out;
    }
    FUZZ_ASSERTF(!ref == !got, "jansson %s (%s), ours %s (%s at %d)", ref ? "accepts" : "refuses",
                 ref ? "" : je.text, got ? "accepts" : "refuses", got ? "" : oe.text, oe.position);
    if (!got) {
        FUZZ_ASSERTF(oe.text[0] != '\0', "a refusal without a reason");
        FUZZ_ASSERTF(oe.position >= 0 && (size_t)oe.position <= size, "position %d of %zu",
                     oe.position, size);
        FUZZ_ASSERTF(oe.line >= 1 && oe.column >= 1, "line %d column %d", oe.line, oe.column);
        FUZZ_ASSERTF(json_error_code(&oe) == json_error_invalid_syntax, "error code %d (%s)",
                     (int)json_error_code(&oe), oe.text);
        goto out;
    }
    FUZZ_ASSERTF(conf_json_equal(ref, got), "values differ");
    check_dump(got);
    check_dump(ref);
out:
    json_decref(ref);
    json_decref(got);
    return 0;
}
