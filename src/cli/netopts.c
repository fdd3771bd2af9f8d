/*
 * netopts.c: the flags and set-up that the network commands share (see
 * netopts.h).
 *
 * DESIGN
 * Validation happens while parsing, so a bad value is reported with the
 * flag's name before any request or file is touched, and exits 2.
 */
#include "cli/netopts.h"

#include <stdlib.h>
#include <string.h>

#define CONNECT_TIMEOUT_MS (10L * 1000L)

void cli_net_opts_init(cli_net_opts *o, long default_timeout_ms)
{
    const char *env = getenv("PGOF_URL");

    memset(o, 0, sizeof(*o));
    o->base = env && *env ? env : NULL;
    o->retries = 3;
    o->retry_delay_ms = 1000;
    o->timeout_ms = default_timeout_ms;
}

int cli_net_opt(cli_net_opts *o, int c, const char *arg)
{
    switch (c) {
    case 'u':
        o->base = arg;
        return 1;
    case CLI_OPT_KEY_FILE:
        o->key_file = arg;
        return 1;
    case CLI_OPT_CACERT:
        o->cacert = arg;
        return 1;
    case CLI_OPT_RETRIES:
        if (cli_parse_uint(arg, CLI_MAX_RETRIES, &o->retries) != 0) {
            cli_usage_error("--retries wants a whole number from 0 to %lu, not '%s'",
                            CLI_MAX_RETRIES, arg);
            return -1;
        }
        return 1;
    case CLI_OPT_RETRY_DELAY:
        if (cli_parse_duration_ms(arg, &o->retry_delay_ms) != 0) {
            cli_usage_error("--retry-delay wants seconds (like 1, 0.5 or 200ms), not '%s'", arg);
            return -1;
        }
        return 1;
    case CLI_OPT_TIMEOUT:
        if (cli_parse_duration_ms(arg, &o->timeout_ms) != 0 || o->timeout_ms == 0) {
            cli_usage_error("--timeout wants a positive number of seconds, not '%s'", arg);
            return -1;
        }
        return 1;
    default:
        return 0;
    }
}

int cli_net_prepare(const cli_net_opts *o, const char *path, const char *env_file,
                    const char *env_value, char **url, cli_key *key)
{
    char err[CLI_ERR_MAX];
    int rc;

    *url = NULL;
    key->value = NULL;
    if (!o->base || !*o->base) {
        cli_usage_error("no collector URL: pass --url URL or set PGOF_URL");
        return CLI_EXIT_USAGE;
    }
    rc = cli_join_url(o->base, path, url, err);
    if (rc != 0) {
        cli_usage_error("%s", err);
        return rc == CLI_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
    }
    rc = cli_key_resolve(o->key_file, env_file, env_value, key, err);
    if (rc == 0)
        return CLI_EXIT_OK;
    free(*url);
    *url = NULL;
    if (rc == CLI_ENOENT) {
        cli_usage_error("%s", err);
        return CLI_EXIT_USAGE;
    }
    cli_error("%s", err);
    return CLI_EXIT_FAIL;
}

void cli_net_request(const cli_net_opts *o, cli_http_request *req, const char *method,
                     const char *url, const char *bearer)
{
    memset(req, 0, sizeof(*req));
    req->method = method;
    req->url = url;
    req->bearer = bearer;
    req->body_fd = -1;
    req->timeout_ms = o->timeout_ms;
    req->connect_timeout_ms =
        o->timeout_ms < CONNECT_TIMEOUT_MS ? o->timeout_ms : CONNECT_TIMEOUT_MS;
    req->cacert = o->cacert;
}
