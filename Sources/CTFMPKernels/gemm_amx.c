// Matrix products on Intel AMX (Sapphire Rapids and later) for operands whose elements are
// float16 or bfloat16 values, with float32 accumulation, as GPU Tensor Cores compute them.
//
// AMX's TDPBF16PS multiplies a 16 x 32 tile of bfloat16 (A, 16 rows of 16 pairs) by a 16 x 16
// tile of bfloat16 pairs (B) and adds each row's pairwise products into a 16 x 16 float32 tile.
// bfloat16 operands go in as they are. A float16 value x has 11 significant bits; it splits
// exactly into hi, its top 8 (x truncated to bfloat16), and lo = x - hi, the last 3, so
//   x y = hi_x hi_y + hi_x lo_y + lo_x hi_y + lo_x lo_y,
// four products that are each exact in float32. B is packed as pairs (hi_y, lo_y), A as pairs
// (hi_x, hi_x) and (lo_x, lo_x): two tile products per depth step give all four. An infinity
// would meet the zero lo of its partner (inf x 0 = NaN where the product is infinite), so split
// operands with a value that is not finite are reported and left to the float32 kernels. (AMX
// treats bfloat16 subnormals, below 1.2e-38, as zero; no half of a float16 value is one.)
//
// Layout: B is packed once (a weight is packed once per model) into column blocks of 16, each
// holding one tile per depth step (16 depth values when split, 32 otherwise). A is packed per
// call, a panel of MC rows and up to KC_TILES tiles of depth at a time, into the same kind of
// tiles; the 8 tile registers hold a 32 x 32 block of C (4 tiles), two A tiles and two B tiles.
#include "CTFMPKernels.h"
#include "scratch.h"

#include <string.h>

#if defined(__x86_64__) && defined(__linux__)
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { MC = 128, KC_TILES = 128, TILE_ELEMENTS = 512 /* bfloat16 in one 1 KiB tile */ };

int tfmp_has_amx(void) {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("amx-tile") || !__builtin_cpu_supports("amx-bf16") ||
      !__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw")) {
    return 0;
  }
  // Linux hands out the 8 KiB tile state only to processes that ask (ARCH_REQ_XCOMP_PERM for
  // XFEATURE_XTILEDATA).
  return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
}

// Depth values per tile step: 16 for split float16 operands, 32 (16 pairs) for bfloat16.
static size_t depth_per_step(int split) { return split ? 16 : 32; }

static size_t steps_for(size_t k, int split) { return (k + depth_per_step(split) - 1) / depth_per_step(split); }

size_t tfmp_amx_packed_b_count(size_t k, size_t n, int split) {
  return (n + 15) / 16 * steps_for(k, split) * TILE_ELEMENTS;
}

// float32 bit patterns to bfloat16 in the upper halves, rounded to nearest even (NaN kept quiet).
__attribute__((target("avx512f,avx512bw")))
static inline __m512i rounded_to_bfloat16(__m512i bits) {
  __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  __m512i rounded = _mm512_add_epi32(bits, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb));
  __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(bits, _mm512_set1_epi32(0x7fffffff)),
                                          _mm512_set1_epi32(0x7f800000));
  rounded = _mm512_mask_mov_epi32(rounded, nan, _mm512_or_si512(bits, _mm512_set1_epi32(0x400000)));
  return _mm512_and_si512(rounded, _mm512_set1_epi32((int)0xffff0000));
}

// The split of 16 values: hi (truncated; NaN made quiet) and lo = x - hi rounded (0 for
// non-finite x), both as bfloat16 in the upper halves of 32-bit lanes. Returns the lanes that
// are finite.
__attribute__((target("avx512f,avx512bw")))
static inline __mmask16 split16(__m512 x, __m512i *hi, __m512i *lo) {
  __m512i bits = _mm512_castps_si512(x);
  __m512i magnitude = _mm512_and_si512(bits, _mm512_set1_epi32(0x7fffffff));
  __mmask16 finite = _mm512_cmplt_epu32_mask(magnitude, _mm512_set1_epi32(0x7f800000));
  __mmask16 nan = _mm512_cmpgt_epu32_mask(magnitude, _mm512_set1_epi32(0x7f800000));
  __m512i top = _mm512_mask_or_epi32(bits, nan, bits, _mm512_set1_epi32(0x400000));
  *hi = _mm512_and_si512(top, _mm512_set1_epi32((int)0xffff0000));
  __m512 rest = _mm512_sub_ps(x, _mm512_castsi512_ps(*hi));
  *lo = _mm512_maskz_mov_epi32(finite, rounded_to_bfloat16(_mm512_castps_si512(rest)));
  return finite;
}

// 16 consecutive-or-strided floats from `source` (element q at source[q * stride]), zero from
// `count` on.
__attribute__((target("avx512f,avx512bw")))
static inline __m512 load16(const float *source, size_t stride, size_t count) {
  if (count >= 16 && stride == 1) return _mm512_loadu_ps(source);
  if (stride == 1) return _mm512_maskz_loadu_ps((__mmask16)((1u << count) - 1), source);
  float values[16] = {0};
  for (size_t q = 0; q < count && q < 16; q++) values[q] = source[q * stride];
  return _mm512_loadu_ps(values);
}

