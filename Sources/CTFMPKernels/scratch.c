#include "scratch.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct {
  void *base;
  size_t capacity;  // bytes
} scratch_space;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void free_scratch(void *space) {
  free(((scratch_space *)space)->base);
  free(space);
}

static void make_scratch_key(void) { pthread_key_create(&scratch_key, free_scratch); }

void *tfmp_scratch(size_t bytes) {
  pthread_once(&scratch_once, make_scratch_key);
  scratch_space *space = pthread_getspecific(scratch_key);
  if (space == NULL) {
    space = calloc(1, sizeof(scratch_space));
    if (space == NULL || pthread_setspecific(scratch_key, space) != 0) {
      free(space);
      return NULL;
    }
  }
  if (space->capacity < bytes) {
    free(space->base);
    space->capacity = 0;
    space->base = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (space->base == NULL) return NULL;
    space->capacity = bytes;
  }
  return space->base;
}
