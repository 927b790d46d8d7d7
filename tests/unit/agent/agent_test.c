/*
 * agent_test.c - agent/: weft-init's plan and rules (agent_ipt_*). The rules themselves are
 * checked on the wire by tests/e2e/t0100-init-redirect.sh; here: argument parsing, the rule text
 * per family and the merge with a table that holds other rules.
 */
#include <sys/socket.h>

#include "agent/agent.h"
#include "tests/unit/unit.h"

static char *rules_of(const struct agent_ipt_plan *p, int family)
{
    struct buf b;

    buf_init(&b);
    REQUIRE(agent_ipt_rules(p, family, &b) == 0);
    return buf_take(&b);
}

static void t_plan_parse(void)
{
    struct agent_ipt_plan p;
    char msg[256] = "";

    agent_ipt_plan_init(&p);
    CHECK(p.in_all && p.out_all);
    CHECK_INT(agent_ipt_plan_set(&p, "exclude-inbound-ports", " 7777, 15020,15090,7777 ", msg,
                                 sizeof(msg)),
              0);
    CHECK_INT(p.n_ex_in_ports, 3); /* duplicate dropped */
    CHECK_INT(p.ex_in_ports[0], 7777);
    CHECK_INT(agent_ipt_plan_set(&p, "include-inbound-ports", "", msg, sizeof(msg)), 0);
    CHECK(!p.in_all);
    CHECK_INT(p.n_in_ports, 0);
    CHECK_INT(agent_ipt_plan_set(&p, "include-inbound-ports", "*", msg, sizeof(msg)), 0);
    CHECK(p.in_all);
    CHECK_INT(agent_ipt_plan_set(&p, "exclude-outbound-ip-ranges",
                                 "10.1.2.3/8,10.0.0.0/8,fd00::1/8", msg, sizeof(msg)),
              0);
    CHECK_INT(p.n_ex_ranges, 2); /* host bits cleared: 10.1.2.3/8 == 10.0.0.0/8 */

    CHECK_INT(agent_ipt_plan_set(&p, "exclude-inbound-ports", "*", msg, sizeof(msg)), ERR_INVALID);
    CHECK_STR(msg, "--exclude-inbound-ports: \"*\" is not allowed here (want comma-separated ports "
                   "1-65535)");
    CHECK_INT(p.n_ex_in_ports, 3); /* unchanged on error */
    CHECK_INT(agent_ipt_plan_set(&p, "exclude-outbound-ports", "80,0", msg, sizeof(msg)),
              ERR_INVALID);
    CHECK_STR(msg, "--exclude-outbound-ports: invalid item \"0\" (want comma-separated ports "
                   "1-65535)");
    CHECK_INT(agent_ipt_plan_set(&p, "exclude-outbound-ports", "80,,81", msg, sizeof(msg)),
              ERR_INVALID);
    CHECK_STR(msg, "--exclude-outbound-ports: empty item in \"80,,81\" (want comma-separated ports "
                   "1-65535)");
    CHECK_INT(agent_ipt_plan_set(&p, "include-outbound-ip-ranges", "10.0.0.0/33", msg, sizeof(msg)),
              ERR_INVALID);
    CHECK_INT(agent_ipt_plan_set(&p, "include-outbound-ip-ranges", "10.0.0.1", msg, sizeof(msg)),
              ERR_INVALID);
    CHECK_INT(agent_ipt_plan_set(&p, "include-outbound-ip-ranges", "fd00::/129", msg, sizeof(msg)),
              ERR_INVALID);
    CHECK_INT(agent_ipt_plan_set(&p, "bogus", "1", msg, sizeof(msg)), ERR_INVALID);
    agent_ipt_plan_release(&p);
    agent_ipt_plan_release(NULL);
}

