/*
 * map_test.c - core/map.h: insert, replace, delete, growth with stable key pointers,
 * tombstone reuse, sorted keys, deleting while walking, and a failed key copy leaving the map
 * unchanged.
 */
#include <stdint.h>

#include "core/map.h"
#include "tests/unit/core/core_test.h"
#include "tests/unit/unit.h"

#define V(n) ((void *)(uintptr_t)(n))

void t_map_put_get_del(void)
{
    struct map m = MAP_INIT;
    char key[8] = "a";

    CHECK(map_get(&m, "a") == NULL);
    CHECK(map_del(&m, "a") == NULL);
    CHECK_INT(map_put(&m, key, V(1)), 0);
    key[0] = 'z'; /* the map keeps its own copy */
    CHECK(map_get(&m, "a") == V(1));
    CHECK(map_get(&m, "z") == NULL);
    CHECK_INT(map_put(&m, "a", V(2)), 0); /* replaces */
    CHECK(map_get(&m, "a") == V(2));
    CHECK_INT(map_len(&m), 1);
    CHECK_STR(map_key(&m, "a"), "a");
    CHECK(map_key(&m, "b") == NULL);
    CHECK_INT(map_put(&m, "", V(3)), 0); /* the empty key is a key */
    CHECK(map_get(&m, "") == V(3));
    CHECK(map_del(&m, "a") == V(2));
    CHECK(map_get(&m, "a") == NULL);
    CHECK_INT(map_len(&m), 1);
    map_release(&m);
    CHECK_INT(map_len(&m), 0);
    map_release(&m); /* twice is fine */
}

void t_map_grow_keeps_keys(void)
{
    struct map m = MAP_INIT;
    const char *first;
    char k[32];

    REQUIRE(map_put(&m, "k0", V(1)) == 0);
    first = map_key(&m, "k0");
    for (int i = 1; i < 10000; i++) {
        snprintf(k, sizeof(k), "k%d", i);
        REQUIRE(map_put(&m, k, V(i + 1)) == 0);
    }
    CHECK_INT(map_len(&m), 10000);
    CHECK(map_key(&m, "k0") == first); /* same address after many grows */
    for (int i = 0; i < 10000; i++) {
        snprintf(k, sizeof(k), "k%d", i);
        CHECK(map_get(&m, k) == V(i + 1));
    }
    CHECK(m.used * 4 <= m.cap * 3);
    map_release(&m);
}

void t_map_tombstones(void)
{
    struct map m = MAP_INIT;
    char k[32];
    size_t cap;

    /* insert and delete many more keys than the table holds: it must not grow without bound */
    REQUIRE(map_put(&m, "keep", V(7)) == 0);
    for (int i = 0; i < 5; i++) {
        snprintf(k, sizeof(k), "t%d", i);
        REQUIRE(map_put(&m, k, V(1)) == 0);
    }
    cap = m.cap;
    for (int i = 0; i < 100000; i++) {
        snprintf(k, sizeof(k), "x%d", i);
        REQUIRE(map_put(&m, k, V(1)) == 0);
        CHECK(map_del(&m, k) == V(1));
    }
    CHECK_INT(map_len(&m), 6);
    CHECK(m.cap <= 2 * cap); /* one doubling for the 6 live keys, then rehashes in place */
    CHECK(map_get(&m, "keep") == V(7));
    map_release(&m);
}

void t_map_sorted_keys(void)
{
    struct map m = MAP_INIT;
    const char **keys;
    size_t n = 99;
    int rc = 1;

    keys = map_sorted_keys(&m, &n, &rc);
    CHECK(keys == NULL);
    CHECK_INT(n, 0);
    CHECK_INT(rc, 0);
    REQUIRE(map_put(&m, "ns/b", V(1)) == 0 && map_put(&m, "ns/a", V(1)) == 0 &&
            map_put(&m, "a/z", V(1)) == 0 && map_put(&m, "ns/c", V(1)) == 0);
    IGNORE_RESULT(map_del(&m, "ns/c"));
    keys = map_sorted_keys(&m, &n, &rc);
    REQUIRE(keys != NULL);
    CHECK_INT(rc, 0);
    CHECK_INT(n, 3);
    CHECK_STR(keys[0], "a/z");
    CHECK_STR(keys[1], "ns/a");
    CHECK_STR(keys[2], "ns/b");
    free(keys);
    map_release(&m);
}

void t_map_foreach_delete(void)
{
    struct map m = MAP_INIT;
    char k[16];
    int seen = 0;

    for (int i = 0; i < 100; i++) {
        snprintf(k, sizeof(k), "%d", i);
        REQUIRE(map_put(&m, k, V(i + 1)) == 0);
    }
    MAP_FOREACH(&m, s)
    {
        seen++;
        if ((uintptr_t)s->val % 2)
            CHECK(map_del(&m, s->key) != NULL);
    }
    CHECK_INT(seen, 100);
    CHECK_INT(map_len(&m), 50);
    CHECK(map_get(&m, "1") == V(2));
    CHECK(map_get(&m, "0") == NULL);
    map_release(&m);
}

/*
 * -ENOMEM from the key copy: the map is unchanged and still usable. (strdup is interposed here;
 * calloc, the table's, is not: that would fight the sanitizers' own allocator.)
 */
static long fail_at = -1, calls;

char *strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p;

    if (fail_at >= 0 && calls++ == fail_at)
        return NULL;
    p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

void t_map_alloc_failure(void)
{
    char k[16];

    for (long at = 0; at < 40; at++) {
        struct map m = MAP_INIT;
        int i, ok = 0;

        calls = 0;
        fail_at = at;
        for (i = 0; i < 20; i++) {
            snprintf(k, sizeof(k), "k%d", i);
            if (map_put(&m, k, V(i + 1)) == 0)
                ok++;
            else
                CHECK(map_get(&m, k) == NULL); /* not half inserted */
        }
        fail_at = -1;
        CHECK_INT(map_len(&m), ok);
        CHECK_INT(ok, at < calls ? 19 : 20);
        for (i = 0; i < 20; i++) {
            snprintf(k, sizeof(k), "k%d", i);
            if (map_get(&m, k))
                CHECK(map_get(&m, k) == V(i + 1));
        }
        map_release(&m);
    }
}
