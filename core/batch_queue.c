#include "batch_queue.h"

void batch_queue_init(struct batch_queue *queue, void *const *batches, size_t count,
                      size_t max_bytes)
{
    pthread_mutex_init(&queue->lock, NULL);
    pthread_cond_init(&queue->changed, NULL);
    for (size_t i = 0; i < count && i < BATCH_QUEUE_MAX; i++)
        queue->empty[i] = batches[i];
    queue->empty_count = count < BATCH_QUEUE_MAX ? count : BATCH_QUEUE_MAX;
    queue->full_head = queue->full_count = 0;
    queue->bytes_in_flight = 0;
    queue->max_bytes = max_bytes;
    queue->closed = queue->stopped = 0;
}

void batch_queue_destroy(struct batch_queue *queue)
{
    pthread_cond_destroy(&queue->changed);
    pthread_mutex_destroy(&queue->lock);
}

void *batch_queue_take_empty(struct batch_queue *queue)
{
    void *batch = NULL;

    pthread_mutex_lock(&queue->lock);
    /* bytes_in_flight > 0 means a batch is with the consumer, which will
     * give it back: the wait ends. */
    while (!queue->stopped &&
           (queue->empty_count == 0 || queue->bytes_in_flight > queue->max_bytes))
        pthread_cond_wait(&queue->changed, &queue->lock);
    if (!queue->stopped)
        batch = queue->empty[--queue->empty_count];
    pthread_mutex_unlock(&queue->lock);
    return batch;
}

void batch_queue_push(struct batch_queue *queue, void *batch, size_t bytes)
{
    pthread_mutex_lock(&queue->lock);
    queue->bytes_in_flight += bytes;
    queue->full[(queue->full_head + queue->full_count) % BATCH_QUEUE_MAX] = batch;
    queue->full_count++;
    pthread_cond_broadcast(&queue->changed);
    pthread_mutex_unlock(&queue->lock);
}

void batch_queue_close(struct batch_queue *queue)
{
    pthread_mutex_lock(&queue->lock);
    queue->closed = 1;
    pthread_cond_broadcast(&queue->changed);
    pthread_mutex_unlock(&queue->lock);
}

void *batch_queue_pop(struct batch_queue *queue)
{
    void *batch = NULL;

    pthread_mutex_lock(&queue->lock);
    while (queue->full_count == 0 && !queue->closed)
        pthread_cond_wait(&queue->changed, &queue->lock);
    if (queue->full_count > 0) {
        batch = queue->full[queue->full_head];
        queue->full_head = (queue->full_head + 1) % BATCH_QUEUE_MAX;
        queue->full_count--;
    }
    pthread_mutex_unlock(&queue->lock);
    return batch;
}

void batch_queue_give_back(struct batch_queue *queue, void *batch, size_t bytes)
{
    pthread_mutex_lock(&queue->lock);
    queue->bytes_in_flight -= bytes < queue->bytes_in_flight ? bytes : queue->bytes_in_flight;
    queue->empty[queue->empty_count++] = batch;
    pthread_cond_broadcast(&queue->changed);
    pthread_mutex_unlock(&queue->lock);
}

void batch_queue_stop(struct batch_queue *queue)
{
    pthread_mutex_lock(&queue->lock);
    queue->stopped = 1;
    pthread_cond_broadcast(&queue->changed);
    pthread_mutex_unlock(&queue->lock);
}
