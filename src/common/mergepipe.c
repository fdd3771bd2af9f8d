/*
 * mergepipe.c: a merge of files with the merge options (see mergeopts.h):
 * select by since, weigh, merge, reshape.
 *
 * DESIGN
 * Blocking: runs on the collector's threadpool (inside a store operation)
 * or in `pgof merge`. Memory is one decoded input at a time plus the
 * aggregate, as for a plain merge. weight=equal needs every input's total
 * before the first add, because the common target is the largest total
 * (no input is scaled down, so no sample rounds away): a first pass decodes
 * each file whose total is not in the caller's cache, a second pass decodes
 * again, scales and adds. With a warm cache (the collector keeps one) that
 * is one pass.
 */
#include "common/mergeopts.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The CPU check after a decode that returned rc: *p is NULL on failure. */
static int check_cpu(int rc, int cpu_only, pprof_profile **p, pprof_error *perr)
{
    if (rc == 0 && cpu_only && (rc = pprof_check_cpu(*p, perr)) != 0) {
        pprof_profile_free(*p);
        *p = NULL;
    }
    return rc;
}

int mergeopts_decode_fd(int fd, const pprof_limits *lim, int cpu_only, pprof_profile *spare,
                        pprof_profile **p, pprof_error *perr)
{
    return check_cpu(pprof_decode_fd_reuse(fd, lim, spare, p, perr), cpu_only, p, perr);
}

int mergeopts_decode_mem(const void *data, size_t len, const pprof_limits *lim, int cpu_only,
                         pprof_profile *spare, pprof_profile **p, pprof_error *perr)
{
    return check_cpu(pprof_decode_mem_reuse(data, len, lim, spare, p, perr), cpu_only, p, perr);
}

int mergeopts_decode_file(const char *dir, const char *name, const pprof_limits *lim,
                          int cpu_only, pprof_profile *spare, pprof_profile **p,
                          pprof_error *perr)
{
    char path[4096];
    int fd, rc;

    *p = NULL;
    if (dir)
        snprintf(path, sizeof(path), "%s/%s", dir, name);
    else
        snprintf(path, sizeof(path), "%s", name);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        pprof_profile_free(spare);
        perr->code = PPROF_EIO;
        snprintf(perr->msg, sizeof(perr->msg), "cannot open: %s", strerror(errno));
        return PPROF_EIO;
    }
    rc = mergeopts_decode_fd(fd, lim, cpu_only, spare, p, perr);
    close(fd);
    return rc;
}

/* Decodes file i into *p, in spare's memory (consumed). */
static int decode_one(const mergeopts_input *in, size_t i, pprof_profile *spare,
                      pprof_profile **p, pprof_error *perr)
{
    return mergeopts_decode_file(in->dir, in->names[i], in->lim, in->cpu_only, spare, p, perr);
}

int mergeopts_reshape(const mergeopts *o, pprof_merger *m, pprof_merger **out, pprof_error *err)
{
    unsigned flags = 0;
    int rc;

    *out = m;
    if (o->shape == MERGEOPTS_SHAPE_PGO)
        flags |= PPROF_RESHAPE_PGO;
    if (o->strip_labels)
        flags |= PPROF_RESHAPE_STRIP_LABELS;
    if (!flags)
        return 0;
    *out = NULL;
    rc = pprof_merger_reshape(m, flags, out, err);
    pprof_merger_free(m);
    return rc;
}

int mergeopts_merge(const mergeopts *o, const mergeopts_input *in, uint64_t now_ms,
                    pprof_merger **out, size_t *selected, size_t *bad, char *why,
                    size_t whylen)
{
    unsigned char *use = NULL;
    int64_t *totals = NULL, target = 0;
    pprof_merger *m = NULL;
    pprof_profile *spare = NULL; /* the last profile decoded, for its memory */
    pprof_error perr;
    size_t i;
    int rc = 0;

    *out = NULL;
    *selected = 0;
    *bad = 0;
    use = calloc(in->n + 1, 1);
    totals = calloc(in->n + 1, sizeof(*totals));
    m = pprof_merger_new();
    if (!use || !totals || !m) {
        snprintf(why, whylen, "out of memory");
        rc = PPROF_ENOMEM;
        goto out;
    }
    for (i = 0; i < in->n; i++) {
        uint64_t t;
        use[i] = 1;
        if (!o->since_ms)
            continue;
        /* A file whose time cannot be read is left out of a window. */
        if (mergeopts_file_time_ms(in->dir, in->names[i], &t) != 0 ||
            t + o->since_ms < now_ms)
            use[i] = 0;
    }
    if (o->weight == MERGEOPTS_WEIGHT_EQUAL) {
        for (i = 0; i < in->n; i++) {
            pprof_profile *p = NULL;
            if (!use[i])
                continue;
            if (in->get && in->get(in->cache_ctx, in->names[i], &totals[i]))
                goto have;
            memset(&perr, 0, sizeof(perr));
            if ((rc = decode_one(in, i, spare, &p, &perr)) == 0)
                rc = pprof_profile_total(p, &totals[i], &perr);
            spare = p;
            if (rc) {
                *bad = i;
                snprintf(why, whylen, "%s: %s", in->names[i], perr.msg);
                goto out;
            }
            if (in->put)
                in->put(in->cache_ctx, in->names[i], totals[i]);
        have:
            if (totals[i] > target)
                target = totals[i];
        }
    }
    for (i = 0; i < in->n; i++) {
        pprof_profile *p = NULL;
        if (!use[i])
            continue;
        memset(&perr, 0, sizeof(perr));
        rc = decode_one(in, i, spare, &p, &perr);
        if (rc == 0 && o->weight == MERGEOPTS_WEIGHT_EQUAL)
            rc = pprof_profile_scale(p, target, &perr);
        if (rc == 0)
            rc = pprof_merger_add(m, p, &perr);
        spare = p;
        if (rc) {
            *bad = i;
            snprintf(why, whylen, "%s: %s", in->names[i], perr.msg);
            goto out;
        }
        (*selected)++;
    }
    if (*selected == 0)
        goto out;
    memset(&perr, 0, sizeof(perr));
    if ((rc = mergeopts_reshape(o, m, out, &perr))) {
        m = NULL;
        snprintf(why, whylen, "%s", perr.msg);
        goto out;
    }
    m = NULL;
out:
    pprof_profile_free(spare);
    pprof_merger_free(m);
    free(totals);
    free(use);
    return rc;
}
