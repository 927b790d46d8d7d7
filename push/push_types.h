/*
 * push_types.h - wire types of the config stream (docs/config-stream.md).
 *
 * The constants and the decoded message shared by the weftd side and the agent side of the
 * stream. This header pulls in no libwebsockets or libuv declarations, so any module may embed
 * a struct push_msg. The codec that fills it (push_msg_parse/encode) is declared in push/push.h.
 */
#ifndef WEFT_PUSH_TYPES_H
#define WEFT_PUSH_TYPES_H

#include <stdint.h>

#define PUSH_PATH "/v1/stream"
#define PUSH_SUBPROTOCOL "weft-config-v1"
#define PUSH_PORT_DEFAULT 15012

/* A configuration hash: SHA-256 of the document's canonical JSON, 64 lowercase hex digits. */
#define PUSH_HASH_LEN 64

#define PUSH_DEBOUNCE_MS_DEFAULT 100
#define PUSH_PING_INTERVAL_S_DEFAULT 15 /* a peer silent for 3 intervals is dropped */
#define PUSH_BACKOFF_MIN_MS_DEFAULT 500
#define PUSH_BACKOFF_MAX_MS_DEFAULT 30000

/* WebSocket close status weftd uses after an `error` frame (policy violation). */
#define PUSH_CLOSE_POLICY 1008

/* Stable `error` codes weftd sends. The owner's on_hello may use others (CamelCase). */
#define PUSH_ERR_IDENTITY_MISMATCH "IdentityMismatch"
#define PUSH_ERR_UNKNOWN_POD "UnknownPod"
#define PUSH_ERR_BAD_HELLO "BadHello"     /* malformed or missing hello */
#define PUSH_ERR_REPLACED "Replaced"      /* a newer stream for the same pod took over */
#define PUSH_ERR_PROTOCOL "ProtocolError" /* a malformed frame after the hello */

/* Field limits; longer values make a message invalid. */
#define PUSH_NS_MAX 63
#define PUSH_NAME_MAX 253
#define PUSH_UID_MAX 63
#define PUSH_AGENT_MAX 63
#define PUSH_CODE_MAX 63
#define PUSH_REASON_MAX 1024
#define PUSH_BUNDLE_MAX (1024 * 1024) /* a trust bundle's PEM */

enum push_msg_type {
    PUSH_MSG_NONE = 0,
    PUSH_MSG_HELLO,       /* agent -> weftd */
    PUSH_MSG_ACK,         /* agent -> weftd */
    PUSH_MSG_NACK,        /* agent -> weftd */
    PUSH_MSG_CONFIG,      /* weftd -> agent */
    PUSH_MSG_ERROR,       /* weftd -> agent, then close 1008 */
    PUSH_MSG_APPS_EXITED, /* weftd -> agent: the pod's app containers have exited for good */
    PUSH_MSG_TRUST,       /* weftd -> agent: the trust bundle */
};

struct push_pod_ref {
    char ns[PUSH_NS_MAX + 1];
    char name[PUSH_NAME_MAX + 1];
    char uid[PUSH_UID_MAX + 1];
};

/*
 * One decoded message. Strings are NUL-terminated; an absent optional string is "". reason,
 * config and bundle are heap strings owned by the message (push_msg_release frees them).
 */
struct push_msg {
    enum push_msg_type type;
    struct push_pod_ref pod;           /* hello */
    char agent[PUSH_AGENT_MAX + 1];    /* hello */
    char last_hash[PUSH_HASH_LEN + 1]; /* hello; "" when absent */
    uint64_t version;                  /* ack, nack, config; >= 1 */
    char hash[PUSH_HASH_LEN + 1];      /* ack, nack, config */
    char code[PUSH_CODE_MAX + 1];      /* error */
    char *reason;                      /* nack, error, appsExited; NULL otherwise */
    char *config;                      /* config: the document as canonical JSON text */
    char *bundle;                      /* trust: the PEM roots; NULL otherwise */
};

#endif
