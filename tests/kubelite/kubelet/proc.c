/*
 * proc.c - container processes and probe processes.
 *
 * A container is a fork of kubelet-lite that enters its pod's network namespace (setns on the
 * pinned /var/run/netns/kl-<id>), unshares a mount and a UTS namespace (mounts made slave so
 * nothing propagates back to the host; volumes bind-mounted at their mountPath; hostname = pod
 * name), drops capabilities, switches user, and execs the mapped program. Failures before exec
 * are reported through a close-on-exec pipe, so the parent knows whether the exec happened.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <netdb.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/kubelite/kubelet/kubelet.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

static const struct {
    const char *name;
    int cap;
} cap_names[] = {
    {"CHOWN", CAP_CHOWN},
    {"DAC_OVERRIDE", CAP_DAC_OVERRIDE},
    {"DAC_READ_SEARCH", CAP_DAC_READ_SEARCH},
    {"FOWNER", CAP_FOWNER},
    {"FSETID", CAP_FSETID},
    {"KILL", CAP_KILL},
    {"SETGID", CAP_SETGID},
    {"SETUID", CAP_SETUID},
    {"SETPCAP", CAP_SETPCAP},
    {"LINUX_IMMUTABLE", CAP_LINUX_IMMUTABLE},
    {"NET_BIND_SERVICE", CAP_NET_BIND_SERVICE},
    {"NET_BROADCAST", CAP_NET_BROADCAST},
    {"NET_ADMIN", CAP_NET_ADMIN},
    {"NET_RAW", CAP_NET_RAW},
    {"IPC_LOCK", CAP_IPC_LOCK},
    {"IPC_OWNER", CAP_IPC_OWNER},
    {"SYS_MODULE", CAP_SYS_MODULE},
    {"SYS_RAWIO", CAP_SYS_RAWIO},
    {"SYS_CHROOT", CAP_SYS_CHROOT},
    {"SYS_PTRACE", CAP_SYS_PTRACE},
    {"SYS_PACCT", CAP_SYS_PACCT},
    {"SYS_ADMIN", CAP_SYS_ADMIN},
    {"SYS_BOOT", CAP_SYS_BOOT},
    {"SYS_NICE", CAP_SYS_NICE},
    {"SYS_RESOURCE", CAP_SYS_RESOURCE},
    {"SYS_TIME", CAP_SYS_TIME},
    {"SYS_TTY_CONFIG", CAP_SYS_TTY_CONFIG},
    {"MKNOD", CAP_MKNOD},
    {"LEASE", CAP_LEASE},
    {"AUDIT_WRITE", CAP_AUDIT_WRITE},
    {"AUDIT_CONTROL", CAP_AUDIT_CONTROL},
    {"SETFCAP", CAP_SETFCAP},
};

/* containerd's default capability set for containers. */
static const int default_caps[] = {
    CAP_CHOWN,   CAP_DAC_OVERRIDE, CAP_FSETID,           CAP_FOWNER,
    CAP_MKNOD,   CAP_NET_RAW,      CAP_SETGID,           CAP_SETUID,
    CAP_SETFCAP, CAP_SETPCAP,      CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT,
    CAP_KILL,    CAP_AUDIT_WRITE};

static unsigned long long caps_from(const json_t *list)
{
    unsigned long long bits = 0;
    size_t i;
    json_t *v;

    json_array_foreach(list, i, v)
    {
        const char *s = json_string_value(v);
        if (!s)
            continue;
        if (strncmp(s, "CAP_", 4) == 0)
            s += 4;
        if (strcasecmp(s, "ALL") == 0)
            return ~0ULL;
        for (size_t k = 0; k < ARRAY_LEN(cap_names); k++) {
            if (strcasecmp(s, cap_names[k].name) == 0)
                bits |= 1ULL << cap_names[k].cap;
        }
    }
    return bits;
}

unsigned long long proc_caps_for(const json_t *capabilities, bool root)
{
    unsigned long long add = caps_from(json_object_get(capabilities, "add"));
    unsigned long long drop = caps_from(json_object_get(capabilities, "drop"));
    unsigned long long base = 0;

    if (root) {
        for (size_t i = 0; i < ARRAY_LEN(default_caps); i++)
            base |= 1ULL << default_caps[i];
    }
    return (base & ~drop) | add;
}

