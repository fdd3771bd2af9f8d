/*
 * symbols.c: what the process has loaded (mappings with build ids) and what
 * an address means (function, file, line, inlined frames).
 *
 * DESIGN
 * Runs on the consumer thread at the end of a window, never in a handler.
 * Mappings come from dl_iterate_phdr: one pgof__mapping per executable
 * PT_LOAD segment (start, limit, file offset), the file name (the main
 * program's, which the loader reports as "", read from /proc/self/exe) and
 * the GNU build id from the object's PT_NOTE segments (NT_GNU_BUILD_ID),
 * read straight from memory where the loader mapped them.
 *
 * Names: with elfutils (PGOF_HAVE_LIBDW, probed by the Makefile) a Dwfl
 * session reports the process's modules (dwfl_linux_proc_report); the
 * function is dwfl_module_addrname, which reads .symtab when present, so
 * static functions are named too, and else .dynsym. Where DWARF exists
 * (the object or its /usr/lib/debug file), dwfl_module_getsrc gives file and
 * line, and dwarf_getscopes gives the chain of inlined subroutines: each
 * inlined frame is named by its DWARF name and its caller's line is the
 * inlined subroutine's DW_AT_call_line. Without elfutils, dladdr gives the
 * dynamic symbol (the host needs -rdynamic for its own functions) and no
 * lines. An address nobody can name becomes "<object>+0x<offset>", so
 * profiles stay readable and mergeable across hosts.
 *
 * Call sites (pgof__check_callsites, x86-64): whether a call instruction
 * ends at a candidate return address, decoded from the code bytes before
 * it, read only inside executable PT_LOAD segments and only from a
 * dl_iterate_phdr callback, so no object can be unloaded meanwhile.
 *
 * Names are returned as the linker spells them (C++ names mangled, in both
 * name and system_name); `go tool pprof` demangles such names itself.
 * Threads: a symtab is used by one thread. Memory: every string handed out
 * lives until pgof__symtab_free.
 */
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef PGOF_HAVE_LIBDW
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#endif

#include "embedded/internal.h"

struct pgof__symtab {
    pgof__mapping *maps; /* sorted by start */
    size_t nmaps, capmaps;
    char **owned; /* strings to free */
    size_t nowned, capowned;
#ifdef PGOF_HAVE_LIBDW
    Dwfl *dwfl;
#endif
    bool oom;
};

/* Keeps s (owned) until the symtab is freed; returns s, or NULL. */
static char *keep(pgof__symtab *t, char *s)
{
    if (!s) {
        t->oom = true;
        return NULL;
    }
    if (t->nowned == t->capowned) {
        size_t cap = t->capowned ? t->capowned * 2 : 64;
        char **n = realloc(t->owned, cap * sizeof(*n));
        if (!n) {
            free(s);
            t->oom = true;
            return NULL;
        }
        t->owned = n;
        t->capowned = cap;
    }
    t->owned[t->nowned++] = s;
    return s;
}

/* ---- mappings ------------------------------------------------------------ */

/* The GNU build id in an object's PT_NOTE segments, as hex, or "". */
static void build_id_hex(const struct dl_phdr_info *info, char *out, size_t outsz)
{
    int i;

    out[0] = '\0';
    for (i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        const char *p, *end;
        if (ph->p_type != PT_NOTE)
            continue;
        p = (const char *)(info->dlpi_addr + ph->p_vaddr);
        end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
            const char *name = p + sizeof(*nh);
            const unsigned char *desc =
                (const unsigned char *)name + ((nh->n_namesz + 3) & ~3u);
            const char *next = (const char *)desc + ((nh->n_descsz + 3) & ~3u);
            if (next > end || next <= p)
                break;
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 &&
                memcmp(name, "GNU", 4) == 0 && nh->n_descsz * 2 < outsz) {
                size_t k;
                for (k = 0; k < nh->n_descsz; k++)
                    snprintf(out + 2 * k, 3, "%02x", desc[k]);
                return;
            }
            p = next;
        }
    }
}

