/*
 * jq_clock — the clocks jobqd reads, in one place.
 *
 * Deadlines, timeouts and intervals are on the monotonic clock (CLOCK_MONOTONIC), which never
 * jumps when the wall clock is set; a request's deadline, a libpq wait's end and a timer all
 * compare against it, in microseconds or milliseconds. Only times that leave the process (a job's
 * run_at, an announcement's published_at_us) are read from the real-time clock, as Unix time.
 */
#ifndef JQ_CLOCK_H
#define JQ_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* jq_clock_mono_us / jq_clock_mono_ms: CLOCK_MONOTONIC in microseconds / milliseconds. */
int64_t jq_clock_mono_us(void);
int64_t jq_clock_mono_ms(void);

/* jq_clock_unix_us / jq_clock_unix_ms: CLOCK_REALTIME as Unix microseconds / milliseconds. */
int64_t jq_clock_unix_us(void);
int64_t jq_clock_unix_ms(void);

/* jq_clock_timespec_us: a jq_clock_mono_us time as the absolute timespec that
 * pthread_cond_timedwait takes on a condition variable made by jq_clock_cond_init. */
struct timespec jq_clock_timespec_us(int64_t mono_us);

/* jq_clock_cond_init initialises cv to time its waits on CLOCK_MONOTONIC. Returns 0, or an errno
 * value (pthread_cond_init's). */
int jq_clock_cond_init(pthread_cond_t *cv);

#endif