static int last_cap(void)
{
    char b[16] = "";
    int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC), n = CAP_LAST_CAP;
    if (fd >= 0) {
        if (read(fd, b, sizeof(b) - 1) > 0)
            n = atoi(b);
        close(fd);
    }
    return n;
}

/* In the child: report "step: error" to the parent and exit. */
static void die(int efd, const char *step, int err)
{
    char m[512];
    int n = snprintf(m, sizeof(m), "%s: %s", step, strerror(err));
    if (n > 0)
        IGNORE_RESULT(write(efd, m, (size_t)n));
    _exit(127);
}

static int set_caps(unsigned long long caps)
{
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];

    memset(d, 0, sizeof(d));
    d[0].effective = d[0].permitted = d[0].inheritable = (unsigned)(caps & 0xffffffffu);
    d[1].effective = d[1].permitted = d[1].inheritable = (unsigned)(caps >> 32);
    return (int)syscall(SYS_capset, &h, d);
}

static void child_ids(int efd, bool set_ids, uid_t uid, gid_t gid, const gid_t *groups,
                      size_t ngroups, unsigned long long caps, bool privileged)
{
    int lc = last_cap();

    if (!privileged) {
        for (int c = 0; c <= lc; c++) {
            if (c != CAP_SETPCAP && !(caps & (1ULL << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0))
                die(efd, "drop capability", errno);
        }
    }
    if (set_ids) {
        if (setgroups(ngroups, groups))
            die(efd, "setgroups", errno);
        if (setresgid(gid, gid, gid))
            die(efd, "setresgid", errno);
        if (uid != 0 && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0))
            die(efd, "keepcaps", errno);
        if (setresuid(uid, uid, uid))
            die(efd, "setresuid", errno);
        if (uid != 0) {
            unsigned long long keep = privileged ? ~0ULL : caps;
            keep &= (lc >= 63) ? ~0ULL : ((1ULL << (lc + 1)) - 1);
            if (set_caps(keep))
                die(efd, "capset", errno);
            for (int c = 0; c <= lc; c++) {
                if ((keep & (1ULL << c)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0))
                    die(efd, "ambient capability", errno);
            }
        }
    }
    if (!privileged && !(caps & (1ULL << CAP_SETPCAP)) &&
        prctl(PR_CAPBSET_DROP, CAP_SETPCAP, 0, 0, 0) && errno != EPERM)
        die(efd, "drop capability", errno);
}

static void child_common(int efd, pid_t parent)
{
    sigset_t none;

    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0))
        die(efd, "pdeathsig", errno);
    if (getppid() != parent)
        _exit(127);
    signal(SIGPIPE, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
}

/* Wait for the child's report: EOF (exec happened) or an error text. */
static int read_report(int efd, char *msg, size_t msglen)
{
    ssize_t r;
    size_t got = 0;

    if (msg && msglen)
        msg[0] = '\0';
    for (;;) {
        char tmp[512];
        r = read(efd, tmp, sizeof(tmp));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (msg && got + 1 < msglen) {
            size_t n = (size_t)r < msglen - got - 1 ? (size_t)r : msglen - got - 1;
            memcpy(msg + got, tmp, n);
            got += n;
            msg[got] = '\0';
        }
    }
    return got ? -1 : 0;
}

