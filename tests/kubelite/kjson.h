/*
 * kjson.h - small jansson conveniences shared by kubelite's files.
 */
#ifndef KUBELITE_KJSON_H
#define KUBELITE_KJSON_H

#include <jansson.h>
#include <stdbool.h>
#include <string.h>

/* String member of obj, or dflt when absent or not a string. */
static inline const char *jstr_or(const json_t *obj, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : dflt;
}

/* String member of obj, or NULL. */
static inline const char *jstr(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/* obj.a.b (two levels), or NULL. */
static inline json_t *jget2(const json_t *obj, const char *a, const char *b)
{
    return json_object_get(json_object_get(obj, a), b);
}

/* Does the string array list hold v, or the wildcard "*"? (RBAC rules, webhook rules) */
static inline bool jlist_has(const json_t *list, const char *v)
{
    size_t i;
    json_t *x;
    json_array_foreach(list, i, x)
    {
        const char *s = json_string_value(x);
        if (s && (strcmp(s, "*") == 0 || strcmp(s, v) == 0))
            return true;
    }
    return false;
}

#endif
