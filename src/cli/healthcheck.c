/*
 * healthcheck.c: `pgof healthcheck [URL]`: exit 0 iff GET URL/healthz
 * answers 200 within the timeout.
 *
 * DESIGN
 * Meant for a container's HEALTHCHECK, so the image needs no curl. Inside
 * the container the collector's own PGOF_BIND_ADDRESS is set, so with no
 * URL argument and no PGOF_URL the check derives the loopback URL from it
 * (":8080" becomes http://127.0.0.1:8080). No retries: the orchestrator
 * already retries, and a health check that hides slowness is no check.
 * One line of output either way, for `docker inspect`.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/netopts.h"

#define DEFAULT_TIMEOUT_MS 5000L

static const char usage[] =
    "Usage: pgof healthcheck [OPTIONS] [URL]\n"
    "\n"
    "Exits 0 if the collector at URL answers GET /healthz with 200 in time.\n"
    "URL defaults to $PGOF_URL, else to the loopback address of\n"
    "$PGOF_BIND_ADDRESS, else to http://127.0.0.1:8080.\n"
    "\n"
    "Options:\n"
    "      --timeout SEC   limit for the whole check (default: 5)\n"
    "      --cacert FILE   trust the CA certificates in FILE for https\n"
    "  -q, --quiet         print nothing on success\n"
    "  -h, --help          show this help\n"
    "\n"
    "Exit status: 0 healthy, 1 unhealthy or unreachable, 2 usage error.\n";

static const struct option long_opts[] = {
    CLI_NET_OPT_TIMEOUT,
    CLI_NET_OPT_CACERT,
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

int cli_healthcheck_main(int argc, char **argv)
{
    const char *base = NULL;
    char derived[128], err[CLI_ERR_MAX], why[CLI_ERR_MAX];
    char *url = NULL;
    cli_net_opts net;
    cli_http_request req;
    cli_http_result res;
    int c, rc, quiet = 0, status = CLI_EXIT_FAIL;

    cli_net_opts_init(&net, DEFAULT_TIMEOUT_MS);
    while ((c = getopt_long(argc, argv, "qh", long_opts, NULL)) != -1) {
        if ((rc = cli_net_opt(&net, c, optarg)) != 0) {
            if (rc < 0)
                return CLI_EXIT_USAGE;
            continue;
        }
        switch (c) {
        case 'q': quiet = 1; break;
        case 'h': fputs(usage, stdout); return CLI_EXIT_OK;
        default:
            cli_usage_hint(); /* getopt_long named the option */
            return CLI_EXIT_USAGE;
        }
    }
    if (argc - optind > 1) {
        cli_usage_error("unexpected argument '%s'", argv[optind + 1]);
        return CLI_EXIT_USAGE;
    }
    if (optind < argc)
        base = argv[optind];
    else if (net.base)
        base = net.base;
    else {
        if (cli_url_from_bind(getenv("PGOF_BIND_ADDRESS"), derived, sizeof(derived)) != 0) {
            cli_usage_error("cannot derive a URL from PGOF_BIND_ADDRESS '%s': pass URL",
                            getenv("PGOF_BIND_ADDRESS"));
            return CLI_EXIT_USAGE;
        }
        base = derived;
    }
    rc = cli_join_url(base, "/healthz", &url, err);
    if (rc != 0) {
        cli_usage_error("%s", err);
        return rc == CLI_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
    }

    cli_net_request(&net, &req, "GET", url, NULL);
    req.connect_timeout_ms = net.timeout_ms;
    req.max_body = 64 * 1024;

    rc = cli_http_perform(&req, &res);
    if (rc == 0 && res.status == 200) {
        if (!quiet)
            printf("healthy: %s answered 200\n", url);
        status = CLI_EXIT_OK;
    } else {
        cli_http_describe(&res, NULL, net.timeout_ms, why, sizeof(why));
        cli_error("unhealthy: %s: %s", url, why);
    }
    free(url);
    return status;
}
