/*
 * kubelet-lite - runs kubelite's pods on this machine as processes in network namespaces.
 *
 *   kubelet-lite --kubeconfig FILE [--images MAPFILE] [--node-name NAME]
 *                [--pod-cidr 10.244.0.0/24] [--service-cidr 10.96.0.0/12] [--root DIR]
 *                [--shutdown-grace SECONDS] [--log-level LEVEL]
 *   kubelet-lite --cleanup [--root DIR] [--service-cidr CIDR]
 *
 * Needs root. Registers a Node, binds every unscheduled pod to it, runs the pods, keeps the
 * ClusterIP rules in step with Services and EndpointSlices. SIGTERM/SIGINT: stop every pod
 * (grace capped by --shutdown-grace), remove the namespaces, links, chains and directories, and
 * exit 0; a second signal kills the pods at once. See docs/kubelet-lite.md.
 */
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>

#include "core/log.h"
#include "tests/kubelite/kubelet/kubelet.h"

#define LIST_PERIOD 0.2
#define HEARTBEAT_PERIOD 10.0

struct kubelet {
    struct kapi api;
    struct net *net;
    struct image_map *images;
    struct kubelet_conf conf;
    struct pod **pods;
    size_t npods;
    json_t *chains;   /* per-service chains of the last applied rules */
    char *rules;      /* last applied rules */
    json_t *services; /* the Services last listed */
    struct dns *dns;
    bool binding_unsupported;
    char ready_since[32];
    const char *pod_cidr;
    const char *version; /* kubeletVersion reported in the node status */
};

static void usage(FILE *f)
{
    fprintf(f, "usage: kubelet-lite --kubeconfig FILE [--images MAPFILE] [--node-name NAME]\n"
               "                    [--pod-cidr CIDR] [--service-cidr CIDR] [--root DIR]\n"
               "                    [--shutdown-grace SECONDS] [--log-level LEVEL]\n"
               "       kubelet-lite --cleanup [--root DIR] [--service-cidr CIDR]\n");
}

/* ------------------------------------------------------------------ node */

static void node_status(struct kubelet *k, bool ready)
{
    char now[32], path[512], msg[512];
    struct utsname u;
    json_t *body;
    int rc;

    spec_now_rfc3339(now);
    if (uname(&u))
        memset(&u, 0, sizeof(u));
    body =
        json_pack("{s:{s:[{s:s,s:s,s:s,s:s,s:s,s:s}],s:[{s:s,s:s},{s:s,s:s}],s:{s:s,s:s,s:s},"
                  "s:{s:s,s:s,s:s},s:{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}}}",
                  "status", "conditions", "type", "Ready", "status", ready ? "True" : "False",
                  "reason", ready ? "KubeletReady" : "KubeletStopped", "message",
                  ready ? "kubelet is posting ready status" : "kubelet-lite stopped",
                  "lastHeartbeatTime", now, "lastTransitionTime", ready ? k->ready_since : now,
                  "addresses", "type", "InternalIP", "address", k->conf.host_ip, "type", "Hostname",
                  "address", k->conf.node_name, "capacity", "cpu", "4", "memory", "8Gi", "pods",
                  "110", "allocatable", "cpu", "4", "memory", "8Gi", "pods", "110", "nodeInfo",
                  "kubeletVersion", k->version, "kubeProxyVersion", k->version, "operatingSystem",
                  "linux", "architecture", strcmp(u.machine, "aarch64") == 0 ? "arm64" : "amd64",
                  "kernelVersion", u.release, "osImage", "kubelet-lite", "containerRuntimeVersion",
                  "kubelet-lite://0.1", "machineID", "", "systemUUID", "", "bootID", "");
    if (!body)
        return;
    snprintf(path, sizeof(path), "/api/v1/nodes/%s/status", k->conf.node_name);
    rc = k->api.ops->call(k->api.ctx, "PATCH", path, "application/merge-patch+json", body, NULL,
                          msg, sizeof(msg));
    if (rc)
        log_warn("msg=\"cannot update the node status\" err=\"%s\"", msg);
    json_decref(body);
}

