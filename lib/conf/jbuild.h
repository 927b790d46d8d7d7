/*
 * jbuild.h - build jansson documents without checking every call: a builder records the first
 * error, and the document is taken (or dropped whole) at the end.
 *
 * jansson's setters return -1 on allocation failure, and its constructors (json_pack, json_string,
 * json_deep_copy, ...) NULL; code that ignores either silently drops a field. Pass the
 * constructors' results straight to the calls below: a NULL value is an error like a failed set.
 * After the first error every call still consumes what it is given and does nothing else, so a
 * builder needs one check, at the end:
 *
 *   struct jbuild b = JBUILD_INIT;
 *   json_t *d = jbuild_new(&b, json_object());
 *   jbuild_set(&b, d, "port", json_integer(port));
 *   jbuild_append(&b, arr, json_pack("{s:s}", "name", n));
 *   return jbuild_end(&b, &d);   -- 0 and d whole, or the error and d NULL (released)
 *
 * Errors are -ENOMEM (a failed allocation: jansson reports nothing finer; the only other way a
 * setter fails, a key that is not UTF-8, cannot happen with keys taken from parsed JSON) or what
 * jbuild_fail was given. Single-threaded, like the values it builds.
 */
#ifndef WEFT_CONF_JBUILD_H
#define WEFT_CONF_JBUILD_H

#include <jansson.h>

#include "core/err.h"

struct jbuild {
    int rc; /* 0, or the first error */
};

#define JBUILD_INIT                                                                                \
    {                                                                                              \
        0                                                                                          \
    }

/* Record rc (negative) unless an error is already recorded. */
void jbuild_fail(struct jbuild *b, int rc);

/* v itself; records -ENOMEM when v is NULL (a constructor failed). */
json_t *jbuild_new(struct jbuild *b, json_t *v);

/* obj[key] = v. Consumes v, even on failure; records -ENOMEM when obj or v is NULL or the set
 * fails. */
void jbuild_set(struct jbuild *b, json_t *obj, const char *key, json_t *v);

/* obj[key] = v, taking a new reference (v is borrowed). */
void jbuild_set_ref(struct jbuild *b, json_t *obj, const char *key, json_t *v);

/* Append v to arr. Consumes v, even on failure; records -ENOMEM as jbuild_set does. */
void jbuild_append(struct jbuild *b, json_t *arr, json_t *v);

/*
 * Finish: returns 0 and leaves *v as it is, or returns the recorded error after releasing *v
 * and setting it to NULL. A NULL *v without a recorded error is -ENOMEM too.
 */
int jbuild_end(struct jbuild *b, json_t **v) WUR;

#endif
