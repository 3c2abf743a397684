/* The fp32 FMA peak of this machine: independent AVX2 FMA chains in registers only (no memory
 * traffic), on 1..4 threads. docs/PERFORMANCE.md quotes it as the ceiling for the model's GEMMs.
 *
 *   cc -O3 -mavx2 -mfma -pthread -o /tmp/fma_peak bench/peak/fma_peak.c && /tmp/fma_peak 2
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define ITERS 333333333L /* × 12 chains × 16 FLOP ≈ 64 GFLOP per thread */

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *run(void *out) {
    __m256 acc[12];
    const __m256 b = _mm256_set1_ps(1.0000001f), c = _mm256_set1_ps(1e-8f);
    for (int i = 0; i < 12; i++) acc[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < ITERS; it++)
        for (int i = 0; i < 12; i++) acc[i] = _mm256_fmadd_ps(acc[i], b, c);
    float sum = 0, lane[8];
    for (int i = 0; i < 12; i++) {
        _mm256_storeu_ps(lane, acc[i]);
        sum += lane[0];
    }
    *(float *)out = sum; /* keeps the loop from being optimized away */
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    if (threads < 1 || threads > 4) threads = 1;
    pthread_t t[4];
    float sink[4];
    double t0 = now();
    for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, run, &sink[i]);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    double dt = now() - t0;
    printf("%d thread(s): %.1f GFLOP/s fp32 FMA (checksum %g)\n", threads,
           (double)ITERS * 12 * 16 * threads / dt / 1e9, (double)sink[0]);
    return 0;
}
