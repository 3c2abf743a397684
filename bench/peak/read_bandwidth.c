/* Memory read bandwidth: threads summing disjoint halves of a 256 MiB buffer (3 passes).
 *
 *   cc -O2 -mavx2 -pthread -o /tmp/read_bandwidth bench/peak/read_bandwidth.c && /tmp/read_bandwidth 2
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define N (256L * 1024 * 1024 / 4)

static float *buf;
typedef struct {
    long lo, hi;
    float sum;
} part;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *read_part(void *arg) {
    part *p = arg;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (long i = p->lo; i < p->hi; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_load_ps(buf + i));
        s1 = _mm256_add_ps(s1, _mm256_load_ps(buf + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_load_ps(buf + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_load_ps(buf + i + 24));
    }
    float lane[8];
    _mm256_storeu_ps(lane, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    p->sum = lane[0];
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    if (threads < 1 || threads > 4) threads = 1;
    buf = aligned_alloc(64, N * 4);
    for (long i = 0; i < N; i++) buf[i] = 1.0f;
    pthread_t t[4];
    part parts[4];
    for (int round = 0; round < 3; round++) {
        double t0 = now();
        for (int i = 0; i < threads; i++) {
            parts[i].lo = N / threads * i;
            parts[i].hi = N / threads * (i + 1);
            pthread_create(&t[i], NULL, read_part, &parts[i]);
        }
        for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
        printf("%d thread(s): %.1f GB/s read (checksum %g)\n", threads, N * 4 / (now() - t0) / 1e9,
               (double)parts[0].sum);
    }
    free(buf);
    return 0;
}