static int on_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    pgof__symtab *t = arg;
    char bid[129], exe[4096];
    const char *file = info->dlpi_name;
    char *file_s = NULL, *bid_s = NULL;
    int i;

    (void)size;
    if (!file || !*file) {
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        exe[n > 0 ? n : 0] = '\0';
        file = exe;
    } else if (strncmp(file, "linux-vdso", 10) == 0 || strncmp(file, "linux-gate", 10) == 0) {
        file = "[vdso]";
    }
    build_id_hex(info, bid, sizeof(bid));
    for (i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        pgof__mapping *m;
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
            continue;
        if (!file_s && (!(file_s = keep(t, strdup(file))) || !(bid_s = keep(t, strdup(bid)))))
            return 1;
        if (t->nmaps == t->capmaps) {
            size_t cap = t->capmaps ? t->capmaps * 2 : 32;
            pgof__mapping *n = realloc(t->maps, cap * sizeof(*n));
            if (!n) {
                t->oom = true;
                return 1;
            }
            t->maps = n;
            t->capmaps = cap;
        }
        m = &t->maps[t->nmaps++];
        m->start = info->dlpi_addr + ph->p_vaddr;
        m->limit = m->start + ph->p_memsz;
        m->offset = ph->p_offset;
        m->file = file_s;
        m->build_id = bid_s;
    }
    return 0;
}

static int cmp_map(const void *a, const void *b)
{
    const pgof__mapping *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

pgof__symtab *pgof__symtab_new(void)
{
    pgof__symtab *t = calloc(1, sizeof(*t));

    if (!t)
        return NULL;
    dl_iterate_phdr(on_object, t);
    if (t->oom) {
        pgof__symtab_free(t);
        return NULL;
    }
    qsort(t->maps, t->nmaps, sizeof(*t->maps), cmp_map);
#ifdef PGOF_HAVE_LIBDW
    {
        static char *debuginfo_path = NULL;
        static const Dwfl_Callbacks cb = {
            .find_elf = dwfl_linux_proc_find_elf,
            .find_debuginfo = dwfl_standard_find_debuginfo,
            .debuginfo_path = &debuginfo_path,
        };
        t->dwfl = dwfl_begin(&cb);
        if (t->dwfl) {
            dwfl_report_begin(t->dwfl);
            if (dwfl_linux_proc_report(t->dwfl, getpid()) != 0 ||
                dwfl_report_end(t->dwfl, NULL, NULL) != 0) {
                dwfl_end(t->dwfl);
                t->dwfl = NULL; /* fall back to dladdr */
            }
        }
    }
#endif
    return t;
}

void pgof__symtab_free(pgof__symtab *t)
{
    size_t i;

    if (!t)
        return;
#ifdef PGOF_HAVE_LIBDW
    if (t->dwfl)
        dwfl_end(t->dwfl);
#endif
    for (i = 0; i < t->nowned; i++)
        free(t->owned[i]);
    free(t->owned);
    free(t->maps);
    free(t);
}

size_t pgof__symtab_nmappings(const pgof__symtab *t)
{
    return t->nmaps;
}

const pgof__mapping *pgof__symtab_mapping(const pgof__symtab *t, size_t i)
{
    return &t->maps[i];
}

long pgof__symtab_find(const pgof__symtab *t, uintptr_t pc)
{
    size_t lo = 0, hi = t->nmaps;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (pc < t->maps[mid].start)
            hi = mid;
        else if (pc >= t->maps[mid].limit)
            lo = mid + 1;
        else
            return (long)mid;
    }
    return -1;
}

/* ---- names --------------------------------------------------------------- */

#ifdef PGOF_HAVE_LIBDW
/* The DWARF name of a subprogram or inlined subroutine (following
 * abstract_origin/specification), preferring the linkage name. */
static const char *die_name(Dwarf_Die *die)
{
    Dwarf_Attribute a;
    const char *s = NULL;

    if (dwarf_attr_integrate(die, DW_AT_linkage_name, &a))
        s = dwarf_formstring(&a);
    if (!s && dwarf_attr_integrate(die, DW_AT_name, &a))
        s = dwarf_formstring(&a);
    return s;
}

