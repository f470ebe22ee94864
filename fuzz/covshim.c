/*
 * Coverage forwarding for a Python that runs atheris with gcc's AddressSanitizer preloaded.
 *
 * Why: atheris' libFuzzer and gcc's libasan both export the __sanitizer_cov_* and
 * __sanitizer_weak_hook_* functions; with libasan preloaded (it must be, so every malloc gets red
 * zones), its no-op versions win the symbol lookup and libFuzzer never sees Python coverage: it then
 * drops every seed and mutates an empty input. Preloaded before libasan (ASAN_OPTIONS
 * verify_asan_link_order=0), this library answers those names instead and forwards each call to
 * the libFuzzer inside atheris' core ($TLSDETECT_ATHERIS_CORE), once that is loaded; before that
 * (or in a process without atheris) every call is a no-op. Built without sanitizers, apart from
 * _ccore.c, by fuzz/sanitized.py; nothing here touches the bytes under test.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

static __thread int busy; /* dlopen may compare strings: no hook re-enters the lookup */

static void *target(const char *name)
{
    const char *core = getenv("TLSDETECT_ATHERIS_CORE");
    if (!core || busy)
        return NULL;
    busy = 1;
    void *h = dlopen(core, RTLD_NOLOAD | RTLD_LAZY);
    void *f = h ? dlsym(h, name) : NULL;
    busy = 0;
    return f;
}

/* `name` with its own parameters, calling libFuzzer's `name` once it is found. */
#define FWD(name, params, args)                                  \
    void name params;                                            \
    void name params                                             \
    {                                                            \
        static void (*fn) params;                                \
        if (!fn)                                                 \
            fn = (void (*) params)target(#name);                 \
        if (fn)                                                  \
            fn args;                                             \
    }

FWD(__sanitizer_cov_8bit_counters_init, (uint8_t *a, uint8_t *b), (a, b))
FWD(__sanitizer_cov_pcs_init, (const uintptr_t *a, const uintptr_t *b), (a, b))
FWD(__sanitizer_cov_trace_cmp1, (uint8_t a, uint8_t b), (a, b))
FWD(__sanitizer_cov_trace_cmp2, (uint16_t a, uint16_t b), (a, b))
FWD(__sanitizer_cov_trace_cmp4, (uint32_t a, uint32_t b), (a, b))
FWD(__sanitizer_cov_trace_cmp8, (uint64_t a, uint64_t b), (a, b))
FWD(__sanitizer_cov_trace_const_cmp1, (uint8_t a, uint8_t b), (a, b))
FWD(__sanitizer_cov_trace_const_cmp2, (uint16_t a, uint16_t b), (a, b))
FWD(__sanitizer_cov_trace_const_cmp4, (uint32_t a, uint32_t b), (a, b))
FWD(__sanitizer_cov_trace_const_cmp8, (uint64_t a, uint64_t b), (a, b))
FWD(__sanitizer_cov_trace_div4, (uint32_t a), (a))
FWD(__sanitizer_cov_trace_div8, (uint64_t a), (a))
FWD(__sanitizer_cov_trace_gep, (uintptr_t a), (a))
FWD(__sanitizer_cov_trace_pc_guard, (uint32_t *a), (a))
FWD(__sanitizer_cov_trace_pc_guard_init, (uint32_t *a, uint32_t *b), (a, b))
FWD(__sanitizer_cov_trace_pc_indir, (uintptr_t a), (a))
FWD(__sanitizer_cov_trace_switch, (uint64_t a, uint64_t *b), (a, b))
FWD(__sanitizer_weak_hook_memcmp, (void *pc, const void *a, const void *b, size_t n, int r), (pc, a, b, n, r))
FWD(__sanitizer_weak_hook_strncmp, (void *pc, const char *a, const char *b, size_t n, int r), (pc, a, b, n, r))
FWD(__sanitizer_weak_hook_strcmp, (void *pc, const char *a, const char *b, int r), (pc, a, b, r))
FWD(__sanitizer_weak_hook_strncasecmp, (void *pc, const char *a, const char *b, size_t n, int r), (pc, a, b, n, r))
FWD(__sanitizer_weak_hook_strcasecmp, (void *pc, const char *a, const char *b, int r), (pc, a, b, r))
FWD(__sanitizer_weak_hook_strstr, (void *pc, const char *a, const char *b, char *r), (pc, a, b, r))
FWD(__sanitizer_weak_hook_strcasestr, (void *pc, const char *a, const char *b, char *r), (pc, a, b, r))
FWD(__sanitizer_weak_hook_memmem, (void *pc, const void *a, size_t n, const void *b, size_t m, void *r), (pc, a, n, b, m, r))