static int node_register(struct kubelet *k)
{
    char msg[512];
    json_t *body;
    int rc;

    body =
        json_pack("{s:s,s:s,s:{s:s,s:{s:s,s:s,s:s}},s:{s:s,s:[s]}}", "apiVersion", "v1", "kind",
                  "Node", "metadata", "name", k->conf.node_name, "labels", "kubernetes.io/hostname",
                  k->conf.node_name, "kubernetes.io/os", "linux", "kubernetes.io/arch", "amd64",
                  "spec", "podCIDR", k->pod_cidr, "podCIDRs", k->pod_cidr);
    if (!body)
        return -ENOMEM;
    rc = k->api.ops->call(k->api.ctx, "POST", "/api/v1/nodes", NULL, body, NULL, msg, sizeof(msg));
    json_decref(body);
    if (rc && rc != ERR_EXISTS) {
        log_error("msg=\"cannot register the node\" err=\"%s\"", msg);
        return rc;
    }
    /* Where the containers' output is: kubelite serves pods/log from these files. */
    {
        char path[512], dir[4200];
        snprintf(dir, sizeof(dir), "%s/pods", k->conf.root);
        body = json_pack("{s:{s:{s:s}}}", "metadata", "annotations",
                         "kubelet-lite.weft.dev/pod-log-dir", dir);
        snprintf(path, sizeof(path), "/api/v1/nodes/%s", k->conf.node_name);
        rc = body ? k->api.ops->call(k->api.ctx, "PATCH", path, "application/merge-patch+json",
                                     body, NULL, msg, sizeof(msg))
                  : -ENOMEM;
        json_decref(body);
        if (rc)
            log_warn("msg=\"cannot annotate the node with its log directory\" err=\"%s\"", msg);
    }
    spec_now_rfc3339(k->ready_since);
    node_status(k, true);
    log_info("msg=\"node registered\" node=%s hostIP=%s", k->conf.node_name, k->conf.host_ip);
    return 0;
}

/* ------------------------------------------------------------------ pods */

static struct pod *find_pod(struct kubelet *k, const char *uid)
{
    for (size_t i = 0; i < k->npods; i++) {
        if (strcmp(pod_uid(k->pods[i]), uid) == 0)
            return k->pods[i];
    }
    return NULL;
}

static void bind_pod(struct kubelet *k, const json_t *pod)
{
    json_t *md = json_object_get(pod, "metadata"), *body;
    const char *ns = spec_str(md, "namespace"), *name = spec_str(md, "name");
    char path[1024], msg[512];
    int rc = ERR_NOTFOUND;

    if (!ns || !name)
        return;
    if (!k->binding_unsupported) {
        body = json_pack("{s:s,s:s,s:{s:s,s:s,s:s},s:{s:s,s:s,s:s}}", "apiVersion", "v1", "kind",
                         "Binding", "metadata", "name", name, "namespace", ns, "uid",
                         spec_str(md, "uid") ? spec_str(md, "uid") : "", "target", "apiVersion",
                         "v1", "kind", "Node", "name", k->conf.node_name);
        snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s/binding", ns, name);
        rc = body ? k->api.ops->call(k->api.ctx, "POST", path, NULL, body, NULL, msg, sizeof(msg))
                  : -ENOMEM;
        json_decref(body);
        if (rc == ERR_NOTFOUND || rc == ERR_UNSUPPORTED) {
            log_info("msg=\"pods/binding is not served; binding with a PATCH of spec.nodeName\"");
            k->binding_unsupported = true;
        }
    }
    if (k->binding_unsupported) {
        body = json_pack("{s:{s:s}}", "spec", "nodeName", k->conf.node_name);
        snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s", ns, name);
        rc = body ? k->api.ops->call(k->api.ctx, "PATCH", path, "application/merge-patch+json",
                                     body, NULL, msg, sizeof(msg))
                  : -ENOMEM;
        json_decref(body);
    }
    if (rc && rc != ERR_NOTFOUND)
        log_warn("msg=\"cannot bind pod\" pod=%s/%s err=\"%s\"", ns, name, msg);
    else if (!rc)
        log_info("msg=\"pod bound\" pod=%s/%s node=%s", ns, name, k->conf.node_name);
}

/* Confirm the deletion of a pod this node never ran. */
static void delete_unknown(struct kubelet *k, const json_t *pod)
{
    json_t *md = json_object_get(pod, "metadata");
    json_t *body = json_pack("{s:i}", "gracePeriodSeconds", 0);
    char path[1024];

    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s", spec_str(md, "namespace"),
             spec_str(md, "name"));
    if (body)
        IGNORE_RESULT(k->api.ops->call(k->api.ctx, "DELETE", path, NULL, body, NULL, NULL, 0));
    json_decref(body);
}

