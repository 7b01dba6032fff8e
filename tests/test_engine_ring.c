/* engine/ring.h: the SPSC hand-off between the queue thread and the workers. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ring.h"

static void capacity_rounds_up(void **state)
{
    (void)state;
    struct eng_ring *r = eng_ring_new(100);
    assert_non_null(r);
    assert_int_equal(eng_ring_capacity(r), 128);
    eng_ring_free(r);
    r = eng_ring_new(0);
    assert_non_null(r);
    assert_int_equal(eng_ring_capacity(r), 2);
    eng_ring_free(r);
    eng_ring_free(NULL);
}

static void fifo_full_empty(void **state)
{
    (void)state;
    struct eng_ring *r = eng_ring_new(8);
    assert_non_null(r);
    assert_null(eng_ring_pop(r));
    assert_true(eng_ring_empty(r));
    assert_int_equal(eng_ring_space(r), 8);
    uintptr_t v;
    for (v = 1; v <= 8; v++)
        assert_int_equal(eng_ring_push(r, (void *)v), 0);
    assert_int_equal(eng_ring_push(r, (void *)99), -EAGAIN);
    assert_int_equal(eng_ring_space(r), 0);
    assert_ptr_equal(eng_ring_pop(r), (void *)1);
    assert_int_equal(eng_ring_space(r), 1);
    assert_int_equal(eng_ring_push(r, (void *)9), 0);
    assert_int_equal(eng_ring_push(r, (void *)10), -EAGAIN);
    void *out[16];
    /* Batch pop wraps around the end of the slot array. */
    assert_int_equal(eng_ring_pop_batch(r, out, 3), 3);
    assert_ptr_equal(out[0], (void *)2);
    assert_ptr_equal(out[2], (void *)4);
    assert_int_equal(eng_ring_pop_batch(r, out, 16), 5);
    assert_ptr_equal(out[0], (void *)5);
    assert_ptr_equal(out[4], (void *)9);
    assert_int_equal(eng_ring_pop_batch(r, out, 16), 0);
    assert_null(eng_ring_pop(r));
    assert_true(eng_ring_empty(r));
    eng_ring_free(r);
}

/* Two threads: every value arrives exactly once and in order, with the ring
 * small enough to be full and empty many times over. */
#if defined(__SANITIZE_THREAD__)
#define STRESS_N 200000u /* TSan makes each atomic ~100x slower */
#else
#define STRESS_N 2000000u
#endif

static void *producer(void *arg)
{
    struct eng_ring *r = arg;
    for (uintptr_t v = 1; v <= STRESS_N;) {
        if (eng_ring_push(r, (void *)v) == 0)
            v++;
    }
    return NULL;
}

static void stress_two_threads(void **state)
{
    (void)state;
    struct eng_ring *r = eng_ring_new(64);
    assert_non_null(r);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, producer, r), 0);
    uintptr_t expect = 1;
    unsigned long long sum = 0;
    void *out[32];
    size_t batches = 0;
    while (expect <= STRESS_N) {
        size_t n;
        if (expect & 1) {
            void *p = eng_ring_pop(r);
            n = 0;
            if (p) {
                out[0] = p;
                n = 1;
            }
        } else {
            n = eng_ring_pop_batch(r, out, 32);
            batches += n > 1;
        }
        for (size_t i = 0; i < n; i++) {
            if ((uintptr_t)out[i] != expect)
                fail_msg("got %ju, expected %ju", (uintmax_t)(uintptr_t)out[i], (uintmax_t)expect);
            sum += expect;
            expect++;
        }
    }
    pthread_join(th, NULL);
    assert_null(eng_ring_pop(r));
    assert_true(sum == (unsigned long long)STRESS_N * (STRESS_N + 1) / 2);
    print_message("stress: %u values, %zu multi-item batches\n", STRESS_N, batches);
    eng_ring_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(capacity_rounds_up),
        cmocka_unit_test(fifo_full_empty),
        cmocka_unit_test(stress_two_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
