// Hardware CRC-32C for x86-64 (SSE4.2 `crc32` instruction). The functions carry their own target
// attribute, so the package builds for any x86-64 CPU and picks this path at run time; other
// architectures get stubs and use the portable Swift implementation.
#include "CTFMPKernels.h"

#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>

int tfmp_has_crc32c_instruction(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.2");
}

__attribute__((target("sse4.2")))
uint32_t tfmp_crc32c_update_sse42(uint32_t crc, const void *bytes, size_t count) {
  const unsigned char *p = (const unsigned char *)bytes;
  uint64_t state = crc;
  while (count >= 8) {
    uint64_t word;
    memcpy(&word, p, 8);  // unaligned little-endian load
    state = _mm_crc32_u64(state, word);
    p += 8;
    count -= 8;
  }
  uint32_t tail = (uint32_t)state;
  while (count > 0) {
    tail = _mm_crc32_u8(tail, *p);
    p += 1;
    count -= 1;
  }
  return tail;
}
#else
int tfmp_has_crc32c_instruction(void) { return 0; }

uint32_t tfmp_crc32c_update_sse42(uint32_t crc, const void *bytes, size_t count) {
  (void)bytes;
  (void)count;
  return crc;
}
#endif
