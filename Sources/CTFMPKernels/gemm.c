// Single-precision matrix product for x86-64, blocked for the caches, with an AVX-512 and an
// AVX2/FMA register tile.
//
// The depth is cut into blocks of KC (not cut when it is at most MAX_KC: each row of A then
// streams through once, which matters for the tall products of convolutions) and the columns
// into blocks small enough that a packed block of B stays in L2. Each block of B is packed, NR
// columns at a time, into depth-major panels (zero past the last column). MR rows of A (read in
// place when their elements are contiguous, else copied) stay in L1 while the MR x NR register
// tile runs along the B panels. The first depth block writes C, the others add to it. A product with fewer than FEW_ROWS rows
// (a batch-1 dense layer) instead streams B once, row by row, into a few rows of C: packing would
// move the weights twice for little arithmetic. The Swift scalar kernel is the reference the
// tests compare every path with.
#include "CTFMPKernels.h"
#include "denormals.h"
#include "scratch.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

enum {
  KC = 256, MAX_KC = 1152, L2_FLOATS = 262144, MC = 240, NC = 512, MAX_NR = 32, FEW_ROWS = 4, PREFETCH_ROWS = 4
};

int tfmp_has_avx2_fma(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

int tfmp_has_avx512(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f");
}

// A register tile: C (height x width of an mr x nr tile, leading dimension ldc) = or += the A
// panel (mr rows, row r at a + r * lda) x the packed B panel (row p at b + p * nr).
typedef void (*tile_function)(const float *a, size_t lda, const float *b, size_t depth, float *c, size_t ldc,
                              size_t height, size_t width, int accumulate);

// Writes `rows` x `width` results held in `buffer` (row stride MAX_NR) to C, or adds them.
static void store_partial(const float *buffer, size_t rows, size_t width, float *c, size_t ldc, int accumulate) {
  for (size_t r = 0; r < rows; r++) {
    float *row = c + r * ldc;
    for (size_t j = 0; j < width; j++) row[j] = accumulate ? row[j] + buffer[r * MAX_NR + j] : buffer[r * MAX_NR + j];
  }
}

// 6 x 16: twelve 8-float accumulators.
__attribute__((target("avx2,fma")))
static void tile_avx2(const float *a, size_t lda, const float *b, size_t depth, float *c, size_t ldc,
                      size_t height, size_t width, int accumulate) {
  enum { MR = 6 };
  __m256 acc[MR][2];
  for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (size_t p = 0; p < depth; p++) {
    __m256 b0 = _mm256_load_ps(b + p * 16);
    __m256 b1 = _mm256_load_ps(b + p * 16 + 8);
    for (int r = 0; r < MR; r++) {
      __m256 value = _mm256_broadcast_ss(a + r * lda + p);
      acc[r][0] = _mm256_fmadd_ps(value, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(value, b1, acc[r][1]);
    }
  }
  if (height == MR && width == 16) {
    for (int r = 0; r < MR; r++) {
      float *row = c + r * ldc;
      if (accumulate) {
        acc[r][0] = _mm256_add_ps(acc[r][0], _mm256_loadu_ps(row));
        acc[r][1] = _mm256_add_ps(acc[r][1], _mm256_loadu_ps(row + 8));
      }
      _mm256_storeu_ps(row, acc[r][0]);
      _mm256_storeu_ps(row + 8, acc[r][1]);
    }
    return;
  }
  float buffer[MR * MAX_NR];
  for (int r = 0; r < MR; r++) {
    _mm256_storeu_ps(buffer + r * MAX_NR, acc[r][0]);
    _mm256_storeu_ps(buffer + r * MAX_NR + 8, acc[r][1]);
  }
  store_partial(buffer, height, width, c, ldc, accumulate);
}

// 12 x 32: twenty-four 16-float accumulators.
__attribute__((target("avx512f")))
static void tile_avx512(const float *a, size_t lda, const float *b, size_t depth, float *c, size_t ldc,
                        size_t height, size_t width, int accumulate) {
  enum { MR = 12 };
  __m512 acc[MR][2];
  for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (size_t p = 0; p < depth; p++) {
    __m512 b0 = _mm512_load_ps(b + p * 32);
    __m512 b1 = _mm512_load_ps(b + p * 32 + 16);
    for (int r = 0; r < MR; r++) {
      __m512 value = _mm512_set1_ps(a[r * lda + p]);
      acc[r][0] = _mm512_fmadd_ps(value, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(value, b1, acc[r][1]);
    }
  }
  if (height == MR && width == 32) {
    for (int r = 0; r < MR; r++) {
      float *row = c + r * ldc;
      if (accumulate) {
        acc[r][0] = _mm512_add_ps(acc[r][0], _mm512_loadu_ps(row));
        acc[r][1] = _mm512_add_ps(acc[r][1], _mm512_loadu_ps(row + 16));
      }
      _mm512_storeu_ps(row, acc[r][0]);
      _mm512_storeu_ps(row + 16, acc[r][1]);
    }
    return;
  }
  float buffer[MR * MAX_NR];
  for (int r = 0; r < MR; r++) {
    _mm512_storeu_ps(buffer + r * MAX_NR, acc[r][0]);
    _mm512_storeu_ps(buffer + r * MAX_NR + 16, acc[r][1]);
  }
  store_partial(buffer, height, width, c, ldc, accumulate);
}

// Copies rows [0, rows) x depth [0, depth) of A (element (i, p) at a[i * rs + p * cs]) row by
// row into packed[i * depth + p], and zero rows after them up to `padded` rows.
static void pack_a(const float *a, size_t rs, size_t cs, size_t rows, size_t padded, size_t depth, float *packed) {
  for (size_t i = 0; i < rows; i++) {
    const float *source = a + i * rs;
    float *target = packed + i * depth;
    if (cs == 1) {
      memcpy(target, source, depth * sizeof(float));
    } else {
      for (size_t p = 0; p < depth; p++) target[p] = source[p * cs];
    }
  }
  memset(packed + rows * depth, 0, (padded - rows) * depth * sizeof(float));
}

// Packs depth [0, depth) x columns [0, columns) of B (element (p, j) at b[p * rs + j * cs],
// float32 values, or float16 bits when `half`) into panels of nr columns, each stored
// depth-major: panel[p * nr + j]. Row by row, so that contiguous rows of B are read in order.
// Float16 weights are widened exactly with F16C here, so they cross the memory bus at half the
// bytes. Both GEMM forms run on CPUs with AVX2, which all have F16C; the float16 form is used
// only when tfmp_has_f16c() is nonzero.
__attribute__((target("avx2,f16c")))
static void pack_b(const void *b, int half, size_t rs, size_t cs, size_t depth, size_t columns, size_t nr,
                   float *packed) {
  size_t panels = (columns + nr - 1) / nr, element = half ? 2 : 4;
  for (size_t p = 0; p < depth; p++) {
    const char *row = (const char *)b + p * rs * element;
    // Weights usually come from memory, not cache: ask for the row PREFETCH_ROWS ahead now.
    if (cs == 1 && p + PREFETCH_ROWS < depth) {
      for (size_t j = 0; j < columns * element; j += 64) __builtin_prefetch(row + PREFETCH_ROWS * rs * element + j);
    }
    for (size_t panel = 0; panel < panels; panel++) {
      float *target = packed + (panel * depth + p) * nr;
      size_t j0 = panel * nr, width = columns - j0 < nr ? columns - j0 : nr, j = 0;
      if (half) {
        const uint16_t *source = (const uint16_t *)row;
        for (; cs == 1 && j + 8 <= width; j += 8) {
          _mm256_storeu_ps(target + j, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(source + j0 + j))));
        }
        for (; j < width; j++) target[j] = _cvtsh_ss(source[(j0 + j) * cs]);
      } else if (cs == 1) {
        memcpy(target, (const float *)row + j0, width * sizeof(float));
      } else {
        for (; j < width; j++) target[j] = ((const float *)row)[(j0 + j) * cs];
      }
      for (j = width; j < nr; j++) target[j] = 0;
    }
  }
}

// C[m, n] = A x B for m < FEW_ROWS with B's rows contiguous: each row of B is read once and
// added, scaled, into every row of C (which stays in cache). The compiler vectorizes the inner
// loop for the target it is instantiated with.
#define FEW_ROWS_KERNEL(name, isa)                                                                          \
  __attribute__((target(isa))) static void name(size_t m, size_t n, size_t k, const float *a, size_t rsa,   \
                                                size_t csa, const float *b, size_t rsb, float *c, size_t ldc) { \
    for (size_t i = 0; i < m; i++) memset(c + i * ldc, 0, n * sizeof(float));                               \
    for (size_t p = 0; p < k; p++) {                                                                        \
      const float *row = b + p * rsb;                                                                       \
      for (size_t i = 0; i < m; i++) {                                                                      \
        float scale = a[i * rsa + p * csa];                                                                 \
        float *target = c + i * ldc;                                                                        \
        for (size_t j = 0; j < n; j++) target[j] += scale * row[j];                                         \
      }                                                                                                     \
    }                                                                                                       \
  }
FEW_ROWS_KERNEL(few_rows_avx2, "avx2,fma")
FEW_ROWS_KERNEL(few_rows_avx512, "avx512f")

typedef void (*few_rows_function)(size_t m, size_t n, size_t k, const float *a, size_t rsa, size_t csa,
                                  const float *b, size_t rsb, float *c, size_t ldc);

static int sgemm(tile_function tile, few_rows_function few_rows, size_t mr, size_t nr, size_t m, size_t n,
                 size_t k, const float *a, size_t rsa, size_t csa, const void *b, int b_half, size_t rsb, size_t csb,
                 float *c, size_t ldc) {
  if (m == 0 || n == 0) return 0;
  if (k == 0) {
    for (size_t i = 0; i < m; i++) memset(c + i * ldc, 0, n * sizeof(float));
    return 0;
  }
  if (m < FEW_ROWS && csb == 1 && !b_half) {
    few_rows(m, n, k, a, rsa, csa, b, rsb, c, ldc);
    return 0;
  }
  // A's rows are read in place when contiguous; else (and for a last panel of fewer than mr
  // rows) they are packed row by row.
  // The whole depth in one block when it is short (each row of A then streams through once);
  // the block of B narrowed so that it stays within L2.
  size_t kc = k <= MAX_KC ? k : KC;
  size_t block_columns = L2_FLOATS / kc / nr * nr;
  size_t nc_limit = block_columns < nr ? nr : (block_columns > NC ? NC : block_columns);
  size_t nc = n < nc_limit ? n : nc_limit, mc = csa == 1 ? 0 : (m < MC ? m : MC);
  size_t b_size = (nc + nr - 1) / nr * nr * kc, a_size = (mc + mr) * kc;
  float *packed_b = tfmp_scratch((b_size + a_size) * sizeof(float));
  if (packed_b == NULL) return -1;
  float *packed_a = packed_b + b_size, *tail = packed_a + mc * kc;
  for (size_t jc = 0; jc < n; jc += nc_limit) {
    size_t columns = n - jc < nc_limit ? n - jc : nc_limit;
    for (size_t pc = 0; pc < k; pc += kc) {
      size_t depth = k - pc < kc ? k - pc : kc;
      size_t element = b_half ? 2 : 4;
      pack_b((const char *)b + (pc * rsb + jc * csb) * element, b_half, rsb, csb, depth, columns, nr, packed_b);
      for (size_t ic = 0; ic < m; ic += MC) {
        size_t rows = m - ic < MC ? m - ic : MC;
        const float *block_a = a + ic * rsa + pc * csa;
        size_t lda = rsa;
        if (csa != 1) {
          pack_a(block_a, rsa, csa, rows, rows, depth, packed_a);
          block_a = packed_a;
          lda = depth;
        }
        for (size_t ir = 0; ir < rows; ir += mr) {
          size_t height = rows - ir < mr ? rows - ir : mr;
          const float *panel_a = block_a + ir * lda;
          size_t panel_lda = lda;
          if (height < mr) {
            pack_a(panel_a, lda, 1, height, mr, depth, tail);
            panel_a = tail;
            panel_lda = depth;
          }
          for (size_t jr = 0; jr < columns; jr += nr) {
            size_t width = columns - jr < nr ? columns - jr : nr;
            tile(panel_a, panel_lda, packed_b + jr / nr * depth * nr, depth, c + (ic + ir) * ldc + jc + jr, ldc,
                 height, width, pc > 0);
          }
        }
      }
    }
  }
  return 0;
}

int tfmp_sgemm_avx2(size_t m, size_t n, size_t k, const float *a, size_t rsa, size_t csa, const void *b,
                    int b_half, size_t rsb, size_t csb, float *c, size_t ldc) {
  unsigned int mode = tfmp_enter_flush_mode();
  int status = sgemm(tile_avx2, few_rows_avx2, 6, 16, m, n, k, a, rsa, csa, b, b_half, rsb, csb, c, ldc);
  tfmp_leave_flush_mode(mode);
  return status;
}

int tfmp_sgemm_avx512(size_t m, size_t n, size_t k, const float *a, size_t rsa, size_t csa, const void *b,
                      int b_half, size_t rsb, size_t csb, float *c, size_t ldc) {
  unsigned int mode = tfmp_enter_flush_mode();
  int status = sgemm(tile_avx512, few_rows_avx512, 12, 32, m, n, k, a, rsa, csa, b, b_half, rsb, csb, c, ldc);
  tfmp_leave_flush_mode(mode);
  return status;
}
#else
int tfmp_has_avx2_fma(void) { return 0; }
int tfmp_has_avx512(void) { return 0; }
int tfmp_sgemm_avx2(size_t m, size_t n, size_t k, const float *a, size_t rsa, size_t csa, const void *b, int b_half,
                    size_t rsb, size_t csb, float *c, size_t ldc) {
  (void)m; (void)n; (void)k; (void)a; (void)rsa; (void)csa; (void)b; (void)b_half; (void)rsb; (void)csb; (void)c;
  (void)ldc;
  return -1;
}
int tfmp_sgemm_avx512(size_t m, size_t n, size_t k, const float *a, size_t rsa, size_t csa, const void *b,
                      int b_half, size_t rsb, size_t csb, float *c, size_t ldc) {
  (void)m; (void)n; (void)k; (void)a; (void)rsa; (void)csa; (void)b; (void)b_half; (void)rsb; (void)csb; (void)c;
  (void)ldc;
  return -1;
}
#endif
