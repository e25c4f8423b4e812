// Allocator settings for the runtime (see tfmp_keep_freed_memory in CTFMPKernels.h).
#include "CTFMPKernels.h"

#if defined(__GLIBC__)
#include <malloc.h>

void tfmp_keep_freed_memory(void) {
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 0x7FFFFFFF);
}
#else
void tfmp_keep_freed_memory(void) {}
#endif
