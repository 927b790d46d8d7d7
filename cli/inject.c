/*
 * inject.c - `weftctl inject`: manual sidecar injection of manifests with the webhook's code.
 *
 * There are no namespace labels here, so every pod template is injected unless the pod itself
 * opts out (or is hostNetwork, already injected, or in a system namespace) - the same decision
 * the webhook makes once its namespaceSelector has matched.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "conf/yamljson.h"
#include "webhook/webhook.h"

/* Where the pod template of each workload kind lives. */
static const struct {
    const char *kind;
    const char *path[4]; /* member names from the object to the template; empty: the object */
} workloads[] = {
    {"Pod", {NULL}},
    {"Deployment", {"spec", "template", NULL}},
    {"StatefulSet", {"spec", "template", NULL}},
    {"DaemonSet", {"spec", "template", NULL}},
    {"ReplicaSet", {"spec", "template", NULL}},
    {"ReplicationController", {"spec", "template", NULL}},
    {"Job", {"spec", "template", NULL}},
    {"CronJob", {"spec", "jobTemplate", "spec", "template"}},
};

struct ctx {
    const struct inject_config *cfg;
    const char *name;
    unsigned flags;
    size_t doc; /* 1-based */
    struct buf *warnings;
    struct diag *diag;
};

static int fail(struct ctx *c, int rc, const char *fmt, ...) PRINTF_LIKE(3, 4);
static int fail(struct ctx *c, int rc, const char *fmt, ...)
{
    char reason[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    diag_set(c->diag, "%s:doc %zu: %s", c->name, c->doc, reason);
    return rc;
}

/* "Deployment/hello" (or "items[2] Deployment/hello") for messages. */
static void describe(const json_t *obj, const char *where, char *out, size_t n)
{
    const json_t *meta = json_object_get(obj, "metadata");
    const char *kind = json_string_value(json_object_get(obj, "kind"));
    const char *name = json_string_value(json_object_get(meta, "name"));

    if (!name)
        name = json_string_value(json_object_get(meta, "generateName"));
    snprintf(out, n, "%s%s%s/%s", where, *where ? " " : "", kind ? kind : "?", name ? name : "");
}

/* Inject (or uninject) the pod template parent[key], replacing it on change. */
static int transform_pod(struct ctx *c, json_t *parent, const char *key, json_t *tmpl,
                         const char *ns, const char *what)
{
    struct webhook_result res = {0};
    struct diag wd = {0, ""};
    json_t *out = NULL;
    size_t i;
    json_t *w;
    int rc;

    if (c->flags & CLI_INJECT_UNDO) {
        rc = webhook_pod_uninject(tmpl, &out, &wd);
        if (rc == 0 && json_object_set_new(parent, key, out) < 0)
            rc = -ENOMEM;
    } else {
        rc = webhook_pod_inject(c->cfg, tmpl, ns, &res, &wd);
        if (rc == 0 && res.verdict == WEBHOOK_INJECTED && json_object_set(parent, key, res.pod) < 0)
            rc = -ENOMEM;
        json_array_foreach(res.warnings, i, w)
        {
            if (rc == 0 && c->warnings &&
                buf_printf(c->warnings, "%s:doc %zu: warning: %s: %s\n", c->name, c->doc, what,
                           json_string_value(w)) < 0)
                rc = -ENOMEM;
        }
        webhook_result_release(&res);
    }
    if (rc == ERR_INVALID)
        return fail(c, rc, "%s: %s", what, wd.text);
    return rc;
}

static int transform(struct ctx *c, json_t *obj, const char *where, int depth)
{
    const char *kind, *ns;
    char what[256];

    if (!json_is_object(obj))
        return fail(c, ERR_INVALID, "%s%snot a Kubernetes object (want a mapping with kind)", where,
                    *where ? ": " : "");
    kind = json_string_value(json_object_get(obj, "kind"));
    if (!kind)
        return fail(c, ERR_INVALID, "%s%sobject has no kind", where, *where ? ": " : "");
    describe(obj, where, what, sizeof(what));
    if (strcmp(kind, "List") == 0 ||
        (strlen(kind) > 4 && !strcmp(kind + strlen(kind) - 4, "List") &&
         json_is_array(json_object_get(obj, "items")))) {
        json_t *items = json_object_get(obj, "items");
        size_t i;
        json_t *it;

        if (depth > 0)
            return fail(c, ERR_INVALID, "%s: nested List", what);
        if (items && !json_is_array(items))
            return fail(c, ERR_INVALID, "%s: items must be a list", what);
        json_array_foreach(items, i, it)
        {
            char sub[64];
            int rc;

            snprintf(sub, sizeof(sub), "items[%zu]", i);
            if ((rc = transform(c, it, sub, depth + 1)) < 0)
                return rc;
        }
        return 0;
    }
    ns = json_string_value(json_object_get(json_object_get(obj, "metadata"), "namespace"));
    for (size_t w = 0; w < ARRAY_LEN(workloads); w++) {
        json_t *p = obj, *t = obj;
        const char *last = NULL;

        if (strcmp(kind, workloads[w].kind) != 0)
            continue;
        if (!workloads[w].path[0]) {
            /* A Pod is its own template: transform a copy and swap the contents. */
            json_t *holder = json_pack("{s:O}", "pod", obj);
            int rc;

            if (!holder)
                return -ENOMEM;
            rc = transform_pod(c, holder, "pod", obj, ns, what);
            if (rc == 0 && json_object_get(holder, "pod") != obj) {
                json_object_clear(obj);
                if (json_object_update(obj, json_object_get(holder, "pod")) < 0)
                    rc = -ENOMEM;
            }
            json_decref(holder);
            return rc;
        }
        for (size_t i = 0; i < ARRAY_LEN(workloads[w].path) && workloads[w].path[i]; i++) {
            p = t;
            last = workloads[w].path[i];
            t = json_object_get(p, last);
            if (!json_is_object(t))
                return 0; /* no template: nothing to inject; validation is the API server's */
        }
        return transform_pod(c, p, last, t, ns, what);
    }
    return 0;
}

/* The document (1-based, empty documents not counted) that line (1-based) belongs to. */
static size_t doc_of_line(const char *text, size_t len, long line)
{
    size_t doc = 1;
    bool content = false;
    long ln = 1;

    for (size_t i = 0; i < len && ln < line; ln++) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - text) : len, n = end - i;
        const char *s = text + i;

        if (n >= 3 && memcmp(s, "---", 3) == 0 && (n == 3 || s[3] == ' ' || s[3] == '\r')) {
            if (content)
                doc++;
            content = false;
        } else {
            size_t k = 0;

            while (k < n && (s[k] == ' ' || s[k] == '\t' || s[k] == '\r'))
                k++;
            if (k < n && s[k] != '#')
                content = true;
        }
        i = end + 1;
    }
    return doc;
}

