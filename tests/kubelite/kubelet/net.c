/*
 * net.c - the node network: bridge kl0, per-pod netns + veth, address allocation, host
 * commands, and the cleanup of an earlier run. Links are managed with iproute2 (`ip`), run
 * synchronously through host_run.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <net/if.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "tests/kubelite/kubelet/kubelet.h"

#define BRIDGE "kl0"
#define IP_BIN "/usr/sbin/ip"
#define IP_FORWARD "/proc/sys/net/ipv4/ip_forward"
#define BR_NF "/proc/sys/net/bridge/bridge-nf-call-iptables"

extern char **environ;

struct net {
    unsigned base; /* network address, host order */
    int prefix;
    unsigned size; /* addresses in the CIDR */
    unsigned char *used;
    unsigned last; /* the host part given out last: allocation goes on after it */
    char gw[16];
    char svc_cidr[32];
    char *root;
};

int host_run(const char *const *argv, const char *stdin_text, struct buf *out)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none;
    int pfd[2] = {-1, -1}, in = -1, rc, st;
    pid_t pid;
    char chunk[4096];
    ssize_t r;

    if (pipe2(pfd, O_CLOEXEC))
        return -errno;
    if (stdin_text) {
        in = memfd_create("stdin", MFD_CLOEXEC);
        if (in < 0 || write(in, stdin_text, strlen(stdin_text)) != (ssize_t)strlen(stdin_text) ||
            lseek(in, 0, SEEK_SET) != 0) {
            rc = -errno;
            goto fail;
        }
    } else {
        in = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (in < 0) {
            rc = -errno;
            goto fail;
        }
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in, 0);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 2);
    posix_spawnattr_init(&attr);
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    rc = posix_spawn(&pid, argv[0], &fa, &attr, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc) {
        rc = -rc;
        goto fail;
    }
    close(pfd[1]);
    pfd[1] = -1;
    close(in);
    in = -1;
    while ((r = read(pfd[0], chunk, sizeof(chunk))) > 0 || (r < 0 && errno == EINTR)) {
        if (r > 0 && out)
            IGNORE_RESULT(buf_append(out, chunk, (size_t)r));
    }
    close(pfd[0]);
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    return 128 + WTERMSIG(st);
fail:
    if (pfd[0] >= 0)
        close(pfd[0]);
    if (pfd[1] >= 0)
        close(pfd[1]);
    if (in >= 0)
        close(in);
    return rc;
}

/* Run argv; on failure put "<cmd>: <output>" in msg. Returns 0 or the exit status / -errno. */
static int run_ip(char *msg, size_t msglen, const char *const *argv)
{
    struct buf out;
    int rc;

    buf_init(&out);
    rc = host_run(argv, NULL, &out);
    if (rc && msg) {
        struct buf cmd;
        buf_init(&cmd);
        for (size_t i = 0; argv[i]; i++)
            IGNORE_RESULT(buf_printf(&cmd, "%s%s", i ? " " : "", argv[i]));
        snprintf(msg, msglen, "%s: %s", cmd.p ? cmd.p : "",
                 out.p ? out.p : (rc < 0 ? strerror(-rc) : "failed"));
        msg[strcspn(msg, "\n")] = '\0';
        buf_release(&cmd);
    }
    buf_release(&out);
    return rc;
}

#define IP(msg, msglen, ...) run_ip(msg, msglen, (const char *const[]){IP_BIN, __VA_ARGS__, NULL})

int net_cidr_parse(const char *cidr, unsigned *addr, int *prefix)
{
    char ip[32];
    const char *slash = strchr(cidr, '/');
    struct in_addr a;
    char *end;
    long p;

    if (!slash || (size_t)(slash - cidr) >= sizeof(ip))
        return ERR_INVALID;
    memcpy(ip, cidr, (size_t)(slash - cidr));
    ip[slash - cidr] = '\0';
    p = strtol(slash + 1, &end, 10);
    if (*end || end == slash + 1 || p < 0 || p > 32 || inet_pton(AF_INET, ip, &a) != 1)
        return ERR_INVALID;
    *addr = ntohl(a.s_addr);
    *prefix = (int)p;
    return 0;
}

