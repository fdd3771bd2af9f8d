/*
 * submit.c: `pgof submit FILE...`: send profiles to a collector's
 * /v1/submit, one request per file, and report each result.
 *
 * DESIGN
 * Each file is checked with the pprof engine before it is sent (decode and
 * the CPU-profile rule, the same checks the collector makes), so a heap
 * profile or a truncated download is reported with the engine's reason and
 * never costs a round trip; --no-check leaves the judgement to the server.
 * The body is streamed from the file with its length as Content-Length, so
 * the collector can answer 413 before reading it.
 *
 * One line per file: "FILE: submitted" on stdout, "pgof submit: FILE: <why>"
 * on stderr.
 * Files are independent, except that a 401 or 403 stops the run: every
 * later file would fail the same way with the same key. Exit 1 if any file
 * failed. Transient failures are retried as in fetch (http.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/netopts.h"

#define DEFAULT_TIMEOUT_MS (60L * 1000L)

static const char usage[] =
    "Usage: pgof submit [OPTIONS] FILE...\n"
    "\n"
    "Sends each profile to a collector (POST /v1/submit) and reports the result\n"
    "of each, one line per file.\n"
    "\n"
    "Options:\n"
    "  -u, --url URL          collector base URL (default: $PGOF_URL)\n"
    "      --key-file FILE    read the submit key from FILE ('-': standard input);\n"
    "                         otherwise $PGOF_SUBMIT_KEY_FILE or $PGOF_SUBMIT_KEY\n"
    "      --no-check         send files without checking them locally first\n"
    "      --retries N        retries after connection errors, timeouts and 5xx\n"
    "                         (default: 3)\n"
    "      --retry-delay SEC  first back-off delay, doubled each retry (default: 1)\n"
    "      --timeout SEC      limit for each request (default: 60)\n"
    "      --cacert FILE      trust the CA certificates in FILE for https\n"
    "  -q, --quiet            print failures only\n"
    "  -h, --help             show this help\n"
    "\n"
    "Exit status: 0 all submitted, 1 any failed, 2 usage error.\n";

enum { OPT_NO_CHECK = CLI_OPT_OWN };

static const struct option long_opts[] = {
    CLI_NET_OPT_URL,
    CLI_NET_OPT_KEY_FILE,
    CLI_NET_OPT_RETRIES,
    CLI_NET_OPT_TIMEOUT,
    CLI_NET_OPT_CACERT,
    {"no-check", no_argument, NULL, OPT_NO_CHECK},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

typedef enum { SUBMIT_OK, SUBMIT_FAILED, SUBMIT_STOP } submit_outcome;

static submit_outcome submit_one(const char *path, cli_http_request *req, int retries,
                                 long retry_delay_ms, int check, int quiet,
                                 const char *key_source)
{
    char why[CLI_ERR_MAX], size[32];
    cli_http_result res;
    struct stat st;
    submit_outcome out = SUBMIT_FAILED;
    int fd, rc;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cli_error("%s: cannot open: %s", path, strerror(errno));
        return SUBMIT_FAILED;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        cli_error("%s: not a regular file", path);
        goto cleanup;
    }
    if (check && cli_check_cpu_fd(fd, why, sizeof(why)) != 0) {
        cli_error("%s: not sent: %s", path, why);
        goto cleanup;
    }
    req->body_fd = fd;
    req->body_len = (int64_t)st.st_size;
    rc = cli_http_perform_retry(req, retries, retry_delay_ms, NULL, &res);
    if (rc == 0 && res.status >= 200 && res.status < 300) {
        if (!quiet)
            printf("%s: submitted (%s)\n", path,
                   cli_fmt_bytes((uint64_t)st.st_size, size, sizeof(size)));
        out = SUBMIT_OK;
        goto cleanup;
    }
    cli_http_describe(&res, key_source, req->timeout_ms, why, sizeof(why));
    cli_error("%s: %s", path, why);
    if (rc == 0 && (res.status == 401 || res.status == 403))
        out = SUBMIT_STOP;

cleanup:
    req->body_fd = -1;
    close(fd);
    return out;
}

int cli_submit_main(int argc, char **argv)
{
    int check = 1, quiet = 0, failed = 0;
    char *url = NULL;
    cli_net_opts net;
    cli_key key = {0};
    cli_http_request req;
    int c, rc, status;

    cli_net_opts_init(&net, DEFAULT_TIMEOUT_MS);
    while ((c = getopt_long(argc, argv, "u:qh", long_opts, NULL)) != -1) {
        if ((rc = cli_net_opt(&net, c, optarg)) != 0) {
            if (rc < 0)
                return CLI_EXIT_USAGE;
            continue;
        }
        switch (c) {
        case 'q': quiet = 1; break;
        case 'h': fputs(usage, stdout); return CLI_EXIT_OK;
        case OPT_NO_CHECK: check = 0; break;
        default:
            cli_usage_hint(); /* getopt_long named the option */
            return CLI_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        cli_usage_error("no FILE to submit");
        return CLI_EXIT_USAGE;
    }
    status = cli_net_prepare(&net, "/v1/submit", "PGOF_SUBMIT_KEY_FILE", "PGOF_SUBMIT_KEY", &url,
                             &key);
    if (status != CLI_EXIT_OK)
        goto cleanup;

    cli_net_request(&net, &req, "POST", url, key.value);
    req.max_body = 64 * 1024;
    req.progress = !quiet && cli_stderr_is_tty();
    req.progress_label = "pgof submit";

    for (int i = optind; i < argc; i++) {
        submit_outcome o = submit_one(argv[i], &req, (int)net.retries, net.retry_delay_ms, check,
                                      quiet, key.source);
        fflush(stdout);
        if (o != SUBMIT_OK)
            failed++;
        if (o == SUBMIT_STOP) {
            if (i + 1 < argc)
                cli_error("stopping: the remaining %d file(s) would be refused with the same key",
                          argc - i - 1);
            failed += argc - i - 1;
            break;
        }
    }
    if (failed)
        cli_error("%d of %d file(s) failed", failed, argc - optind);
    status = failed ? CLI_EXIT_FAIL : CLI_EXIT_OK;

cleanup:
    cli_key_clear(&key);
    free(url);
    return status;
}
