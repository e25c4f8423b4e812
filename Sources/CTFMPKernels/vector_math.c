// exp, erf and erfc of float32 arrays in loops the compiler vectorizes: branch-free formulas,
// compiled for AVX-512, AVX2/FMA and the baseline x86-64 (SSE2), the widest chosen at run time.
//
// exp: n = round(x / ln 2), r = x - n ln 2 (ln 2 split in two parts so r is exact to float32),
// e^r by its Taylor polynomial of degree 7 (truncation below 6e-9 relative on |r| <= ln2 / 2),
// scaled by 2^n in two factors. Within 2 ulps of the correctly rounded value; overflow gives
// infinity, NaN stays NaN, and results below 2^-126 are flushed to 0 (see denormals.h).
//
// erf and erfc: for |x| < 0.5, erf by its Maclaurin series (a few ulps) and erfc = 1 - erf; else
// erfc(|x|) = t P(t) e^(-x^2), t = 1 / (1 + p |x|), with the coefficients of Abramowitz and
// Stegun 7.1.26 (absolute error below 1.5e-7), erf(x) = sign(x) (1 - erfc(|x|)) and
// erfc(x) = 2 - erfc(|x|) for negative x. Absolute error below 3e-7 throughout.
#include "CTFMPKernels.h"
#include "denormals.h"

#include <math.h>
#include <string.h>

static inline float bits_to_float(unsigned int bits) {
  float value;
  memcpy(&value, &bits, sizeof value);
  return value;
}

static inline float exp_one(float x) {
  const float log2e = 1.44269504088896341f, ln2_high = 0.693145751953125f, ln2_low = 1.42860682030941723e-6f;
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  float clamped = x > 88.8f ? 88.8f : (x < -104.0f ? -104.0f : (x != x ? 0.0f : x));
  float shifted = clamped * log2e + shifter;
  float n = shifted - shifter;
  float r = (clamped - n * ln2_high) - n * ln2_low;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int exponent = (int)n;                     // within [-150, 128]
  int half = exponent / 2;                   // each factor 2^half, 2^(exponent - half) is normal
  float first = bits_to_float((unsigned int)(half + 127) << 23);
  float second = bits_to_float((unsigned int)(exponent - half + 127) << 23);
  float result = p * first * second;
  result = x > 88.8f ? bits_to_float(0x7F800000u) : result;   // overflow
  result = x < -104.0f ? 0.0f : result;                       // underflow
  return x != x ? x : result;                                 // NaN
}

// erfc(|x|) for |x| >= 0.5.
static inline float erfc_tail(float x) {
  float z = x < 0 ? -x : x;
  float t = 1.0f / (1.0f + 0.3275911f * z);
  float p = 1.061405429f;
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496739f;
  p = p * t + 0.254829592f;
  return t * p * exp_one(-z * z);
}

// erf(x) for |x| < 0.5: its Maclaurin series to x^13 (truncation below 1e-9).
static inline float erf_small(float x) {
  float x2 = x * x;
  float p = -1.0f / 9360.0f;
  p = p * x2 + 1.0f / 1320.0f;
  p = p * x2 - 1.0f / 216.0f;
  p = p * x2 + 1.0f / 42.0f;
  p = p * x2 - 1.0f / 10.0f;
  p = p * x2 + 1.0f / 3.0f;
  p = p * x2 - 1.0f;
  return -1.12837916709551257f * x * p;  // 2 / sqrt(pi)
}

static inline float erf_one(float v) {
  float tail = erfc_tail(v), small = erf_small(v);
  float large = v < 0 ? tail - 1.0f : 1.0f - tail;
  return (v < 0.5f && v > -0.5f) || v != v ? small : large;
}

static inline float erfc_one(float v) {
  float tail = erfc_tail(v), small = 1.0f - erf_small(v);
  float large = v < 0 ? 2.0f - tail : tail;
  return v != v ? v : (v < 0.5f && v > -0.5f ? small : large);
}

// y = f(x) elementwise, 64 values at a time into a local buffer, so that the loop vectorizes even
// when y is x (the compiler cannot rule out a partial overlap of two pointers).
#define BLOCKED(name, function, attributes)                                                            \
  attributes static void name(const float *x, float *y, size_t count) {                               \
    float block[64];                                                                                   \
    for (size_t start = 0; start < count; start += 64) {                                              \
      size_t length = count - start < 64 ? count - start : 64;                                         \
      for (size_t i = 0; i < length; i++) block[i] = function(x[start + i]);                           \
      memcpy(y + start, block, length * sizeof(float));                                                \
    }                                                                                                  \
  }

