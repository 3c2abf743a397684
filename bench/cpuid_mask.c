/* Restricts a process to one x86 CPU class by editing what CPUID tells it, for frameworks that
 * pick their kernels from CPUID and offer no switch (ONNX Runtime's MLAS). Loaded with
 * LD_PRELOAD; ZEROCLIP_CPUID_MASK names the class:
 *
 *   avx2         no AVX-512, no AVX-VNNI, no AMX (a Haswell/Zen 2-class CPU)
 *   avx512       AVX-512 F/CD/BW/DQ/VL only (Skylake-SP): no VNNI, BF16, FP16, VBMI, AMX
 *   avx512-vnni  AVX-512 with VNNI and BF16 but no AMX, FP16 or AVX-VNNI (Cascade/Cooper Lake, Zen 4)
 *
 * How: Linux's CPUID faulting (arch_prctl(ARCH_SET_CPUID, 0), where the CPU or hypervisor has
 * it: the `cpuid_fault` flag) makes every CPUID instruction of the process raise SIGSEGV; the
 * handler runs the real CPUID with faulting briefly off, clears the masked feature bits and
 * steps over the instruction. The setting is inherited by threads created later, so it is made
 * in a constructor, before the framework starts its thread pool. Code that ran before the
 * constructor (the dynamic loader's and glibc's own feature checks) saw the real CPU. Without
 * CPUID faulting the library prints why on stderr and exits with status 3: a run that cannot be
 * restricted must not be recorded as restricted.
 *
 *   cc -O2 -shared -fPIC -o bench/out/cpuid_mask.so bench/cpuid_mask.c
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef ARCH_SET_CPUID
#define ARCH_SET_CPUID 0x1012
#endif

#define BIT(n) (1u << (n))

/* Feature bits cleared per class: leaf 7 subleaf 0 (EBX, ECX, EDX), leaf 7 subleaf 1 (EAX,
 * EDX), and the XSAVE state components of leaf 0xD subleaf 0 (EAX). */
struct mask {
    uint32_t l7_ebx, l7_ecx, l7_edx, l71_eax, l71_edx, ld_eax;
};

/* AVX-512 beyond Skylake-SP's F/CD/BW/DQ/VL. */
#define L7_ECX_LATER_512 (BIT(1) | BIT(6) | BIT(12) | BIT(14)) /* vbmi vbmi2 bitalg vpopcntdq */
#define L7_EBX_LATER_512 BIT(21)                                 /* ifma */
#define L7_EDX_AMX_FP16 (BIT(22) | BIT(23) | BIT(24) | BIT(25))  /* amx_bf16 fp16 amx_tile int8 */
#define L7_EDX_512_OLD (BIT(2) | BIT(3) | BIT(8))                /* 4vnniw 4fmaps vp2intersect */
#define L71_EAX_NEW (BIT(4) | BIT(21) | BIT(23))                 /* avx_vnni amx_fp16 avx_ifma */
#define L71_EDX_NEW BIT(4)                                       /* avx_vnni_int8 */
#define LD_AMX (BIT(17) | BIT(18))                               /* tile config, tile data */

static struct mask mask;

static long set_cpuid(int on) { return syscall(SYS_arch_prctl, ARCH_SET_CPUID, on); }

static void on_segv(int sig, siginfo_t *info, void *ctx) {
    ucontext_t *uc = ctx;
    greg_t *g = uc->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)g[REG_RIP];
    (void)info;
    if (ip[0] != 0x0f || ip[1] != 0xa2) {
        /* A real fault: let it kill the process as it would have. */
        signal(sig, SIG_DFL);
        return;
    }
    uint32_t leaf = (uint32_t)g[REG_RAX], sub = (uint32_t)g[REG_RCX];
    unsigned a, b, c, d;
    set_cpuid(1);
    __cpuid_count(leaf, sub, a, b, c, d);
    set_cpuid(0);
    if (leaf == 7 && sub == 0) {
        b &= ~mask.l7_ebx;
        c &= ~mask.l7_ecx;
        d &= ~mask.l7_edx;
    } else if (leaf == 7 && sub == 1) {
        a &= ~mask.l71_eax;
        d &= ~mask.l71_edx;
    } else if (leaf == 0xd && sub == 0) {
        a &= ~mask.ld_eax;
    }
    g[REG_RAX] = a;
    g[REG_RBX] = b;
    g[REG_RCX] = c;
    g[REG_RDX] = d;
    g[REG_RIP] += 2;
}

__attribute__((constructor)) static void install(void) {
    const char *class = getenv("ZEROCLIP_CPUID_MASK");
    if (!class || !*class)
        return;
    if (!strcmp(class, "avx2")) {
        /* avx512 f dq ifma pf er cd bw vl */
        mask.l7_ebx = BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31);
        mask.l7_ecx = L7_ECX_LATER_512 | BIT(11); /* + avx512_vnni */
        mask.l7_edx = L7_EDX_AMX_FP16 | L7_EDX_512_OLD;
        mask.l71_eax = L71_EAX_NEW | BIT(5); /* + avx512_bf16 */
        mask.l71_edx = L71_EDX_NEW;
        mask.ld_eax = BIT(5) | BIT(6) | BIT(7) | LD_AMX; /* opmask, ZMM state, tiles */
    } else if (!strcmp(class, "avx512")) {
        mask.l7_ebx = L7_EBX_LATER_512;
        mask.l7_ecx = L7_ECX_LATER_512 | BIT(11);
        mask.l7_edx = L7_EDX_AMX_FP16 | L7_EDX_512_OLD;
        mask.l71_eax = L71_EAX_NEW | BIT(5);
        mask.l71_edx = L71_EDX_NEW;
        mask.ld_eax = LD_AMX;
    } else if (!strcmp(class, "avx512-vnni")) {
        mask.l7_edx = L7_EDX_AMX_FP16;
        mask.l71_eax = L71_EAX_NEW;
        mask.l71_edx = L71_EDX_NEW;
        mask.ld_eax = LD_AMX;
    } else {
        fprintf(stderr, "cpuid_mask: ZEROCLIP_CPUID_MASK=%s is not avx2, avx512 or avx512-vnni\n",
                class);
        _exit(3);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, NULL) != 0 || set_cpuid(0) != 0) {
        fprintf(stderr, "cpuid_mask: this CPU or kernel has no CPUID faulting (no `cpuid_fault` "
                        "flag): cannot restrict the process to %s\n", class);
        _exit(3);
    }
}
