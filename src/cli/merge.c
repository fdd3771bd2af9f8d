/*
 * merge.c: `pgof merge FILE... [-o OUT]`: merge profiles offline with the
 * pprof engine, the same code the collector runs.
 *
 * DESIGN
 * A drop-in for `go tool pprof -proto a b > out`: every input is decoded
 * and added to one pprof_merger in argument order, and the aggregate is
 * encoded as a gzip-compressed profile. The first input fixes the sample and
 * period types; an input the engine refuses (undecodable, or incompatible
 * with the first) stops the merge with the file's name and the engine's
 * reason, and nothing is written. Inputs are not required to be CPU
 * profiles, as with go tool pprof; --cpu adds the collector's CPU-profile
 * check for scripts that build PGO inputs.
 *
 * The output goes through outfile.c: OUT appears whole or not at all. With
 * no -o the profile goes to stdout, unless stdout is a terminal.
 *
 * The merge options (--strip-labels, --shape, --weight, --since; see
 * mergeflags.h) are the collector's: strip_labels and shape reshape the
 * aggregate after the merge; since and weight need each file on its own and
 * go through mergeopts_merge (src/common/mergepipe.c), which the collector
 * runs too. A file's time for --since is the one in a collector file name
 * (<unix ms>_<n>.pgo), else its modification time.
 *
 * Memory: one decoded input at a time plus the aggregate.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/mergeflags.h"
#include "pprof/pprof.h"

static const char usage[] =
    "Usage: pgof merge [OPTIONS] FILE... [-o OUT]\n"
    "\n"
    "Merges pprof profiles into one gzip-compressed profile, like\n"
    "'go tool pprof -proto FILE... > OUT', without a Go toolchain.\n"
    "\n"
    "Options:\n"
    "  -o, --output OUT   where to write the merged profile ('-': standard output,\n"
    "                     the default when standard output is not a terminal)\n"
    "      --cpu          refuse inputs that are not Go CPU profiles\n"
    CLI_MERGE_FLAGS_HELP
    "  -q, --quiet        print errors only\n"
    "  -h, --help         show this help\n"
    "\n"
    "Exit status: 0 written, 1 failed (an input is invalid or incompatible),\n"
    "2 usage error.\n";

enum { OPT_CPU = 256 };

static const struct option long_opts[] = {
    {"output", required_argument, NULL, 'o'},
    {"cpu", no_argument, NULL, OPT_CPU},
    CLI_MERGE_FLAGS,
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

typedef struct sink {
    int fd;
    int err;   /* errno of a failed write */
    uint64_t bytes;
} sink;

static int on_chunk(void *ud, const void *data, size_t len)
{
    sink *s = ud;
    if (cli_write_all(s->fd, data, len) != 0) {
        s->err = errno;
        return -1;
    }
    s->bytes += len;
    return 0;
}

/* Decodes path and adds it to m. Returns 0, or 1 after printing why.
 * *spare is the profile decoded last, kept for its memory (see
 * pprof_decode_fd_reuse); the caller frees it at the end. */
static int add_file(pprof_merger *m, const char *path, int cpu_only, pprof_profile **spare)
{
    pprof_profile *p = NULL;
    pprof_error perr;
    int rc;

    memset(&perr, 0, sizeof(perr));
    rc = mergeopts_decode_file(NULL, path, NULL, cpu_only, *spare, &p, &perr);
    if (rc == 0)
        rc = pprof_merger_add(m, p, &perr);
    *spare = p;
    if (rc != 0) {
        cli_error("%s: %s", path, perr.msg[0] ? perr.msg : pprof_strerror(rc));
        return 1;
    }
    return 0;
}

/* since/weight: the files through mergeopts_merge. 0 with *m, or 1 after
 * printing why. */
