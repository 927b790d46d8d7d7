/*
 * dns.c - the cluster DNS: a UDP resolver on the node's bridge address that answers the names
 * of Services (ClusterIP and headless) under cluster.local from the Services and EndpointSlices
 * kubelet-lite lists, so a change is answered from the next list on (200 ms).
 *
 * Served on the main loop: dns_serve reads the pending queries and answers each at once (no
 * state per query, no upstream). A query is at most 512 bytes and so is an answer (the
 * truncation bit is set when the records do not fit). Names outside cluster.local are REFUSED:
 * pods cannot reach anything outside the node anyway.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "tests/kubelite/kubelet/kubelet.h"

#define DNS_MAX 512
#define DNS_TTL 5
#define DNS_BURST 256 /* queries answered per dns_serve call */
#define ZONE "cluster.local"

struct dns {
    int fd;
    json_t *names; /* lower-case FQDN without the final dot -> array of IPv4 strings */
    unsigned long long answered, refused;
};

int dns_new(const char *addr, struct dns **out, char *msg, size_t msglen)
{
    struct dns *d = calloc(1, sizeof(*d));
    struct sockaddr_in sa;
    int rc;

    if (!d)
        return -ENOMEM;
    d->names = json_object();
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(53);
    if (!d->names || inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
        snprintf(msg, msglen, "cluster DNS: bad address %s", addr);
        rc = d->names ? ERR_INVALID : -ENOMEM;
        goto fail;
    }
    d->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (d->fd < 0 || bind(d->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        rc = -errno;
        snprintf(msg, msglen, "cluster DNS: cannot listen on %s:53/udp: %s", addr, strerror(errno));
        goto fail;
    }
    *out = d;
    return 0;
fail:
    if (d->fd > 0)
        close(d->fd);
    json_decref(d->names);
    free(d);
    return rc;
}

void dns_free(struct dns *d)
{
    if (!d)
        return;
    close(d->fd);
    json_decref(d->names);
    free(d);
}

int dns_fd(const struct dns *d)
{
    return d->fd;
}

static void add_name(json_t *names, const char *name, const char *ip)
{
    char key[600];
    json_t *list;
    size_t i;

    snprintf(key, sizeof(key), "%s", name);
    for (i = 0; key[i]; i++)
        key[i] = (char)tolower((unsigned char)key[i]);
    list = json_object_get(names, key);
    if (!list) {
        list = json_array();
        if (!list || json_object_set_new(names, key, list))
            return;
    }
    json_array_append_new(list, json_string(ip));
}

void dns_update(struct dns *d, const json_t *services, const json_t *slices)
{
    json_t *names = json_object(), *svc, *slice;
    size_t i;

    if (!names)
        return;
    json_array_foreach(services, i, svc)
    {
        const json_t *md = json_object_get(svc, "metadata"), *spec = json_object_get(svc, "spec");
        const char *ns = spec_str(md, "namespace"), *name = spec_str(md, "name");
        const char *ip = spec_str(spec, "clusterIP");
        char fqdn[600];
        size_t j;
        if (!ns || !name)
            continue;
        snprintf(fqdn, sizeof(fqdn), "%s.%s.svc." ZONE, name, ns);
        if (ip && *ip && strcmp(ip, "None") != 0) {
            add_name(names, fqdn, ip);
            continue;
        }
        if (!ip || strcmp(ip, "None") != 0)
            continue; /* ExternalName and the like: not answered */
        /* Headless: every ready endpoint of the Service's slices, and <hostname>.<fqdn>. */
        json_array_foreach(slices, j, slice)
        {
            const json_t *smd = json_object_get(slice, "metadata"), *ep;
            const char *sn = spec_str(json_object_get(smd, "labels"), "kubernetes.io/service-name");
            size_t k;
            if (!sn || strcmp(sn, name) != 0 || !spec_str(smd, "namespace") ||
                strcmp(spec_str(smd, "namespace"), ns) != 0)
                continue;
            json_array_foreach(json_object_get(slice, "endpoints"), k, ep)
            {
                const char *addr =
                    json_string_value(json_array_get(json_object_get(ep, "addresses"), 0));
                const json_t *ready = json_object_get(json_object_get(ep, "conditions"), "ready");
                const char *host = spec_str(ep, "hostname");
                if (!addr || json_is_false(ready))
                    continue;
                add_name(names, fqdn, addr);
                if (host && *host) {
                    char h[700];
                    snprintf(h, sizeof(h), "%s.%s", host, fqdn);
                    add_name(names, h, addr);
                }
            }
        }
        if (!json_object_get(names, fqdn))
            json_object_set_new(names, fqdn, json_array()); /* exists, no address */
    }
    json_decref(d->names);
    d->names = names;
}

/* Read the question's name at p (no compression in questions) into out, lower-case, dotted.
 * Returns the offset after the name or 0 when malformed. */
static size_t read_qname(const unsigned char *m, size_t len, size_t p, char *out, size_t outlen)
{
    size_t o = 0;

    for (;;) {
        unsigned l;
        if (p >= len)
            return 0;
        l = m[p++];
        if (l == 0)
            break;
        if (l > 63 || p + l > len || o + l + 2 > outlen)
            return 0;
        if (o)
            out[o++] = '.';
        for (unsigned i = 0; i < l; i++)
            out[o++] = (char)tolower(m[p + i]);
        p += l;
    }
    out[o] = '\0';
    return p;
}

static bool in_zone(const char *name)
{
    size_t n = strlen(name), z = strlen(ZONE);
    return strcmp(name, ZONE) == 0 ||
           (n > z && name[n - z - 1] == '.' && strcmp(name + n - z, ZONE) == 0);
}

/* Build the answer to query q (qlen bytes) into a. Returns its length, 0 = no answer. */
static size_t answer(struct dns *d, const unsigned char *q, size_t qlen, unsigned char *a)
{
    char name[256];
    size_t qend, n;
    unsigned qtype, qclass, rcode = 0, ancount = 0;
    bool tc = false;
    const json_t *ips;

    if (qlen < 12 || (q[2] & 0x80)) /* too short, or a response */
        return 0;
    if (q[2] & 0x78 || q[4] != 0 || q[5] != 1) { /* not a QUERY, or not one question */
        memcpy(a, q, 12);
        a[2] = (unsigned char)(0x80 | (q[2] & 0x79));
        a[3] = (q[2] & 0x78) ? 4 : 1; /* NOTIMP / FORMERR */
        memset(a + 4, 0, 8);
        return 12;
    }
    qend = read_qname(q, qlen, 12, name, sizeof(name));
    if (!qend || qend + 4 > qlen)
        return 0;
    qtype = (unsigned)(q[qend] << 8 | q[qend + 1]);
    qclass = (unsigned)(q[qend + 2] << 8 | q[qend + 3]);
    qend += 4;
    memcpy(a, q, qend);
    n = qend;
    ips = json_object_get(d->names, name);
    if (!in_zone(name)) {
        rcode = 5; /* REFUSED */
        d->refused++;
    } else if (!ips) {
        rcode = 3; /* NXDOMAIN */
    } else if ((qtype == 1 || qtype == 255) && (qclass == 1 || qclass == 255)) {
        size_t i;
        json_t *ip;
        json_array_foreach(ips, i, ip)
        {
            struct in_addr in;
            if (inet_pton(AF_INET, json_string_value(ip), &in) != 1)
                continue;
            if (n + 16 > DNS_MAX) {
                tc = true;
                break;
            }
            a[n++] = 0xc0; /* pointer to the question's name */
            a[n++] = 12;
            a[n++] = 0;
            a[n++] = 1; /* A */
            a[n++] = 0;
            a[n++] = 1; /* IN */
            a[n++] = 0;
            a[n++] = 0;
            a[n++] = 0;
            a[n++] = DNS_TTL;
            a[n++] = 0;
            a[n++] = 4;
            memcpy(a + n, &in, 4);
            n += 4;
            ancount++;
        }
    } /* else: the name exists without records of that type (AAAA): NOERROR, no answer */
    a[2] = (unsigned char)(0x80 | 0x04 | (tc ? 0x02 : 0) | (q[2] & 0x01)); /* QR AA TC RD */
    a[3] = (unsigned char)(0x80 | rcode);                                  /* RA */
    a[6] = (unsigned char)(ancount >> 8);
    a[7] = (unsigned char)ancount;
    memset(a + 8, 0, 4);
    if (!rcode)
        d->answered++;
    return n;
}

void dns_serve(struct dns *d)
{
    for (int i = 0; i < DNS_BURST; i++) {
        unsigned char q[DNS_MAX], a[DNS_MAX + 16];
        struct sockaddr_storage from;
        socklen_t fl = sizeof(from);
        ssize_t r = recvfrom(d->fd, q, sizeof(q), MSG_TRUNC, (struct sockaddr *)&from, &fl);
        size_t n;
        if (r < 0)
            return;
        if ((size_t)r > sizeof(q))
            continue; /* longer than a query can be: dropped */
        n = answer(d, q, (size_t)r, a);
        if (n)
            IGNORE_RESULT(sendto(d->fd, a, n, MSG_DONTWAIT, (struct sockaddr *)&from, fl));
    }
}

int dns_resolv_conf(const json_t *pod_spec, const char *ns, const char *nameserver, struct buf *out)
{
    const char *policy = spec_str(pod_spec, "dnsPolicy");
    bool host_net = json_is_true(json_object_get(pod_spec, "hostNetwork"));
    const json_t *cfg = json_object_get(pod_spec, "dnsConfig"), *v;
    json_t *opts;
    const char *k;
    size_t i;
    int rc = 0;

    if (!policy)
        policy = "ClusterFirst";
    if (strcmp(policy, "Default") == 0 || (strcmp(policy, "ClusterFirst") == 0 && host_net))
        return 1; /* the node's own resolv.conf */
    if (strcmp(policy, "None") != 0) {
        rc = buf_printf(out, "nameserver %s\n", nameserver);
    }
    json_array_foreach(json_object_get(cfg, "nameservers"), i, v)
    {
        if (!rc && json_string_value(v))
            rc = buf_printf(out, "nameserver %s\n", json_string_value(v));
    }
    if (!rc && strcmp(policy, "None") != 0)
        rc = buf_printf(out, "search %s.svc." ZONE " svc." ZONE " " ZONE, ns);
    else if (!rc && json_array_size(json_object_get(cfg, "searches")))
        rc = buf_printf(out, "search");
    json_array_foreach(json_object_get(cfg, "searches"), i, v)
    {
        if (!rc && json_string_value(v))
            rc = buf_printf(out, " %s", json_string_value(v));
    }
    if (!rc && (strcmp(policy, "None") != 0 || json_array_size(json_object_get(cfg, "searches"))))
        rc = buf_printf(out, "\n");
    /* Options: ndots:5 (not for None), then dnsConfig's, a later one replacing an earlier. */
    opts = json_object();
    if (!opts)
        return -ENOMEM;
    if (strcmp(policy, "None") != 0)
        json_object_set_new(opts, "ndots", json_string("5"));
    json_array_foreach(json_object_get(cfg, "options"), i, v)
    {
        const char *name = spec_str(v, "name"), *val = spec_str(v, "value");
        if (name)
            json_object_set_new(opts, name, val ? json_string(val) : json_null());
    }
    if (!rc && json_object_size(opts))
        rc = buf_printf(out, "options");
    json_object_foreach(opts, k, v)
    {
        if (!rc)
            rc = json_is_string(v) ? buf_printf(out, " %s:%s", k, json_string_value(v))
                                   : buf_printf(out, " %s", k);
    }
    if (!rc && json_object_size(opts))
        rc = buf_printf(out, "\n");
    json_decref(opts);
    return rc;
}
