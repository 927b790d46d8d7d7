/*
 * grpc.c - gRPC status codes on grpc ports (weft_agent_grpc_responses_total; docs/agent.md,
 * "gRPC status codes"): the Lua filter HAProxy runs on those ports' backends, and the counters
 * of what it finds.
 *
 * The filter reads each response's grpc-status (in the trailers, or in the headers of a
 * Trailers-Only answer) at the end of the response into txn.weft_grpc; the frontends' log lines
 * carry it with the call's direction and Service ("grpc=<code> grpc_call=<dir>/<ns>/<svc>") to
 * the agent's log pipe (render.c), and main.c hands every line here. Counters live as long as
 * the agent, across HAProxy reloads (every worker, old ones included, writes to the same pipe).
 * At most AGENT_GRPC_MAX series.
 */
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "core/map.h"

/*
 * <run_dir>/grpc.lua (the driver writes it before HAProxy starts or reloads).
 *
 * tail_pos: where the end-of-trailers block is. HAProxy 2.6 numbers the blocks of a buffer
 * (HTX) from its head, and a block sent to the client leaves from the head (htx_remove_blk:
 * head + 1); positions restart at 0 only when the buffer empties (htx_reset) or when a new
 * block's entry would meet the data (htx_reserve_nxblk: htx_defrag_blks, htx_defrag). So at
 * http_end head is 0 when the whole answer came in at once or into an empty buffer, and above 0
 * when blocks at the front went out while the rest waited: the answer's headers were sent, its
 * message waited (the client's flow-control window closed, or its connection slow) and the
 * trailers came in then, into a buffer not full enough to renumber (tests/e2e/
 * t0460-grpc-filter.sh makes that happen: head 4, 1-2 probes). The internal.htx_blk.* fetches
 * read a position outside head..tail as UNUSED (smp_fetch_htx_blk_type), and an entry is
 * sizeof(struct htx_blk) = 8 bytes counted from the end of the buffer (htx_pos_to_addr), so
 * every position is below size / 8: probing the multiples of nbblks up to there finds the EOT
 * whatever head is, in at most size / 8 / nbblks probes (head / nbblks in practice).
 */
const char agent_grpc_lua[] =
    "-- weft-agent's gRPC status filter (docs/agent.md, \"gRPC status codes\"), loaded by\n"
    "-- HAProxy when the document has a grpc port and attached to those ports' backends\n"
    "-- only. HAProxy 2.6 has no sample fetch for trailers, where gRPC sends grpc-status\n"
    "-- after the messages. At the end of the response (http_end) the end of the message\n"
    "-- is still in the channel's buffer, and HAProxy's internal.htx_blk.* fetches read\n"
    "-- its blocks: the trailers (TLR) come just before the end-of-trailers block (EOT),\n"
    "-- the buffer's tail. A Trailers-Only answer (no message) has grpc-status in its\n"
    "-- headers. The code (\"0\"..\"16\", \"unknown\" for any other value) goes to\n"
    "-- txn.weft_grpc, which the frontend's log line carries to the agent; a code other\n"
    "-- than 0 raises that line to level info. Nothing here may fail or stall a request:\n"
    "-- the work runs under pcall and the callbacks return nothing (HAProxy then goes on\n"
    "-- as if the filter were not there).\n"
    "local EOT, TLR, UNUSED = \"HTX_BLK_EOT\", \"HTX_BLK_TLR\", \"HTX_BLK_UNUSED\"\n"
    "local BLK = 8 -- bytes of a block's entry in HTX's block table (struct htx_blk)\n"
    "\n"
    "local function code_of(v)\n"
    "    if v == nil then return nil end\n"
    "    if v:match(\"^%d%d?$\") and tonumber(v) <= 16 then return tostring(tonumber(v)) end\n"
    "    return \"unknown\"\n"
    "end\n"
    "\n"
    "-- The position of the EOT block (see tail_pos in grpc.c). Blocks have consecutive\n"
    "-- positions head..tail (nbblks of them; outside, UNUSED); the EOT is the only one\n"
    "-- of its type. head = 0 first; else exactly one multiple of nbblks lies in\n"
    "-- [head, tail], found by probing, and the EOT is within nbblks of it. Every\n"
    "-- position is below size / BLK: the probes are bounded, the EOT never missed.\n"
    "local function tail_pos(f)\n"
    "    local n = f:internal_htx_nbblks()\n"
    "    if not n or n < 1 then return nil end\n"
    "    if f:internal_htx_blk_type(tostring(n - 1)) == EOT then return n - 1 end\n"
    "    local size = f:internal_htx_size()\n"
    "    if not size then return nil end\n"
    "    for k = 1, size // BLK // n do\n"
    "        local p = k * n\n"
    "        if f:internal_htx_blk_type(tostring(p)) ~= UNUSED then\n"
    "            for q = p, p + n - 1 do\n"
    "                if f:internal_htx_blk_type(tostring(q)) == EOT then return q end\n"
    "            end\n"
    "            return nil\n"
    "        end\n"
    "    end\n"
    "    return nil\n"
    "end\n"
    "\n"
    "local function trailer_status(f)\n"
    "    local tail = tail_pos(f)\n"
    "    if not tail then return nil end\n"
    "    for p = tail - 1, 0, -1 do\n"
    "        local ps = tostring(p)\n"
    "        if f:internal_htx_blk_type(ps) ~= TLR then return nil end\n"
    "        if f:internal_htx_blk_hdrname(ps) == \"grpc-status\" then\n"
    "            return f:internal_htx_blk_hdrval(ps)\n"
    "        end\n"
    "    end\n"
    "    return nil\n"
    "end\n"
    "\n"
    "local function status(txn)\n"
    "    local f, c = txn.f, nil\n"
    "    if f:internal_htx_blk_type(\"tail\") == EOT then\n"
    "        c = code_of(trailer_status(f))\n"
    "    else\n"
    "        c = code_of(f:res_fhdr(\"grpc-status\"))\n"
    "    end\n"
    "    if c == nil then return end\n"
    "    txn:set_var(\"txn.weft_grpc\", c)\n"
    "    if c ~= \"0\" then txn:set_loglevel(core.info) end\n"
    "end\n"
    "\n"
    "local Filter = {id = \"weft-grpc\", flags = filter.FLT_CFG_FL_HTX}\n"
    "Filter.__index = Filter\n"
    "\n"
    "function Filter:new()\n"
    "    return setmetatable({}, Filter)\n"
    "end\n"
    "\n"
    "function Filter:start_analyze(txn, chn)\n"
    "    if chn:is_resp() then pcall(filter.register_data_filter, self, chn) end\n"
    "end\n"
    "\n"
    "-- Needed by HAProxy 2.6.12: a Lua data filter without http_payload never lets the\n"
    "-- response end (the stream waits in MSG_CLOSING until a timeout). This one leaves\n"
    "-- the data untouched.\n"
    "function Filter:http_payload(txn, msg)\n"
    "end\n"
    "\n"
    "function Filter:http_end(txn, msg)\n"
    "    if msg:is_resp() then pcall(status, txn) end\n"
    "end\n"
    "\n"
    "core.register_filter(\"weft-grpc\", Filter, function(f, args) return f end)\n";

