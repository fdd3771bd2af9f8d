/*
 * inspect.c: `pgof inspect FILE`: validate a profile and summarise it for a
 * person (aligned text) or a program (--json).
 *
 * DESIGN
 * The engine decodes and validates; pprof_summarize (src/pprof/summary.c)
 * computes the figures; this file only formats them. Flat and cumulative
 * costs match `go tool pprof -top` at its default granularity, so the two
 * can be compared line by line (the integration test does).
 *
 * Exit status: 0 when FILE is a valid Go CPU profile; 1 when it cannot be
 * decoded (nothing printed but the reason), or when it decodes but is not a
 * CPU profile (the summary is printed, with the reason, so the user sees
 * what the file is); 2 usage.
 *
 * Values whose unit is nanoseconds are shown as durations ("1.20s",
 * "350ms"), other units as plain integers with the unit.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "pprof/pprof.h"

#define DEFAULT_TOP 10

static const char usage[] =
    "Usage: pgof inspect [OPTIONS] FILE\n"
    "\n"
    "Checks that FILE is a valid Go CPU profile and prints a summary: types,\n"
    "period, duration, samples, distinct stacks, functions, size, and the top\n"
    "functions by flat and by cumulative cost.\n"
    "\n"
    "Options:\n"
    "  -n, --top N    how many functions each table lists (default: 10; 0: all)\n"
    "      --json     print one JSON object instead of text\n"
    "  -h, --help     show this help\n"
    "\n"
    "Exit status: 0 a valid CPU profile, 1 invalid or not a CPU profile,\n"
    "2 usage error.\n";

enum { OPT_JSON = 256 };

static const struct option long_opts[] = {
    {"top", required_argument, NULL, 'n'},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* ---- text ------------------------------------------------------------- */

static int is_ns(const pprof_summary *s)
{
    return s->ntypes && strcmp(s->types[s->value_index].unit, "nanoseconds") == 0;
}

/* A duration in nanoseconds the way pprof prints one: 0, 10ms, 1.20s, 2.50mins. */
static const char *fmt_ns(int64_t ns, char *buf, size_t len)
{
    double v = (double)ns;
    if (ns == 0)
        snprintf(buf, len, "0");
    else if (ns < 1000)
        snprintf(buf, len, "%" PRId64 "ns", ns);
    else if (ns < 1000000)
        snprintf(buf, len, "%.2fus", v / 1e3);
    else if (ns < 1000000000)
        snprintf(buf, len, "%.0fms", v / 1e6);
    else if (ns < 60 * (int64_t)1000000000)
        snprintf(buf, len, "%.2fs", v / 1e9);
    else
        snprintf(buf, len, "%.2fmins", v / 6e10);
    return buf;
}

static const char *fmt_value(const pprof_summary *s, int64_t v, char *buf, size_t len)
{
    if (is_ns(s))
        return fmt_ns(v, buf, len);
    snprintf(buf, len, "%" PRId64, v);
    return buf;
}

static double pct(int64_t part, int64_t total)
{
    return total ? 100.0 * (double)part / (double)total : 0.0;
}

static int by_cum(const void *a, const void *b)
{
    const pprof_summary_func *x = a, *y = b;
    if (x->cum != y->cum)
        return x->cum > y->cum ? -1 : 1;
    if (x->flat != y->flat)
        return x->flat > y->flat ? -1 : 1;
    return strcmp(x->name, y->name);
}

/*
 * Prints the first n of funcs (already sorted) as an aligned table, with
 * pprof's running "sum%" column when running_sum is set.
 */
static void print_table(const pprof_summary *s, const pprof_summary_func *funcs, size_t n,
                        int64_t total, int running_sum)
{
    char a[32], b[32];
    int64_t sum = 0;
    int w = 4;

    for (size_t i = 0; i < n; i++) {
        int l1 = (int)strlen(fmt_value(s, funcs[i].flat, a, sizeof(a)));
        int l2 = (int)strlen(fmt_value(s, funcs[i].cum, b, sizeof(b)));
        if (l1 > w) w = l1;
        if (l2 > w) w = l2;
    }
    printf("  %*s %6s", w, "flat", "flat%");
    if (running_sum)
        printf(" %6s", "sum%");
    printf(" %*s %6s  %s\n", w, "cum", "cum%", "function");
    for (size_t i = 0; i < n; i++) {
        sum += funcs[i].flat;
        printf("  %*s %5.1f%%", w, fmt_value(s, funcs[i].flat, a, sizeof(a)),
               pct(funcs[i].flat, total));
        if (running_sum)
            printf(" %5.1f%%", pct(sum, total));
        printf(" %*s %5.1f%%  %s\n", w, fmt_value(s, funcs[i].cum, b, sizeof(b)),
               pct(funcs[i].cum, total), funcs[i].name);
    }
}

