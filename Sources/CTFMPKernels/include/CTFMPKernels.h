#ifndef CTFMP_KERNELS_H
#define CTFMP_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/// Whether this CPU has the SSE4.2 CRC32 instruction (checked once, at run time).
int tfmp_has_crc32c_instruction(void);

/// Extends the raw (not inverted) CRC-32C state `crc` over `count` bytes at `bytes` with the
/// SSE4.2 instruction. Call only when tfmp_has_crc32c_instruction() returns nonzero.
uint32_t tfmp_crc32c_update_sse42(uint32_t crc, const void *bytes, size_t count);

/// Whether this CPU has F16C and AVX2 (checked once, at run time).
int tfmp_has_f16c(void);

/// Rounds `count` little-endian float32 values to float16 (nearest, ties to even) with F16C.
/// Call only when tfmp_has_f16c() returns nonzero.
void tfmp_float32_to_float16_f16c(const void *source, void *destination, size_t count);

/// Rounds `count` little-endian float32 values to bfloat16 (nearest, ties to even; NaN stays a
/// quiet NaN with its sign) with AVX2. Call only when tfmp_has_f16c() returns nonzero.
void tfmp_float32_to_bfloat16_avx2(const void *source, void *destination, size_t count);

/// Widens `count` float16 values (their bits) to float32, exactly, with F16C. Call only when
/// tfmp_has_f16c() returns nonzero.
void tfmp_float16_to_float32_f16c(const uint16_t *source, float *destination, size_t count);

/// Rounds `count` float32 values in place to the nearest float16 (ties to even) and back, with
/// F16C: the values a float16 tensor holds. Call only when tfmp_has_f16c() returns nonzero.
void tfmp_round_to_float16_f16c(float *values, size_t count);

/// Rounds `count` float32 values in place to the nearest bfloat16 (ties to even; NaN stays a
/// quiet NaN with its sign) and back, with AVX2. Call only when tfmp_has_f16c() returns nonzero.
void tfmp_round_to_bfloat16_avx2(float *values, size_t count);

/// Counts of float32 values by the class rounding gives them (see TensorCore's RangeCounts).
typedef struct {
  uint64_t overflow;
  uint64_t flush_to_zero;
  uint64_t subnormal;
  uint64_t non_finite;
  uint32_t largest_magnitude_bits;
} tfmp_range_counts;

/// Classifies `count` little-endian float32 values against magnitude thresholds (bit patterns):
/// at or above `overflow` (finite) overflow; nonzero at or below `flush` flush to zero; above
/// `flush` and below `normal` subnormal. Uses AVX2; call only when tfmp_has_f16c() is nonzero.
tfmp_range_counts tfmp_range_counts_avx2(
    const void *source, size_t count, uint32_t overflow, uint32_t flush, uint32_t normal);

/// Whether this CPU has AVX2 and FMA (checked once, at run time).
int tfmp_has_avx2_fma(void);

/// Whether this CPU has AVX-512F (checked once, at run time).
int tfmp_has_avx512(void);

/// C[m, n] = A[m, k] x B[k, n], accumulating in float32. Element (i, p) of A is at
/// a[i * rsa + p * csa], element (p, j) of B at b[p * rsb + j * csb] (so either operand may be
/// transposed in place); B holds float32 values, or with `b_half` nonzero float16 bits (widened
/// exactly; needs F16C). C is row-major with leading dimension ldc. Returns 0, or -1 when
/// scratch memory could not be allocated (C is then incomplete). The AVX2/FMA form may be called
/// only when tfmp_has_avx2_fma() is nonzero, the AVX-512 form when tfmp_has_avx512() is.
int tfmp_sgemm_avx2(size_t m, size_t n, size_t k, const float *a, size_t rsa, size_t csa, const void *b,
                    int b_half, size_t rsb, size_t csb, float *c, size_t ldc);
int tfmp_sgemm_avx512(size_t m, size_t n, size_t k, const float *a, size_t rsa, size_t csa, const void *b,
                      int b_half, size_t rsb, size_t csb, float *c, size_t ldc);

/// Whether this CPU has AMX with bfloat16 tiles (and AVX-512BW) and the process may use it (on
/// Linux the tile state is requested from the kernel here). Call once, before the functions below.
int tfmp_has_amx(void);

/// The number of uint16 elements tfmp_amx_pack_b writes for a k x n B: whole 16-column blocks,
/// so the blocks of columns [j, n) for j a multiple of 16 start at tfmp_amx_packed_b_count(k, j, split).
size_t tfmp_amx_packed_b_count(size_t k, size_t n, int split);

/// Packs B (element (p, j) at b[p * rsb + j * csb]) into bfloat16 tiles for tfmp_gemm_amx: as
/// bfloat16 (rounded to nearest even), or with `split` nonzero as exact hi/lo bfloat16 pairs of
/// values that are float16 values (any float32 value is then within 2^-16 relative). Returns 1
/// when split and some value is not finite: the packing must not be used (a product with an
/// infinity needs the float32 kernels); else 0.
int tfmp_amx_pack_b(size_t k, size_t n, const float *b, size_t rsb, size_t csb, int split, uint16_t *packed);

/// C[m, n] = A[m, k] x B with float32 accumulation on AMX, B packed by tfmp_amx_pack_b for this k
/// and `split` (starting at the first of these n columns, a multiple of 16 into the packed B). A
/// (element (i, p) at a[i * rsa + p * csa]) is rounded to bfloat16, or split like B. Returns 0;
/// 1 when split and a value of A is not finite (C is then incomplete: use the float32 kernels);
/// -1 when scratch memory could not be allocated. Call only when tfmp_has_amx() returned 1.
int tfmp_gemm_amx(size_t m, size_t n, size_t k, const float *a, size_t rsa, size_t csa, const uint16_t *packed_b,
                  int split, float *c, size_t ldc);

/// Makes glibc's allocator serve every block from its heap and keep freed memory for reuse
/// (no mmap per large block, no trimming), process-wide; does nothing on other C libraries.
void tfmp_keep_freed_memory(void);

/// y[i] = e^x[i] for `count` float32 values (within 2 ulps; infinity on overflow, 0 below
/// -104, NaN stays NaN), vectorized for the widest instruction set this CPU has.
void tfmp_exp_f32(const float *x, float *y, size_t count);

/// y[i] = erf(x[i]) and erfc(x[i]) for `count` float32 values (absolute error below 2e-7),
/// vectorized like tfmp_exp_f32.
void tfmp_erf_f32(const float *x, float *y, size_t count);
void tfmp_erfc_f32(const float *x, float *y, size_t count);

/// The softmax over each of `rows` rows of `width` float32 values (with `logarithm` nonzero, the
/// log-softmax), vectorized like tfmp_exp_f32. `x` and `y` must not overlap.
void tfmp_softmax_f32(const float *x, float *y, size_t rows, size_t width, int logarithm);

#endif
