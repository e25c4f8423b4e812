// float32 -> float16 / bfloat16 conversion for x86-64 CPUs with F16C and AVX2, at memory speed.
// The functions carry their own target attributes and are chosen at run time; the portable Swift
// code in TensorCore is the fallback and the reference the tests compare these against.
#include "CTFMPKernels.h"

#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

int tfmp_has_f16c(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx2");
}

__attribute__((target("f16c,avx2")))
void tfmp_float32_to_float16_f16c(const void *source, void *destination, size_t count) {
  const unsigned char *in = (const unsigned char *)source;
  unsigned char *out = (unsigned char *)destination;
  size_t i = 0;
  for (; i + 8 <= count; i += 8) {
    __m256 values = _mm256_loadu_ps((const float *)(in + 4 * i));
    __m128i halves = _mm256_cvtps_ph(values, _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128((__m128i *)(out + 2 * i), halves);
  }
  for (; i < count; i++) {
    float value;
    memcpy(&value, in + 4 * i, 4);
    __m128i half = _mm_cvtps_ph(_mm_set_ss(value), _MM_FROUND_TO_NEAREST_INT);
    unsigned short bits = (unsigned short)_mm_extract_epi16(half, 0);
    memcpy(out + 2 * i, &bits, 2);
  }
}

static inline unsigned short bfloat16_bits(unsigned int bits) {
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return (unsigned short)((bits >> 16) | 0x0040u);
  return (unsigned short)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

__attribute__((target("avx2")))
void tfmp_float32_to_bfloat16_avx2(const void *source, void *destination, size_t count) {
  const unsigned char *in = (const unsigned char *)source;
  unsigned char *out = (unsigned char *)destination;
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i bias = _mm256_set1_epi32(0x7FFF);
  const __m256i magnitude_mask = _mm256_set1_epi32(0x7FFFFFFF);
  const __m256i infinity = _mm256_set1_epi32(0x7F800000);
  const __m256i quiet = _mm256_set1_epi32(0x0040);
  size_t i = 0;
  for (; i + 16 <= count; i += 16) {
    __m256i packed[2];
    for (int half = 0; half < 2; half++) {
      __m256i bits = _mm256_loadu_si256((const __m256i *)(in + 4 * (i + 8 * half)));
      __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), one);
      __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(bits, _mm256_add_epi32(bias, lsb)), 16);
      __m256i nan_bits = _mm256_or_si256(_mm256_srli_epi32(bits, 16), quiet);
      __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(bits, magnitude_mask), infinity);
      packed[half] = _mm256_blendv_epi8(rounded, nan_bits, is_nan);
    }
    // packus works per 128-bit lane; the permute puts the eight 64-bit pieces back in order.
    __m256i both = _mm256_packus_epi32(packed[0], packed[1]);
    both = _mm256_permute4x64_epi64(both, 0xD8);
    _mm256_storeu_si256((__m256i *)(out + 2 * i), both);
  }
  for (; i < count; i++) {
    unsigned int bits;
    memcpy(&bits, in + 4 * i, 4);
    unsigned short result = bfloat16_bits(bits);
    memcpy(out + 2 * i, &result, 2);
  }
}
__attribute__((target("f16c,avx2")))
void tfmp_float16_to_float32_f16c(const uint16_t *source, float *destination, size_t count) {
  size_t i = 0;
  for (; i + 8 <= count; i += 8) {
    _mm256_storeu_ps(destination + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(source + i))));
  }
  for (; i < count; i++) destination[i] = _cvtsh_ss(source[i]);
}

__attribute__((target("f16c,avx2")))
void tfmp_round_to_float16_f16c(float *values, size_t count) {
  size_t i = 0;
  for (; i + 8 <= count; i += 8) {
    __m128i halves = _mm256_cvtps_ph(_mm256_loadu_ps(values + i), _MM_FROUND_TO_NEAREST_INT);
    _mm256_storeu_ps(values + i, _mm256_cvtph_ps(halves));
  }
  for (; i < count; i++) {
    __m128i half = _mm_cvtps_ph(_mm_set_ss(values[i]), _MM_FROUND_TO_NEAREST_INT);
    values[i] = _mm_cvtss_f32(_mm_cvtph_ps(half));
  }
}

__attribute__((target("avx2")))
void tfmp_round_to_bfloat16_avx2(float *values, size_t count) {
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i bias = _mm256_set1_epi32(0x7FFF);
  const __m256i high = _mm256_set1_epi32((int)0xFFFF0000u);
  const __m256i magnitude_mask = _mm256_set1_epi32(0x7FFFFFFF);
  const __m256i infinity = _mm256_set1_epi32(0x7F800000);
  const __m256i quiet = _mm256_set1_epi32(0x00400000);
  size_t i = 0;
  for (; i + 8 <= count; i += 8) {
    __m256i bits = _mm256_loadu_si256((const __m256i *)(values + i));
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), one);
    __m256i rounded = _mm256_and_si256(_mm256_add_epi32(bits, _mm256_add_epi32(bias, lsb)), high);
    __m256i nan_bits = _mm256_and_si256(_mm256_or_si256(bits, quiet), high);
    __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(bits, magnitude_mask), infinity);
    _mm256_storeu_si256((__m256i *)(values + i), _mm256_blendv_epi8(rounded, nan_bits, is_nan));
  }
  for (; i < count; i++) {
    unsigned int bits;
    memcpy(&bits, values + i, 4);
    bits = (unsigned int)bfloat16_bits(bits) << 16;
    memcpy(values + i, &bits, 4);
  }
}

