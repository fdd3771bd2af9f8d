/*
 * netopts.h: the command-line side that fetch, submit and healthcheck
 * share: their common flags, and turning flags plus environment into a URL,
 * a key and the transport fields of a request.
 *
 * DESIGN
 * Each network command keeps its own getopt_long loop (its own flags and
 * usage text) and passes every option it does not know itself to
 * cli_net_opt. The shared flags (--url, --key-file, --retries,
 * --retry-delay, --timeout, --cacert) therefore parse, validate and fail
 * the same way everywhere, with one wording per mistake.
 */
#ifndef PGOF_CLI_NETOPTS_H
#define PGOF_CLI_NETOPTS_H

#include <getopt.h>

#include "cli/cli.h"
#include "cli/http.h"

/* getopt_long codes of the shared flags; a command's own start at CLI_OPT_OWN. */
enum {
    CLI_OPT_KEY_FILE = 256,
    CLI_OPT_RETRIES,
    CLI_OPT_RETRY_DELAY,
    CLI_OPT_TIMEOUT,
    CLI_OPT_CACERT,
    CLI_OPT_OWN,
};

/* struct option entries for the shared flags, to put in a command's table. */
#define CLI_NET_OPT_URL {"url", required_argument, NULL, 'u'}
#define CLI_NET_OPT_KEY_FILE {"key-file", required_argument, NULL, CLI_OPT_KEY_FILE}
#define CLI_NET_OPT_RETRIES {"retries", required_argument, NULL, CLI_OPT_RETRIES}, \
    {"retry-delay", required_argument, NULL, CLI_OPT_RETRY_DELAY}
#define CLI_NET_OPT_TIMEOUT {"timeout", required_argument, NULL, CLI_OPT_TIMEOUT}
#define CLI_NET_OPT_CACERT {"cacert", required_argument, NULL, CLI_OPT_CACERT}

#define CLI_MAX_RETRIES 20UL

typedef struct cli_net_opts {
    const char *base;       /* --url, else $PGOF_URL; NULL when neither */
    const char *key_file;   /* --key-file, or NULL */
    const char *cacert;     /* --cacert, or NULL */
    unsigned long retries;  /* default 3 */
    long retry_delay_ms;    /* default 1000 */
    long timeout_ms;        /* the command's default unless --timeout */
} cli_net_opts;

/* Sets the defaults: base from $PGOF_URL, 3 retries, 1 s first delay. */
void cli_net_opts_init(cli_net_opts *o, long default_timeout_ms);

/*
 * Handles getopt_long's code c when it is a shared flag. Returns 1 when
 * handled, 0 when c is not a shared flag, or -1 after printing a usage
 * error for a malformed value.
 */
int cli_net_opt(cli_net_opts *o, int c, const char *arg);

/*
 * Builds the request URL (base + path) and finds the key through
 * cli_key_resolve (--key-file, then env_file, then env_value). Returns
 * CLI_EXIT_OK with *url owned by the caller and key filled, or the exit
 * status after printing why (2 for a missing or malformed URL or a missing
 * key, 1 for an unreadable or malformed key). On failure nothing is left to
 * free except through cli_key_clear, which is always safe.
 */
int cli_net_prepare(const cli_net_opts *o, const char *path, const char *env_file,
                    const char *env_value, char **url, cli_key *key);

/*
 * Fills req from o: method, URL, bearer (may be NULL), timeouts (connecting
 * may take at most 10 s of the timeout), CA file and no body. Borrows all
 * strings; the caller sets the body, the sink and the progress fields.
 */
void cli_net_request(const cli_net_opts *o, cli_http_request *req, const char *method,
                     const char *url, const char *bearer);

#endif /* PGOF_CLI_NETOPTS_H */