static void sync_pod_list(struct kubelet *k, bool stopping)
{
    json_t *items = NULL, *pod, *seen;
    size_t i;

    if (k->api.ops->list(k->api.ctx, "/api/v1/pods", &items))
        return;
    seen = json_object();
    json_array_foreach(items, i, pod)
    {
        json_t *md = json_object_get(pod, "metadata"), *spec = json_object_get(pod, "spec");
        const char *node = spec_str(spec, "nodeName"), *uid = spec_str(md, "uid");
        const char *phase = spec_str(json_object_get(pod, "status"), "phase");
        bool deleting = json_object_get(md, "deletionTimestamp") != NULL;
        struct pod *p;
        if (!uid)
            continue;
        if (!node || !*node) {
            if (!deleting && !stopping)
                bind_pod(k, pod);
            continue;
        }
        if (strcmp(node, k->conf.node_name) != 0)
            continue;
        json_object_set_new(seen, uid, json_true());
        p = find_pod(k, uid);
        if (p) {
            pod_update_obj(p, pod);
            continue;
        }
        if (deleting) {
            delete_unknown(k, pod);
            continue;
        }
        if (stopping ||
            (phase && (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0)))
            continue;
        p = pod_new(pod, k->conf.native_sidecars);
        if (p) {
            struct pod **np = realloc(k->pods, (k->npods + 1) * sizeof(*np));
            if (!np) {
                pod_free(p);
                continue;
            }
            k->pods = np;
            k->pods[k->npods++] = p;
            log_info("msg=\"pod admitted\" pod=%s/%s uid=%s", spec_str(md, "namespace"),
                     spec_str(md, "name"), uid);
        }
    }
    for (i = 0; i < k->npods; i++) {
        if (!json_object_get(seen, pod_uid(k->pods[i])))
            pod_mark_gone(k->pods[i]);
    }
    json_decref(seen);
    json_decref(items);
}

static void sync_services(struct kubelet *k)
{
    json_t *svcs = NULL, *slices = NULL, *chains = NULL;
    struct buf rules;
    char msg[1024];

    buf_init(&rules);
    if (k->api.ops->list(k->api.ctx, "/api/v1/services", &svcs) ||
        k->api.ops->list(k->api.ctx, "/apis/discovery.k8s.io/v1/endpointslices", &slices))
        goto out;
    json_decref(k->services);
    k->services = json_incref(svcs);
    k->conf.services = svcs;
    if (k->dns)
        dns_update(k->dns, svcs, slices);
    if (proxy_render(svcs, slices, k->chains, &rules, &chains))
        goto out;
    if (k->rules && strcmp(k->rules, rules.p) == 0) {
        json_decref(chains);
        goto out;
    }
    if (proxy_apply(rules.p, msg, sizeof(msg))) {
        log_warn("msg=\"cannot apply service rules\" err=\"%s\"", msg);
        json_decref(chains);
        goto out;
    }
    log_debug("msg=\"service rules applied\" chains=%zu", json_array_size(chains));
    json_decref(k->chains);
    k->chains = chains;
    free(k->rules);
    k->rules = buf_take(&rules);
out:
    buf_release(&rules);
    json_decref(svcs);
    json_decref(slices);
}

static void reap(struct kubelet *k, double now)
{
    pid_t pid;
    int st;

    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        for (size_t i = 0; i < k->npods; i++) {
            if (pod_reaped(k->pods[i], pid, st, now))
                break;
        }
    }
}

static void drop_finished(struct kubelet *k)
{
    size_t j = 0;
    for (size_t i = 0; i < k->npods; i++) {
        if (pod_finished(k->pods[i]))
            pod_free(k->pods[i]);
        else
            k->pods[j++] = k->pods[i];
    }
    k->npods = j;
}

static int cmp_len_desc(const void *a, const void *b)
{
    size_t la = strlen(json_string_value(*(json_t *const *)a));
    size_t lb = strlen(json_string_value(*(json_t *const *)b));
    return la < lb ? 1 : la > lb ? -1 : 0;
}

