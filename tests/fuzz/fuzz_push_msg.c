/*
 * fuzz_push_msg.c - push_msg_parse (push/push.h): every frame that crosses the config stream,
 * read by weftd (hello, ack, nack, need from agents) and by the agent (config in both forms,
 * blocks, error, appsExited, trust from weftd).
 *
 * Invariants, for any bytes:
 *   - push_msg_parse returns 0, ERR_PARSE or ERR_INVALID; on failure the message is left zeroed;
 *   - a parsed message has a known type and its strings within their limits;
 *   - it survives the way back: push_msg_encode(m) succeeds, push_msg_parse of that frame gives
 *     the same message field for field, and encoding that again gives the same bytes.
 */
#include <string.h>

#include "push/push.h"
#include "tests/fuzz/fuzz.h"

static int str_eq(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

static void check_same(const struct push_msg *a, const struct push_msg *b)
{
    FUZZ_ASSERTF(a->type == b->type, "type %d != %d", (int)a->type, (int)b->type);
    FUZZ_ASSERT(str_eq(a->pod.ns, b->pod.ns));
    FUZZ_ASSERT(str_eq(a->pod.name, b->pod.name));
    FUZZ_ASSERT(str_eq(a->pod.uid, b->pod.uid));
    FUZZ_ASSERT(str_eq(a->agent, b->agent));
    FUZZ_ASSERT(str_eq(a->last_hash, b->last_hash));
    FUZZ_ASSERT(a->version == b->version);
    FUZZ_ASSERT(str_eq(a->hash, b->hash));
    FUZZ_ASSERT(str_eq(a->code, b->code));
    FUZZ_ASSERTF(str_eq(a->reason, b->reason), "reason %s != %s", a->reason ? a->reason : "NULL",
                 b->reason ? b->reason : "NULL");
    FUZZ_ASSERTF(str_eq(a->config, b->config), "config\n  %.300s\n  %.300s",
                 a->config ? a->config : "NULL", b->config ? b->config : "NULL");
    FUZZ_ASSERT(str_eq(a->bundle, b->bundle));
    FUZZ_ASSERT(a->nmembers == b->nmembers && a->nblocks == b->nblocks && a->nhashes == b->nhashes);
    for (size_t i = 0; i < a->nmembers; i++) {
        FUZZ_ASSERT(str_eq(a->members[i].key, b->members[i].key));
        FUZZ_ASSERT(str_eq(a->members[i].text, b->members[i].text));
        FUZZ_ASSERT(a->members[i].nrefs == b->members[i].nrefs);
        for (size_t j = 0; j < a->members[i].nrefs; j++)
            FUZZ_ASSERT(str_eq(a->members[i].refs[j].h, b->members[i].refs[j].h));
    }
    for (size_t i = 0; i < a->nblocks; i++) {
        FUZZ_ASSERT(str_eq(a->blocks[i].hash, b->blocks[i].hash));
        FUZZ_ASSERT(str_eq(a->blocks[i].text, b->blocks[i].text));
    }
    for (size_t i = 0; i < a->nhashes; i++)
        FUZZ_ASSERT(str_eq(a->hashes[i].h, b->hashes[i].h));
}

static int all_zero(const struct push_msg *m)
{
    static const struct push_msg zero;

    return memcmp(m, &zero, sizeof(zero)) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct push_msg m, again;
    char *frame = NULL, *frame2 = NULL;
    int rc;

    memset(&m, 0xa5, sizeof(m)); /* the parser must zero it */
    rc = push_msg_parse((const char *)data, size, &m);
    FUZZ_ASSERTF(rc == 0 || rc == ERR_PARSE || rc == ERR_INVALID, "push_msg_parse returned %d", rc);
    if (rc) {
        FUZZ_ASSERT(all_zero(&m));
        return 0;
    }
    FUZZ_ASSERT(m.type >= PUSH_MSG_HELLO && m.type <= PUSH_MSG_BLOCKS);
    FUZZ_ASSERT(!m.reason || strlen(m.reason) <= PUSH_REASON_MAX);
    FUZZ_ASSERT(m.type == PUSH_MSG_CONFIG || m.config == NULL);
    FUZZ_ASSERT(!m.config || (m.nmembers == 0 && m.nblocks == 0)); /* one form or the other */
    FUZZ_ASSERT(m.type == PUSH_MSG_CONFIG || m.nmembers == 0);
    FUZZ_ASSERT(m.type == PUSH_MSG_NEED || m.type == PUSH_MSG_BLOCKS || m.nhashes == 0);
    FUZZ_ASSERT(m.type != PUSH_MSG_NEED || (m.nhashes >= 1 && m.nhashes <= PUSH_NEED_MAX));
    FUZZ_ASSERT(m.type == PUSH_MSG_HELLO || m.type == PUSH_MSG_ERROR ||
                m.type == PUSH_MSG_APPS_EXITED || m.type == PUSH_MSG_TRUST || m.version >= 1);
    FUZZ_ASSERT((m.type == PUSH_MSG_NACK || m.type == PUSH_MSG_ERROR ||
                 m.type == PUSH_MSG_APPS_EXITED) == (m.reason != NULL));

    rc = push_msg_encode(&m, &frame);
    FUZZ_ASSERTF(rc == 0, "a parsed message does not encode: %d", rc);
    rc = push_msg_parse(frame, strlen(frame), &again);
    FUZZ_ASSERTF(rc == 0, "an encoded frame does not parse: %d: %.500s", rc, frame);
    check_same(&m, &again);
    rc = push_msg_encode(&again, &frame2);
    FUZZ_ASSERT(rc == 0);
    FUZZ_ASSERTF(strcmp(frame, frame2) == 0, "encoding is not stable:\n  %.300s\n  %.300s", frame,
                 frame2);
    free(frame);
    free(frame2);
    push_msg_release(&again);
    push_msg_release(&m);
    return 0;
}
