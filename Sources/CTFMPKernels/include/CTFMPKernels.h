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

#endif