struct agent_grpc {
    struct agent_series s; /* "<direction> <namespace>/<service> <code>" */
};

int agent_grpc_new(struct agent_grpc **out)
{
    *out = calloc(1, sizeof(**out));
    if (!*out)
        return -ENOMEM;
    agent_series_init(&(*out)->s, AGENT_GRPC_MAX);
    return 0;
}

void agent_grpc_free(struct agent_grpc *g)
{
    if (!g)
        return;
    agent_series_release(&g->s);
    free(g);
}

/* "<namespace>/<name>[+<name>...]": what render.c writes (Kubernetes names, '+' between the
 * Services of one inbound port), at most AGENT_GRPC_SERVICE_MAX bytes. */
static bool service_ok(const char *p, size_t n)
{
    const char *slash = memchr(p, '/', n);

    if (!slash || slash == p || slash == p + n - 1 || n > AGENT_GRPC_SERVICE_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
              (c == '+' && p + i > slash) || p + i == slash))
            return false;
    }
    return true;
}

/* "0".."16" as written (no sign, no leading zero), else "unknown" (HAProxy's "-" included: no
 * status read, an answer of HAProxy's own or a call cut short). */
static const char *code_name(const char *v, size_t n)
{
    static const char *const codes[] = {"0", "1",  "2",  "3",  "4",  "5",  "6",  "7", "8",
                                        "9", "10", "11", "12", "13", "14", "15", "16"};

    for (size_t i = 0; i < ARRAY_LEN(codes); i++)
        if (strlen(codes[i]) == n && memcmp(codes[i], v, n) == 0)
            return codes[i];
    return "unknown";
}

bool agent_grpc_line(struct agent_grpc *g, const char *line, size_t len)
{
    static const char *const dirs[] = {"inbound", "outbound"};
    const char *call, *code, *dir = NULL, *svc;
    size_t cn, kn, sn;
    char key[16 + AGENT_GRPC_SERVICE_MAX + 16];

    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    call = agent_log_field(line, len, "grpc_call=", &cn);
    code = call ? agent_log_field(line, (size_t)(call - line), "grpc=", &kn) : NULL;
    if (!call || !code)
        return false;
    for (size_t i = 0; i < ARRAY_LEN(dirs); i++) {
        size_t dn = strlen(dirs[i]);

        if (cn > dn && memcmp(call, dirs[i], dn) == 0 && call[dn] == '/')
            dir = dirs[i];
    }
    if (!dir)
        return false;
    svc = call + strlen(dir) + 1;
    sn = cn - strlen(dir) - 1;
    if (sn == 1 && *svc == '-') /* no grpc backend took the request (not a grpc port's) */
        return false;
    g->s.lines++;
    if (!service_ok(svc, sn)) {
        g->s.bad++;
        return true;
    }
    snprintf(key, sizeof(key), "%s %.*s %s", dir, (int)sn, svc, code_name(code, kn));
    if (agent_series_add(&g->s, key, 1) != 0)
        g->s.bad++;
    return true;
}

static int response_line(struct buf *b, const char *key, unsigned long long v)
{
    const char *sp1 = strchr(key, ' '), *sp2 = strrchr(key, ' ');

    return buf_printf(b,
                      "weft_agent_grpc_responses_total{direction=\"%.*s\",service=\"%.*s\","
                      "code=\"%s\"} %llu\n",
                      (int)(sp1 - key), key, (int)(sp2 - sp1 - 1), sp1 + 1, sp2 + 1, v);
}

int agent_grpc_text(const struct agent_grpc *g, struct buf *b)
{
    return agent_series_text(
        &g->s, b,
        "# HELP weft_agent_grpc_responses_total Responses on grpc ports, by direction (inbound: "
        "this pod's app answered; outbound: a Service it called), Service (<namespace>/<name>) "
        "and gRPC status code (0-16; unknown: no grpc-status, such as HAProxy's own error "
        "answers or calls cut short).\n"
        "# TYPE weft_agent_grpc_responses_total counter\n",
        response_line, "weft_agent_grpc_log_lines_total",
        "Log lines of grpc ports' responses HAProxy sent the agent (its log pipe), by whether "
        "they were counted (bad: a Service name it could not read, or more than " AGENT_STR(
            AGENT_GRPC_MAX) " series).");
}
