/*
 * mergeflags.h: the merge-option flags that `pgof fetch` and `pgof merge`
 * share: --strip-labels, --shape, --weight, --since.
 *
 * DESIGN
 * The same options as the collector's POST /v1/merge query (docs/api.md),
 * parsed by the same code (src/common/mergeopts.c), so a value the collector
 * would refuse is a usage error (exit 2) here before anything is read or
 * sent. Each command keeps its own getopt_long loop and hands every option
 * it does not know to cli_merge_flag, as with cli_net_opt.
 */
#ifndef PGOF_CLI_MERGEFLAGS_H
#define PGOF_CLI_MERGEFLAGS_H

#include <getopt.h>

#include "common/mergeopts.h"

/* getopt_long codes, above every command's own. */
enum {
    CLI_OPT_STRIP_LABELS = 400,
    CLI_OPT_SHAPE,
    CLI_OPT_WEIGHT,
    CLI_OPT_SINCE,
};

#define CLI_MERGE_FLAGS                                                   \
    {"strip-labels", no_argument, NULL, CLI_OPT_STRIP_LABELS},            \
        {"shape", required_argument, NULL, CLI_OPT_SHAPE},                \
        {"weight", required_argument, NULL, CLI_OPT_WEIGHT},              \
        {"since", required_argument, NULL, CLI_OPT_SINCE}

/* The flags' lines for a command's --help. */
#define CLI_MERGE_FLAGS_HELP                                                      \
    "      --strip-labels     drop sample labels before merging\n"              \
    "      --shape pgo|full   pgo: only what Go's PGO reads (much smaller, the\n" \
    "                         same compiler decisions); full: everything\n"      \
    "      --weight equal|none  equal: every profile contributes the same\n"    \
    "                         total; none: the plain sum (default)\n"            \
    "      --since DURATION   only profiles stored within DURATION (90m, 36h,\n" \
    "                         7d)\n"

/*
 * Handles getopt_long's code c when it is one of the flags above. Returns 1
 * when handled, 0 when c is not one of them, or -1 after printing a usage
 * error for a malformed value.
 */
int cli_merge_flag(mergeopts *o, int c, const char *arg);

#endif /* PGOF_CLI_MERGEFLAGS_H */
