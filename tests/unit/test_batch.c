/* Unit tests for the pieces that carry rows between the two threads of an
 * import: the arena the rows live in, and the bounded batch queue. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdalign.h>
#include <string.h>
#include <time.h>

#include "arena.h"
#include "batch_queue.h"

static void arena_alignment_and_copies(void **unused)
{
    struct arena arena = {0};
    char *text;

    (void)unused;
    for (int i = 1; i < 200; i++) {
        void *p = arena_alloc(&arena, (size_t)i);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % alignof(max_align_t), 0);
        memset(p, 0xAB, (size_t)i);
    }
    text = arena_strndup(&arena, "Dupont;Jean", 6);
    assert_string_equal(text, "Dupont");
    arena_free(&arena);
}

static void arena_pointers_survive_new_blocks(void **unused)
{
    struct arena arena = {0};
    char *first = arena_strndup(&arena, "premier", 7);
    char *big;

    (void)unused;
    /* Enough small strings to need several blocks. */
    for (int i = 0; i < 10000; i++)
        assert_non_null(arena_strndup(&arena, "0123456789012345678901234567890", 31));
    assert_string_equal(first, "premier");

    /* A value larger than a block gets one of its own. */
    big = arena_alloc(&arena, 3 * ARENA_BLOCK_SIZE);
    assert_non_null(big);
    memset(big, 'x', 3 * ARENA_BLOCK_SIZE);
    assert_string_equal(first, "premier");
    arena_free(&arena);
}

static void arena_reset_reuses_blocks(void **unused)
{
    enum { COUNT = 5000 };
    static void *seen[COUNT];
    struct arena arena = {0};
    void *after;
    int found = 0;

    (void)unused;
    for (int i = 0; i < COUNT; i++) {
        seen[i] = arena_alloc(&arena, 100);
        assert_non_null(seen[i]);
    }
    assert_non_null(arena_alloc(&arena, 2 * ARENA_BLOCK_SIZE));
    arena_reset(&arena);
    after = arena_alloc(&arena, 100);
    /* The memory of the first pass serves again: a kept block, not a new
     * one. */
    for (int i = 0; i < COUNT && !found; i++)
        found = seen[i] == after;
    assert_true(found);
    for (int i = 0; i < COUNT; i++)
        assert_non_null(arena_alloc(&arena, 100));
    arena_free(&arena);
}

#define ITEMS 100000

struct test_batch {
    int count;
    int values[64];
};

struct producer {
    struct batch_queue *queue;
    size_t bytes_per_batch;
    int produced;
    int stopped_early;
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    struct test_batch *batch = NULL;

    for (int i = 0; i < ITEMS; i++) {
        if (!batch) {
            batch = batch_queue_take_empty(p->queue);
            if (!batch) {
                p->stopped_early = 1;
                break;
            }
            batch->count = 0;
        }
        batch->values[batch->count++] = i;
        p->produced++;
        if (batch->count == 64) {
            batch_queue_push(p->queue, batch, p->bytes_per_batch);
            batch = NULL;
        }
    }
    if (batch) {
        if (batch->count > 0)
            batch_queue_push(p->queue, batch, p->bytes_per_batch);
        else
            batch_queue_give_back(p->queue, batch, 0);
    }
    batch_queue_close(p->queue);
    return NULL;
}

static void queue_keeps_order(void **unused)
{
    struct test_batch storage[3];
    void *batches[3] = {&storage[0], &storage[1], &storage[2]};
    struct batch_queue queue;
    struct producer producer = {&queue, 64, 0, 0};
    struct test_batch *batch;
    pthread_t thread;
    int expected = 0;

    (void)unused;
    batch_queue_init(&queue, batches, 3, 1000000);
    assert_int_equal(pthread_create(&thread, NULL, produce, &producer), 0);
    while ((batch = batch_queue_pop(&queue))) {
        for (int i = 0; i < batch->count; i++)
            assert_int_equal(batch->values[i], expected++);
        batch_queue_give_back(&queue, batch, producer.bytes_per_batch);
    }
    pthread_join(thread, NULL);
    assert_int_equal(expected, ITEMS);
    assert_int_equal(producer.stopped_early, 0);
    /* Every batch came back. */
    assert_int_equal(queue.empty_count, 3);
    batch_queue_destroy(&queue);
}

static void queue_stop_ends_producer(void **unused)
{
    struct test_batch storage[2];
    void *batches[2] = {&storage[0], &storage[1]};
    struct batch_queue queue;
    struct producer producer = {&queue, 64, 0, 0};
    struct test_batch *batch;
    pthread_t thread;
    int popped = 0;

    (void)unused;
    batch_queue_init(&queue, batches, 2, 1000000);
    assert_int_equal(pthread_create(&thread, NULL, produce, &producer), 0);
    /* The consumer stops after the first batch, as an import does on a
     * database error, and still drains what was pushed. */
    while ((batch = batch_queue_pop(&queue))) {
        if (++popped == 1)
            batch_queue_stop(&queue);
        batch_queue_give_back(&queue, batch, producer.bytes_per_batch);
    }
    pthread_join(thread, NULL);
    assert_int_equal(producer.stopped_early, 1);
    assert_true(producer.produced < ITEMS);
    assert_true(popped <= 3);
    batch_queue_destroy(&queue);
}

static void queue_bounds_bytes_in_flight(void **unused)
{
    struct test_batch storage[4];
    void *batches[4] = {&storage[0], &storage[1], &storage[2], &storage[3]};
    struct batch_queue queue;
    /* Each batch counts 80 bytes against a budget of 100: the producer
     * may hand over a second batch (80 in flight), then must wait. */
    struct producer producer = {&queue, 80, 0, 0};
    struct test_batch *batch;
    struct timespec pause = {0, 50 * 1000 * 1000};
    pthread_t thread;
    size_t waiting;
    int expected = 0;

    (void)unused;
    batch_queue_init(&queue, batches, 4, 100);
    assert_int_equal(pthread_create(&thread, NULL, produce, &producer), 0);
    batch = batch_queue_pop(&queue);
    assert_non_null(batch);
    nanosleep(&pause, NULL);
    pthread_mutex_lock(&queue.lock);
    waiting = queue.full_count;
    pthread_mutex_unlock(&queue.lock);
    /* Without the budget, the three other batches would be full. */
    assert_true(waiting <= 1);
    do {
        for (int i = 0; i < batch->count; i++)
            assert_int_equal(batch->values[i], expected++);
        batch_queue_give_back(&queue, batch, producer.bytes_per_batch);
    } while ((batch = batch_queue_pop(&queue)));
    pthread_join(thread, NULL);
    assert_int_equal(expected, ITEMS);
    assert_int_equal(queue.bytes_in_flight, 0);
    batch_queue_destroy(&queue);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(arena_alignment_and_copies),
        cmocka_unit_test(arena_pointers_survive_new_blocks),
        cmocka_unit_test(arena_reset_reuses_blocks),
        cmocka_unit_test(queue_keeps_order),
        cmocka_unit_test(queue_stop_ends_producer),
        cmocka_unit_test(queue_bounds_bytes_in_flight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
