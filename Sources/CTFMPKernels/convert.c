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
#else
int tfmp_has_f16c(void) { return 0; }
void tfmp_float32_to_float16_f16c(const void *source, void *destination, size_t count) {
  (void)source; (void)destination; (void)count;
}
void tfmp_float32_to_bfloat16_avx2(const void *source, void *destination, size_t count) {
  (void)source; (void)destination; (void)count;
}
#endif