static void print_text(const char *path, const struct stat *st, const pprof_summary *s,
                       const char *not_cpu, size_t top, const pprof_summary_func *by_c)
{
    char a[32], b[32];
    int64_t total = s->ntypes ? s->totals[s->value_index] : 0;
    size_t n = top == 0 || top > s->nfuncs ? s->nfuncs : top;

    printf("%-11s %s\n", "file", path);
    printf("%-11s %s (%lld bytes; %s of protobuf)\n", "size",
           cli_fmt_bytes((uint64_t)st->st_size, a, sizeof(a)), (long long)st->st_size,
           cli_fmt_bytes(s->inflated, b, sizeof(b)));
    printf("%-11s ", "type");
    for (size_t i = 0; i < s->ntypes; i++)
        printf("%s%s/%s", i ? ", " : "", s->types[i].type, s->types[i].unit);
    printf("%s\n", not_cpu ? "" : " (Go CPU profile)");
    if (not_cpu)
        printf("%-11s %s\n", "", not_cpu);
    if (s->period_type[0] && strcmp(s->period_unit, "nanoseconds") == 0 && s->period > 0)
        printf("%-11s %s/%s every %s (%.0f Hz)\n", "period", s->period_type, s->period_unit,
               fmt_ns(s->period, a, sizeof(a)), 1e9 / (double)s->period);
    else if (s->period_type[0])
        printf("%-11s %" PRId64 " %s/%s\n", "period", s->period, s->period_type,
               s->period_unit);
    else
        printf("%-11s none\n", "period");
    if (s->time_nanos > 0) {
        time_t t = (time_t)(s->time_nanos / 1000000000);
        struct tm tm;
        char when[64];
        gmtime_r(&t, &tm);
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
        printf("%-11s %s\n", "time", when);
    }
    printf("%-11s %s\n", "duration",
           s->duration_nanos > 0 ? fmt_ns(s->duration_nanos, a, sizeof(a)) : "not recorded");
    printf("%-11s %" PRIu64 " records", "samples", s->samples);
    for (size_t i = 0; i < s->ntypes; i++) {
        int ns = strcmp(s->types[i].unit, "nanoseconds") == 0;
        if (ns)
            printf(", %s %s", fmt_ns(s->totals[i], a, sizeof(a)), s->types[i].type);
        else
            printf(", %" PRId64 " %s", s->totals[i],
                   strcmp(s->types[i].unit, "count") == 0 ? s->types[i].type : s->types[i].unit);
    }
    printf("\n");
    printf("%-11s %" PRIu64 " distinct\n", "stacks", s->stacks);
    printf("%-11s %" PRIu64 " (%" PRIu64 " locations, %" PRIu64 " mappings)\n", "functions",
           s->functions, s->locations, s->mappings);
    if (!s->ntypes || n == 0)
        return;
    printf("\nTop %zu of %zu functions by flat %s/%s (total %s):\n", n, s->nfuncs,
           s->types[s->value_index].type, s->types[s->value_index].unit,
           fmt_value(s, total, a, sizeof(a)));
    print_table(s, s->funcs, n, total, 1);
    printf("\nTop %zu of %zu functions by cumulative %s/%s:\n", n, s->nfuncs,
           s->types[s->value_index].type, s->types[s->value_index].unit);
    print_table(s, by_c, n, total, 0);
}

/* ---- JSON ---------------------------------------------------------------- */

