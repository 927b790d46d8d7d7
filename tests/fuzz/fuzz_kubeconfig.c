/*
 * fuzz_kubeconfig.c - kube_config_load (lib/kube/kube.h): a kubeconfig file is whatever the
 * user or a mounted Secret put there.
 *
 * The input is written to a memory file (memfd) and loaded through /proc/self/fd/N, so the real
 * file path is exercised without touching the disk. Invariants, for any bytes:
 *   - kube_config_load returns 0, ERR_INVALID, ERR_PARSE or ERR_UNSUPPORTED;
 *   - an error comes with a diag message naming the file;
 *   - a loaded configuration has an http:// or https:// server without a trailing slash and a
 *     non-empty namespace;
 *   - no leak, no memory error.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kube/kube.h"
#include "tests/fuzz/fuzz.h"

static int mem_fd = -1;
static char mem_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    mem_fd = memfd_create("fuzz-kubeconfig", MFD_CLOEXEC);
    FUZZ_ASSERTF(mem_fd >= 0, "memfd_create: %s", strerror(errno));
    snprintf(mem_path, sizeof(mem_path), "/proc/self/fd/%d", mem_fd);
    return 0;
}

/* Replace the memory file's contents with data. */
static void put_file(const uint8_t *data, size_t size)
{
    size_t off = 0;

    FUZZ_ASSERT(ftruncate(mem_fd, 0) == 0);
    while (off < size) {
        ssize_t n = pwrite(mem_fd, data + off, size - off, (off_t)off);

        FUZZ_ASSERTF(n > 0, "pwrite: %s", strerror(errno));
        off += (size_t)n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kube_config *cfg = NULL;
    struct diag diag;
    const char *server, *ns;
    int rc;

    put_file(data, size);
    memset(&diag, 0, sizeof(diag));
    rc = kube_config_load(mem_path, &cfg, &diag);
    FUZZ_ASSERTF(rc == 0 || rc == ERR_INVALID || rc == ERR_PARSE || rc == ERR_UNSUPPORTED,
                 "kube_config_load returned %d (%s)", rc, diag.text);
    if (rc) {
        FUZZ_ASSERT(cfg == NULL);
        FUZZ_ASSERTF(strncmp(diag.text, mem_path, strlen(mem_path)) == 0 &&
                         strlen(diag.text) > strlen(mem_path),
                     "error %d without a diag naming the file: \"%s\"", rc, diag.text);
        return 0;
    }
    FUZZ_ASSERT(cfg != NULL);
    server = kube_config_server(cfg);
    ns = kube_config_namespace(cfg);
    FUZZ_ASSERT(server && ns);
    FUZZ_ASSERTF(strncmp(server, "https://", 8) == 0 || strncmp(server, "http://", 7) == 0,
                 "server %s", server);
    FUZZ_ASSERTF(strlen(server) <= 8 || server[strlen(server) - 1] != '/', "server %s", server);
    FUZZ_ASSERT(ns[0] != '\0');
    kube_config_free(cfg);
    return 0;
}
