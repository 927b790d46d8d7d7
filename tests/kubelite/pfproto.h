/*
 * pfproto.h - the protocol side of kubelite's pods/portforward (pfproto.c): SPDY/3.1 frames, the
 * WebSocket tunnel around them, header compression and the table of forwarded connections, with
 * no socket or thread in sight. portforward.c owns the sockets and the session threads;
 * tests/fuzz/fuzz_portforward.c drives this part alone.
 *
 * A session's bytes from the client are appended to in and handed to kl_pf_input(), which
 * answers (SYN_REPLY, PING, RST_STREAM, GOAWAY, WebSocket pong and close) into out, keeps the
 * pairs (one error and one data stream per forwarded connection, by requestID), calls
 * pair_ready once a pair has both streams, and queues the client's data for a pair's socket in
 * its to_pod. Whole frames only: a partial one waits in in (or spdy) for more bytes.
 */
#ifndef WEFT_KUBELITE_PFPROTO_H
#define WEFT_KUBELITE_PFPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#include "core/buf.h"

#define PF_MAX_PAIRS 64            /* forwarded connections per session (128 streams) */
#define PF_STREAM_BUF (256u << 10) /* bytes for one pod socket before the client is not read */
#define PF_OUT_MAX (1u << 20)      /* bytes queued to the client before pod sockets are not read */
#define PF_FRAME_MAX (1u << 20)    /* a SPDY frame or WebSocket message fragment */
#define PF_HEADERS_MAX (64u << 10) /* a decompressed header block */
#define PF_READ_CHUNK 32768
#define PF_PAIR_TIMEOUT 30.0 /* the kubelet's streamCreationTimeout */
#define PF_CLOSE_GRACE 10.0  /* a closing session's last frames must be taken within this */

struct ssl_st;
struct kl_pf;

/* One forwarded connection: its two streams and the pod's socket. */
struct pf_pair {
    char reqid[64];
    int port;
    uint32_t err_id, data_id; /* 0 until the client opened it */
    int fd;                   /* the pod's socket, -1 before and after */
    int attempt;              /* 0: 127.0.0.1 being connected, 1: [::1] */
    bool connecting, connected;
    bool client_fin; /* the client half-closed the data stream */
    bool shut_wr;    /* ... and the socket was shut for writing after the last byte */
    bool done;       /* both streams finished: freed at the end of the round */
    char v4err[96];  /* why 127.0.0.1 failed */
    struct buf to_pod;
    double created;
};

struct pf_session {
    struct kl_pf *pf;
    int fd;
    struct ssl_st *ssl;
    bool ws;
    int netns_fd; /* -1: the host's */
    char netns[256], pod[600], uid[64];
    struct buf in;   /* bytes read from the client (WebSocket frames or SPDY) */
    struct buf spdy; /* SPDY bytes unwrapped from WebSocket messages */
    struct buf out;  /* bytes for the client */
    size_t out_off;
    z_stream zin, zout;
    bool zin_ok, zout_ok;
    struct pf_pair *pairs[PF_MAX_PAIRS];
    size_t npairs;
    uint32_t last_id;
    double last_active;
    double idle_timeout;
    bool closing; /* flush out, then end */
    double closing_since;
    bool failed; /* the client's connection is gone: end now */
    /* both streams of p are open: connect it (or fail it with kl_pf_pair_fail) */
    void (*pair_ready)(struct pf_session *s, struct pf_pair *p);
};

/* Seconds on the monotonic clock. */
double kl_pf_now(void);
/* Header compression (both directions) and empty buffers for s; ws: tunneled in WebSocket.
 * Returns 0 or -ENOMEM; kl_pf_release frees what init made (also after a failed init). */
int kl_pf_init(struct pf_session *s, bool ws) WUR;
void kl_pf_release(struct pf_session *s);
/* Handle every whole frame in s->in. Sets s->closing (GOAWAY sent or received, WebSocket close)
 * or s->failed (protocol violation past answering, out of memory). */
void kl_pf_input(struct pf_session *s);
/* A DATA frame on stream id (payload may be empty: a lone FIN). */
void kl_pf_send_data(struct pf_session *s, uint32_t id, bool fin, const void *p, size_t n);
void kl_pf_send_goaway(struct pf_session *s, uint32_t status);
/* End p: FIN both streams (send_fins), close its socket, mark it done (freed by kl_pf_sweep). */
void kl_pf_pair_finish(struct pf_session *s, struct pf_pair *p, bool send_fins);
/* End p with why on its error stream, the text kubectl prints. */
void kl_pf_pair_fail(struct pf_session *s, struct pf_pair *p, const char *why);
/* Free finished pairs; reset pairs whose second stream did not come within PF_PAIR_TIMEOUT. */
void kl_pf_sweep(struct pf_session *s);
/* The SPDY/3 header dictionary; a header's first value from a decompressed name/value block
 * (1 found, 0 absent, -1 malformed). */
const unsigned char *kl_pf_dictionary(size_t *len);
int kl_pf_header(const unsigned char *b, size_t len, const char *name, char *out, size_t outlen);

#endif