static void ip_str(unsigned a, char out[16])
{
    struct in_addr ia = {htonl(a)};
    inet_ntop(AF_INET, &ia, out, 16);
}

static int read_small(const char *path, char *out, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t r;
    if (fd < 0)
        return -errno;
    r = read(fd, out, n - 1);
    close(fd);
    if (r < 0)
        return -errno;
    out[r] = '\0';
    out[strcspn(out, "\n")] = '\0';
    return 0;
}

static int write_small(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc = 0;
    if (fd < 0)
        return -errno;
    if (write(fd, s, strlen(s)) != (ssize_t)strlen(s))
        rc = -errno;
    close(fd);
    return rc;
}

/* Restore the sysctls saved in <root>/sysctl.orig ("ip_forward br_nf") and remove the file. */
static void sysctl_restore(const char *root)
{
    char path[4096], line[64], fw[8] = "", br[8] = "";
    snprintf(path, sizeof(path), "%s/sysctl.orig", root);
    if (read_small(path, line, sizeof(line)))
        return;
    if (sscanf(line, "%7s %7s", fw, br) >= 1 && (strcmp(fw, "0") == 0 || strcmp(fw, "1") == 0))
        IGNORE_RESULT(write_small(IP_FORWARD, fw));
    if (strcmp(br, "0") == 0)
        IGNORE_RESULT(write_small(BR_NF, br));
    unlink(path);
}

int net_new(const char *pod_cidr, const char *service_cidr, const char *root, struct net **out,
            char *msg, size_t msglen)
{
    struct net *n = NULL;
    char gwc[40], mac[18], path[4096], fw[8] = "0", br[8] = "-", saved[32];
    unsigned a, sa;
    int p, sp, rc;

    if (net_cidr_parse(pod_cidr, &a, &p) || p < 16 || p > 29) {
        snprintf(msg, msglen, "bad pod CIDR %s (want a.b.c.d/16..29)", pod_cidr);
        return ERR_INVALID;
    }
    if (net_cidr_parse(service_cidr, &sa, &sp)) {
        snprintf(msg, msglen, "bad service CIDR %s", service_cidr);
        return ERR_INVALID;
    }
    if (if_nametoindex(BRIDGE)) {
        snprintf(msg, msglen,
                 "bridge %s exists: a previous kubelet-lite left it (run kubelet-lite --cleanup)",
                 BRIDGE);
        return ERR_EXISTS;
    }
    n = calloc(1, sizeof(*n));
    if (!n)
        return -ENOMEM;
    n->prefix = p;
    n->size = 1u << (32 - p);
    n->base = a & ~(n->size - 1);
    n->used = calloc(n->size, 1);
    n->root = strdup(root);
    if (!n->used || !n->root) {
        rc = -ENOMEM;
        goto fail;
    }
    n->used[0] = n->used[1] = n->used[n->size - 1] = 1; /* network, gateway, broadcast */
    ip_str(n->base + 1, n->gw);
    snprintf(n->svc_cidr, sizeof(n->svc_cidr), "%s", service_cidr);
    snprintf(gwc, sizeof(gwc), "%s/%d", n->gw, p);

    IGNORE_RESULT(read_small(IP_FORWARD, fw, sizeof(fw)));
    if (read_small(BR_NF, br, sizeof(br)))
        snprintf(br, sizeof(br), "-");
    snprintf(path, sizeof(path), "%s/sysctl.orig", root);
    snprintf(saved, sizeof(saved), "%s %s\n", fw, br);
    if (access(path, F_OK) != 0)
        IGNORE_RESULT(write_small(path, saved));

    /* The bridge's own MAC address (02:6b + the gateway's address): a bridge without one takes
     * the lowest of its ports' and changes when a pod's veth with a lower one is attached; the
     * pods attached before keep the old one for the gateway in their neighbour tables, and
     * their frames to it are dropped (not the bridge's address, not the port they came in on):
     * a pod's connections to the node stalled for 15-45 s until the entry was resolved again. */
    snprintf(mac, sizeof(mac), "02:6b:%02x:%02x:%02x:%02x", (n->base + 1) >> 24,
             ((n->base + 1) >> 16) & 0xff, ((n->base + 1) >> 8) & 0xff, (n->base + 1) & 0xff);
    if ((rc = IP(msg, msglen, "link", "add", BRIDGE, "address", mac, "type", "bridge")) ||
        (rc = IP(msg, msglen, "addr", "add", gwc, "dev", BRIDGE)) ||
        (rc = IP(msg, msglen, "link", "set", BRIDGE, "up")) ||
        (rc = IP(msg, msglen, "route", "add", service_cidr, "dev", BRIDGE, "src", n->gw)))
        goto fail;
    if ((rc = write_small(IP_FORWARD, "1"))) {
        snprintf(msg, msglen, "cannot enable %s: %s", IP_FORWARD, strerror(-rc));
        goto fail;
    }
    /* Replies of pod-to-ClusterIP traffic answered by a pod on the same bridge must be
     * un-DNATed, which needs bridged packets to pass through conntrack. */
    if (strcmp(br, "0") == 0)
        IGNORE_RESULT(write_small(BR_NF, "1"));
    *out = n;
    return 0;
fail:
    if (n) {
        IP(NULL, 0, "link", "del", BRIDGE);
        sysctl_restore(root);
        free(n->used);
        free(n->root);
        free(n);
    }
    return rc;
}