static int merge_with_options(const mergeopts *mo, char **files, size_t n, int cpu_only,
                              int quiet, pprof_merger **m)
{
    char why[CLI_ERR_MAX], dur[32];
    mergeopts_input in;
    size_t selected = 0, bad = 0;
    struct timespec now;
    int rc;

    memset(&in, 0, sizeof(in));
    in.names = (const char *const *)files;
    in.n = n;
    in.cpu_only = cpu_only;
    clock_gettime(CLOCK_REALTIME, &now);
    rc = mergeopts_merge(mo, &in, (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000,
                         m, &selected, &bad, why, sizeof(why));
    if (rc != 0) {
        cli_error("%s", why);
        return 1;
    }
    if (selected == 0) {
        mergeopts_format_duration(mo->since_ms, dur, sizeof(dur));
        cli_error("no input file is from the last %s (--since; a file's time is the one in "
                  "its collector name, else its modification time)", dur);
        return 1;
    }
    if (!quiet && selected < n)
        cli_error("left out %zu of %zu file(s) older than --since", n - selected, n);
    return 0;
}

int cli_merge_main(int argc, char **argv)
{
    const char *output = NULL;
    int cpu_only = 0, quiet = 0, opened = 0;
    char err[CLI_ERR_MAX], size[32];
    pprof_merger *m = NULL;
    pprof_error perr;
    mergeopts mo;
    cli_outfile out;
    sink s;
    int c, rc, status = CLI_EXIT_FAIL;

    mergeopts_init(&mo);
    while ((c = getopt_long(argc, argv, "o:qh", long_opts, NULL)) != -1) {
        if ((rc = cli_merge_flag(&mo, c, optarg)) != 0) {
            if (rc < 0)
                return CLI_EXIT_USAGE;
            continue;
        }
        switch (c) {
        case 'o': output = optarg; break;
        case 'q': quiet = 1; break;
        case 'h': fputs(usage, stdout); return CLI_EXIT_OK;
        case OPT_CPU: cpu_only = 1; break;
        default:
            cli_usage_hint(); /* getopt_long named the option */
            return CLI_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        cli_usage_error("no FILE to merge");
        return CLI_EXIT_USAGE;
    }
    if (!output) {
        if (isatty(STDOUT_FILENO)) {
            cli_usage_error("standard output is a terminal: pass -o OUT (or -o - to insist)");
            return CLI_EXIT_USAGE;
        }
        output = "-";
    }
    if (!*output) {
        cli_usage_error("--output is empty");
        return CLI_EXIT_USAGE;
    }

    if (mergeopts_needs_files(&mo)) {
        if (merge_with_options(&mo, argv + optind, (size_t)(argc - optind), cpu_only, quiet,
                               &m) != 0)
            goto cleanup;
    } else {
        m = pprof_merger_new();
        if (!m) {
            cli_error("out of memory");
            goto cleanup;
        }
        pprof_profile *spare = NULL;
        int failed = 0;
        for (int i = optind; i < argc && !failed; i++)
            failed = add_file(m, argv[i], cpu_only, &spare);
        pprof_profile_free(spare);
        if (failed)
            goto cleanup;
        memset(&perr, 0, sizeof(perr));
        if ((rc = mergeopts_reshape(&mo, m, &m, &perr)) != 0) {
            cli_error("cannot reshape the merged profile: %s",
                      perr.msg[0] ? perr.msg : pprof_strerror(rc));
            goto cleanup;
        }
    }

    if (cli_outfile_open(&out, output, err) != 0) {
        cli_error("%s", err);
        goto cleanup;
    }
    opened = 1;
    memset(&s, 0, sizeof(s));
    s.fd = out.fd;
    memset(&perr, 0, sizeof(perr));
    rc = pprof_merger_write(m, on_chunk, &s, &perr);
    if (rc != 0) {
        if (s.err)
            cli_error("cannot write %s: %s", out.tmp_path, strerror(s.err));
        else
            cli_error("cannot encode the merged profile: %s",
                      perr.msg[0] ? perr.msg : pprof_strerror(rc));
        goto cleanup;
    }
    if (cli_outfile_commit(&out, err) != 0) {
        cli_error("%s", err);
        goto cleanup;
    }
    if (!quiet)
        cli_error("merged %d profile(s) into %s (%llu samples, %s)", argc - optind,
                  strcmp(output, "-") == 0 ? "standard output" : output,
                  (unsigned long long)pprof_merger_samples(m),
                  cli_fmt_bytes(s.bytes, size, sizeof(size)));
    status = CLI_EXIT_OK;

cleanup:
    if (opened)
        cli_outfile_abort(&out);
    pprof_merger_free(m);
    return status;
}
