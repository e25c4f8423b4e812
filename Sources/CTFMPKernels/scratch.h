// Per-thread scratch memory for the matrix products' packed operands.
#ifndef CTFMP_SCRATCH_H
#define CTFMP_SCRATCH_H

#include <stddef.h>

// This thread's scratch space with room for `bytes` (64-byte aligned), or NULL when it cannot
// be allocated. Kept between calls (allocating a megabyte per product costs page faults) and
// freed when the thread ends; valid until this thread's next call.
void *tfmp_scratch(size_t bytes);

#endif