void net_free(struct net *n)
{
    if (!n)
        return;
    IP(NULL, 0, "route", "del", n->svc_cidr, "dev", BRIDGE);
    IP(NULL, 0, "link", "del", BRIDGE);
    sysctl_restore(n->root);
    free(n->used);
    free(n->root);
    free(n);
}

const char *net_gateway(const struct net *n)
{
    return n->gw;
}

int net_prefix(const struct net *n)
{
    return n->prefix;
}

int net_pod_add(struct net *n, const char *id, char ip[16], char *msg, size_t msglen)
{
    char ns[32], veth[32], addr[40];
    unsigned i = 0, k, hosts = n->size - 3;
    int rc;

    /*
     * Round-robin from the last address given out, as host-local IPAM does: an address freed by
     * a deleted pod is not given to the next pod at once, whose peers (the host, other pods)
     * would still have the old pod's MAC address in their neighbour tables and lose its
     * replies for the ~30 s those entries stay reachable.
     */
    for (k = 0; k < hosts; k++) {
        i = 2 + (n->last - 2 + 1 + k) % hosts;
        if (n->last < 2)
            i = 2 + k;
        if (!n->used[i])
            break;
    }
    if (k == hosts) {
        snprintf(msg, msglen, "no free address in the pod CIDR");
        return -ENOSPC;
    }
    snprintf(ns, sizeof(ns), "kl-%s", id);
    snprintf(veth, sizeof(veth), "klv%s", id);
    ip_str(n->base + i, ip);
    snprintf(addr, sizeof(addr), "%s/%d", ip, n->prefix);
    if ((rc = IP(msg, msglen, "netns", "add", ns)) ||
        (rc = IP(msg, msglen, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns",
                 ns)) ||
        (rc = IP(msg, msglen, "link", "set", veth, "master", BRIDGE)) ||
        (rc = IP(msg, msglen, "link", "set", "dev", veth, "type", "bridge_slave", "hairpin",
                 "on")) ||
        (rc = IP(msg, msglen, "link", "set", veth, "up")) ||
        (rc = IP(msg, msglen, "-n", ns, "link", "set", "lo", "up")) ||
        (rc = IP(msg, msglen, "-n", ns, "addr", "add", addr, "dev", "eth0")) ||
        (rc = IP(msg, msglen, "-n", ns, "link", "set", "eth0", "up")) ||
        (rc = IP(msg, msglen, "-n", ns, "route", "add", "default", "via", n->gw))) {
        IP(NULL, 0, "link", "del", veth);
        IP(NULL, 0, "netns", "del", ns);
        return rc;
    }
    n->used[i] = 1;
    n->last = i;
    /* the host's own entry for a reused address would point at the old pod's veth peer */
    IP(NULL, 0, "neigh", "flush", "to", ip, "dev", BRIDGE);
    return 0;
}

