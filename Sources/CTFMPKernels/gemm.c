// Single-precision matrix product for x86-64 with AVX2 and FMA. B is packed, 16 columns at a
// time, into a contiguous [k][16] panel (zero-padded past n); a 6x16 register tile (twelve
// 8-float accumulators) sweeps the rows of A over each panel. The Swift scalar kernel is the
// reference the tests compare with.
#include "CTFMPKernels.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

int tfmp_has_avx2_fma(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

// Stores 16 floats of a tile row, or only the first `width` of them.
__attribute__((target("avx2")))
static inline void store_row(float *c, __m256 low, __m256 high, size_t width) {
  if (width == 16) {
    _mm256_storeu_ps(c, low);
    _mm256_storeu_ps(c + 8, high);
    return;
  }
  float row[16];
  _mm256_storeu_ps(row, low);
  _mm256_storeu_ps(row + 8, high);
  memcpy(c, row, width * sizeof(float));
}

__attribute__((target("avx2,fma")))
void tfmp_sgemm_avx2(const float *a, const float *b, float *c, size_t k, size_t n,
                     size_t row_begin, size_t row_end) {
  float *panel = malloc((k > 0 ? k : 1) * 16 * sizeof(float));
  if (panel == NULL) return;
  for (size_t j0 = 0; j0 < n; j0 += 16) {
    size_t width = n - j0 < 16 ? n - j0 : 16;
    for (size_t p = 0; p < k; p++) {
      memcpy(panel + p * 16, b + p * n + j0, width * sizeof(float));
      for (size_t j = width; j < 16; j++) panel[p * 16 + j] = 0;
    }
    size_t i = row_begin;
    for (; i + 6 <= row_end; i += 6) {
      __m256 acc[6][2];
      for (int r = 0; r < 6; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
      const float *row0 = a + i * k;
      for (size_t p = 0; p < k; p++) {
        __m256 b0 = _mm256_loadu_ps(panel + p * 16);
        __m256 b1 = _mm256_loadu_ps(panel + p * 16 + 8);
        for (int r = 0; r < 6; r++) {
          __m256 value = _mm256_broadcast_ss(row0 + r * k + p);
          acc[r][0] = _mm256_fmadd_ps(value, b0, acc[r][0]);
          acc[r][1] = _mm256_fmadd_ps(value, b1, acc[r][1]);
        }
      }
      for (int r = 0; r < 6; r++) store_row(c + (i + r) * n + j0, acc[r][0], acc[r][1], width);
    }
    for (; i < row_end; i++) {
      __m256 low = _mm256_setzero_ps(), high = _mm256_setzero_ps();
      for (size_t p = 0; p < k; p++) {
        __m256 value = _mm256_broadcast_ss(a + i * k + p);
        low = _mm256_fmadd_ps(value, _mm256_loadu_ps(panel + p * 16), low);
        high = _mm256_fmadd_ps(value, _mm256_loadu_ps(panel + p * 16 + 8), high);
      }
      store_row(c + i * n + j0, low, high, width);
    }
  }
  free(panel);
}
#else
int tfmp_has_avx2_fma(void) { return 0; }
void tfmp_sgemm_avx2(const float *a, const float *b, float *c, size_t k, size_t n,
                     size_t row_begin, size_t row_end) {
  (void)a; (void)b; (void)c; (void)k; (void)n; (void)row_begin; (void)row_end;
}
#endif
