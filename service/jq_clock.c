#include "jq_clock.h"

static int64_t read_us(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t jq_clock_mono_us(void)
{
	return read_us(CLOCK_MONOTONIC);
}

int64_t jq_clock_mono_ms(void)
{
	return read_us(CLOCK_MONOTONIC) / 1000;
}

int64_t jq_clock_unix_us(void)
{
	return read_us(CLOCK_REALTIME);
}

int64_t jq_clock_unix_ms(void)
{
	return read_us(CLOCK_REALTIME) / 1000;
}

struct timespec jq_clock_timespec_us(int64_t mono_us)
{
	return (struct timespec){ .tv_sec = mono_us / 1000000,
				  .tv_nsec = (long)(mono_us % 1000000) * 1000 };
}

int jq_clock_cond_init(pthread_cond_t *cv)
{
	pthread_condattr_t ca;
	int rc = pthread_condattr_init(&ca);
	if (rc != 0)
		return rc;
	rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (rc == 0)
		rc = pthread_cond_init(cv, &ca);
	pthread_condattr_destroy(&ca);
	return rc;
}
