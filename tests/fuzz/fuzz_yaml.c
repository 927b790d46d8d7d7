/*
 * fuzz_yaml.c - yaml_to_json and json_to_yaml (lib/conf/yamljson.h): YAML request bodies,
 * manifests and chart values are outside input.
 *
 * Invariants, for any bytes:
 *   - yaml_to_json returns 0 with an array of documents, or ERR_PARSE with a non-empty
 *     message (never -ENOMEM or another code for bad input);
 *   - every document d of a success survives the way back: json_to_yaml(d) is not NULL and
 *     yaml_to_json of that text gives exactly [d] (conf_json_equal: same types, same numbers, same
 *     strings and keys in any order). This holds for every value yaml_to_json produces (see
 *     docs/fuzzing.md): documents whose expansion (aliases) exceeds ROUNDTRIP_MAX_NODES
 *     nodes are skipped only to keep the run fast, not because the property fails there.
 */
#include <jansson.h>
#include <string.h>

#include "conf/jsonio.h"
#include "conf/yamljson.h"
#include "tests/fuzz/fuzz.h"

#define ROUNDTRIP_MAX_NODES 20000

/* Number of values in v, counting containers; stops counting past limit. */
static size_t count_nodes(const json_t *v, size_t limit)
{
    size_t n = 1, i;
    const char *k;
    json_t *e;

    if (json_is_array(v)) {
        json_array_foreach(v, i, e)
        {
            n += count_nodes(e, limit);
            if (n > limit)
                return n;
        }
    } else if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, e)
        {
            n += count_nodes(e, limit);
            if (n > limit)
                return n;
        }
    }
    return n;
}

static void check_roundtrip(const json_t *doc)
{
    char *yaml;
    struct diag yd = {0, ""};
    json_t *again = NULL;
    int rc;

    if (count_nodes(doc, ROUNDTRIP_MAX_NODES) > ROUNDTRIP_MAX_NODES)
        return;
    yaml = json_to_yaml(doc);
    FUZZ_ASSERTF(yaml != NULL, "json_to_yaml refused a document yaml_to_json made");
    rc = yaml_to_json(yaml, strlen(yaml), &again, &yd);
    FUZZ_ASSERTF(rc == 0, "json_to_yaml's output does not read back (%d %s):\n%.1000s", rc, yd.text,
                 yaml);
    FUZZ_ASSERTF(json_array_size(again) == 1, "%zu documents back from:\n%.1000s",
                 json_array_size(again), yaml);
    if (!conf_json_equal(json_array_get(again, 0), doc)) {
        char *a = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY);
        char *b = json_dumps(json_array_get(again, 0), JSON_COMPACT | JSON_ENCODE_ANY);

        FUZZ_ASSERTF(
            0, "round trip changed the value:\n  before %.500s\n  after  %.500s\n  yaml:\n%.1000s",
            a ? a : "?", b ? b : "?", yaml);
    }
    json_decref(again);
    free(yaml);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct diag yd = {0, ""};
    json_t *docs = NULL, *d;
    size_t i;
    int rc;

    rc = yaml_to_json((const char *)data, size, &docs, &yd);
    FUZZ_ASSERTF(rc == 0 || rc == ERR_PARSE, "yaml_to_json returned %d", rc);
    if (rc) {
        FUZZ_ASSERTF(yd.text[0] != '\0', "ERR_PARSE without a message");
        return 0;
    }
    FUZZ_ASSERT(json_is_array(docs));
    json_array_foreach(docs, i, d)
    {
        FUZZ_ASSERT(d != NULL);
        check_roundtrip(d);
    }
    json_decref(docs);
    return 0;
}
