/*
 * map.h - a string-keyed hash map: open addressing with linear probing, FNV-1a hashing, keys
 * copied in, values borrowed (void *; the map never frees or dereferences them).
 *
 * Invariants: cap is 0 or a power of two; the load (live entries plus tombstones) stays at or
 * below 3/4 of cap; a key pointer handed out (map_key, MAP_FOREACH's slot->key) stays valid, at
 * the same address, until that key is deleted or the map released, even while the table grows.
 * Deleting during MAP_FOREACH is allowed (deletion leaves a tombstone and moves nothing);
 * inserting during it is not (a grow moves the slots).
 *
 * struct map lives in caller storage: zero it (MAP_INIT or memset) before use, map_release
 * after. Not thread-safe: one thread at a time per map.
 */
#ifndef WEFT_CORE_MAP_H
#define WEFT_CORE_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

struct map_slot {
    char *key; /* NULL: empty; MAP_TOMB: deleted */
    uint64_t h;
    void *val;
};

struct map {
    struct map_slot *s;
    size_t cap;  /* 0 or a power of two */
    size_t n;    /* live entries */
    size_t used; /* live + tombstones */
};

#define MAP_INIT                                                                                   \
    {                                                                                              \
        NULL, 0, 0, 0                                                                              \
    }

extern char map__tomb[];
#define MAP_TOMB map__tomb
#define MAP_LIVE(slot) ((slot)->key && (slot)->key != MAP_TOMB)
/* Every live slot, in table order (not sorted; use map_sorted_keys for a stable order). */
#define MAP_FOREACH(m, slot)                                                                       \
    for (struct map_slot *slot = (m)->s; slot && slot < (m)->s + (m)->cap; slot++)                 \
        if (MAP_LIVE(slot))

/* The value stored for key, or NULL when absent (store non-NULL values to tell them apart). */
void *map_get(const struct map *m, const char *key);
/* The map's own copy of key (stable, see above), or NULL when absent. */
const char *map_key(const struct map *m, const char *key);
/* Insert or replace. Returns 0 or -ENOMEM (map unchanged then). */
int map_put(struct map *m, const char *key, void *val) WUR;
/* Remove key; returns its value, or NULL when absent. Frees the map's copy of the key. */
void *map_del(struct map *m, const char *key);
/* Number of live entries. */
static inline size_t map_len(const struct map *m)
{
    return m->n;
}
/* Free the table and the keys; values are the caller's (free them first, with MAP_FOREACH).
 * The map is empty and reusable afterwards. Accepts a zeroed map. */
void map_release(struct map *m);
/* The keys in strcmp order (borrowed pointers, valid until the map changes); the caller frees
 * the array only. *n gets the count. NULL with *n 0 when empty, or when out of memory (*rc then
 * -ENOMEM; otherwise *rc is 0). */
const char **map_sorted_keys(const struct map *m, size_t *n, int *rc);

#endif