// Packs depth [0, k) x columns [0, n) of B (element (p, j) at b[p * rsb + j * csb]).
__attribute__((target("avx512f,avx512bw")))
int tfmp_amx_pack_b(size_t k, size_t n, const float *b, size_t rsb, size_t csb, int split, uint16_t *packed) {
  size_t steps = steps_for(k, split), per_step = depth_per_step(split);
  __mmask16 finite = 0xffff;
  for (size_t block = 0; block < (n + 15) / 16; block++) {
    size_t j0 = block * 16, width = n - j0 < 16 ? n - j0 : 16;
    for (size_t s = 0; s < steps; s++) {
      uint16_t *tile = packed + (block * steps + s) * TILE_ELEMENTS;
      for (size_t r = 0; r < 16; r++) {
        // Row r of the tile: 16 pairs, one per column.
        size_t p = s * per_step + (split ? r : 2 * r);
        __m512i first = _mm512_setzero_si512(), second = _mm512_setzero_si512();
        if (p < k) {
          __m512 row = load16(b + p * rsb + j0 * csb, csb, width);
          if (split) {
            finite &= split16(row, &first, &second);
          } else {
            first = rounded_to_bfloat16(_mm512_castps_si512(row));
            if (p + 1 < k) second = rounded_to_bfloat16(_mm512_castps_si512(load16(b + (p + 1) * rsb + j0 * csb, csb, width)));
          }
        }
        __m512i pairs = _mm512_or_si512(_mm512_srli_epi32(first, 16), second);
        _mm512_storeu_si512(tile + r * 32, pairs);
      }
    }
  }
  return finite == 0xffff ? 0 : 1;
}

// Packs rows [0, rows) and tile steps [first, first + steps) of A (element (i, p) at
// a[i * rsa + p * csa]) into tiles [row block][step][copy], zero past row `rows` and depth `k`.
// Returns 1 when split and a value is not finite (see above), else 0.
__attribute__((target("avx512f,avx512bw")))
static int pack_a(size_t rows, size_t k, size_t first, size_t steps, const float *a, size_t rsa, size_t csa,
                   int split, uint16_t *packed) {
  size_t copies = split ? 2 : 1, per_step = depth_per_step(split);
  __mmask16 finite = 0xffff;
  for (size_t block = 0; block < (rows + 15) / 16; block++) {
    for (size_t s = 0; s < steps; s++) {
      uint16_t *tile = packed + (block * steps + s) * copies * TILE_ELEMENTS;
      size_t p = (first + s) * per_step, depth = p < k ? k - p : 0;
      for (size_t r = 0; r < 16; r++) {
        size_t row = block * 16 + r;
        size_t count = row < rows ? depth : 0;
        const float *source = count ? a + row * rsa + p * csa : a;
        if (split) {
          __m512i hi, lo;
          finite &= split16(load16(source, csa, count), &hi, &lo);
          _mm512_storeu_si512(tile + r * 32, _mm512_or_si512(hi, _mm512_srli_epi32(hi, 16)));
          _mm512_storeu_si512(tile + TILE_ELEMENTS + r * 32, _mm512_or_si512(lo, _mm512_srli_epi32(lo, 16)));
        } else {
          __m512i low = rounded_to_bfloat16(_mm512_castps_si512(load16(source, csa, count)));
          __m512i high = rounded_to_bfloat16(
              _mm512_castps_si512(load16(count > 16 ? source + 16 * csa : source, csa, count > 16 ? count - 16 : 0)));
          _mm256_storeu_si256((__m256i *)(tile + r * 32), _mm512_cvtepi32_epi16(_mm512_srli_epi32(low, 16)));
          _mm256_storeu_si256((__m256i *)(tile + r * 32 + 16), _mm512_cvtepi32_epi16(_mm512_srli_epi32(high, 16)));
        }
      }
    }
  }
  return finite == 0xffff ? 0 : 1;
}

