/*
 * hold_test.c - core/hold.h: the owner's and the jobs' references, release by the last one,
 * hold_gone after the owner lets go, holds inside and beside the object.
 */
#include <stdlib.h>

#include "core/hold.h"
#include "tests/unit/core/core_test.h"
#include "tests/unit/unit.h"

struct owner {
    struct hold hold;
    int *released; /* counts releases, outside the freed memory */
};

static void owner_release(void *obj)
{
    struct owner *o = obj;
    (*o->released)++;
    free(o);
}

void t_hold_owner_first(void)
{
    int released = 0;
    struct owner *o = calloc(1, sizeof(*o));
    struct hold *job1, *job2;

    REQUIRE(o);
    o->released = &released;
    hold_init(&o->hold, o, owner_release);
    job1 = hold_get(&o->hold);
    job2 = hold_get(&o->hold);
    CHECK(job1 == &o->hold && job2 == &o->hold);
    CHECK(!hold_gone(&o->hold));
    hold_drop(&o->hold); /* the owner stops while two jobs run */
    CHECK_INT(released, 0);
    CHECK(hold_gone(job1)); /* the jobs see it and report nothing */
    hold_put(job1);
    CHECK_INT(released, 0);
    hold_put(job2); /* the last one releases */
    CHECK_INT(released, 1);
}

void t_hold_jobs_first(void)
{
    int released = 0;
    struct owner *o = calloc(1, sizeof(*o));

    REQUIRE(o);
    o->released = &released;
    hold_init(&o->hold, o, owner_release);
    hold_get(&o->hold);
    hold_put(&o->hold); /* a job that finished while the owner lives */
    CHECK_INT(released, 0);
    CHECK(!hold_gone(&o->hold));
    hold_drop(&o->hold); /* nothing in flight: released at once */
    CHECK_INT(released, 1);
}

static int freed_value;

static void value_release(void *obj)
{
    freed_value = *(int *)obj;
    free(obj);
}

void t_hold_beside(void)
{
    int *v = malloc(sizeof(*v));
    struct hold *h = NULL, *job;

    REQUIRE(v);
    *v = 42;
    REQUIRE(hold_new(v, value_release, &h) == 0);
    job = hold_get(h);
    h->obj = v; /* an owner may set obj before it lets go (weftd's CA is made later) */
    hold_drop(h);
    CHECK_INT(freed_value, 0);
    CHECK(hold_gone(job));
    hold_put(job); /* releases v, then frees the hold itself (ASan checks both) */
    CHECK_INT(freed_value, 42);

    /* a NULL release: only the hold goes */
    REQUIRE(hold_new(NULL, NULL, &h) == 0);
    hold_drop(h);
}
