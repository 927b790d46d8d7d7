/*
 * jsonio.h - fast JSON text to jansson values and back, for the hot paths (admission reviews).
 *
 * jansson's own reader and writer run at about 60 and 120 MB/s on our machines: a 6 KB
 * AdmissionReview costs 100 us to parse and 50 us to write, more than the injection itself.
 * These two functions produce and accept the same jansson values, with the same rules:
 *
 *   conf_json_loadb  == json_loadb(buf, len, 0, err): the text must be one object or array
 *                       (RFC 8259 grammar, whitespace around it, nothing after it); strings are
 *                       strict UTF-8 (no overlong forms, surrogates or code points > U+10FFFF),
 *                       without raw control characters and without \u0000; escapes and
 *                       surrogate pairs as RFC 8259; integers that fit json_int_t become
 *                       integers (others are an error), numbers with a fraction or exponent
 *                       become reals (overflow is an error); a repeated key keeps the last
 *                       value; nesting deeper than 2,048 is an error. One deliberate
 *                       difference: jansson skips a NUL byte right after a number ("[1\0]"
 *                       reads as [1]); a NUL byte outside a string is not JSON, and here it is
 *                       an error.
 *   conf_json_dump   == json_dumps(v, JSON_COMPACT), byte for byte: keys in insertion order,
 *                       strings escaped as jansson does (", \, \b \f \n \r \t, other controls
 *                       as \u00XX; UTF-8 passes through), integers in decimal, reals as
 *                       "%.17g" with ".0" added when needed and the exponent's "+" and leading
 *                       zeros dropped.
 *
 * tests/unit/conf_json checks both against jansson on every JSON document in the repository's
 * test data, the official OpenAPI documents and generated and mutated inputs. Both functions are
 * pure and reentrant: any thread may call them.
 */
#ifndef WEFT_CONF_JSONIO_H
#define WEFT_CONF_JSONIO_H

#include <jansson.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/err.h"

/*
 * Parse len bytes of text. Returns a new reference (caller json_decref()s it), or NULL with err
 * (if not NULL) set: err->text names the problem, err->line/column (1-based) and err->position
 * (byte offset) say where; json_error_code(err) is json_error_out_of_memory when memory ran out
 * (text "out of memory") and json_error_invalid_syntax for anything wrong with the text.
 */
json_t *conf_json_loadb(const char *text, size_t len, json_error_t *err);

/*
 * Append the compact JSON text of v (an object, array or any scalar) to out. Returns 0;
 * ERR_INVALID for a value jansson would also refuse to write (a string that is not UTF-8,
 * nesting deeper than 2,048, which includes a container that holds itself); -ENOMEM. On error
 * out may hold a partial text after its previous contents.
 */
int conf_json_dump(const json_t *v, struct buf *out) WUR;

/*
 * 1 when a and b hold the same value (json_equal's rules: same types, numbers, strings, arrays in
 * order, objects with the same members in any order), 0 otherwise. Unlike jansson's json_equal,
 * object keys are compared with their lengths, so keys holding a NUL byte (which both readers
 * accept) are not cut at it. Either may be NULL (equal only to NULL).
 */
int conf_json_equal(const json_t *a, const json_t *b);

#endif
