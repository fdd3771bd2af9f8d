/*
 * fetch.c: `pgof fetch`, the build step: ask a collector for the merged
 * profile and write it where `go build -pgo` looks for it.
 *
 * DESIGN
 * The one promise this file keeps: the output path holds either what it held
 * before or a complete, valid CPU profile, never anything in between. The
 * body streams into a temporary file next to the target (outfile.c). After a
 * 200 whose body arrived whole (libcurl checks Content-Length and reports a
 * short body as CURLE_PARTIAL_FILE), the temporary file is decoded with the
 * pprof engine and checked to be a CPU profile; only then is it renamed
 * over the target. Every other path removes the temporary file.
 *
 * Failures that may pass (connection errors, timeouts, cut-off bodies, 5xx,
 * 429) are retried a bounded number of times with exponential back-off
 * (http.c); the temporary file is emptied before each retry. A 404 means the
 * collector has nothing stored yet: exit 1, or 0 with --allow-empty, and no
 * file either way (an existing one is left alone).
 *
 * The merge options (--strip-labels, --shape, --weight, --since) become the
 * query of POST /v1/merge (mergeflags.h); a value or a combination with
 * --combine that the collector would refuse is a usage error here first.
 *
 * --if-missing is the reproducible-build switch: when the output file
 * already holds a valid CPU profile (say, one committed to the repository or
 * restored from a cache), no request is made at all.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/mergeflags.h"
#include "cli/netopts.h"

#define FETCH_MAX_BODY ((uint64_t)1 << 30)
#define DEFAULT_TIMEOUT_MS (300L * 1000L)

static const char usage[] =
    "Usage: pgof fetch [OPTIONS]\n"
    "\n"
    "Downloads the merged profile from a collector (POST /v1/merge) and writes\n"
    "it to FILE, replacing FILE only once the whole profile arrived and decoded\n"
    "as a valid Go CPU profile.\n"
    "\n"
    "Options:\n"
    "  -u, --url URL          collector base URL (default: $PGOF_URL)\n"
    "  -o, --output FILE      where to write the profile (default: default.pgo);\n"
    "                         '-' writes it to standard output\n"
    "      --key-file FILE    read the merge key from FILE ('-': standard input);\n"
    "                         otherwise $PGOF_MERGE_KEY_FILE or $PGOF_MERGE_KEY\n"
    "      --combine          ask the collector to replace its stored profiles by\n"
    "                         the merged one (and_combine=true)\n"
    CLI_MERGE_FLAGS_HELP
    "      --allow-empty      exit 0 when the collector has no profiles yet (404)\n"
    "      --if-missing       do nothing when FILE already holds a valid CPU profile\n"
    "      --retries N        retries after connection errors, timeouts and 5xx\n"
    "                         (default: 3)\n"
    "      --retry-delay SEC  first back-off delay, doubled each retry (default: 1)\n"
    "      --timeout SEC      limit for each attempt (default: 300)\n"
    "      --cacert FILE      trust the CA certificates in FILE for https\n"
    "  -q, --quiet            print errors only\n"
    "  -h, --help             show this help\n"
    "\n"
    "Exit status: 0 written (or nothing to do), 1 failed, 2 usage error.\n"
    "Build-script recipe:  pgof fetch -o default.pgo && go build -pgo=default.pgo\n";

enum {
    OPT_COMBINE = CLI_OPT_OWN,
    OPT_ALLOW_EMPTY,
    OPT_IF_MISSING,
};

static const struct option long_opts[] = {
    CLI_NET_OPT_URL,
    CLI_NET_OPT_KEY_FILE,
    CLI_NET_OPT_RETRIES,
    CLI_NET_OPT_TIMEOUT,
    CLI_NET_OPT_CACERT,
    {"output", required_argument, NULL, 'o'},
    {"combine", no_argument, NULL, OPT_COMBINE},
    {"allow-empty", no_argument, NULL, OPT_ALLOW_EMPTY},
    {"if-missing", no_argument, NULL, OPT_IF_MISSING},
    CLI_MERGE_FLAGS,
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

typedef struct fetch_ctx {
    cli_outfile out;
    char err[CLI_ERR_MAX];
    int write_failed;
} fetch_ctx;

static int on_body(void *ud, const void *data, size_t len)
{
    fetch_ctx *f = ud;
    if (cli_write_all(f->out.fd, data, len) != 0) {
        snprintf(f->err, sizeof(f->err), "cannot write %s: %s", f->out.tmp_path,
                 strerror(errno));
        f->write_failed = 1;
        return -1;
    }
    return 0;
}

static int on_reset(void *ud)
{
    fetch_ctx *f = ud;
    if (cli_outfile_reset(&f->out, f->err) != 0) {
        f->write_failed = 1;
        return -1;
    }
    return 0;
}

/* True when path exists and already holds a valid CPU profile. */
static int have_valid_file(const char *path)
{
    char why[CLI_ERR_MAX];
    int fd = open(path, O_RDONLY | O_CLOEXEC), ok;
    if (fd < 0)
        return 0;
    ok = cli_check_cpu_fd(fd, why, sizeof(why)) == 0;
    close(fd);
    return ok;
}

