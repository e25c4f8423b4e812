// Single-precision matrix product for x86-64 with AVX2 and FMA: a 4x16 register tile
// (eight 8-float accumulators) swept over C, B read in rows, A broadcast one element at a time.
// Edges fall back to scalar loops. The Swift scalar kernel is the reference the tests compare with.
#include "CTFMPKernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

int tfmp_has_avx2_fma(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

__attribute__((target("avx2,fma")))
void tfmp_sgemm_avx2(const float *a, const float *b, float *c, size_t k, size_t n,
                     size_t row_begin, size_t row_end) {
  size_t i = row_begin;
  for (; i + 4 <= row_end; i += 4) {
    size_t j = 0;
    for (; j + 16 <= n; j += 16) {
      __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
      __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
      __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
      __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
      for (size_t p = 0; p < k; p++) {
        __m256 b0 = _mm256_loadu_ps(b + p * n + j);
        __m256 b1 = _mm256_loadu_ps(b + p * n + j + 8);
        __m256 a0 = _mm256_broadcast_ss(a + (i + 0) * k + p);
        __m256 a1 = _mm256_broadcast_ss(a + (i + 1) * k + p);
        __m256 a2 = _mm256_broadcast_ss(a + (i + 2) * k + p);
        __m256 a3 = _mm256_broadcast_ss(a + (i + 3) * k + p);
        c00 = _mm256_fmadd_ps(a0, b0, c00); c01 = _mm256_fmadd_ps(a0, b1, c01);
        c10 = _mm256_fmadd_ps(a1, b0, c10); c11 = _mm256_fmadd_ps(a1, b1, c11);
        c20 = _mm256_fmadd_ps(a2, b0, c20); c21 = _mm256_fmadd_ps(a2, b1, c21);
        c30 = _mm256_fmadd_ps(a3, b0, c30); c31 = _mm256_fmadd_ps(a3, b1, c31);
      }
      _mm256_storeu_ps(c + (i + 0) * n + j, c00); _mm256_storeu_ps(c + (i + 0) * n + j + 8, c01);
      _mm256_storeu_ps(c + (i + 1) * n + j, c10); _mm256_storeu_ps(c + (i + 1) * n + j + 8, c11);
      _mm256_storeu_ps(c + (i + 2) * n + j, c20); _mm256_storeu_ps(c + (i + 2) * n + j + 8, c21);
      _mm256_storeu_ps(c + (i + 3) * n + j, c30); _mm256_storeu_ps(c + (i + 3) * n + j + 8, c31);
    }
    for (; j < n; j++) {
      for (size_t r = 0; r < 4; r++) {
        float sum = 0;
        for (size_t p = 0; p < k; p++) sum += a[(i + r) * k + p] * b[p * n + j];
        c[(i + r) * n + j] = sum;
      }
    }
  }
  for (; i < row_end; i++) {
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
      __m256 acc = _mm256_setzero_ps();
      for (size_t p = 0; p < k; p++)
        acc = _mm256_fmadd_ps(_mm256_broadcast_ss(a + i * k + p), _mm256_loadu_ps(b + p * n + j), acc);
      _mm256_storeu_ps(c + i * n + j, acc);
    }
    for (; j < n; j++) {
      float sum = 0;
      for (size_t p = 0; p < k; p++) sum += a[i * k + p] * b[p * n + j];
      c[i * n + j] = sum;
    }
  }
}
#else
int tfmp_has_avx2_fma(void) { return 0; }
void tfmp_sgemm_avx2(const float *a, const float *b, float *c, size_t k, size_t n,
                     size_t row_begin, size_t row_end) {
  (void)a; (void)b; (void)c; (void)k; (void)n; (void)row_begin; (void)row_end;
}
#endif
