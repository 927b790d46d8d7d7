/*
 * hold.h - the one way Weft keeps an object alive for work that finishes later: a job on
 * libuv's worker pool (uv_queue_work), or any other callback that may run after the object's
 * owner has let go of it.
 *
 * The pattern, for every worker job:
 *   1. Before queueing, on the loop thread, the job copies the inputs it needs and takes a
 *      reference (hold_get) on each hold whose object it will use: an object shared with the
 *      worker (a struct ca) or the owner it reports back to (a renewal timer's state, an HTTP
 *      request).
 *   2. On the worker thread the job touches only its own copies and objects that are safe to use
 *      from any thread (struct ca); never a hold, never loop-thread state.
 *   3. Its after-work callback (loop thread, also when the job was cancelled or could not be
 *      queued) first asks hold_gone(): when the owner has let go, the job reports nothing and
 *      touches none of the owner's state; it then drops each reference (hold_put).
 *   4. The owner lets go with hold_drop instead of freeing: the object is released by the last
 *      reference, at once when no job holds it, or when the last job finishes.
 *
 * A hold lives in the object it keeps (hold_init) or beside it (hold_new, for objects of another
 * module such as struct ca). A weak link (the job must only learn that the owner went away; the
 * owner frees its own memory) is a hold with a NULL release that lives beside the owner.
 * Loop thread only: holds are not atomic.
 */
#ifndef WEFT_CORE_HOLD_H
#define WEFT_CORE_HOLD_H

#include <stdbool.h>

#include "core/err.h"

typedef void hold_release_fn(void *obj);

struct hold {
    unsigned refs;            /* the owner's (until hold_drop) and one per job */
    bool gone;                /* the owner let go: jobs must not use the owner's state */
    bool heap;                /* made by hold_new: freed after release */
    hold_release_fn *release; /* called once, by the last reference; NULL: nothing */
    void *obj;
};

/* A hold inside obj (or in caller storage): one reference, the owner's. */
void hold_init(struct hold *h, void *obj, hold_release_fn *release);
/* A hold on the heap beside obj; freed with the last reference, after release(obj). Returns 0
 * or -ENOMEM. */
int hold_new(void *obj, hold_release_fn *release, struct hold **out) WUR;
/* One more reference (a job about to be queued). Returns h. */
struct hold *hold_get(struct hold *h);
/* Drop one reference; the last one calls release(obj) (and frees a hold_new hold). */
void hold_put(struct hold *h);
/* The owner lets go: marks the hold gone and drops the owner's reference. Call once. */
void hold_drop(struct hold *h);

/* Has the owner let go? */
static inline bool hold_gone(const struct hold *h)
{
    return h->gone;
}

#endif