int cli_inject_docs(const struct inject_config *cfg, const char *name, const char *text, size_t len,
                    unsigned flags, json_t **docs, struct buf *warnings, struct diag *diag)
{
    struct ctx c = {cfg, name, flags, 0, warnings, diag};
    json_t *all = NULL;
    struct diag yd = {0, ""};
    size_t i;
    json_t *d;
    int rc;

    rc = yaml_to_json(text, len, &all, &yd);
    if (rc < 0) {
        const char *l = strstr(yd.text, "line ");

        c.doc = doc_of_line(text, len, l ? strtol(l + 5, NULL, 10) : 1);
        if (rc == ERR_PARSE)
            rc = fail(&c, rc, "%s", yd.text[0] ? yd.text : "cannot parse");
        return rc;
    }
    json_array_foreach(all, i, d)
    {
        c.doc = i + 1;
        if ((rc = transform(&c, d, "", 0)) < 0)
            goto out;
    }
    *docs = all;
    all = NULL;
out:
    json_decref(all);
    return rc;
}

static int read_all(FILE *f, struct buf *b)
{
    char chunk[65536];
    size_t n;
    int rc;

    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if ((rc = buf_append(b, chunk, n)) < 0)
            return rc;
    return ferror(f) ? -EIO : 0;
}

