/*
 * A region allocator: many small allocations freed all at once. Blocks are
 * never moved, so a pointer stays valid until arena_reset().
 */
#ifndef LICOL_ARENA_H
#define LICOL_ARENA_H

#include <stddef.h>

#define ARENA_BLOCK_SIZE (64 * 1024)

struct arena_block;

struct arena {
    struct arena_block *blocks;  /* every block, newest first */
    struct arena_block *current; /* the block allocations come from */
    size_t allocated;            /* bytes returned by arena_alloc since the last reset */
    int out_of_memory;           /* an allocation failed since the last reset */
};

/* Returns size bytes aligned for any type, or NULL when out of memory. */
void *arena_alloc(struct arena *arena, size_t size);

/* Returns the bytes allocated since the last reset. */
static inline size_t arena_size(const struct arena *arena)
{
    return arena->allocated;
}

/* Copies len bytes of s and a terminating NUL. */
char *arena_strndup(struct arena *arena, const char *s, size_t len);

/* Makes all memory available again, keeping the standard-size blocks. */
void arena_reset(struct arena *arena);

void arena_free(struct arena *arena);

#endif
