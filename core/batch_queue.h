/*
 * A bounded queue of batches between one producer thread and one consumer
 * thread. A fixed set of batches goes round. The producer takes an empty
 * one, fills it and pushes it, and the consumer pops it, uses it and gives
 * it back. The producer also waits while the batches it pushed and the
 * consumer has not given back hold more than a number of bytes, so memory
 * stays bounded whatever the size of a batch's items.
 */
#ifndef LICOL_BATCH_QUEUE_H
#define LICOL_BATCH_QUEUE_H

#include <pthread.h>
#include <stddef.h>

#define BATCH_QUEUE_MAX 8

struct batch_queue {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    void *empty[BATCH_QUEUE_MAX];
    size_t empty_count;
    void *full[BATCH_QUEUE_MAX]; /* FIFO: full_head is the oldest */
    size_t full_head, full_count;
    size_t bytes_in_flight; /* sizes given to push, not yet given back */
    size_t max_bytes;
    int closed;  /* the producer pushed its last batch */
    int stopped; /* the consumer wants no more batches */
};

/* Starts with the count batches of batches as empty ones (count at most
 * BATCH_QUEUE_MAX). The producer waits for an empty batch while more than
 * max_bytes are in flight. */
void batch_queue_init(struct batch_queue *queue, void *const *batches, size_t count,
                      size_t max_bytes);
void batch_queue_destroy(struct batch_queue *queue);

/* Producer: waits for an empty batch, and for the bytes in flight to be
 * at most max_bytes. Returns NULL once the consumer has stopped. */
void *batch_queue_take_empty(struct batch_queue *queue);
/* Producer: hands over a batch of the given size in bytes. */
void batch_queue_push(struct batch_queue *queue, void *batch, size_t bytes);
/* Producer: no batch will follow. */
void batch_queue_close(struct batch_queue *queue);

/* Consumer: waits for the oldest full batch. Returns NULL when the queue is
 * closed and drained. */
void *batch_queue_pop(struct batch_queue *queue);
/* Consumer: returns a batch, with the size it was pushed with (0 for a
 * batch the producer returns unused). */
void batch_queue_give_back(struct batch_queue *queue, void *batch, size_t bytes);
/* Consumer: wakes the producer and makes every later take_empty return
 * NULL. */
void batch_queue_stop(struct batch_queue *queue);

#endif