__attribute__((target("avx2")))
static inline uint64_t lane_sum(__m256i counts) {
  uint32_t lanes[8];
  _mm256_storeu_si256((__m256i *)lanes, counts);
  uint64_t total = 0;
  for (int i = 0; i < 8; i++) total += lanes[i];
  return total;
}

__attribute__((target("avx2")))
tfmp_range_counts tfmp_range_counts_avx2(
    const void *source, size_t count, uint32_t overflow, uint32_t flush, uint32_t normal) {
  const unsigned char *in = (const unsigned char *)source;
  tfmp_range_counts result = {0, 0, 0, 0, 0};
  const __m256i magnitude_mask = _mm256_set1_epi32(0x7FFFFFFF);
  const __m256i zero = _mm256_setzero_si256();
  // Magnitudes are below 2^31, so signed compares are exact. "x >= t" is "x > t - 1".
  const __m256i infinity_minus_one = _mm256_set1_epi32(0x7F800000 - 1);
  const __m256i overflow_minus_one = _mm256_set1_epi32((int)overflow - 1);
  const __m256i flush_bound = _mm256_set1_epi32((int)flush);
  const __m256i normal_bound = _mm256_set1_epi32((int)normal);
  size_t i = 0;
  while (i + 8 <= count) {
    // Lane counters are 32-bit; flush them to the totals every 2^24 vectors.
    __m256i c_overflow = zero, c_flush = zero, c_subnormal = zero, c_nonfinite = zero, largest = zero;
    size_t end = count - (count - i) % 8;
    if (end - i > ((size_t)1 << 27)) end = i + ((size_t)1 << 27);
    for (; i < end; i += 8) {
      __m256i bits = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(in + 4 * i)), magnitude_mask);
      __m256i nonfinite = _mm256_cmpgt_epi32(bits, infinity_minus_one);
      __m256i finite_bits = _mm256_andnot_si256(nonfinite, bits);
      __m256i over = _mm256_andnot_si256(nonfinite, _mm256_cmpgt_epi32(bits, overflow_minus_one));
      __m256i at_most_flush = _mm256_cmpgt_epi32(_mm256_add_epi32(flush_bound, _mm256_set1_epi32(1)), bits);
      __m256i nonzero = _mm256_xor_si256(_mm256_cmpeq_epi32(bits, zero), _mm256_set1_epi32(-1));
      __m256i flushed = _mm256_and_si256(at_most_flush, nonzero);
      __m256i sub = _mm256_andnot_si256(at_most_flush, _mm256_cmpgt_epi32(normal_bound, bits));
      c_nonfinite = _mm256_sub_epi32(c_nonfinite, nonfinite);
      c_overflow = _mm256_sub_epi32(c_overflow, over);
      c_flush = _mm256_sub_epi32(c_flush, flushed);
      c_subnormal = _mm256_sub_epi32(c_subnormal, sub);
      largest = _mm256_max_epu32(largest, finite_bits);
    }
    result.non_finite += lane_sum(c_nonfinite);
    result.overflow += lane_sum(c_overflow);
    result.flush_to_zero += lane_sum(c_flush);
    result.subnormal += lane_sum(c_subnormal);
    uint32_t lanes[8];
    _mm256_storeu_si256((__m256i *)lanes, largest);
    for (int lane = 0; lane < 8; lane++)
      if (lanes[lane] > result.largest_magnitude_bits) result.largest_magnitude_bits = lanes[lane];
  }
  for (; i < count; i++) {
    uint32_t bits;
    memcpy(&bits, in + 4 * i, 4);
    bits &= 0x7FFFFFFFu;
    if (bits >= 0x7F800000u) { result.non_finite++; continue; }
    if (bits > result.largest_magnitude_bits) result.largest_magnitude_bits = bits;
    if (bits >= overflow) result.overflow++;
    else if (bits <= flush) { if (bits != 0) result.flush_to_zero++; }
    else if (bits < normal) result.subnormal++;
  }
  return result;
}
#else
int tfmp_has_f16c(void) { return 0; }
void tfmp_float32_to_float16_f16c(const void *source, void *destination, size_t count) {
  (void)source; (void)destination; (void)count;
}
void tfmp_float32_to_bfloat16_avx2(const void *source, void *destination, size_t count) {
  (void)source; (void)destination; (void)count;
}
void tfmp_float16_to_float32_f16c(const uint16_t *source, float *destination, size_t count) {
  (void)source; (void)destination; (void)count;
}
void tfmp_round_to_float16_f16c(float *values, size_t count) { (void)values; (void)count; }
void tfmp_round_to_bfloat16_avx2(float *values, size_t count) { (void)values; (void)count; }
tfmp_range_counts tfmp_range_counts_avx2(
    const void *source, size_t count, uint32_t overflow, uint32_t flush, uint32_t normal) {
  (void)source; (void)count; (void)overflow; (void)flush; (void)normal;
  tfmp_range_counts none = {0, 0, 0, 0, 0};
  return none;
}
#endif
