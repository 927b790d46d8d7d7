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
#define PUSH_SUBPROTOCOL "weft-config-v1"    /* whole documents */
#define PUSH_SUBPROTOCOL_V2 "weft-config-v2" /* skeletons referring to shared blocks by hash */
#define PUSH_PROTOCOL_MAX 2                  /* the newest protocol version both ends speak */
#define PUSH_PORT_DEFAULT 15012

/* A configuration hash: SHA-256 of the document's canonical JSON, 64 lowercase hex digits. */
#define PUSH_HASH_LEN 64

#define PUSH_DEBOUNCE_MS_DEFAULT 100
#define PUSH_PING_INTERVAL_S_DEFAULT 15 /* a peer silent for 3 intervals is dropped */
#define PUSH_BACKOFF_MIN_MS_DEFAULT 500
#define PUSH_BACKOFF_MAX_MS_DEFAULT 30000
/* The agent's deadlines for one attempt: the TCP connect, then the TLS handshake and the
 * WebSocket upgrade each. The handshake's is long because in a reconnect storm weftd leaves
 * connections over its handshake cap waiting in its listen backlog (docs/config-stream.md,
 * "Bounds"): such a handshake is slow, not failed. */
#define PUSH_CONNECT_TIMEOUT_S 5
#define PUSH_HANDSHAKE_TIMEOUT_S 30

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

/* Protocol v2 (docs/config-stream.md, "Protocol v2"). */
#define PUSH_BLOCK_MAX (4 * 1024 * 1024) /* one block's canonical text */
#define PUSH_DOC_MAX (64 * 1024 * 1024)  /* a document assembled from its skeleton and blocks */
#define PUSH_REFS_MAX 65536              /* block references in one document, blocks in a frame */
#define PUSH_NEED_MAX 768                /* hashes in one `need` (the frame stays under 64 KiB) */
#define PUSH_BLOCK_CACHE_BYTES_DEFAULT (16 * 1024 * 1024) /* agent: unpinned blocks kept */

enum push_msg_type {
    PUSH_MSG_NONE = 0,
    PUSH_MSG_HELLO,       /* agent -> weftd */
    PUSH_MSG_ACK,         /* agent -> weftd */
    PUSH_MSG_NACK,        /* agent -> weftd */
    PUSH_MSG_CONFIG,      /* weftd -> agent */
    PUSH_MSG_ERROR,       /* weftd -> agent, then close 1008 */
    PUSH_MSG_APPS_EXITED, /* weftd -> agent: the pod's app containers have exited for good */
    PUSH_MSG_TRUST,       /* weftd -> agent: the trust bundle */
    PUSH_MSG_NEED,        /* agent -> weftd (v2): blocks the agent lacks */
    PUSH_MSG_BLOCKS,      /* weftd -> agent (v2): the blocks asked for */
};

struct push_hash {
    char h[PUSH_HASH_LEN + 1];
};

/* A block (v2): a JSON object as canonical text, named by the SHA-256 of that text. */
struct push_block {
    char hash[PUSH_HASH_LEN + 1]; /* as the frame names it (not checked by the codec) */
    char *text;                   /* canonical JSON of the block */
    size_t len;
};

/* A top-level member of a v2 document: inline (text) or an array of blocks (refs). */
struct push_member {
    char *key;              /* the member's name (decoded) */
    char *text;             /* canonical JSON of its value; NULL for a member sent as refs */
    size_t len;             /* of text */
    struct push_hash *refs; /* the blocks that make up the array, in order */
    size_t nrefs;
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
    uint64_t version;                  /* ack, nack, config, need, blocks; >= 1 */
    char hash[PUSH_HASH_LEN + 1];      /* ack, nack, config */
    char code[PUSH_CODE_MAX + 1];      /* error */
    char *reason;                      /* nack, error, appsExited; NULL otherwise */
    char *config;                      /* config: the document as canonical JSON text */
    char *bundle;                      /* trust: the PEM roots; NULL otherwise */
    /* v2 */
    struct push_member *members; /* config in v2 form (config NULL): sorted by key */
    size_t nmembers;
    struct push_block *blocks; /* config (v2 form), blocks: the blocks carried */
    size_t nblocks;
    struct push_hash *hashes; /* need: the blocks asked for; blocks: those weftd does not hold */
    size_t nhashes;
};

#endif
