/*
 * weft-init - installs the pod's nat redirection (docs/agent.md): inbound TCP to the proxy's
 * inbound listener, outbound TCP to its outbound listener, with the exceptions the webhook's
 * arguments give (docs/injection.md).
 *
 *   weft-init [--proxy-uid 1337] [--outbound-port 15001] [--inbound-port 15006]
 *             [--include-inbound-ports *|PORTS] [--exclude-inbound-ports PORTS]
 *             [--exclude-outbound-ports PORTS] [--include-outbound-ip-ranges *|CIDRS]
 *             [--exclude-outbound-ip-ranges CIDRS] [--iptables-backend auto|nft|legacy]
 *             [--dry-run]
 *
 * Runs iptables-save / iptables-restore (the nft or legacy variant the host uses) for IPv4 and,
 * when IPv6 is enabled in the pod, ip6tables. Idempotent: our chains (WEFT_*) and the jumps to
 * them are replaced, everything else in the nat table is kept, and each family's table is
 * restored atomically. Exit 0 on success, 1 on failure with one line on stderr, 2 on usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/agent.h"
#include "core/buf.h"

#define CAP_NET_ADMIN_BIT 12

static struct diag err; /* what failed, for the caller to print */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: weft-init [--proxy-uid UID] [--outbound-port PORT] [--inbound-port PORT]\n"
            "                 [--include-inbound-ports *|PORTS] [--exclude-inbound-ports PORTS]\n"
            "                 [--exclude-outbound-ports PORTS]\n"
            "                 [--include-outbound-ip-ranges *|CIDRS]\n"
            "                 [--exclude-outbound-ip-ranges CIDRS]\n"
            "                 [--iptables-backend auto|nft|legacy] [--dry-run]\n");
}

/* Does this process hold CAP_NET_ADMIN in its effective set? */
static bool have_net_admin(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    bool ok = false;

    if (!f)
        return false;
    while (fgets(line, sizeof(line), f)) {
        unsigned long long v;

        if (sscanf(line, "CapEff: %llx", &v) == 1) {
            ok = (v >> CAP_NET_ADMIN_BIT) & 1;
            break;
        }
    }
    fclose(f);
    return ok;
}

/*
 * Run argv with `input` on stdin; stdout and stderr go to *output. Returns the exit status
 * (0..255), or a negative code when the program could not be run.
 */
static int run(char *const argv[], const char *input, struct buf *output)
{
    int in = -1, outfd = -1, status = 0, rc;
    pid_t pid;

    in = memfd_create("weft-init-in", MFD_CLOEXEC);
    outfd = memfd_create("weft-init-out", MFD_CLOEXEC);
    if (in < 0 || outfd < 0) {
        rc = -errno;
        goto out;
    }
    if (input) {
        size_t len = strlen(input), off = 0;

        while (off < len) {
            ssize_t w = write(in, input + off, len - off);

            if (w < 0) {
                rc = -errno;
                goto out;
            }
            off += (size_t)w;
        }
        lseek(in, 0, SEEK_SET);
    }
    pid = fork();
    if (pid < 0) {
        rc = -errno;
        goto out;
    }
    if (pid == 0) {
        dup2(in, 0);
        dup2(outfd, 1);
        dup2(outfd, 2);
        execvp(argv[0], argv);
        _exit(127);
    }
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            rc = -errno;
            goto out;
        }
    }
    lseek(outfd, 0, SEEK_SET);
    if (output) {
        char chunk[4096];
        ssize_t n;

        buf_reset(output);
        while ((n = read(outfd, chunk, sizeof(chunk))) > 0) {
            if ((rc = buf_append(output, chunk, (size_t)n)) < 0)
                goto out;
        }
    }
    rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
out:
    if (in >= 0)
        close(in);
    if (outfd >= 0)
        close(outfd);
    return rc;
}

/* Is an executable named `name` on PATH? */
static bool on_path(const char *name)
{
    const char *path = getenv("PATH");
    char buf[4096];

    if (!path || !*path)
        path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    while (*path) {
        const char *c = strchr(path, ':');
        size_t len = c ? (size_t)(c - path) : strlen(path);

        snprintf(buf, sizeof(buf), "%.*s/%s", (int)len, len ? path : ".", name);
        if (access(buf, X_OK) == 0)
            return true;
        path += len + (c ? 1 : 0);
    }
    return false;
}

/* The last non-empty line of s, for one-line error messages. */
static const char *last_line(struct buf *b)
{
    char *s = b->p ? b->p : (char *)"";
    char *e = s + strlen(s), *start;

    while (e > s && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' '))
        *--e = '\0';
    start = strrchr(s, '\n');
    return start ? start + 1 : s;
}

