/*
 * netaddr.h - parsing of the port and CIDR items that traffic annotations and weft-init's
 * arguments carry (the webhook validates them, weft-init turns them into rules: one parser for
 * both, so that what the webhook accepts weft-init accepts).
 */
#ifndef WEFT_CORE_NETADDR_H
#define WEFT_CORE_NETADDR_H

#include <stdbool.h>

struct netaddr_cidr {
    int family; /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    int bits;
};

/* A port: decimal digits only, 1..65535. Writes *out only on success. */
bool netaddr_port_parse(const char *item, int *out);
/* addr/bits, IPv4 or IPv6, bits required (a bare address is refused). The host bits are
 * cleared in *out (10.1.2.3/8 gives 10.0.0.0/8, as iptables does). out may be NULL. */
bool netaddr_cidr_parse(const char *item, struct netaddr_cidr *out);
/* Narrow [*s, *e) to its part without leading and trailing white space. */
void netaddr_trim(const char **s, const char **e);

#endif
