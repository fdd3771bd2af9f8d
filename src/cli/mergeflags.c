/*
 * mergeflags.c: the merge-option flags of fetch and merge (see
 * mergeflags.h).
 */
#include "cli/mergeflags.h"

#include <string.h>

#include "cli/cli.h"

int cli_merge_flag(mergeopts *o, int c, const char *arg)
{
    static const char *const keys[] = {"strip_labels", "shape", "weight", "since"};
    char why[MERGEOPTS_ERR_MAX];
    const char *val = arg;

    if (c < CLI_OPT_STRIP_LABELS || c > CLI_OPT_SINCE)
        return 0;
    if (c == CLI_OPT_STRIP_LABELS)
        val = "true";
    if (mergeopts_set(o, keys[c - CLI_OPT_STRIP_LABELS], val, strlen(val), why,
                      sizeof(why)) != 1) {
        cli_usage_error("%s", why);
        return -1;
    }
    return 1;
}