struct backend {
    const char *name; /* "nft" or "legacy" */
    char save[32], restore[32];
};

/* The save/restore programs of a backend for a family; false when they are not installed. */
static bool backend_tools(const char *name, int family, struct backend *b)
{
    const char *pre = family == AF_INET6 ? "ip6tables" : "iptables";

    b->name = name;
    snprintf(b->save, sizeof(b->save), "%s-%s-save", pre, name);
    snprintf(b->restore, sizeof(b->restore), "%s-%s-restore", pre, name);
    if (on_path(b->save) && on_path(b->restore))
        return true;
    /* A distribution with only the plain names: use them if they are this backend. */
    {
        char version[16];
        struct buf o;
        char *argv[] = {NULL, (char *)"--version", NULL};
        bool match = false;

        snprintf(b->save, sizeof(b->save), "%s-save", pre);
        snprintf(b->restore, sizeof(b->restore), "%s-restore", pre);
        if (!on_path(b->save) || !on_path(b->restore))
            return false;
        snprintf(version, sizeof(version), "%s", pre);
        argv[0] = version;
        buf_init(&o);
        if (run(argv, NULL, &o) == 0 && o.p)
            match = strstr(o.p, strcmp(name, "nft") == 0 ? "nf_tables" : "legacy") != NULL;
        buf_release(&o);
        return match;
    }
}

/* Rules (-A lines) the backend's tables hold, and whether ours are among them; -1 if unusable. */
static int backend_rules(const struct backend *b, bool *has_ours)
{
    struct buf o;
    char *argv[] = {(char *)b->save, NULL};
    int n = 0, rc;

    *has_ours = false;
    buf_init(&o);
    rc = run(argv, NULL, &o);
    if (rc != 0) {
        buf_release(&o);
        return -1;
    }
    for (const char *p = o.p ? o.p : ""; *p;) {
        const char *nl = strchr(p, '\n');

        if (strncmp(p, "-A ", 3) == 0)
            n++;
        if (strncmp(p, ":" AGENT_IPT_CHAIN_PREFIX, strlen(AGENT_IPT_CHAIN_PREFIX) + 1) == 0)
            *has_ours = true;
        p = nl ? nl + 1 : p + strlen(p);
    }
    buf_release(&o);
    return n;
}

/*
 * Pick the backend: the one that already holds our chains (a rerun), else the one holding
 * rules (what the node's other tools use), else nft, else legacy.
 */
static int backend_pick(const char *want, struct backend *out)
{
    struct backend nft, legacy;
    bool nft_ok = backend_tools("nft", AF_INET, &nft);
    bool leg_ok = backend_tools("legacy", AF_INET, &legacy);
    bool nft_ours = false, leg_ours = false;
    int nft_n = -1, leg_n = -1;

    if (strcmp(want, "nft") == 0 || strcmp(want, "legacy") == 0) {
        bool ok = strcmp(want, "nft") == 0 ? nft_ok : leg_ok;

        if (!ok) {
            diag_set(&err, "--iptables-backend %s: iptables-%s-save/-restore are not installed",
                     want, want);
            return ERR_NOTFOUND;
        }
        *out = strcmp(want, "nft") == 0 ? nft : legacy;
        return 0;
    }
    if (nft_ok)
        nft_n = backend_rules(&nft, &nft_ours);
    if (leg_ok)
        leg_n = backend_rules(&legacy, &leg_ours);
    if (nft_n < 0 && leg_n < 0) {
        diag_set(&err,
                 "no usable iptables: neither iptables-nft-save nor iptables-legacy-save runs "
                 "here (install Debian's iptables package)");
        return ERR_NOTFOUND;
    }
    if (nft_ours && nft_n >= 0)
        *out = nft;
    else if (leg_ours && leg_n >= 0)
        *out = legacy;
    else if (leg_n > 0 && leg_n > nft_n)
        *out = legacy;
    else if (nft_n >= 0)
        *out = nft;
    else
        *out = legacy;
    return 0;
}

/* Is IPv6 enabled in this network namespace? */
static bool ipv6_enabled(void)
{
    FILE *f;
    int c;

    if (access("/proc/net/if_inet6", R_OK) != 0)
        return false;
    f = fopen("/proc/sys/net/ipv6/conf/all/disable_ipv6", "r");
    if (!f)
        return true;
    c = fgetc(f);
    fclose(f);
    return c != '1';
}

/*
 * Add ::6/128 to lo (idempotent: NLM_F_REPLACE): the inbound listener's source address for
 * connections to the app over IPv6 (127.0.0.6 is local already, ::6 is not).
 */