static void json_str(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static void json_funcs(const pprof_summary_func *f, size_t n)
{
    putchar('[');
    for (size_t i = 0; i < n; i++) {
        printf("%s{\"name\":", i ? "," : "");
        json_str(f[i].name);
        printf(",\"flat\":%" PRId64 ",\"cum\":%" PRId64 "}", f[i].flat, f[i].cum);
    }
    putchar(']');
}

static void print_json(const char *path, const struct stat *st, const pprof_summary *s,
                       const char *not_cpu, size_t top, const pprof_summary_func *by_c)
{
    size_t n = top == 0 || top > s->nfuncs ? s->nfuncs : top;

    printf("{\"file\":");
    json_str(path);
    printf(",\"size_bytes\":%lld,\"inflated_bytes\":%" PRIu64, (long long)st->st_size,
           s->inflated);
    printf(",\"cpu_profile\":%s,\"not_cpu_reason\":", not_cpu ? "false" : "true");
    if (not_cpu)
        json_str(not_cpu);
    else
        printf("null");
    printf(",\"sample_types\":[");
    for (size_t i = 0; i < s->ntypes; i++) {
        printf("%s{\"type\":", i ? "," : "");
        json_str(s->types[i].type);
        printf(",\"unit\":");
        json_str(s->types[i].unit);
        printf(",\"total\":%" PRId64 "}", s->totals[i]);
    }
    printf("],\"period_type\":{\"type\":");
    json_str(s->period_type);
    printf(",\"unit\":");
    json_str(s->period_unit);
    printf("},\"period\":%" PRId64 ",\"time_nanos\":%" PRId64 ",\"duration_nanos\":%" PRId64,
           s->period, s->time_nanos, s->duration_nanos);
    printf(",\"samples\":%" PRIu64 ",\"stacks\":%" PRIu64 ",\"functions\":%" PRIu64
           ",\"locations\":%" PRIu64 ",\"mappings\":%" PRIu64, s->samples, s->stacks,
           s->functions, s->locations, s->mappings);
    printf(",\"value_index\":%zu,\"function_names\":%zu,\"top_flat\":", s->value_index,
           s->nfuncs);
    json_funcs(s->funcs, n);
    printf(",\"top_cum\":");
    json_funcs(by_c, n);
    printf("}\n");
}

int cli_inspect_main(int argc, char **argv)
{
    unsigned long top = DEFAULT_TOP;
    int json = 0, c, fd = -1, rc, status = CLI_EXIT_FAIL;
    const char *path;
    pprof_profile *p = NULL;
    pprof_summary *s = NULL;
    pprof_summary_func *by_c = NULL;
    pprof_error perr, cerr;
    struct stat st;

    while ((c = getopt_long(argc, argv, "n:h", long_opts, NULL)) != -1) {
        switch (c) {
        case 'n':
            if (cli_parse_uint(optarg, 1000000, &top) != 0) {
                cli_usage_error("--top wants a whole number, not '%s'", optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'h': fputs(usage, stdout); return CLI_EXIT_OK;
        case OPT_JSON: json = 1; break;
        default:
            cli_usage_hint(); /* getopt_long named the option */
            return CLI_EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        cli_usage_error(optind >= argc ? "no FILE to inspect" : "inspect takes one FILE");
        return CLI_EXIT_USAGE;
    }
    path = argv[optind];
    memset(&perr, 0, sizeof(perr));
    memset(&cerr, 0, sizeof(cerr));

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        cli_error("%s: cannot open: %s", path, strerror(errno));
        goto cleanup;
    }
    rc = pprof_decode_fd(fd, NULL, &p, &perr);
    if (rc != 0) {
        cli_error("%s: not a valid profile: %s", path,
                  perr.msg[0] ? perr.msg : pprof_strerror(rc));
        goto cleanup;
    }
    if (pprof_summarize(p, &s, &perr) != 0) {
        cli_error("%s: %s", path, perr.msg);
        goto cleanup;
    }
    by_c = malloc((s->nfuncs ? s->nfuncs : 1) * sizeof(*by_c));
    if (!by_c) {
        cli_error("out of memory");
        goto cleanup;
    }
    memcpy(by_c, s->funcs, s->nfuncs * sizeof(*by_c));
    qsort(by_c, s->nfuncs, sizeof(*by_c), by_cum);

    rc = pprof_check_cpu(p, &cerr);
    if (json)
        print_json(path, &st, s, rc ? cerr.msg : NULL, top, by_c);
    else
        print_text(path, &st, s, rc ? cerr.msg : NULL, top, by_c);
    if (rc != 0)
        cli_error("%s: %s", path, cerr.msg);
    else
        status = CLI_EXIT_OK;

cleanup:
    free(by_c);
    pprof_summary_free(s);
    pprof_profile_free(p);
    if (fd >= 0)
        close(fd);
    return status;
}
