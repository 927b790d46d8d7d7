/*
 * cli.h - weftctl's subcommands, as functions main.c dispatches to and tests call directly.
 *
 * Each `cli_<cmd>_main` takes the arguments after "weftctl" (argv[0] is the subcommand name),
 * reads from in, writes results to out and messages to err, and returns the process exit status:
 * 0 success, 1 bad input (the message says which file and document), 2 usage error. They keep
 * no state between calls.
 */
#ifndef WEFT_CLI_H
#define WEFT_CLI_H

#include <jansson.h>
#include <stdio.h>

#include "core/buf.h"
#include "core/diag.h"
#include "core/err.h"

struct inject_config;

/*
 * weftctl inject -f FILE|- [--uninject] [-o yaml|json] [--native-sidecars] [--proxy-image IMG]
 *
 * Manual sidecar injection with the webhook's code (webhook/webhook.h). Every document of a
 * multi-document YAML or JSON stream is written back, in order, separated by "---" (YAML) or one
 * JSON object per document: pod templates of Pod, Deployment, StatefulSet, DaemonSet,
 * ReplicaSet, ReplicationController, Job and CronJob (and those inside kind List) injected, or
 * un-injected with --uninject; other kinds unchanged. Nothing is written to out on error.
 */
int cli_inject_main(int argc, char **argv, FILE *in, FILE *out, FILE *err);

enum {
    CLI_INJECT_UNDO = 1 << 0, /* uninject instead of inject */
};

/*
 * The core of `weftctl inject`: parse text (len bytes of YAML or JSON named name in messages)
 * and transform its documents. Returns 0 and a new array of the documents in *docs (caller
 * json_decref()s); ERR_PARSE or ERR_INVALID with diag "name:doc N: reason"; -ENOMEM.
 * Injection warnings, if warnings is not NULL, are appended as lines "name:doc N: warning: ...".
 */
int cli_inject_docs(const struct inject_config *cfg, const char *name, const char *text, size_t len,
                    unsigned flags, json_t **docs, struct buf *warnings, struct diag *diag) WUR;

#endif
