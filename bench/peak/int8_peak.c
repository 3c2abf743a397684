/* The ceiling of the AVX2 int8 kernel's step on one core, in registers only (no memory
 * traffic): each of four independent groups runs the step of `int8::dot256_pair` for one row
 * and eight lanes (two `vpmaddubsw`, `vpaddw`, `vpmaddwd` against ones, `vpaddd` into the
 * accumulator), beside `vpmaddubsw` and `vfmadd231ps` alone for scale. docs/PERFORMANCE.md
 * (speed round 3, eleventh session) quotes it: three multiplies per two steps of 32 byte
 * products, so GOPS = multiplies/s × 64 / 3 × 2 (two operations per byte product).
 *
 *   cc -O2 -o /tmp/int8_peak bench/peak/int8_peak.c && taskset -c 0 /tmp/int8_peak
 */
#include <stdio.h>
#include <time.h>

#define ITERS 100000000L

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Best of five runs of `body` (ITERS rounds), as instructions of interest per second. */
static double rate(void (*body)(long), double per_round) {
    double best = 0;
    for (int r = 0; r < 5; r++) {
        double t0 = now();
        body(ITERS);
        double g = ITERS * per_round / (now() - t0);
        if (g > best) best = g;
    }
    return best;
}

static void fma_only(long n) {
    __asm__ volatile(
        "1:\n"
        "vfmadd231ps %%ymm13, %%ymm12, %%ymm0\n vfmadd231ps %%ymm13, %%ymm12, %%ymm1\n"
        "vfmadd231ps %%ymm13, %%ymm12, %%ymm2\n vfmadd231ps %%ymm13, %%ymm12, %%ymm3\n"
        "vfmadd231ps %%ymm13, %%ymm12, %%ymm4\n vfmadd231ps %%ymm13, %%ymm12, %%ymm5\n"
        "vfmadd231ps %%ymm13, %%ymm12, %%ymm6\n vfmadd231ps %%ymm13, %%ymm12, %%ymm7\n"
        "dec %0\n jnz 1b\n"
        : "+r"(n)
        :
        : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm12", "xmm13");
}

static void maddubs_only(long n) {
    __asm__ volatile(
        "1:\n"
        "vpmaddubsw %%ymm13, %%ymm12, %%ymm0\n vpmaddubsw %%ymm13, %%ymm12, %%ymm1\n"
        "vpmaddubsw %%ymm13, %%ymm12, %%ymm2\n vpmaddubsw %%ymm13, %%ymm12, %%ymm3\n"
        "vpmaddubsw %%ymm13, %%ymm12, %%ymm4\n vpmaddubsw %%ymm13, %%ymm12, %%ymm5\n"
        "vpmaddubsw %%ymm13, %%ymm12, %%ymm6\n vpmaddubsw %%ymm13, %%ymm12, %%ymm7\n"
        "dec %0\n jnz 1b\n"
        : "+r"(n)
        :
        : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm12", "xmm13");
}

/* One group: temporaries t, u; accumulator acc. */
#define GROUP(t, u, acc)                                                                      \
    "vpmaddubsw %%ymm13, %%ymm12, %%" t "\n vpmaddubsw %%ymm14, %%ymm12, %%" u "\n"           \
    "vpaddw %%" u ", %%" t ", %%" t "\n vpmaddwd %%ymm15, %%" t ", %%" t "\n"                 \
    "vpaddd %%" t ", %%" acc ", %%" acc "\n"

static void step(long n) {
    __asm__ volatile(
        "1:\n" GROUP("ymm0", "ymm1", "ymm8") GROUP("ymm2", "ymm3", "ymm9")
            GROUP("ymm4", "ymm5", "ymm10") GROUP("ymm6", "ymm7", "ymm11") "dec %0\n jnz 1b\n"
        : "+r"(n)
        :
        : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
          "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}

int main(void) {
    printf("vfmadd231ps ymm: %.2f G/s\n", rate(fma_only, 8) / 1e9);
    printf("vpmaddubsw ymm: %.2f G/s\n", rate(maddubs_only, 8) / 1e9);
    double mul = rate(step, 12);
    printf("the int8 AVX2 step: %.2f G multiplies/s = %.0f GOPS\n", mul / 1e9,
           mul / 3 * 64 * 2 / 1e9);
    return 0;
}