int proc_start(const struct proc_spec *ps, pid_t *pid, char *msg, size_t msglen)
{
    int ep[2];
    pid_t parent = getpid(), c;

    if (pipe2(ep, O_CLOEXEC))
        return -errno;
    c = fork();
    if (c < 0) {
        int rc = -errno;
        close(ep[0]);
        close(ep[1]);
        return rc;
    }
    if (c == 0) {
        int efd = ep[1], fd, srcfd[64], exefd = -1;
        close(ep[0]);
        setpgid(0, 0);
        child_common(efd, parent);
        fd = open("/dev/null", O_RDONLY);
        if (fd < 0 || dup2(fd, 0) < 0)
            die(efd, "stdin", errno);
        fd = open(ps->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            die(efd, "open log", errno);
        fd = open(ps->netns_path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            die(efd, ps->netns_path, errno);
        if (setns(fd, CLONE_NEWNET))
            die(efd, "setns", errno);
        if (unshare(CLONE_NEWNS | CLONE_NEWUTS))
            die(efd, "unshare", errno);
        if (ps->hostname && sethostname(ps->hostname, strlen(ps->hostname)))
            die(efd, "sethostname", errno);
        if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL))
            die(efd, "mount --make-rslave /", errno);
        /* Open every source, and the executable, before mounting anything: a volume mounted
         * over /tmp would otherwise hide the sources of later mounts that live under /tmp, and
         * the binary itself when the node's files live there (a checkout under /tmp). */
        if (ps->argv[0][0] == '/') {
            exefd = open(ps->argv[0], O_PATH | O_CLOEXEC);
            if (exefd < 0) {
                char what[600];
                snprintf(what, sizeof(what), "exec %s", ps->argv[0]);
                die(efd, what, errno);
            }
        }
        if (ps->nmounts > 64)
            die(efd, "volume mounts", E2BIG);
        for (size_t i = 0; i < ps->nmounts; i++) {
            char what[600];
            snprintf(what, sizeof(what), "mount %s at %s", ps->mount_src[i], ps->mount_dst[i]);
            srcfd[i] = open(ps->mount_src[i], O_PATH | O_CLOEXEC);
            if (srcfd[i] < 0)
                die(efd, what, errno);
        }
        for (size_t i = 0; i < ps->nmounts; i++) {
            char what[600], src[64];
            snprintf(what, sizeof(what), "mount %s at %s", ps->mount_src[i], ps->mount_dst[i]);
            snprintf(src, sizeof(src), "/proc/self/fd/%d", srcfd[i]);
            if (mount(src, ps->mount_dst[i], NULL, MS_BIND | MS_REC, NULL))
                die(efd, what, errno);
            close(srcfd[i]);
            if (ps->mount_ro[i] &&
                mount(NULL, ps->mount_dst[i], NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL))
                die(efd, what, errno);
        }
        if (chdir(ps->workdir ? ps->workdir : "/"))
            die(efd, ps->workdir ? ps->workdir : "/", errno);
        child_ids(efd, ps->set_ids, ps->uid, ps->gid, ps->groups, ps->ngroups, ps->caps,
                  ps->privileged);
        /* A script cannot be run from a close-on-exec descriptor: then the path again. */
        if (exefd >= 0)
            syscall(SYS_execveat, exefd, "", ps->argv, ps->envp, AT_EMPTY_PATH);
        execve(ps->argv[0], ps->argv, ps->envp);
        {
            char what[600];
            snprintf(what, sizeof(what), "exec %s", ps->argv[0]);
            die(efd, what, errno);
        }
    }
    close(ep[1]);
    setpgid(c, c); /* also from here, so a kill of the group cannot race the child's setpgid */
    if (read_report(ep[0], msg, msglen)) {
        close(ep[0]);
        while (waitpid(c, NULL, 0) < 0 && errno == EINTR)
            ;
        return -ENOEXEC;
    }
    close(ep[0]);
    *pid = c;
    return 0;
}

/* Probe child: connect to host:port with a deadline. Returns the socket or -1. */
static int probe_connect(const char *host, int port, int timeout_s)
{
    struct addrinfo hints, *res = NULL;
    char ps[16];
    int fd, err = 0;
    socklen_t el = sizeof(err);
    struct pollfd p;

    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    snprintf(ps, sizeof(ps), "%d", port);
    if (getaddrinfo(host, ps, &hints, &res) || !res)
        return -1;
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0 || (connect(fd, res->ai_addr, res->ai_addrlen) && errno != EINPROGRESS)) {
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    p.fd = fd;
    p.events = POLLOUT;
    if (poll(&p, 1, timeout_s * 1000) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) ||
        err)
        return -1;
    return fd;
}

