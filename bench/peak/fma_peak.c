/* The fp32 FMA peak of this machine: independent FMA chains in registers only (no memory
 * traffic), on 1..4 threads, with 256-bit vectors (AVX2 + FMA) and, where the compiler was asked
 * for AVX-512F, with 512-bit ones too. docs/PERFORMANCE.md quotes it as the ceiling for the
 * model's GEMMs (each class against its own width).
 *
 *   cc -O3 -mavx2 -mfma -pthread -o /tmp/fma_peak bench/peak/fma_peak.c && /tmp/fma_peak 2
 *   cc -O3 -mavx2 -mfma -mavx512f -pthread -o /tmp/fma_peak bench/peak/fma_peak.c && /tmp/fma_peak 2
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define ITERS 333333333L /* × 12 chains: 4 G FMAs per thread */
#define CHAINS 12

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Defines `name`: CHAINS independent FMA chains of `vec` (`lanes` floats) for ITERS rounds. */
#define CHAINS_OF(name, vec, lanes, set1, fmadd, storeu)                                      \
    static void *name(void *out) {                                                         \
        vec acc[CHAINS];                                                                   \
        const vec b = set1(1.0000001f), c = set1(1e-8f);                                   \
        for (int i = 0; i < CHAINS; i++) acc[i] = set1((float)i);                          \
        for (long it = 0; it < ITERS; it++)                                                \
            for (int i = 0; i < CHAINS; i++) acc[i] = fmadd(acc[i], b, c);                 \
        float sum = 0, lane[lanes];                                                        \
        for (int i = 0; i < CHAINS; i++) {                                                 \
            storeu(lane, acc[i]);                                                          \
            sum += lane[0];                                                                \
        }                                                                                  \
        *(float *)out = sum; /* keeps the loop from being optimized away */               \
        return NULL;                                                                       \
    }

CHAINS_OF(run256, __m256, 8, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_storeu_ps)
#ifdef __AVX512F__
CHAINS_OF(run512, __m512, 16, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_storeu_ps)
#endif

/* `lanes` floats per vector: 2 FLOP per lane per FMA. */
static void measure(void *(*body)(void *), int lanes, int threads) {
    pthread_t t[4];
    float sink[4];
    double t0 = now();
    for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, body, &sink[i]);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    double dt = now() - t0;
    printf("%d thread(s), %d-bit: %.1f GFLOP/s fp32 FMA (checksum %g)\n", threads, lanes * 32,
           (double)ITERS * CHAINS * 2 * lanes * threads / dt / 1e9, (double)sink[0]);
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    if (threads < 1 || threads > 4) threads = 1;
    measure(run256, 8, threads);
#ifdef __AVX512F__
    measure(run512, 16, threads);
#endif
    return 0;
}
