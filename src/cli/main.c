/*
 * main.c: the pgof command's entry point: top-level flags, subcommand
 * dispatch and the message helpers every subcommand uses.
 *
 * DESIGN
 * `pgof COMMAND [ARGS]`: main looks the command up in one table, sets the
 * message prefix, and hands the command its own argv (argv[0] is the
 * command's name, so getopt_long messages and usage read naturally). libcurl
 * is initialised once here, before any command runs, as its manual asks of
 * programs (curl_global_init is not thread-safe and pgof has one thread).
 *
 * Exit status: whatever the command returns, 0 success, 1 failure, 2 usage.
 * An unknown command or flag is a usage error.
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include "cli/cli.h"

const char *cli_command = "";

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"fetch", cli_fetch_main, "download the merged profile from a collector (the build step)"},
    {"submit", cli_submit_main, "send profiles to a collector"},
    {"merge", cli_merge_main, "merge profiles offline into one"},
    {"inspect", cli_inspect_main, "check a profile and summarise it"},
    {"healthcheck", cli_healthcheck_main, "exit 0 if a collector answers /healthz"},
};

static void print_usage(FILE *to)
{
    fputs("Usage: pgof COMMAND [OPTIONS] [ARGS]\n"
          "\n"
          "Collects Go CPU profiles from a pgo-fleet collector and works with them\n"
          "offline, for profile-guided optimisation (go build -pgo).\n"
          "\n"
          "Commands:\n", to);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(to, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fputs("\n"
          "Options:\n"
          "  -h, --help     show this help ('pgof COMMAND --help' for a command)\n"
          "  -V, --version  show the version\n"
          "\n"
          "Environment: PGOF_URL (collector base URL), PGOF_MERGE_KEY_FILE or\n"
          "PGOF_MERGE_KEY (for fetch), PGOF_SUBMIT_KEY_FILE or PGOF_SUBMIT_KEY (for\n"
          "submit), and the usual http_proxy, https_proxy, no_proxy.\n"
          "\n"
          "Exit status: 0 success, 1 failure, 2 usage error.\n"
          "Build-script recipe:  pgof fetch -o default.pgo && go build -pgo=default.pgo\n",
          to);
}

static void vmessage(const char *fmt, va_list ap)
{
    if (cli_command[0])
        fprintf(stderr, "pgof %s: ", cli_command);
    else
        fputs("pgof: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
}

void cli_usage_hint(void)
{
    if (cli_command[0])
        fprintf(stderr, "Run 'pgof %s --help' for usage.\n", cli_command);
    else
        fputs("Run 'pgof --help' for usage.\n", stderr);
}

void cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
    cli_usage_hint();
}

static const command *find(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

int main(int argc, char **argv)
{
    const command *cmd;
    int status;

    if (argc < 2) {
        print_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        print_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("pgof %s (%s)\n", PGOF_VERSION, curl_version());
        return CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "help") == 0) {
        if (argc < 3) {
            print_usage(stdout);
            return CLI_EXIT_OK;
        }
        if (!(cmd = find(argv[2]))) {
            cli_usage_error("unknown command '%s'", argv[2]);
            return CLI_EXIT_USAGE;
        }
        char *help_argv[] = {argv[2], "--help", NULL};
        cli_command = cmd->name;
        return cmd->run(2, help_argv);
    }
    if (!(cmd = find(argv[1]))) {
        cli_usage_error("unknown command '%s'", argv[1]);
        return CLI_EXIT_USAGE;
    }
    cli_command = cmd->name;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        cli_error("cannot initialise libcurl");
        return CLI_EXIT_FAIL;
    }
    /* getopt_long prints "pgof fetch: unrecognized option" through argv[0]. */
    char prog[64];
    snprintf(prog, sizeof(prog), "pgof %s", cmd->name);
    argv[1] = prog;
    optind = 1;
    status = cmd->run(argc - 1, argv + 1);
    curl_global_cleanup();
    return status;
}