int cli_fetch_main(int argc, char **argv)
{
    const char *output = "default.pgo", *shown;
    int combine = 0, allow_empty = 0, if_missing = 0, quiet = 0, opened = 0;
    char err[CLI_ERR_MAX], why[CLI_ERR_MAX], size[32], path[256];
    char *url = NULL;
    mergeopts mo;
    cli_net_opts net;
    cli_key key = {0};
    fetch_ctx f;
    cli_http_request req;
    cli_http_result res;
    int c, rc, status = CLI_EXIT_FAIL;

    memset(&f, 0, sizeof(f));
    f.out.fd = -1;
    cli_net_opts_init(&net, DEFAULT_TIMEOUT_MS);
    mergeopts_init(&mo);
    while ((c = getopt_long(argc, argv, "u:o:qh", long_opts, NULL)) != -1) {
        if ((rc = cli_net_opt(&net, c, optarg)) != 0 ||
            (rc = cli_merge_flag(&mo, c, optarg)) != 0) {
            if (rc < 0)
                return CLI_EXIT_USAGE;
            continue;
        }
        switch (c) {
        case 'o': output = optarg; break;
        case 'q': quiet = 1; break;
        case 'h': fputs(usage, stdout); return CLI_EXIT_OK;
        case OPT_COMBINE: combine = 1; break;
        case OPT_ALLOW_EMPTY: allow_empty = 1; break;
        case OPT_IF_MISSING: if_missing = 1; break;
        default:
            cli_usage_hint(); /* getopt_long named the option */
            return CLI_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        cli_usage_error("unexpected argument '%s'", argv[optind]);
        return CLI_EXIT_USAGE;
    }
    if (!*output) {
        cli_usage_error("--output is empty");
        return CLI_EXIT_USAGE;
    }
    mo.combine = combine;
    if (mergeopts_check(&mo, why, sizeof(why)) != 0) {
        cli_usage_error("--combine: %s", why);
        return CLI_EXIT_USAGE;
    }
    memcpy(path, "/v1/merge?", 11);
    mergeopts_query(&mo, path + 10, sizeof(path) - 10);
    if (path[10] == '\0')
        path[9] = '\0';
    shown = strcmp(output, "-") == 0 ? "standard output" : output;
    if (if_missing && strcmp(output, "-") != 0 && have_valid_file(output)) {
        if (!quiet)
            cli_error("%s already holds a valid CPU profile; not fetching (--if-missing)",
                      output);
        return CLI_EXIT_OK;
    }
    status = cli_net_prepare(&net, path,
                             "PGOF_MERGE_KEY_FILE", "PGOF_MERGE_KEY", &url, &key);
    if (status != CLI_EXIT_OK)
        goto cleanup;
    status = CLI_EXIT_FAIL;
    if (cli_outfile_open(&f.out, output, err) != 0) {
        cli_error("%s", err);
        goto cleanup;
    }
    opened = 1;

    cli_net_request(&net, &req, "POST", url, key.value);
    req.on_body = on_body;
    req.ctx = &f;
    req.max_body = FETCH_MAX_BODY;
    req.progress = !quiet && cli_stderr_is_tty();
    req.progress_label = "pgof fetch";

    rc = cli_http_perform_retry(&req, (int)net.retries, net.retry_delay_ms, on_reset, &res);
    if (f.write_failed) {
        cli_error("%s", f.err);
        goto cleanup;
    }
    if (rc != 0 || res.status != 200) {
        if (rc == 0 && res.status == 404) {
            cli_error("no profiles stored yet: the collector answered 404 for %s%s%s%s", url,
                      res.reason[0] ? " (" : "", res.reason, res.reason[0] ? ")" : "");
            if (allow_empty) {
                if (!quiet)
                    cli_error("nothing written (--allow-empty)");
                status = CLI_EXIT_OK;
            }
            goto cleanup;
        }
        cli_http_describe(&res, key.source, net.timeout_ms, why, sizeof(why));
        cli_error("%s: %s; %s left unchanged", url, why, shown);
        goto cleanup;
    }
    if (cli_check_cpu_fd(f.out.fd, why, sizeof(why)) != 0) {
        cli_error("the collector's answer is not a valid CPU profile: %s; %s left unchanged",
                  why, shown);
        goto cleanup;
    }
    if (cli_outfile_commit(&f.out, err) != 0) {
        cli_error("%s", err);
        goto cleanup;
    }
    if (!quiet)
        cli_error("wrote %s (%s)", shown, cli_fmt_bytes(res.body_bytes, size, sizeof(size)));
    status = CLI_EXIT_OK;

cleanup:
    if (opened)
        cli_outfile_abort(&f.out);
    cli_key_clear(&key);
    free(url);
    return status;
}
