/*
 * image.c - the image map: container image references to local programs.
 */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/kubelite/kubelet/kubelet.h"

struct image_map {
    struct image_entry *e;
    size_t n;
};

static void entry_release(struct image_entry *e)
{
    free(e->repo);
    free(e->tag);
    spec_argv_free(e->argv);
}

void image_map_free(struct image_map *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++)
        entry_release(&m->e[i]);
    free(m->e);
    free(m);
}

/* Split one line into fields (blanks separate, "..." groups). Returns count or -1 (quote). */
static int split_fields(char *line, char **f, int max)
{
    int n = 0;
    char *p = line;

    while (*p) {
        char *w;
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p || *p == '#')
            break;
        if (n == max)
            return -2;
        if (*p == '"') {
            char *end = strchr(p + 1, '"');
            if (!end)
                return -1;
            *end = '\0';
            f[n++] = p + 1;
            p = end + 1;
            continue;
        }
        w = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        if (*p)
            *p++ = '\0';
        f[n++] = w;
    }
    return n;
}

/* Split "repo[:tag]" where a ':' after the last '/' starts the tag. Returns 0 or -ENOMEM. */
static int split_ref(const char *ref, char **repo, char **tag)
{
    const char *slash = strrchr(ref, '/');
    const char *colon = strrchr(slash ? slash : ref, ':');

    *tag = NULL;
    if (colon) {
        *repo = strndup(ref, (size_t)(colon - ref));
        *tag = strdup(colon + 1);
    } else {
        *repo = strdup(ref);
    }
    if (!*repo || (colon && !*tag)) {
        FREE_AND_NULL(*repo);
        FREE_AND_NULL(*tag);
        return -ENOMEM;
    }
    return 0;
}

int image_map_parse(const char *text, struct image_map **out, char *msg, size_t msglen)
{
    struct image_map *m = calloc(1, sizeof(*m));
    char *copy = strdup(text), *line, *save = NULL;
    int rc = 0, lineno = 0;

    if (!m || !copy) {
        rc = -ENOMEM;
        goto out;
    }
    for (line = copy; line && !rc; line = save) {
        char *f[64];
        int nf;
        struct image_entry e = {0};
        struct image_entry *ne;

        save = strchr(line, '\n');
        if (save)
            *save++ = '\0';
        lineno++;
        nf = split_fields(line, f, (int)ARRAY_LEN(f));
        if (nf == 0)
            continue;
        if (nf < 0 || nf < 2 || f[1][0] != '/') {
            snprintf(msg, msglen, "line %d: %s", lineno,
                     nf == -1   ? "unterminated quote"
                     : nf == -2 ? "too many fields"
                     : nf < 2   ? "want: image[:tag-pattern] /path/to/program [args...]"
                                : "the program must be an absolute path");
            rc = ERR_PARSE;
            break;
        }
        e.argv = calloc((size_t)nf, sizeof(char *));
        if (!e.argv || split_ref(f[0], &e.repo, &e.tag)) {
            entry_release(&e);
            rc = -ENOMEM;
            break;
        }
        for (int i = 1; i < nf; i++) {
            e.argv[i - 1] = strdup(f[i]);
            if (!e.argv[i - 1]) {
                rc = -ENOMEM;
                break;
            }
            e.argc++;
        }
        ne = rc ? NULL : realloc(m->e, (m->n + 1) * sizeof(*ne));
        if (!ne) {
            entry_release(&e);
            rc = -ENOMEM;
            break;
        }
        m->e = ne;
        m->e[m->n++] = e;
    }
out:
    free(copy);
    if (rc) {
        image_map_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int image_map_load(const char *path, struct image_map **out, char *msg, size_t msglen)
{
    FILE *f = fopen(path, "r");
    struct buf b;
    char chunk[4096];
    size_t n;
    int rc = 0;

    if (!f) {
        rc = -errno;
        snprintf(msg, msglen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    buf_init(&b);
    while (!rc && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        rc = buf_append(&b, chunk, n);
    fclose(f);
    if (!rc)
        rc = buf_append(&b, "", 0);
    if (!rc)
        rc = image_map_parse(b.p ? b.p : "", out, msg, msglen);
    buf_release(&b);
    return rc;
}

const struct image_entry *image_map_find(const struct image_map *m, const char *image)
{
    char ref[1024], *at, *repo = NULL, *tag = NULL;
    const char *r;
    const struct image_entry *found = NULL;

    snprintf(ref, sizeof(ref), "%s", image);
    at = strchr(ref, '@');
    if (at)
        *at = '\0';
    r = ref;
    if (strncmp(r, "docker.io/", 10) == 0)
        r += 10;
    if (strncmp(r, "library/", 8) == 0)
        r += 8;
    if (split_ref(r, &repo, &tag))
        goto out;
    for (size_t i = 0; i < m->n && !found; i++) {
        const struct image_entry *e = &m->e[i];
        if (fnmatch(e->repo, repo, 0) != 0)
            continue;
        if (e->tag && fnmatch(e->tag, tag ? tag : "latest", 0) != 0)
            continue;
        found = e;
    }
out:
    free(repo);
    free(tag);
    return found;
}

int image_map_add_builtin(struct image_map *m, const char *bindir)
{
    static const char *const builtin[][2] = {
        {"weft/weftd", "weftd"},
        {"weft/proxy", "weft-agent"},
        {"weft/init", "weft-init"},
        {"weft/testapp", "testapp"},
    };

    for (size_t i = 0; i < ARRAY_LEN(builtin); i++) {
        struct image_entry e = {0}, *ne;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", bindir, builtin[i][1]);
        e.repo = strdup(builtin[i][0]);
        e.argv = calloc(2, sizeof(char *));
        if (e.argv)
            e.argv[0] = strdup(path);
        ne = e.repo && e.argv && e.argv[0] ? realloc(m->e, (m->n + 1) * sizeof(*ne)) : NULL;
        if (!ne) {
            entry_release(&e);
            return -ENOMEM;
        }
        e.argc = 1;
        m->e = ne;
        m->e[m->n++] = e;
    }
    return 0;
}