static void t_rules(void)
{
    struct agent_ipt_plan p;
    char msg[256];
    char *r4, *r6;

    agent_ipt_plan_init(&p);
    REQUIRE(agent_ipt_plan_set(&p, "exclude-inbound-ports", "15020,15090", msg, sizeof(msg)) == 0);
    REQUIRE(agent_ipt_plan_set(&p, "exclude-outbound-ip-ranges", "10.96.0.0/12,fd00::/8", msg,
                               sizeof(msg)) == 0);
    REQUIRE(agent_ipt_plan_set(&p, "exclude-outbound-ports", "5432", msg, sizeof(msg)) == 0);
    r4 = rules_of(&p, AF_INET);
    CHECK_STR(r4, ":WEFT_INBOUND - [0:0]\n"
                  ":WEFT_IN_REDIRECT - [0:0]\n"
                  ":WEFT_OUTPUT - [0:0]\n"
                  ":WEFT_REDIRECT - [0:0]\n"
                  "-A PREROUTING -p tcp -j WEFT_INBOUND\n"
                  "-A OUTPUT -p tcp -j WEFT_OUTPUT\n"
                  "-A WEFT_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006\n"
                  "-A WEFT_REDIRECT -p tcp -j REDIRECT --to-ports 15001\n"
                  "-A WEFT_INBOUND -p tcp -m tcp --dport 15020 -j RETURN\n"
                  "-A WEFT_INBOUND -p tcp -m tcp --dport 15090 -j RETURN\n"
                  "-A WEFT_INBOUND -p tcp -j WEFT_IN_REDIRECT\n"
                  "-A WEFT_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN\n"
                  "-A WEFT_OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp -m owner --uid-owner 1337 -j "
                  "WEFT_INBOUND\n"
                  "-A WEFT_OUTPUT -o lo -j RETURN\n"
                  "-A WEFT_OUTPUT -m owner --uid-owner 1337 -j RETURN\n"
                  "-A WEFT_OUTPUT -p tcp -m tcp --dport 5432 -j RETURN\n"
                  "-A WEFT_OUTPUT -d 10.96.0.0/12 -j RETURN\n"
                  "-A WEFT_OUTPUT -j WEFT_REDIRECT\n");
    r6 = rules_of(&p, AF_INET6);
    CHECK(strstr(r6, "-A WEFT_OUTPUT -s ::6/128 -o lo -j RETURN\n"));
    CHECK(strstr(r6, "! -d ::1/128 -o lo"));
    CHECK(strstr(r6, "-A WEFT_OUTPUT -d fd00::/8 -j RETURN\n"));
    CHECK(!strstr(r6, "10.96"));
    free(r4);
    free(r6);

    /* Include lists: only the listed ports / ranges; an excluded port is never included. */
    REQUIRE(agent_ipt_plan_set(&p, "include-inbound-ports", "8080,15020", msg, sizeof(msg)) == 0);
    REQUIRE(agent_ipt_plan_set(&p, "include-outbound-ip-ranges", "10.0.0.0/8", msg, sizeof(msg)) ==
            0);
    r4 = rules_of(&p, AF_INET);
    CHECK(strstr(r4, "-A WEFT_INBOUND -p tcp -m tcp --dport 8080 -j WEFT_IN_REDIRECT\n"));
    CHECK(!strstr(r4, "--dport 15020"));
    CHECK(!strstr(r4, "-A WEFT_INBOUND -p tcp -j WEFT_IN_REDIRECT"));
    CHECK(strstr(r4, "-A WEFT_OUTPUT -d 10.0.0.0/8 -j WEFT_REDIRECT\n"));
    CHECK(!strstr(r4, "-A WEFT_OUTPUT -j WEFT_REDIRECT"));
    r6 = rules_of(&p, AF_INET6);
    CHECK(!strstr(r6, "-j WEFT_REDIRECT\n")); /* no IPv6 range is included */
    free(r4);
    free(r6);
    agent_ipt_plan_release(&p);
}

static void t_merge(void)
{
    struct agent_ipt_plan p;
    struct buf once, twice;
    char msg[256] = "";
    char *r = NULL;
    const char *saved = "# Generated by iptables-save v1.8.9 (nf_tables)\n"
                        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n"
                        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n"
                        ":OUTPUT DROP [0:0]\n:POSTROUTING ACCEPT [0:0]\n:CNI_X - [0:0]\n"
                        ":WEFT_OLD - [0:0]\n"
                        "-A OUTPUT -d 192.0.2.1/32 -j CNI_X\n"
                        "-A OUTPUT -p tcp -j WEFT_OUTPUT\n"
                        "-A PREROUTING -p tcp -g WEFT_OLD\n"
                        "-A WEFT_OLD -j RETURN\n"
                        "-A CNI_X -j RETURN\n"
                        "COMMIT\n# Completed\n";

    agent_ipt_plan_init(&p);
    r = rules_of(&p, AF_INET);
    buf_init(&once);
    buf_init(&twice);
    REQUIRE(agent_ipt_merge(saved, r, &once, msg, sizeof(msg)) == 0);
    /* other tables are not restored; the nat table keeps others' chains, policies and rules */
    CHECK(!strstr(once.p, "*filter"));
    CHECK(strncmp(once.p, "*nat\n:PREROUTING ACCEPT [0:0]\n", 30) == 0);
    CHECK(strstr(once.p, ":OUTPUT DROP [0:0]\n"));
    CHECK(strstr(once.p, ":CNI_X - [0:0]\n"));
    CHECK(strstr(once.p, "-A OUTPUT -d 192.0.2.1/32 -j CNI_X\n-A CNI_X -j RETURN\n"));
    CHECK(!strstr(once.p, "WEFT_OLD"));
    /* exactly one jump to each of our chains */
    {
        int n = 0;

        for (const char *s = once.p; (s = strstr(s, "-j WEFT_OUTPUT\n")); s++)
            n++;
        CHECK_INT(n, 1);
    }
    CHECK(strstr(once.p, "COMMIT\n") && strlen(strstr(once.p, "COMMIT\n")) == 7);
    /* merging the result again gives the same table (what iptables-save would show) */
    REQUIRE(agent_ipt_merge(once.p, r, &twice, msg, sizeof(msg)) == 0);
    CHECK_STR(twice.p, once.p);

    /* an empty save (legacy without a nat table yet) */
    buf_reset(&once);
    REQUIRE(agent_ipt_merge("", r, &once, msg, sizeof(msg)) == 0);
    CHECK(strncmp(once.p, "*nat\n:WEFT_INBOUND - [0:0]\n", 27) == 0);

    /* a table iptables cannot show is refused, not overwritten */
    buf_reset(&once);
    CHECK_INT(agent_ipt_merge("*nat\n# Table `nat' is incompatible, use 'nft' tool.\nCOMMIT\n", r,
                              &once, msg, sizeof(msg)),
              ERR_UNSUPPORTED);
    CHECK(strstr(msg, "refusing to overwrite"));
    CHECK_INT(agent_ipt_merge("*nat\n[1:2] -A OUTPUT -j X\nCOMMIT\n", r, &once, msg, sizeof(msg)),
              ERR_PARSE);
    buf_release(&once);
    buf_release(&twice);
    free(r);
    agent_ipt_plan_release(&p);
}

UNIT_MAIN(UNIT(t_plan_parse), UNIT(t_rules), UNIT(t_merge))