void net_pod_del(struct net *n, const char *id, const char *ip)
{
    char ns[32], veth[32];
    struct in_addr a;

    snprintf(ns, sizeof(ns), "kl-%s", id);
    snprintf(veth, sizeof(veth), "klv%s", id);
    if (if_nametoindex(veth))
        IP(NULL, 0, "link", "del", veth);
    IP(NULL, 0, "netns", "del", ns);
    if (ip && inet_pton(AF_INET, ip, &a) == 1) {
        unsigned h = ntohl(a.s_addr) - n->base;
        if (h > 1 && h < n->size - 1)
            n->used[h] = 0;
    }
}

/* SIGKILL every process whose network namespace is the one pinned at path. Returns count. */
static int kill_netns_procs(const char *path)
{
    struct stat ns, st;
    DIR *d;
    struct dirent *de;
    int killed = 0;

    if (stat(path, &ns))
        return 0;
    d = opendir("/proc");
    if (!d)
        return 0;
    while ((de = readdir(d)) != NULL) {
        char p[300];
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        snprintf(p, sizeof(p), "/proc/%s/ns/net", de->d_name);
        if (stat(p, &st) == 0 && st.st_ino == ns.st_ino && st.st_dev == ns.st_dev) {
            kill((pid_t)atoi(de->d_name), SIGKILL);
            killed++;
        }
    }
    closedir(d);
    return killed;
}

bool host_is_mountpoint(const char *dir)
{
    char parent[4200];
    struct stat a, b;

    snprintf(parent, sizeof(parent), "%s/..", dir);
    return stat(dir, &a) == 0 && stat(parent, &b) == 0 && a.st_dev != b.st_dev;
}

int host_rm_tree(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;

    if (!d)
        return unlink(path) == 0 || errno == ENOENT ? 0 : -errno;
    while ((de = readdir(d)) != NULL) {
        char p[4096];
        struct stat st;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            /* a memory-backed emptyDir (volume.c) is a tmpfs mounted here: detached first */
            if (host_is_mountpoint(p))
                umount2(p, MNT_DETACH);
            host_rm_tree(p);
        } else {
            unlink(p);
        }
    }
    closedir(d);
    return rmdir(path) == 0 ? 0 : -errno;
}

void net_cleanup(const char *root, const char *service_cidr)
{
    DIR *d;
    struct dirent *de;
    char path[4096];

    d = opendir("/var/run/netns");
    if (d) {
        while ((de = readdir(d)) != NULL) {
            if (strncmp(de->d_name, "kl-", 3) != 0)
                continue;
            snprintf(path, sizeof(path), "/var/run/netns/%s", de->d_name);
            for (int i = 0; i < 50 && kill_netns_procs(path) > 0; i++) {
                struct timespec ts = {0, 20 * 1000 * 1000};
                while (waitpid(-1, NULL, WNOHANG) > 0)
                    ;
                nanosleep(&ts, NULL);
            }
            log_info("msg=\"cleanup: removing netns\" netns=%s", de->d_name);
            IP(NULL, 0, "netns", "del", de->d_name);
        }
        closedir(d);
    }
    d = opendir("/sys/class/net");
    if (d) {
        while ((de = readdir(d)) != NULL) {
            if (strncmp(de->d_name, "klv", 3) == 0) {
                log_info("msg=\"cleanup: removing veth\" link=%s", de->d_name);
                IP(NULL, 0, "link", "del", de->d_name);
            }
        }
        closedir(d);
    }
    if (if_nametoindex(BRIDGE)) {
        log_info("msg=\"cleanup: removing bridge\" link=%s", BRIDGE);
        IP(NULL, 0, "route", "del", service_cidr, "dev", BRIDGE);
        IP(NULL, 0, "link", "del", BRIDGE);
    }
    proxy_teardown();
    snprintf(path, sizeof(path), "%s/pods", root);
    host_rm_tree(path);
    sysctl_restore(root);
}