static int lo_add_v6_source(void)
{
    struct {
        struct nlmsghdr nh;
        struct ifaddrmsg ifa;
        char attrs[64];
    } req;
    struct rtattr *rta;
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    char reply[4096];
    int fd = -1, rc;
    unsigned idx = if_nametoindex("lo");
    ssize_t n;

    if (!idx)
        return -errno;
    memset(&req, 0, sizeof(req));
    req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
    req.nh.nlmsg_type = RTM_NEWADDR;
    req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
    req.nh.nlmsg_seq = 1;
    req.ifa.ifa_family = AF_INET6;
    req.ifa.ifa_prefixlen = 128;
    req.ifa.ifa_scope = RT_SCOPE_HOST;
    req.ifa.ifa_index = idx;
    rta = (struct rtattr *)((char *)&req + NLMSG_ALIGN(req.nh.nlmsg_len));
    rta->rta_type = IFA_LOCAL;
    rta->rta_len = RTA_LENGTH(16);
    if (inet_pton(AF_INET6, AGENT_INBOUND_SRC6, RTA_DATA(rta)) != 1)
        return -EINVAL;
    req.nh.nlmsg_len = NLMSG_ALIGN(req.nh.nlmsg_len) + RTA_ALIGN(rta->rta_len);
    fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0)
        return -errno;
    if (sendto(fd, &req, req.nh.nlmsg_len, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        rc = -errno;
        goto out;
    }
    n = recv(fd, reply, sizeof(reply), 0);
    if (n < 0) {
        rc = -errno;
        goto out;
    }
    rc = 0;
    if ((size_t)n >= sizeof(struct nlmsghdr) + sizeof(struct nlmsgerr)) {
        struct nlmsghdr *h = (struct nlmsghdr *)reply;

        if (h->nlmsg_type == NLMSG_ERROR)
            rc = ((struct nlmsgerr *)NLMSG_DATA(h))->error;
    }
out:
    close(fd);
    return rc;
}

/* Save, merge, restore one family with backend b. */
static int apply_family(const struct agent_ipt_plan *plan, int family, const char *bname,
                        struct buf *applied)
{
    struct backend b;
    struct buf saved, rules, table;
    const char *fam = family == AF_INET6 ? "IPv6" : "IPv4";
    int rc;

