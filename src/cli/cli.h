/*
 * cli.h: what the files of the pgof command share.
 *
 * DESIGN
 * pgof is one short-lived, single-threaded process per invocation. main.c
 * picks a subcommand and hands it argv; each subcommand lives in its own
 * file (fetch.c, submit.c, merge.c, inspect.c, healthcheck.c) and returns an
 * exit status. The helpers they share each own one job:
 *   args.c     parsing numbers and durations, the base URL, TTY checks,
 *   keys.c     finding an API key (flag, *_FILE variable, variable) and
 *              remembering where it came from, so errors can name the
 *              source without ever printing the key,
 *   outfile.c  writing an output file atomically (temp name, fsync, rename),
 *   http.c     one HTTP exchange through libcurl, with the retry policy and
 *              the translation of failures into one human sentence,
 *   netopts.c  the flags the network commands share, and URL + key set-up,
 *   validate.c asking the engine whether a file is a valid CPU profile.
 *
 * Exit status is a contract with build scripts: 0 success, 1 failure,
 * 2 usage (bad flags, missing URL or key). Every message goes to stderr
 * prefixed "pgof <command>: "; stdout carries only requested output.
 *
 * Errors inside helpers follow the project's rule: 0 or a negative code, and
 * a sentence written into a caller's buffer of CLI_ERR_MAX bytes.
 */
#ifndef PGOF_CLI_H
#define PGOF_CLI_H

#include <stddef.h>
#include <stdint.h>

#ifndef PGOF_VERSION
#define PGOF_VERSION "0.1.0"
#endif

enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAIL = 1,
    CLI_EXIT_USAGE = 2,
};

/* Helper error codes (negative, as in the rest of the project). */
enum {
    CLI_EINVAL = -1,   /* an argument or setting is malformed */
    CLI_ENOENT = -2,   /* something asked for is not there */
    CLI_EIO = -3,      /* a file operation failed; errno is in the message */
    CLI_ENOMEM = -4,
};

#define CLI_ERR_MAX 512

/* ---- messages (main.c) --------------------------------------------------- */

/* The subcommand name used as the message prefix; main.c sets it. */
extern const char *cli_command;

/* Prints "pgof <command>: <message>\n" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints a usage error, then cli_usage_hint's line, to stderr. */
void cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints "Run 'pgof <command> --help' for usage." to stderr. */
void cli_usage_hint(void);

/* ---- subcommands -------------------------------------------------------- */

int cli_fetch_main(int argc, char **argv);
int cli_submit_main(int argc, char **argv);
int cli_merge_main(int argc, char **argv);
int cli_inspect_main(int argc, char **argv);
int cli_healthcheck_main(int argc, char **argv);

/* ---- args.c ---------------------------------------------------------- */

/*
 * Parses a duration in seconds: "5", "2.5", "500ms", "3s", "2m". Writes
 * milliseconds to *ms. Returns 0 or CLI_EINVAL (for empty, negative, junk or
 * more than a day).
 */
int cli_parse_duration_ms(const char *s, long *ms);

/* Parses a non-negative decimal integer no greater than max. 0 or CLI_EINVAL. */
int cli_parse_uint(const char *s, unsigned long max, unsigned long *out);

/*
 * Joins a collector base URL and an endpoint path ("/v1/merge"), dropping
 * trailing slashes from base. The base must be http:// or https:// with a
 * host and no query or fragment. Writes the result (returns owned, free())
 * to *out. Returns 0, CLI_EINVAL with a sentence in err, or CLI_ENOMEM.
 */
int cli_join_url(const char *base, const char *path, char **out, char *err);

/*
 * The healthcheck's default base URL, derived from a collector bind address
 * (PGOF_BIND_ADDRESS syntax: "host:port", ":port", "[v6]:port"). A wildcard
 * host becomes the loopback address of its family. NULL or "" gives the
 * collector's default, http://127.0.0.1:8080. Returns 0 or CLI_EINVAL;
 * writes into out (at least 96 bytes).
 */
int cli_url_from_bind(const char *bind, char *out, size_t outlen);

/* Human byte count ("812 B", "4.2 KiB", "1.3 MiB") into buf. */
const char *cli_fmt_bytes(uint64_t n, char *buf, size_t len);

/* True when progress should be drawn: stderr is a terminal. */
int cli_stderr_is_tty(void);

/* ---- validate.c -------------------------------------------------------- */

/*
 * Decodes fd from offset 0 with the pprof engine and applies the collector's
 * CPU-profile rule. Returns 0, or a negative PPROF_E* code with the engine's
 * sentence in why. Borrows fd (its offset moves).
 */
int cli_check_cpu_fd(int fd, char *why, size_t len);

/* ---- keys.c ------------------------------------------------------------ */

typedef struct cli_key {
    char *value;          /* owned; NULL when no key was found */
    char source[320];     /* "--key-file /x", "PGOF_MERGE_KEY_FILE (/x)", ... */
} cli_key;

/*
 * Finds a key, first match wins: the --key-file flag (flag_file, "-" means
 * stdin), then the variable named env_file (a path), then the variable named
 * env_value (the key itself). Setting both variables is refused, so a stale
 * one cannot silently win. A key file holds the key on its first line;
 * surrounding whitespace is dropped. A key must be printable ASCII without
 * spaces (it goes into an HTTP header).
 *
 * Returns 0 with key->value set, CLI_ENOENT when no source is set (key->value
 * NULL), or CLI_EINVAL/CLI_EIO with a sentence in err that names the source
 * but never the key. Free with cli_key_clear even on error.
 */
int cli_key_resolve(const char *flag_file, const char *env_file,
                    const char *env_value, cli_key *key, char *err);

/* Wipes and frees the key; safe on a zeroed or already cleared key. */
void cli_key_clear(cli_key *key);

/* ---- outfile.c ------------------------------------------------------------ */

/*
 * An output file written atomically: bytes go to a temporary file created
 * next to the target (same directory, so rename is atomic), and only
 * cli_outfile_commit makes them visible under the target name. Until then an
 * existing target is untouched; cli_outfile_abort removes the temporary file.
 * With the target "-", commit copies the temporary file to stdout instead.
 */
typedef struct cli_outfile {
    int fd;               /* temp file, read-write; -1 when closed */
    char *path;           /* target path (owned) */
    char *tmp_path;       /* temporary path (owned); NULL once renamed/removed */
    int to_stdout;
} cli_outfile;

/* Opens the temporary file. Returns 0, or CLI_EIO/CLI_ENOMEM with err set. */
int cli_outfile_open(cli_outfile *o, const char *target, char *err);

/* Empties the temporary file so a retry starts again. 0 or CLI_EIO. */
int cli_outfile_reset(cli_outfile *o, char *err);

/*
 * fsyncs the temporary file, gives it the mode a new file would get under
 * the umask, renames it over the target and fsyncs the directory. Returns 0
 * or CLI_EIO with err set; on error the target is unchanged.
 */
int cli_outfile_commit(cli_outfile *o, char *err);

/*
 * Closes and removes the temporary file if it is still there and frees o's
 * strings. Call it once the outfile is done with, after a commit too; safe
 * to call twice.
 */
void cli_outfile_abort(cli_outfile *o);

/* Writes all of data to fd, retrying short writes and EINTR. 0, or -1 with
 * errno set. */
int cli_write_all(int fd, const void *data, size_t len);

#endif /* PGOF_CLI_H */