static int usage(FILE *err)
{
    fputs("usage: weftctl inject -f FILE|- [--uninject] [-o yaml|json] [--native-sidecars]\n"
          "                      [--proxy-image IMAGE]\n",
          err);
    return 2;
}

int cli_inject_main(int argc, char **argv, FILE *in, FILE *out, FILE *err)
{
    struct inject_config cfg;
    const char *file = NULL, *fmt = "yaml";
    unsigned flags = 0;
    struct buf text, warn, res;
    json_t *docs = NULL, *d;
    struct diag diag = {0, ""};
    FILE *f = NULL;
    size_t i;
    int rc, status = 1;

    webhook_config_init(&cfg);
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];

        if ((!strcmp(arg, "-f") || !strcmp(arg, "--filename")) && a + 1 < argc)
            file = argv[++a];
        else if (!strncmp(arg, "--filename=", 11))
            file = arg + 11;
        else if (!strcmp(arg, "-o") && a + 1 < argc)
            fmt = argv[++a];
        else if (!strncmp(arg, "--output=", 9))
            fmt = arg + 9;
        else if (!strcmp(arg, "--uninject"))
            flags |= CLI_INJECT_UNDO;
        else if (!strcmp(arg, "--native-sidecars"))
            cfg.native_sidecars = true;
        else if (!strcmp(arg, "--proxy-image") && a + 1 < argc)
            cfg.proxy_image = argv[++a];
        else if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            usage(out);
            return 0;
        } else {
            fprintf(err, "weftctl inject: unexpected argument \"%s\"\n", arg);
            return usage(err);
        }
    }
    if (!file) {
        fputs("weftctl inject: -f FILE (or - for standard input) is required\n", err);
        return usage(err);
    }
    if (strcmp(fmt, "yaml") != 0 && strcmp(fmt, "json") != 0) {
        fprintf(err, "weftctl inject: unknown output format \"%s\" (want yaml or json)\n", fmt);
        return usage(err);
    }
    buf_init(&text);
    buf_init(&warn);
    buf_init(&res);
    f = strcmp(file, "-") == 0 ? in : fopen(file, "rb");
    if (!f) {
        fprintf(err, "weftctl inject: %s: %s\n", file, strerror(errno));
        goto out;
    }
    if ((rc = read_all(f, &text)) < 0) {
        fprintf(err, "weftctl inject: %s: %s\n", file, err_str(rc));
        goto out;
    }
    rc = cli_inject_docs(&cfg, strcmp(file, "-") ? file : "<stdin>", text.p, text.len, flags, &docs,
                         &warn, &diag);
    if (rc < 0) {
        fprintf(err, "weftctl inject: %s\n", diag.text[0] ? diag.text : err_str(rc));
        goto out;
    }
    json_array_foreach(docs, i, d)
    {
        char *s = strcmp(fmt, "json") == 0 ? json_dumps(d, JSON_INDENT(2)) : json_to_yaml(d);

        if (!s || (i && strcmp(fmt, "yaml") == 0 && buf_puts(&res, "---\n") < 0) ||
            buf_puts(&res, s) < 0 || (strcmp(fmt, "json") == 0 && buf_puts(&res, "\n") < 0)) {
            free(s);
            fputs("weftctl inject: out of memory\n", err);
            goto out;
        }
        free(s);
    }
    fputs(warn.len ? warn.p : "", err);
    if (fwrite(res.p ? res.p : "", 1, res.len, out) != res.len || fflush(out) != 0) {
        fprintf(err, "weftctl inject: write: %s\n", strerror(errno));
        goto out;
    }
    status = 0;
out:
    if (f && f != in)
        fclose(f);
    json_decref(docs);
    buf_release(&text);
    buf_release(&warn);
    buf_release(&res);
    return status;
}