// A 32 x 32 block of C (tile registers 0-3, leading dimension ldc) = or += the A tiles of two
// row blocks (a0, a1; `copies` tiles per step) times the B tiles of two column blocks (b0, b1),
// over `steps` steps. `next`, when set, is the next column pair's B, fetched into cache meanwhile.
__attribute__((target("amx-tile,amx-bf16")))
static void block(const uint16_t *a0, const uint16_t *a1, const uint16_t *b0, const uint16_t *b1, size_t steps,
                  size_t copies, float *c, size_t ldc, int accumulate, const uint16_t *next, size_t next_offset) {
  size_t stride = ldc * sizeof(float);
  if (accumulate) {
    _tile_loadd(0, c, stride);
    _tile_loadd(1, c + 16, stride);
    _tile_loadd(2, c + 16 * ldc, stride);
    _tile_loadd(3, c + 16 * ldc + 16, stride);
  } else {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  }
  for (size_t s = 0; s < steps; s++) {
    _tile_loadd(6, b0 + s * TILE_ELEMENTS, 64);
    _tile_loadd(7, b1 + s * TILE_ELEMENTS, 64);
    if (next) {
      for (size_t line = 0; line < 16; line++) {
        _mm_prefetch((const char *)(next + s * TILE_ELEMENTS + line * 32), _MM_HINT_T0);
        _mm_prefetch((const char *)(next + next_offset + s * TILE_ELEMENTS + line * 32), _MM_HINT_T0);
      }
    }
    for (size_t copy = 0; copy < copies; copy++) {
      _tile_loadd(4, a0 + (s * copies + copy) * TILE_ELEMENTS, 64);
      _tile_loadd(5, a1 + (s * copies + copy) * TILE_ELEMENTS, 64);
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
  }
  _tile_stored(0, c, stride);
  _tile_stored(1, c + 16, stride);
  _tile_stored(2, c + 16 * ldc, stride);
  _tile_stored(3, c + 16 * ldc + 16, stride);
}

typedef struct {
  uint8_t palette, start_row, reserved[14];
  uint16_t bytes_per_row[16];
  uint8_t rows[16];
} tile_configuration;

__attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw")))
int tfmp_gemm_amx(size_t m, size_t n, size_t k, const float *a, size_t rsa, size_t csa, const uint16_t *packed_b,
                  int split, float *c, size_t ldc) {
  if (m == 0 || n == 0) return 0;
  size_t copies = split ? 2 : 1, steps = steps_for(k, split);
  size_t kc = KC_TILES / copies;
  uint16_t *panel = tfmp_scratch(MC / 16 * kc * copies * TILE_ELEMENTS * sizeof(uint16_t));
  if (panel == NULL) return -1;
  if (steps == 0) {
    for (size_t i = 0; i < m; i++) memset(c + i * ldc, 0, n * sizeof(float));
    return 0;
  }
  tile_configuration configuration;
  memset(&configuration, 0, sizeof configuration);
  configuration.palette = 1;
  for (int t = 0; t < 8; t++) {
    configuration.rows[t] = 16;
    configuration.bytes_per_row[t] = 64;
  }
  _tile_loadconfig(&configuration);
  float edge[32 * 32] __attribute__((aligned(64)));
  for (size_t i0 = 0; i0 < m; i0 += MC) {
    size_t rows = m - i0 < MC ? m - i0 : MC;
    for (size_t s0 = 0; s0 < steps; s0 += kc) {
      size_t depth = steps - s0 < kc ? steps - s0 : kc;
      if (pack_a(rows, k, s0, depth, a + i0 * rsa, rsa, csa, split, panel) != 0) {
        _tile_release();
        return 1;
      }
      size_t a_block = depth * copies * TILE_ELEMENTS, b_block = steps * TILE_ELEMENTS;
      for (size_t j = 0; j < n; j += 32) {
        const uint16_t *b0 = packed_b + j / 16 * b_block + s0 * TILE_ELEMENTS;
        const uint16_t *b1 = j + 16 < n ? b0 + b_block : b0;
        const uint16_t *next = j + 32 < n ? b0 + 2 * b_block : NULL;
        size_t next_offset = j + 48 < n ? b_block : 0;
        for (size_t i = 0; i < rows; i += 32) {
          const uint16_t *a0 = panel + i / 16 * a_block;
          const uint16_t *a1 = i + 16 < rows ? a0 + a_block : a0;
          float *target = c + (i0 + i) * ldc + j;
          const uint16_t *fetch = i == 0 ? next : NULL;
          if (i + 32 <= rows && j + 32 <= n) {
            block(a0, a1, b0, b1, depth, copies, target, ldc, s0 > 0, fetch, next_offset);
            continue;
          }
          // A partial block goes through `edge`.
          size_t height = rows - i < 32 ? rows - i : 32, width = n - j < 32 ? n - j : 32;
          if (s0 > 0) {
            for (size_t r = 0; r < height; r++) memcpy(edge + r * 32, target + r * ldc, width * sizeof(float));
          }
          block(a0, a1, b0, b1, depth, copies, edge, 32, s0 > 0, fetch, next_offset);
          for (size_t r = 0; r < height; r++) memcpy(target + r * ldc, edge + r * 32, width * sizeof(float));
        }
      }
    }
  }
  _tile_release();
  return 0;
}
#else
int tfmp_has_amx(void) { return 0; }
size_t tfmp_amx_packed_b_count(size_t k, size_t n, int split) {
  (void)k; (void)n; (void)split;
  return 0;
}
int tfmp_amx_pack_b(size_t k, size_t n, const float *b, size_t rsb, size_t csb, int split, uint16_t *packed) {
  (void)k; (void)n; (void)b; (void)rsb; (void)csb; (void)split; (void)packed;
  return 1;
}
int tfmp_gemm_amx(size_t m, size_t n, size_t k, const float *a, size_t rsa, size_t csa, const uint16_t *packed_b,
                  int split, float *c, size_t ldc) {
  (void)m; (void)n; (void)k; (void)a; (void)rsa; (void)csa; (void)packed_b; (void)split; (void)c; (void)ldc;
  return -1;
}
#endif