    buf_init(&saved);
    buf_init(&rules);
    buf_init(&table);
    if (!backend_tools(bname, family, &b)) {
        diag_set(&err, "%s: %stables-%s-save/-restore are not installed", fam,
                 family == AF_INET6 ? "ip6" : "ip", bname);
        rc = ERR_NOTFOUND;
        goto out;
    }
    {
        char *argv[] = {b.save, (char *)"-t", (char *)"nat", NULL};

        rc = run(argv, NULL, &saved);
        if (rc != 0) {
            diag_set(&err, "%s: %s -t nat failed: %s", fam, b.save,
                     rc < 0 ? err_str(rc) : last_line(&saved));
            rc = rc < 0 ? rc : -EIO;
            goto out;
        }
    }
    if ((rc = agent_ipt_rules(plan, family, &rules)) < 0 ||
        (rc = agent_ipt_merge(saved.p, rules.p, &table, &err)) < 0) {
        if (rc == -ENOMEM)
            diag_set(&err, "out of memory");
        goto out;
    }
    {
        char *argv[] = {b.restore, NULL};
        struct buf o;

        buf_init(&o);
        rc = run(argv, table.p, &o);
        if (rc != 0)
            diag_set(&err, "%s: %s failed: %s", fam, b.restore,
                     rc < 0 ? err_str(rc) : last_line(&o));
        buf_release(&o);
        if (rc != 0) {
            rc = rc < 0 ? rc : -EIO;
            goto out;
        }
    }
    rc = buf_printf(applied, "# %s, %s (nat table, chains %s*)\n%s", fam, b.restore,
                    AGENT_IPT_CHAIN_PREFIX, rules.p);
out:
    buf_release(&saved);
    buf_release(&rules);
    buf_release(&table);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"proxy-uid", required_argument, NULL, 'u'},
        {"outbound-port", required_argument, NULL, 'o'},
        {"inbound-port", required_argument, NULL, 'i'},
        {"include-inbound-ports", required_argument, NULL, 'L'},
        {"exclude-inbound-ports", required_argument, NULL, 'L'},
        {"exclude-outbound-ports", required_argument, NULL, 'L'},
        {"include-outbound-ip-ranges", required_argument, NULL, 'L'},
        {"exclude-outbound-ip-ranges", required_argument, NULL, 'L'},
        {"iptables-backend", required_argument, NULL, 'b'},
        {"dry-run", no_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct agent_ipt_plan plan;
    struct backend be;
    struct buf applied;
    const char *want = "auto";
    bool dry = false, v6;
    int c, idx, rc, status = 1;

    agent_ipt_plan_init(&plan);
    buf_init(&applied);
    while ((c = getopt_long(argc, argv, "h", opts, &idx)) != -1) {
        long v;
        char *end;

        switch (c) {
        case 'u':
        case 'o':
        case 'i':
            errno = 0;
            v = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || v < (c == 'u' ? 0 : 1) ||
                v > (c == 'u' ? 2147483647L : 65535)) {
                fprintf(stderr, "weft-init: --%s: \"%s\" is not a %s\n", opts[idx].name, optarg,
                        c == 'u' ? "UID" : "port 1-65535");
                status = 2;
                goto out;
            }
            if (c == 'u')
                plan.proxy_uid = (int)v;
            else if (c == 'o')
                plan.outbound_port = (int)v;
            else
                plan.inbound_port = (int)v;
            break;
        case 'L':
            if (agent_ipt_plan_set(&plan, opts[idx].name, optarg, &err) < 0) {
                fprintf(stderr, "weft-init: %s\n", err.text);
                status = 2;
                goto out;
            }
            break;
        case 'b':
            if (strcmp(optarg, "auto") != 0 && strcmp(optarg, "nft") != 0 &&
                strcmp(optarg, "legacy") != 0) {
                fprintf(stderr,
                        "weft-init: --iptables-backend: \"%s\" is not auto, nft or legacy\n",
                        optarg);
                status = 2;
                goto out;
            }
            want = optarg;
            break;
        case 'n':
            dry = true;
            break;
        case 'h':
            usage(stdout);
            status = 0;
            goto out;
        default:
            usage(stderr);
            status = 2;
            goto out;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "weft-init: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        status = 2;
        goto out;
    }
    if (plan.inbound_port == plan.outbound_port) {
        fprintf(stderr, "weft-init: --inbound-port and --outbound-port are both %d\n",
                plan.inbound_port);
        status = 2;
        goto out;
    }
    v6 = ipv6_enabled();

    if (dry) {
        /* Print what would be applied; change nothing and need no privilege. */
        for (int fam = 0; fam < 2; fam++) {
            int family = fam ? AF_INET6 : AF_INET;
            struct buf r;

            if (family == AF_INET6 && !v6) {
                printf("# IPv6 is disabled in this network namespace: no ip6tables rules\n");
                continue;
            }
            buf_init(&r);
            if (agent_ipt_rules(&plan, family, &r) < 0) {
                buf_release(&r);
                fprintf(stderr, "weft-init: out of memory\n");
                goto out;
            }
            printf("# %s: %stables nat table; chains %s* are replaced, other rules are kept\n"
                   "*nat\n%sCOMMIT\n",
                   fam ? "IPv6" : "IPv4", fam ? "ip6" : "ip", AGENT_IPT_CHAIN_PREFIX, r.p);
            buf_release(&r);
        }
        status = 0;
        goto out;
    }

    if (!have_net_admin()) {
        fprintf(stderr, "weft-init: CAP_NET_ADMIN is missing: the weft-init container needs "
                        "securityContext.capabilities.add [NET_ADMIN, NET_RAW] (--dry-run prints "
                        "the rules without it)\n");
        goto out;
    }
    if ((rc = backend_pick(want, &be)) < 0) {
        fprintf(stderr, "weft-init: %s\n", err.text);
        goto out;
    }
    if ((rc = apply_family(&plan, AF_INET, be.name, &applied)) < 0) {
        fprintf(stderr, "weft-init: %s\n", err.text);
        goto out;
    }
    if (v6) {
        /* IPv6 traffic that bypassed the proxy would be plaintext: refuse rather than start. */
        if ((rc = apply_family(&plan, AF_INET6, be.name, &applied)) < 0) {
            fprintf(stderr,
                    "weft-init: IPv6 is enabled in this pod but its traffic cannot be redirected "
                    "(%s); refusing to start the pod with IPv6 uncaptured\n",
                    err.text);
            goto out;
        }
        if ((rc = lo_add_v6_source()) < 0) {
            fprintf(stderr, "weft-init: cannot add %s/128 to lo: %s\n", AGENT_INBOUND_SRC6,
                    err_str(rc));
            goto out;
        }
    } else {
        if ((rc = buf_puts(&applied, "# IPv6 is disabled in this network namespace: no "
                                     "ip6tables rules\n")) < 0)
            goto out;
    }
    fputs(applied.p, stdout);
    printf("weft-init: nat redirection installed with iptables-%s\n", be.name);
    status = 0;
out:
    fflush(stdout);
    buf_release(&applied);
    agent_ipt_plan_release(&plan);
    return status;
}
