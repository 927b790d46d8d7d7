/*
 * netaddr.c - port and CIDR items (see netaddr.h).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <string.h>
#include <sys/socket.h>

#include "core/netaddr.h"

void netaddr_trim(const char **s, const char **e)
{
    while (*s < *e && isspace((unsigned char)**s))
        (*s)++;
    while (*e > *s && isspace((unsigned char)(*e)[-1]))
        (*e)--;
}

bool netaddr_port_parse(const char *item, int *out)
{
    long v = 0;

    if (!*item || strlen(item) > 5)
        return false;
    for (const char *p = item; *p; p++) {
        if (!isdigit((unsigned char)*p))
            return false;
        v = v * 10 + (*p - '0');
    }
    if (v < 1 || v > 65535)
        return false;
    *out = (int)v;
    return true;
}

bool netaddr_cidr_parse(const char *item, struct netaddr_cidr *out)
{
    struct netaddr_cidr c = {0};
    char addr[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(item, '/');
    size_t alen;
    long bits = 0;
    int max;

    if (!slash || slash[1] == '\0' || strlen(slash + 1) > 3)
        return false;
    alen = (size_t)(slash - item);
    if (alen == 0 || alen >= sizeof(addr))
        return false;
    memcpy(addr, item, alen);
    addr[alen] = '\0';
    if (inet_pton(AF_INET, addr, c.addr) == 1) {
        c.family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, addr, c.addr) == 1) {
        c.family = AF_INET6;
        max = 128;
    } else {
        return false;
    }
    for (const char *p = slash + 1; *p; p++) {
        if (!isdigit((unsigned char)*p))
            return false;
        bits = bits * 10 + (*p - '0');
    }
    if (bits > max)
        return false;
    c.bits = (int)bits;
    for (int i = 0; i < 16; i++) {
        int keep = c.bits - i * 8;

        if (keep <= 0)
            c.addr[i] = 0;
        else if (keep < 8)
            c.addr[i] &= (unsigned char)(0xff << (8 - keep));
    }
    if (out)
        *out = c;
    return true;
}