static size_t lookup_dw(pgof__symtab *t, uintptr_t pc, pgof__frame *fr, size_t max)
{
    Dwfl_Module *mod = dwfl_addrmodule(t->dwfl, pc);
    const char *sym, *src = NULL;
    Dwarf_Die *cu, *scopes = NULL;
    Dwarf_Addr bias = 0;
    Dwfl_Line *ln;
    int line = 0, nscopes, i;
    size_t n = 0;

    if (!mod || !(sym = dwfl_module_addrname(mod, pc)))
        return 0;
    if ((ln = dwfl_module_getsrc(mod, pc)))
        src = dwfl_lineinfo(ln, NULL, &line, NULL, NULL, NULL);
    /* Inlined frames, innermost first; the outermost scope that is a
     * subprogram is the symbol's function itself. */
    if ((cu = dwfl_module_addrdie(mod, pc, &bias)) &&
        (nscopes = dwarf_getscopes(cu, pc - bias, &scopes)) > 0) {
        for (i = 0; i < nscopes && n + 1 < max; i++) {
            Dwarf_Attribute a;
            Dwarf_Word call_line = 0;
            const char *name;
            if (dwarf_tag(&scopes[i]) != DW_TAG_inlined_subroutine)
                continue;
            if (!(name = die_name(&scopes[i])))
                break;
            fr[n].function = name;
            fr[n].file = src ? src : "";
            fr[n].line = line;
            fr[n].start_line = 0;
            dwarf_decl_line(&scopes[i], &fr[n].start_line);
            n++;
            /* The caller continues at the call site. */
            if (dwarf_attr(&scopes[i], DW_AT_call_line, &a))
                dwarf_formudata(&a, &call_line);
            line = (int)call_line;
            src = NULL;
            {
                /* The caller's file: the file of the enclosing function. */
                int j;
                for (j = i + 1; j < nscopes; j++) {
                    int tag = dwarf_tag(&scopes[j]);
                    if (tag == DW_TAG_subprogram || tag == DW_TAG_inlined_subroutine) {
                        src = dwarf_decl_file(&scopes[j]);
                        break;
                    }
                }
            }
        }
        for (i = 0; i < nscopes; i++)
            if (dwarf_tag(&scopes[i]) == DW_TAG_subprogram) {
                fr[n].start_line = 0;
                dwarf_decl_line(&scopes[i], &fr[n].start_line);
                break;
            }
        if (i == nscopes)
            fr[n].start_line = 0;
    } else {
        fr[n].start_line = 0;
    }
    free(scopes);
    fr[n].function = sym;
    fr[n].file = src ? src : "";
    fr[n].line = line;
    return n + 1;
}
#endif

uintptr_t pgof__symtab_func_start(pgof__symtab *t, uintptr_t pc)
{
    Dl_info info;

#ifdef PGOF_HAVE_LIBDW
    if (t->dwfl) {
        Dwfl_Module *mod = dwfl_addrmodule(t->dwfl, pc);
        GElf_Off off;
        GElf_Sym sym;
        if (mod && dwfl_module_addrinfo(mod, pc, &off, &sym, NULL, NULL, NULL))
            return pc - (uintptr_t)off;
    }
#else
    (void)t;
#endif
    /* glibc's dladdr names a symbol only when pc lies inside it. */
    if (dladdr((void *)pc, &info) && info.dli_sname && info.dli_saddr)
        return (uintptr_t)info.dli_saddr;
    return 0;
}

/* ---- call sites ---------------------------------------------------------- */

#if defined(__x86_64__)
/*
 * Which call instructions end exactly at ret, given the code bytes
 * [ret - avail, ret) at code (code points at ret; avail <= 7). Indirect
 * calls are FF /2 (a REX prefix such as 41 before FF changes nothing here):
 * FF D0+r (register), FF 10+r (memory, no displacement; r = 4 takes a SIB
 * byte, r = 5 is FF 15 disp32, rip-relative), FF 50+r disp8 and FF 90+r
 * disp32 (r = 4 with a SIB byte before the displacement).
 */
