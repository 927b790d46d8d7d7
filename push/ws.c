/*
 * ws.c - WebSocket helpers shared by the server and the client.
 */
#include <libwebsockets.h>
#include <string.h>

#include "core/log.h"
#include "push/push_int.h"

/* LWS_WRITE_CLOSE: kept out of the public enum in lws 4.1 (value 4), still accepted by
 * lws_write for WebSocket connections. */
#define WS_WRITE_CLOSE ((enum lws_write_protocol)4)

int push__ws_close(struct lws *wsi, int status, const char *reason)
{
    unsigned char b[LWS_PRE + 125];
    size_t n = reason ? strlen(reason) : 0;

    /*
     * lws 4.1.6 on libuv drops the close frame that lws_close_reason() queues when the callback
     * then returns -1 (the connection is killed first), so the frame is written here directly.
     */
    if (n > 123)
        n = 123;
    b[LWS_PRE] = (unsigned char)(status >> 8);
    b[LWS_PRE + 1] = (unsigned char)status;
    if (n)
        memcpy(b + LWS_PRE + 2, reason, n);
    IGNORE_RESULT(lws_write(wsi, b + LWS_PRE, n + 2, WS_WRITE_CLOSE) < 0);
    return -1;
}

static void lws_log_emit(int level, const char *line)
{
    size_t n = strlen(line);

    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    /* lws prefixes its own timestamp; keep just the message. */
    log_warn("msg=\"libwebsockets\" level=%s detail=\"%.*s\"", level == LLL_ERR ? "err" : "warn",
             (int)n, line);
}

void push__lws_log_init(void)
{
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);
}
