#include "arena.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

struct arena_block {
    struct arena_block *next;
    size_t size, used;
    alignas(max_align_t) unsigned char data[];
};

static struct arena_block *block_new(size_t size)
{
    struct arena_block *block = malloc(sizeof(*block) + size);

    if (!block)
        return NULL;
    block->next = NULL;
    block->size = size;
    block->used = 0;
    return block;
}

void *arena_alloc(struct arena *arena, size_t size)
{
    const size_t align = alignof(max_align_t);
    struct arena_block *block = arena->current;
    size_t start;

    arena->allocated += size;
    if (block) {
        start = (block->used + align - 1) & ~(align - 1);
        if (start + size <= block->size) {
            block->used = start + size;
            return block->data + start;
        }
        /* After a reset, the next kept block may have room. */
        for (block = arena->blocks; block; block = block->next) {
            if (block->used == 0 && block->size >= size) {
                block->used = size;
                arena->current = block;
                return block->data;
            }
        }
    }
    block = block_new(size > ARENA_BLOCK_SIZE ? size : ARENA_BLOCK_SIZE);
    if (!block) {
        arena->out_of_memory = 1;
        return NULL;
    }
    block->next = arena->blocks;
    arena->blocks = block;
    block->used = size;
    if (block->size == ARENA_BLOCK_SIZE)
        arena->current = block;
    return block->data;
}

char *arena_strndup(struct arena *arena, const char *s, size_t len)
{
    char *copy = arena_alloc(arena, len + 1);

    if (!copy)
        return NULL;
    memcpy(copy, s, len);
    copy[len] = '\0';
    return copy;
}

void arena_reset(struct arena *arena)
{
    struct arena_block **link = &arena->blocks;

    /* Oversized blocks (one large field) are freed; standard ones kept. */
    while (*link) {
        struct arena_block *block = *link;
        if (block->size != ARENA_BLOCK_SIZE) {
            *link = block->next;
            free(block);
            continue;
        }
        block->used = 0;
        link = &block->next;
    }
    arena->current = arena->blocks;
    arena->allocated = 0;
    arena->out_of_memory = 0;
}

void arena_free(struct arena *arena)
{
    while (arena->blocks) {
        struct arena_block *next = arena->blocks->next;
        free(arena->blocks);
        arena->blocks = next;
    }
    arena->current = NULL;
    arena->allocated = 0;
}