/* Remove the mountpoints created on the host (deepest first; only empty ones go). */
static void remove_mountpoints(json_t *created)
{
    size_t n = json_array_size(created);
    json_t **v = n ? calloc(n, sizeof(*v)) : NULL;

    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        v[i] = json_array_get(created, i);
    qsort(v, n, sizeof(*v), cmp_len_desc);
    for (size_t i = 0; i < n; i++) {
        const char *p = json_string_value(v[i]);
        struct stat st;
        if (lstat(p, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode))
            rmdir(p);
        else if (S_ISREG(st.st_mode) && st.st_size == 0)
            unlink(p);
    }
    free(v);
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"kubeconfig", required_argument, NULL, 'k'},
        {"images", required_argument, NULL, 'i'},
        {"node-name", required_argument, NULL, 'n'},
        {"pod-cidr", required_argument, NULL, 'p'},
        {"service-cidr", required_argument, NULL, 's'},
        {"root", required_argument, NULL, 'r'},
        {"shutdown-grace", required_argument, NULL, 'g'},
        {"log-level", required_argument, NULL, 'l'},
        {"cleanup", no_argument, NULL, 'c'},
        {"bin-dir", required_argument, NULL, 'b'},
        {"kubelet-version", required_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *kubeconfig = NULL, *images = NULL, *svc_cidr = "10.96.0.0/12";
    char node_name[256] = "", msg[1024] = "";
    struct kubelet k;
    struct kclient *kc = NULL;
    bool cleanup = false, stopping = false;
    int opt, rc = 1, sfd = -1, signals = 0, vmaj = 1, vmin = 33, vpatch = 0;
    const char *bindir = NULL;
    char bindir_buf[4096], root_buf[PATH_MAX];
    double next_list = 0, next_beat = 0;
    sigset_t mask;

    memset(&k, 0, sizeof(k));
    k.pod_cidr = "10.244.0.0/24";
    k.conf.root = "/run/kubelet-lite";
    k.conf.shutdown_grace = 10;
    k.version = "v1.33.0";
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'k':
            kubeconfig = optarg;
            break;
        case 'i':
            images = optarg;
            break;
        case 'n':
            snprintf(node_name, sizeof(node_name), "%s", optarg);
            break;
        case 'p':
            k.pod_cidr = optarg;
            break;
        case 's':
            svc_cidr = optarg;
            break;
        case 'r':
            k.conf.root = optarg;
            break;
        case 'g':
            k.conf.shutdown_grace = atof(optarg);
            break;
        case 'l': {
            enum log_level lvl;
            if (log_level_parse(optarg, &lvl)) {
                fprintf(stderr, "kubelet-lite: bad --log-level %s\n", optarg);
                return 2;
            }
            log_set_level(lvl);
            break;
        }
        case 'c':
            cleanup = true;
            break;
        case 'b':
            bindir = optarg;
            break;
        case 'V':
            if (sscanf(optarg, "v%d.%d.%d", &vmaj, &vmin, &vpatch) != 3) {
                fprintf(stderr, "kubelet-lite: --kubelet-version %s: want vMAJOR.MINOR.PATCH\n",
                        optarg);
                return 2;
            }
            k.version = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc || (!cleanup && !kubeconfig)) {
        usage(stderr);
        return 2;
    }
    if (geteuid() != 0) {
        fprintf(stderr, "kubelet-lite: must run as root (it creates network namespaces, veth "
                        "links, a bridge and iptables rules)\n");
        return 1;
    }
    if (cleanup) {
        net_cleanup(k.conf.root, svc_cidr);
        return 0;
    }
    if (!node_name[0] && gethostname(node_name, sizeof(node_name) - 1))
        snprintf(node_name, sizeof(node_name), "kubelet-lite");
    k.conf.node_name = node_name;
    k.conf.created = json_array();
    if (!k.conf.created)
        return 1;
    if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
        fprintf(stderr, "kubelet-lite: cannot initialise libcurl\n");
        goto out;
    }
    if (kclient_new(kubeconfig, &kc, msg, sizeof(msg))) {
        fprintf(stderr, "kubelet-lite: %s\n", msg);
        goto out;
    }
    k.api.ops = &kclient_ops;
    k.api.ctx = kc;
    if (images ? image_map_load(images, &k.images, msg, sizeof(msg))
               : image_map_parse("", &k.images, msg, sizeof(msg))) {
        fprintf(stderr, "kubelet-lite: %s: %s\n", images ? images : "image map", msg);
        goto out;
    }
    if (!bindir) {
        /* The project's images run the binaries beside kubelet-lite's own. */
        ssize_t n = readlink("/proc/self/exe", bindir_buf, sizeof(bindir_buf) - 1);
        char *slash;
        bindir_buf[n > 0 ? n : 0] = '\0';
        slash = strrchr(bindir_buf, '/');
        if (slash)
            *slash = '\0';
        bindir = bindir_buf[0] ? bindir_buf : ".";
    }
    if (image_map_add_builtin(k.images, bindir))
        goto out;
    k.conf.native_sidecars = vmaj > 1 || (vmaj == 1 && vmin >= 29);
    (void)vpatch;
    if (volume_mkdirs(k.conf.root, 0755)) {
        fprintf(stderr, "kubelet-lite: cannot create %s\n", k.conf.root);
        goto out;
    }
    if (!realpath(k.conf.root, root_buf)) {
        fprintf(stderr, "kubelet-lite: %s: %s\n", k.conf.root, strerror(errno));
        goto out;
    }
    k.conf.root = root_buf;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) {
        perror("kubelet-lite: signalfd");
        goto out;
    }
    if (net_new(k.pod_cidr, svc_cidr, k.conf.root, &k.net, msg, sizeof(msg))) {
        fprintf(stderr, "kubelet-lite: %s\n", msg);
        goto out;
    }
    k.conf.host_ip = net_gateway(k.net);
    if (dns_new(k.conf.host_ip, &k.dns, msg, sizeof(msg))) {
        fprintf(stderr, "kubelet-lite: %s\n", msg);
        goto out;
    }
    if (proxy_setup(msg, sizeof(msg))) {
        fprintf(stderr, "kubelet-lite: %s\n", msg);
        goto out;
    }
    if (node_register(&k))
        goto out;
    log_info("msg=\"kubelet-lite running\" node=%s server=%s podCIDR=%s serviceCIDR=%s root=%s",
             node_name, kclient_server(kc), k.pod_cidr, svc_cidr, k.conf.root);
    rc = 0;
    for (;;) {
        struct pollfd pfd[2] = {{sfd, POLLIN, 0}, {dns_fd(k.dns), POLLIN, 0}};
        struct signalfd_siginfo si;
        double now;

        if (poll(pfd, 2, 50) < 0 && errno != EINTR)
            break;
        if (pfd[1].revents & POLLIN)
            dns_serve(k.dns);
        while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
            if (si.ssi_signo == SIGCHLD)
                continue;
            signals++;
            if (!stopping) {
                log_info("msg=\"stopping: terminating every pod\" signal=%u", si.ssi_signo);
                stopping = true;
                for (size_t i = 0; i < k.npods; i++)
                    pod_shutdown(k.pods[i], &k.conf);
            } else if (signals > 1) {
                log_info("msg=\"second signal: killing every pod\"");
                for (size_t i = 0; i < k.npods; i++)
                    pod_kill_all(k.pods[i]);
            }
        }
        now = spec_mono();
        reap(&k, now);
        if (now >= next_list && !stopping) {
            sync_pod_list(&k, stopping);
            sync_services(&k);
            next_list = now + LIST_PERIOD;
        }
        for (size_t i = 0; i < k.npods; i++)
            pod_sync(k.pods[i], &k.api, k.net, k.images, &k.conf, now);
        drop_finished(&k);
        if (now >= next_beat && !stopping) {
            node_status(&k, true);
            next_beat = now + HEARTBEAT_PERIOD;
        }
        if (stopping && k.npods == 0)
            break;
    }
    node_status(&k, false);
out:
    for (size_t i = 0; i < k.npods; i++) {
        pod_kill_all(k.pods[i]);
        pod_free(k.pods[i]);
    }
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    free(k.pods);
    if (k.net) {
        proxy_teardown();
        net_free(k.net);
        /* Anything a pod left (a netns it could not delete) goes the cleanup way. */
        net_cleanup(k.conf.root, svc_cidr);
    }
    remove_mountpoints(k.conf.created);
    json_decref(k.conf.created);
    json_decref(k.chains);
    json_decref(k.services);
    dns_free(k.dns);
    free(k.rules);
    image_map_free(k.images);
    kclient_free(kc);
    curl_global_cleanup();
    if (sfd >= 0)
        close(sfd);
    log_info("msg=\"kubelet-lite stopped\"");
    return rc;
}
