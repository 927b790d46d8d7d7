/*
 * map.c - the string-keyed hash map of map.h. The probe loop and the hash are the hot path of
 * the controller's incremental compile (bench/compile_bench.c): keep them lean.
 */
#include <stdlib.h>
#include <string.h>

#include "core/map.h"

char map__tomb[1];

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    h ^= h >> 29;
    return h ? h : 1;
}

static struct map_slot *find(const struct map *m, const char *key, uint64_t h)
{
    size_t mask, i;
    if (!m->cap)
        return NULL;
    mask = m->cap - 1;
    for (i = h & mask;; i = (i + 1) & mask) {
        struct map_slot *s = &m->s[i];
        if (!s->key)
            return NULL;
        if (s->key != MAP_TOMB && s->h == h && !strcmp(s->key, key))
            return s;
    }
}

static int grow(struct map *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 8, i;
    struct map_slot *ns;

    if (m->n * 2 < m->cap)
        ncap = m->cap; /* mostly tombstones: rehash at the same size */
    ns = calloc(ncap, sizeof(*ns));
    if (!ns)
        return -ENOMEM;
    for (i = 0; i < m->cap; i++) {
        struct map_slot *o = &m->s[i];
        size_t j;
        if (!MAP_LIVE(o))
            continue;
        for (j = o->h & (ncap - 1); ns[j].key; j = (j + 1) & (ncap - 1))
            ;
        ns[j] = *o;
    }
    free(m->s);
    m->s = ns;
    m->cap = ncap;
    m->used = m->n;
    return 0;
}

void *map_get(const struct map *m, const char *key)
{
    struct map_slot *s = find(m, key, str_hash(key));
    return s ? s->val : NULL;
}

const char *map_key(const struct map *m, const char *key)
{
    struct map_slot *s = find(m, key, str_hash(key));
    return s ? s->key : NULL;
}

int map_put(struct map *m, const char *key, void *val)
{
    uint64_t h = str_hash(key);
    struct map_slot *s = find(m, key, h);
    size_t i;
    char *k;

    if (s) {
        s->val = val;
        return 0;
    }
    if ((m->used + 1) * 4 > m->cap * 3 && grow(m) < 0)
        return -ENOMEM;
    k = strdup(key);
    if (!k)
        return -ENOMEM;
    for (i = h & (m->cap - 1); MAP_LIVE(&m->s[i]); i = (i + 1) & (m->cap - 1))
        ;
    if (!m->s[i].key)
        m->used++;
    m->s[i].key = k;
    m->s[i].h = h;
    m->s[i].val = val;
    m->n++;
    return 0;
}

void *map_del(struct map *m, const char *key)
{
    struct map_slot *s = find(m, key, str_hash(key));
    void *v;
    if (!s)
        return NULL;
    v = s->val;
    free(s->key);
    s->key = MAP_TOMB;
    s->val = NULL;
    m->n--;
    return v;
}

void map_release(struct map *m)
{
    size_t i;
    for (i = 0; i < m->cap; i++)
        if (MAP_LIVE(&m->s[i]))
            free(m->s[i].key);
    FREE_AND_NULL(m->s);
    m->cap = m->n = m->used = 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

const char **map_sorted_keys(const struct map *m, size_t *n, int *rc)
{
    const char **v;
    size_t k = 0;

    *n = 0;
    *rc = 0;
    if (!m->n)
        return NULL;
    v = malloc(m->n * sizeof(*v));
    if (!v) {
        *rc = -ENOMEM;
        return NULL;
    }
    MAP_FOREACH(m, s)
    v[k++] = s->key;
    qsort(v, k, sizeof(*v), cmp_str);
    *n = k;
    return v;
}