static unsigned call_kind(const uint8_t *code, size_t avail, uintptr_t ret, uintptr_t *target)
{
    unsigned kind = 0;
    uint8_t m;

#define B(k) (code[-(ptrdiff_t)(k)]) /* the byte k places before ret */
    if (avail >= 5 && B(5) == 0xE8) {
        int32_t rel;
        memcpy(&rel, code - 4, 4);
        *target = ret + (uintptr_t)(intptr_t)rel;
        kind |= PGOF__CALL_DIRECT;
    }
    if (avail >= 2 && B(2) == 0xFF && ((m = B(1)) & 0xF8) == 0xD0)
        kind |= PGOF__CALL_INDIRECT;
    if (avail >= 2 && B(2) == 0xFF && ((m = B(1)) & 0xF8) == 0x10 && m != 0x14 && m != 0x15)
        kind |= PGOF__CALL_INDIRECT;
    if (avail >= 3 && B(3) == 0xFF && B(2) == 0x14 && (B(1) & 7) != 5)
        kind |= PGOF__CALL_INDIRECT;
    if (avail >= 6 && B(6) == 0xFF && B(5) == 0x15)
        kind |= PGOF__CALL_INDIRECT;
    if (avail >= 3 && B(3) == 0xFF && ((m = B(2)) & 0xF8) == 0x50 && m != 0x54)
        kind |= PGOF__CALL_INDIRECT;
    if (avail >= 4 && B(4) == 0xFF && B(3) == 0x54)
        kind |= PGOF__CALL_INDIRECT;
    if (avail >= 6 && B(6) == 0xFF && ((m = B(5)) & 0xF8) == 0x90 && m != 0x94)
        kind |= PGOF__CALL_INDIRECT;
    if (avail >= 7 && B(7) == 0xFF && B(6) == 0x94)
        kind |= PGOF__CALL_INDIRECT;
#undef B
    return kind;
}

typedef struct callsite_job {
    pgof__callsite *c;
    size_t n;
} callsite_job;

/* Runs under the loader's lock (dl_iterate_phdr), so the segments it reads
 * stay mapped. Code bytes are read only from readable executable PT_LOAD
 * segments, and only those before ret within the same segment. */
__attribute__((no_sanitize("address")))
static int on_object_calls(struct dl_phdr_info *info, size_t size, void *arg)
{
    callsite_job *job = arg;
    int i;

    (void)size;
    for (i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t start, limit;
        size_t k;
        if (ph->p_type != PT_LOAD || (ph->p_flags & (PF_X | PF_R)) != (PF_X | PF_R))
            continue;
        start = info->dlpi_addr + ph->p_vaddr;
        limit = start + ph->p_memsz;
        for (k = 0; k < job->n; k++) {
            pgof__callsite *c = &job->c[k];
            uintptr_t ret = c->ret;
            size_t avail;
            /* A call may be the segment's last instruction (noreturn), so
             * ret may equal limit; it cannot equal start. */
            if (c->kind || ret <= start || ret > limit)
                continue;
            avail = ret - start < 7 ? (size_t)(ret - start) : 7;
            c->kind = call_kind((const uint8_t *)ret, avail, ret, &c->target);
        }
    }
    return 0;
}
#endif

void pgof__check_callsites(pgof__callsite *c, size_t n)
{
    size_t k;

    for (k = 0; k < n; k++) {
        c[k].kind = 0;
        c[k].target = 0;
    }
#if defined(__x86_64__)
    {
        callsite_job job = {c, n};
        if (n)
            dl_iterate_phdr(on_object_calls, &job);
    }
#endif
}

size_t pgof__symtab_lookup(pgof__symtab *t, uintptr_t pc, pgof__frame *fr, size_t max)
{
    Dl_info info;
    long mi;
    char buf[512];

    if (max == 0)
        return 0;
#ifdef PGOF_HAVE_LIBDW
    if (t->dwfl) {
        size_t n = lookup_dw(t, pc, fr, max);
        if (n)
            return n;
    }
#endif
    fr->file = "";
    fr->line = fr->start_line = 0;
    if (dladdr((void *)pc, &info) && info.dli_sname && *info.dli_sname) {
        fr->function = info.dli_sname;
        return 1;
    }
    mi = pgof__symtab_find(t, pc);
    if (mi < 0)
        return 0;
    {
        const pgof__mapping *m = &t->maps[mi];
        const char *base = strrchr(m->file, '/');
        snprintf(buf, sizeof(buf), "%s+0x%lx", base ? base + 1 : m->file,
                 (unsigned long)(pc - m->start + m->offset));
        if (!(fr->function = keep(t, strdup(buf))))
            return 0;
    }
    return 1;
}
