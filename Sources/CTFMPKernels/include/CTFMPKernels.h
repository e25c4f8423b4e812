#ifndef CTFMP_KERNELS_H
#define CTFMP_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/// Whether this CPU has the SSE4.2 CRC32 instruction (checked once, at run time).
int tfmp_has_crc32c_instruction(void);

/// Extends the raw (not inverted) CRC-32C state `crc` over `count` bytes at `bytes` with the
/// SSE4.2 instruction. Call only when tfmp_has_crc32c_instruction() returns nonzero.
uint32_t tfmp_crc32c_update_sse42(uint32_t crc, const void *bytes, size_t count);

#endif
