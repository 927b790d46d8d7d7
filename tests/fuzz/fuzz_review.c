/*
 * fuzz_review.c - webhook_review (webhook/webhook.h): the admission webhook's whole answer to
 * one request body, the bytes the API server (or anyone who can reach the webhook) sends.
 *
 * Every input is answered twice, with the default settings (classic sidecar) and with native
 * sidecars, dry-run injection and no Prometheus annotations. Invariants, for any bytes:
 *   - webhook_review returns 0 (never -ENOMEM for bad input) with a response and status 200
 *     or 400;
 *   - the response is JSON (jansson reads it); a 400 is a Status with a message; a 200 is an
 *     AdmissionReview whose response is an object echoing request.uid with a boolean allowed;
 *   - webhook_review_explain's info agrees with the answer: BAD_REQUEST for a 400, INJECTED
 *     exactly when there is a patch, DENIED exactly when allowed is false, a non-empty reason
 *     for every outcome but INJECTED, pod and reason valid UTF-8 (jansson takes them);
 *   - when the answer carries a patch: patchType is "JSONPatch", the patch is valid base64 of
 *     a JSON array, kubelite's RFC 6902 implementation (tests/kubelite/patch.h) applies it to
 *     the request's object, and undoing the injection (webhook_pod_uninject) on the result gives
 *     the object back (webhook.h's invariant; checked for pods whose container names are
 *     unique, as the API server requires: see names_unique).
 */
#include <jansson.h>
#include <string.h>

#include "core/base64.h"
#include "tests/fuzz/fuzz.h"
#include "tests/kubelite/patch.h"
#include "webhook/webhook.h"

/*
 * Container names unique across spec.containers and spec.initContainers, as the API server
 * requires. Injection keys the original probes by container name, so undoing it on a pod with a
 * repeated name cannot tell the containers apart; such a pod is rejected after admission anyway.
 */
static bool names_unique(const json_t *pod)
{
    static const char *const lists[] = {"initContainers", "containers"};
    const json_t *spec = json_object_get(pod, "spec");
    json_t *seen = json_object();
    bool ok = true;

    FUZZ_ASSERT(seen != NULL);
    for (size_t l = 0; l < 2 && ok; l++) {
        const json_t *arr = json_object_get(spec, lists[l]), *c;
        size_t i;

        json_array_foreach(arr, i, c)
        {
            const char *name = json_string_value(json_object_get(c, "name"));

            if (name && json_object_get(seen, name)) {
                ok = false;
                break;
            }
            if (name)
                FUZZ_ASSERT(json_object_set_new(seen, name, json_true()) == 0);
        }
    }
    json_decref(seen);
    return ok;
}

/* The patch in resp (base64 text) must apply to the input's request.object and undo cleanly. */
static void check_patch(const uint8_t *data, size_t size, const json_t *resp, const char *b64)
{
    char *dec = NULL, msg[512] = "";
    struct diag wd = {0, ""};
    size_t declen = 0;
    json_t *input, *obj, *ops, *out = NULL, *back = NULL;
    json_error_t je;
    int rc;

    FUZZ_ASSERTF(json_is_string(json_object_get(resp, "patchType")) &&
                     strcmp(json_string_value(json_object_get(resp, "patchType")), "JSONPatch") ==
                         0,
                 "a patch without patchType JSONPatch");
    FUZZ_ASSERTF(base64_decode(b64, &dec, &declen) == 0, "patch is not base64: %.200s", b64);
    ops = json_loadb(dec, declen, 0, &je);
    FUZZ_ASSERTF(json_is_array(ops), "decoded patch is not a JSON array (%s): %.300s", je.text,
                 dec);
    /* jansson reads whatever our reader accepted (fuzz_json checks that) */
    input = json_loadb((const char *)data, size, 0, &je);
    FUZZ_ASSERTF(input != NULL, "jansson refuses an input that was injected: %s", je.text);
    obj = json_object_get(json_object_get(input, "request"), "object");
    FUZZ_ASSERT(json_is_object(obj));
    rc = patch_json(obj, ops, &out, msg, sizeof(msg));
    FUZZ_ASSERTF(rc == 0, "the patch does not apply: %d %s", rc, msg);
    rc = webhook_pod_uninject(out, &back, &wd);
    FUZZ_ASSERTF(rc == 0, "uninject of the injected pod failed: %d %s", rc, wd.text);
    FUZZ_ASSERTF(json_equal(back, obj) || !names_unique(obj), "uninject(inject(pod)) != pod");
    json_decref(back);
    json_decref(out);
    json_decref(input);
    json_decref(ops);
    free(dec);
}

