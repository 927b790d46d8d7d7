/*
 * hold.c - keeping an object alive for late work, see hold.h.
 */
#include <assert.h>
#include <stdlib.h>

#include "core/hold.h"

void hold_init(struct hold *h, void *obj, hold_release_fn *release)
{
    h->refs = 1;
    h->gone = false;
    h->heap = false;
    h->release = release;
    h->obj = obj;
}

int hold_new(void *obj, hold_release_fn *release, struct hold **out)
{
    struct hold *h = malloc(sizeof(*h));

    if (!h)
        return -ENOMEM;
    hold_init(h, obj, release);
    h->heap = true;
    *out = h;
    return 0;
}

struct hold *hold_get(struct hold *h)
{
    h->refs++;
    return h;
}

void hold_put(struct hold *h)
{
    bool heap;

    assert(h->refs > 0);
    if (--h->refs)
        return;
    heap = h->heap; /* release may free the memory h lives in (hold_init inside obj) */
    if (h->release)
        h->release(h->obj);
    if (heap)
        free(h);
}

void hold_drop(struct hold *h)
{
    assert(!h->gone);
    h->gone = true;
    hold_put(h);
}
