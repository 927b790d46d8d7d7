/*
 * fdguard.c - protect descriptor numbers that libwebsockets closes twice.
 *
 * libwebsockets 4.1.6 on a foreign libuv loop closes some descriptors in lws_context_destroy()
 * (its event pipe, sockets still open) and closes the same numbers again when the matching uv
 * handles finish closing on later loop turns. Any descriptor opened in between under a freed
 * number (a new connection, another context's socket) would be closed under its owner. So the
 * numbers freed by lws_context_destroy() are parked on placeholder descriptors until lws reports
 * the context finalized; a placeholder lws already closed is recognised by its inode and left
 * alone.
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "push/push_int.h"

struct push__fdguard {
    size_t n;
    int *fds;
    dev_t *devs;
    ino_t *inos;
};

/* Sorted list of open descriptors; NULL on failure. */
static int *fd_snapshot(size_t *n_out)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int *v = NULL, *nv;
    size_t n = 0, cap = 0;

    if (!d)
        return NULL;
    while ((e = readdir(d))) {
        char *end;
        long fd = strtol(e->d_name, &end, 10);

        if (e->d_name[0] < '0' || e->d_name[0] > '9' || *end || fd == dirfd(d))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            nv = realloc(v, cap * sizeof(*v));
            if (!nv) {
                free(v);
                closedir(d);
                return NULL;
            }
            v = nv;
        }
        v[n++] = (int)fd;
    }
    closedir(d);
    *n_out = n;
    return v ? v : calloc(1, sizeof(int));
}

static int has_fd(const int *v, size_t n, int fd)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == fd)
            return 1;
    return 0;
}

struct push__fdguard *push__fdguard_destroy_ctx(void (*destroy)(void *), void *ctx)
{
    struct push__fdguard *g = NULL;
    size_t nb = 0, na = 0;
    int *before = fd_snapshot(&nb), *after = NULL;

    destroy(ctx);
    if (!before)
        goto out;
    after = fd_snapshot(&na);
    g = calloc(1, sizeof(*g));
    if (!after || !g)
        goto fail;
    g->fds = calloc(nb ? nb : 1, sizeof(*g->fds));
    g->devs = calloc(nb ? nb : 1, sizeof(*g->devs));
    g->inos = calloc(nb ? nb : 1, sizeof(*g->inos));
    if (!g->fds || !g->devs || !g->inos)
        goto fail;
    for (size_t i = 0; i < nb; i++) {
        struct stat st;
        int m;

        if (has_fd(after, na, before[i]))
            continue;
        m = memfd_create("weft-push-fdguard", MFD_CLOEXEC);
        if (m < 0)
            continue;
        /* The placeholder may already have taken the number (lowest free descriptor). */
        if ((m == before[i] || dup2(m, before[i]) == before[i]) && fstat(before[i], &st) == 0) {
            g->fds[g->n] = before[i];
            g->devs[g->n] = st.st_dev;
            g->inos[g->n] = st.st_ino;
            g->n++;
        }
        if (m != before[i])
            close(m);
    }
    goto out;
fail:
    push__fdguard_release(g);
    g = NULL;
out:
    free(before);
    free(after);
    return g;
}

void push__fdguard_release(struct push__fdguard *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n; i++) {
        struct stat st;

        /* Still our placeholder (lws did not close it, nobody reused the number): close it. */
        if (fstat(g->fds[i], &st) == 0 && st.st_dev == g->devs[i] && st.st_ino == g->inos[i])
            close(g->fds[i]);
    }
    free(g->fds);
    free(g->devs);
    free(g->inos);
    free(g);
}
