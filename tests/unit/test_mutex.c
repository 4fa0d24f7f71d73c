/*
 * jq_mutex: "callers hold X" as an assert. The holder is the calling thread, not merely some
 * thread (what pthread_mutex_trylock's EBUSY would say), across condition-variable waits too;
 * and the assert is on in the test build (it stops a process that breaks it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jq_clock.h"
#include "jq_mutex.h"

static jq_mutex m;
static pthread_cond_t cv;

static int setup(void **state)
{
	(void)state;
	return jq_mutex_init(&m) != 0 || jq_clock_cond_init(&cv) != 0 ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	pthread_cond_destroy(&cv);
	jq_mutex_destroy(&m);
	return 0;
}

static void *held_here(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)jq_mutex_held(&m);
}

/* held_by_another_thread: what jq_mutex_held says on a new thread. */
static bool held_by_another_thread(void)
{
	pthread_t t;
	void *held = NULL;
	assert_int_equal(pthread_create(&t, NULL, held_here, NULL), 0);
	assert_int_equal(pthread_join(t, &held), 0);
	return held != NULL;
}

static void held_means_held_by_the_caller(void **state)
{
	(void)state;
	assert_false(jq_mutex_held(&m));
	jq_mutex_lock(&m);
	assert_true(jq_mutex_held(&m));
	assert_false(held_by_another_thread());
	jq_mutex_unlock(&m);
	assert_false(jq_mutex_held(&m));
}

static void *lock_while_waited_on(void *arg)
{
	(void)arg;
	jq_mutex_lock(&m);
	bool mine = jq_mutex_held(&m);
	pthread_cond_signal(&cv);
	jq_mutex_unlock(&m);
	return (void *)(intptr_t)mine;
}

static void a_wait_lets_go_and_takes_back(void **state)
{
	(void)state;
	pthread_t t;
	void *mine = NULL;
	jq_mutex_lock(&m);
	assert_int_equal(pthread_create(&t, NULL, lock_while_waited_on, NULL), 0);
	/* The other thread can only take the lock while this one waits, and then it holds it. */
	struct timespec until = jq_clock_timespec_us(jq_clock_mono_us() + 10 * 1000000);
	(void)jq_mutex_timedwait(&m, &cv, &until);
	assert_true(jq_mutex_held(&m));
	jq_mutex_unlock(&m);
	assert_int_equal(pthread_join(t, &mine), 0);
	assert_non_null(mine);
}

static void a_broken_invariant_stops_the_process(void **state)
{
	(void)state;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, STDERR_FILENO); /* the assert's message is expected */
		JQ_ASSERT_HELD(&m);
		_exit(0);
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGABRT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(held_means_held_by_the_caller, setup, teardown),
		cmocka_unit_test_setup_teardown(a_wait_lets_go_and_takes_back, setup, teardown),
		cmocka_unit_test_setup_teardown(a_broken_invariant_stops_the_process, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
