/*
 * validate.c: the one question every pgof command asks the engine about a
 * file: is this a valid Go CPU profile?
 *
 * DESIGN
 * The answer is the collector's own rule (pprof_decode_fd, then
 * pprof_check_cpu), so pgof never accepts what the collector would refuse,
 * nor the reverse. The descriptor is read from its start, in bounded chunks
 * (the engine never holds a second copy of the input).
 */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pprof/pprof.h"

int cli_check_cpu_fd(int fd, char *why, size_t len)
{
    pprof_profile *p = NULL;
    pprof_error perr;
    int rc;

    memset(&perr, 0, sizeof(perr));
    if (lseek(fd, 0, SEEK_SET) != 0) {
        snprintf(why, len, "cannot rewind: %s", strerror(errno));
        return PPROF_EIO;
    }
    rc = pprof_decode_fd(fd, NULL, &p, &perr);
    if (rc == 0)
        rc = pprof_check_cpu(p, &perr);
    if (rc != 0)
        snprintf(why, len, "%s", perr.msg[0] ? perr.msg : pprof_strerror(rc));
    pprof_profile_free(p);
    return rc;
}