/* Text that jansson takes as a string (valid UTF-8). */
static bool utf8_ok(const char *s)
{
    json_t *v = json_string(s);

    json_decref(v);
    return v != NULL;
}

static void review_once(const struct inject_config *cfg, const uint8_t *data, size_t size)
{
    struct webhook_review_info info;
    char *resp_text = NULL;
    int status = 0, rc;
    json_t *resp, *r, *uid_in, *input;
    json_error_t je;
    bool allowed, has_patch;

    memset(&info, 0xa5, sizeof(info));
    rc = webhook_review_explain(cfg, (const char *)data, size, &resp_text, &status, &info);
    FUZZ_ASSERTF(rc == 0, "webhook_review returned %d", rc);
    FUZZ_ASSERTF(info.outcome >= WEBHOOK_OUTCOME_INJECTED &&
                     info.outcome <= WEBHOOK_OUTCOME_BAD_REQUEST,
                 "outcome %d", (int)info.outcome);
    FUZZ_ASSERT(memchr(info.pod, '\0', sizeof(info.pod)) && utf8_ok(info.pod));
    FUZZ_ASSERT(memchr(info.reason, '\0', sizeof(info.reason)) && utf8_ok(info.reason));
    FUZZ_ASSERTF((info.outcome == WEBHOOK_OUTCOME_INJECTED) == (info.reason[0] == '\0'),
                 "outcome %s with reason \"%s\"", webhook_outcome_name(info.outcome), info.reason);
    FUZZ_ASSERTF((status == 400) == (info.outcome == WEBHOOK_OUTCOME_BAD_REQUEST),
                 "status %d with outcome %s", status, webhook_outcome_name(info.outcome));
    FUZZ_ASSERT(resp_text != NULL);
    FUZZ_ASSERTF(status == 200 || status == 400, "status %d", status);
    resp = json_loads(resp_text, 0, &je);
    FUZZ_ASSERTF(json_is_object(resp), "the response is not a JSON object (%s): %.300s", je.text,
                 resp_text);
    if (status == 400) {
        FUZZ_ASSERTF(json_is_string(json_object_get(resp, "kind")) &&
                         strcmp(json_string_value(json_object_get(resp, "kind")), "Status") == 0,
                     "a 400 that is not a Status: %.300s", resp_text);
        FUZZ_ASSERT(json_is_string(json_object_get(resp, "message")));
        goto out;
    }
    r = json_object_get(resp, "response");
    FUZZ_ASSERTF(json_is_object(r), "a 200 without a response object: %.300s", resp_text);
    FUZZ_ASSERTF(json_is_boolean(json_object_get(r, "allowed")), "allowed is not a boolean");
    allowed = json_is_true(json_object_get(r, "allowed"));
    has_patch = json_object_get(r, "patch") != NULL;
    FUZZ_ASSERTF(has_patch == (info.outcome == WEBHOOK_OUTCOME_INJECTED) &&
                     !allowed == (info.outcome == WEBHOOK_OUTCOME_DENIED),
                 "outcome %s, allowed %d, patch %d", webhook_outcome_name(info.outcome), allowed,
                 has_patch);
    /* the uid is echoed */
    input = json_loadb((const char *)data, size, 0, NULL);
    uid_in = json_object_get(json_object_get(input, "request"), "uid");
    FUZZ_ASSERTF(input == NULL || json_equal(uid_in, json_object_get(r, "uid")),
                 "response.uid differs from request.uid");
    json_decref(input);
    if (has_patch) {
        FUZZ_ASSERT(json_is_string(json_object_get(r, "patch")));
        FUZZ_ASSERT(json_is_true(json_object_get(r, "allowed")));
        check_patch(data, size, r, json_string_value(json_object_get(r, "patch")));
    }
out:
    json_decref(resp);
    free(resp_text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct inject_config classic, native;

    webhook_config_init(&classic);
    webhook_config_init(&native);
    native.native_sidecars = true;
    native.prometheus_annotations = false;
    native.image_pull_policy = "IfNotPresent";
    review_once(&classic, data, size);
    review_once(&native, data, size);
    return 0;
}