// Softmax (or log-softmax) of `rows` rows of `width` values: the row's largest value, taken
// out before exp; partial maxima and sums in 16 lanes, so that the loops vectorize. A NaN in a
// row makes the whole row NaN.
#define SOFTMAX(name, attributes)                                                                     \
  attributes static void name(const float *restrict x, float *restrict y, size_t rows, size_t width, \
                              int logarithm) {                                                       \
    for (size_t row = 0; row < rows; row++, x += width, y += width) {                                \
      float lanes[16], largest = -__builtin_inff(), total = 0.0f;                                    \
      size_t i = 0;                                                                                  \
      for (int l = 0; l < 16; l++) lanes[l] = -__builtin_inff();                                     \
      for (; i + 16 <= width; i += 16)                                                               \
        for (int l = 0; l < 16; l++) lanes[l] = x[i + l] > lanes[l] ? x[i + l] : lanes[l];           \
      for (; i < width; i++) largest = x[i] > largest ? x[i] : largest;                              \
      for (int l = 0; l < 16; l++) largest = lanes[l] > largest ? lanes[l] : largest;                \
      for (i = 0; i < width; i++) y[i] = exp_one(x[i] - largest);                                   \
      for (int l = 0; l < 16; l++) lanes[l] = 0.0f;                                                  \
      for (i = 0; i + 16 <= width; i += 16)                                                          \
        for (int l = 0; l < 16; l++) lanes[l] += y[i + l];                                           \
      for (; i < width; i++) total += y[i];                                                          \
      for (int l = 0; l < 16; l++) total += lanes[l];                                                \
      if (logarithm) {                                                                               \
        float shift = logf(total) + largest;                                                         \
        for (i = 0; i < width; i++) y[i] = x[i] - shift;                                             \
      } else {                                                                                       \
        float scale = 1.0f / total;                                                                  \
        for (i = 0; i < width; i++) y[i] *= scale;                                                   \
      }                                                                                              \
    }                                                                                                \
  }

#define VECTOR_MATH(suffix, attributes)         \
  BLOCKED(exp_##suffix, exp_one, attributes)    \
  BLOCKED(erf_##suffix, erf_one, attributes)    \
  BLOCKED(erfc_##suffix, erfc_one, attributes)  \
  SOFTMAX(softmax_##suffix, attributes)

#if defined(__x86_64__)
VECTOR_MATH(avx512, __attribute__((target("avx512f"))))
VECTOR_MATH(avx2, __attribute__((target("avx2,fma"))))
#endif
VECTOR_MATH(baseline, )

typedef void (*vector_function)(const float *, float *, size_t);

static vector_function choose(vector_function avx512, vector_function avx2, vector_function baseline) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return avx2;
#else
  (void)avx512;
  (void)avx2;
#endif
  return baseline;
}

#if defined(__x86_64__)
#define CHOOSE(name) choose(name##_avx512, name##_avx2, name##_baseline)
#else
#define CHOOSE(name) choose(name##_baseline, name##_baseline, name##_baseline)
#endif

typedef void (*softmax_function)(const float *, float *, size_t, size_t, int);

// Chosen once, when the library loads (asking the CPU on every call costs a virtual machine exit).
static vector_function chosen_exp, chosen_erf, chosen_erfc;
static softmax_function chosen_softmax;

__attribute__((constructor)) static void choose_vector_math(void) {
  chosen_exp = CHOOSE(exp);
  chosen_erf = CHOOSE(erf);
  chosen_erfc = CHOOSE(erfc);
#if defined(__x86_64__)
  __builtin_cpu_init();
  chosen_softmax = __builtin_cpu_supports("avx512f") ? softmax_avx512
      : (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? softmax_avx2 : softmax_baseline);
#else
  chosen_softmax = softmax_baseline;
#endif
}

void tfmp_softmax_f32(const float *x, float *y, size_t rows, size_t width, int logarithm) {
  unsigned int mode = tfmp_enter_flush_mode();
  chosen_softmax(x, y, rows, width, logarithm);
  tfmp_leave_flush_mode(mode);
}

void tfmp_exp_f32(const float *x, float *y, size_t count) {
  unsigned int mode = tfmp_enter_flush_mode();
  chosen_exp(x, y, count);
  tfmp_leave_flush_mode(mode);
}

void tfmp_erf_f32(const float *x, float *y, size_t count) {
  unsigned int mode = tfmp_enter_flush_mode();
  chosen_erf(x, y, count);
  tfmp_leave_flush_mode(mode);
}

void tfmp_erfc_f32(const float *x, float *y, size_t count) {
  unsigned int mode = tfmp_enter_flush_mode();
  chosen_erfc(x, y, count);
  tfmp_leave_flush_mode(mode);
}
