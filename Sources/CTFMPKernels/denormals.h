// Flush-to-zero and denormals-are-zero around a kernel, as TensorFlow runs its CPU kernels
// (`port::ScopedFlushDenormal`): subnormal operands and results cost a microcode assist of about
// a hundred cycles each, and TensorFlow's own outputs have none.
#ifndef CTFMP_DENORMALS_H
#define CTFMP_DENORMALS_H

#if defined(__x86_64__)
#include <immintrin.h>

static inline unsigned int tfmp_enter_flush_mode(void) {
  unsigned int saved = _mm_getcsr();
  _mm_setcsr(saved | 0x8040u);  // FTZ (bit 15) and DAZ (bit 6)
  return saved;
}

static inline void tfmp_leave_flush_mode(unsigned int saved) { _mm_setcsr(saved); }
#else
static inline unsigned int tfmp_enter_flush_mode(void) { return 0; }
static inline void tfmp_leave_flush_mode(unsigned int saved) { (void)saved; }
#endif

#endif