static int probe_http(const char *host, int port, const char *path, const json_t *headers,
                      int timeout_s)
{
    char req[4096], resp[256];
    size_t o, got = 0, i;
    int fd = probe_connect(host, port, timeout_s), code = 0;
    json_t *h;
    struct pollfd p;

    if (fd < 0)
        return 1;
    o = (size_t)snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s:%d\r\n",
                         path && *path ? path : "/", host, port);
    json_array_foreach(headers, i, h)
    {
        if (spec_str(h, "name") && spec_str(h, "value") && o < sizeof(req))
            o += (size_t)snprintf(req + o, sizeof(req) - o, "%s: %s\r\n", spec_str(h, "name"),
                                  spec_str(h, "value"));
    }
    if (o < sizeof(req))
        o += (size_t)snprintf(req + o, sizeof(req) - o,
                              "User-Agent: kube-probe/1.33\r\nAccept: */*\r\n"
                              "Connection: close\r\n\r\n");
    if (o >= sizeof(req) || send(fd, req, o, MSG_NOSIGNAL) != (ssize_t)o)
        return 1;
    p.fd = fd;
    p.events = POLLIN;
    while (got < sizeof(resp) - 1 && !memchr(resp, '\n', got)) {
        ssize_t r;
        if (poll(&p, 1, timeout_s * 1000) != 1)
            return 1;
        r = recv(fd, resp + got, sizeof(resp) - 1 - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    resp[got] = '\0';
    if (sscanf(resp, "HTTP/1.%*d %d", &code) != 1)
        return 1;
    return code >= 200 && code < 400 ? 0 : 1;
}

int proc_probe_start(enum probe_kind kind, const char *netns_path, const char *host, int port,
                     const char *path, const char *scheme, const json_t *headers, char *const *argv,
                     pid_t target_pid, uid_t uid, gid_t gid, bool set_ids, int timeout_s,
                     pid_t *pid)
{
    pid_t parent = getpid(), c = fork();

    if (c < 0)
        return -errno;
    if (c == 0) {
        int fd, efd;
        setpgid(0, 0);
        efd = open("/dev/null", O_WRONLY | O_CLOEXEC);
        child_common(efd, parent);
        alarm((unsigned)(timeout_s > 0 ? timeout_s + 1 : 2));
        /* HTTP and TCP probes come from the node, as the kubelet's: from the host through the
         * bridge to the pod's IP, so they pass the pod's PREROUTING rules. Exec probes enter
         * the container's namespaces. */
        if (kind == PROBE_EXEC) {
            fd = open(netns_path, O_RDONLY | O_CLOEXEC);
            if (fd < 0 || setns(fd, CLONE_NEWNET))
                _exit(2);
        }
        if (kind == PROBE_TCP) {
            _exit(probe_connect(host, port, timeout_s) >= 0 ? 0 : 1);
        } else if (kind == PROBE_HTTP) {
            /* HTTPS probes: the kubelet does not verify the certificate; a TCP connect is the
             * part of it we can check without TLS here. */
            if (scheme && strcmp(scheme, "HTTPS") == 0)
                _exit(probe_connect(host, port, timeout_s) >= 0 ? 0 : 1);
            _exit(probe_http(host, port, path, headers, timeout_s));
        } else if (kind == PROBE_EXEC) {
            char p[64];
            int nfd;
            snprintf(p, sizeof(p), "/proc/%d/ns/mnt", (int)target_pid);
            nfd = open(p, O_RDONLY | O_CLOEXEC);
            if (nfd < 0 || setns(nfd, CLONE_NEWNS))
                _exit(2);
            snprintf(p, sizeof(p), "/proc/%d/ns/uts", (int)target_pid);
            nfd = open(p, O_RDONLY | O_CLOEXEC);
            if (nfd >= 0)
                IGNORE_RESULT(setns(nfd, CLONE_NEWUTS));
            if (chdir("/"))
                _exit(2);
            fd = open("/dev/null", O_RDWR);
            if (fd >= 0) {
                dup2(fd, 0);
                dup2(fd, 1);
                dup2(fd, 2);
            }
            if (set_ids &&
                (setgroups(0, NULL) || setresgid(gid, gid, gid) || setresuid(uid, uid, uid)))
                _exit(2);
            setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
            execvp(argv[0], argv);
            _exit(126);
        }
        _exit(1);
    }
    setpgid(c, c);
    *pid = c;
    return 0;
}
