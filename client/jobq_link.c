/*
 * jobq_link.c — the connection state of one of libjobq's dialed sockets, from nng's pipe events:
 * how many connections are up, whether one ever was, a wait for the first one, and whether the
 * dials so far were all refused (nothing listens at the address, which a caller should hear at
 * once rather than after its whole timeout).
 */
#include <stdint.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>

#include "jobq_internal.h"

static void on_pipe(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	jobqi_link *l = arg;
	(void)p;
	nng_mtx_lock(l->link_mu);
	if (ev == NNG_PIPE_EV_ADD_POST) {
		l->up++;
		l->ever = true;
		nng_cv_wake(l->cv);
	} else if (ev == NNG_PIPE_EV_REM_POST) {
		l->up--;
	}
	nng_mtx_unlock(l->link_mu);
}

int jobqi_link_init(jobqi_link *l, nng_socket sock)
{
	int rv;
	if ((rv = nng_mtx_alloc(&l->link_mu)) != 0)
		return rv;
	if ((rv = nng_cv_alloc(&l->cv, l->link_mu)) != 0 ||
	    (rv = nng_pipe_notify(sock, NNG_PIPE_EV_ADD_POST, on_pipe, l)) != 0 ||
	    (rv = nng_pipe_notify(sock, NNG_PIPE_EV_REM_POST, on_pipe, l)) != 0)
		return rv;
	return 0;
}

void jobqi_link_fini(jobqi_link *l)
{
	if (l->cv != NULL)
		nng_cv_free(l->cv);
	if (l->link_mu != NULL)
		nng_mtx_free(l->link_mu);
	l->cv = NULL;
	l->link_mu = NULL;
}

int jobqi_link_up(jobqi_link *l)
{
	nng_mtx_lock(l->link_mu);
	int up = l->up;
	nng_mtx_unlock(l->link_mu);
	return up;
}

bool jobqi_link_ever(jobqi_link *l)
{
	nng_mtx_lock(l->link_mu);
	bool ever = l->ever;
	nng_mtx_unlock(l->link_mu);
	return ever;
}

static uint64_t stat_value(nng_stat *dialer, const char *name)
{
	nng_stat *s = nng_stat_find(dialer, name);
	return s != NULL ? nng_stat_value(s) : 0;
}

/* find_dialer: the statistics of dialer d among every dialer's (each a top-level "dialer" scope).
 * Not nng_stat_find_dialer: in nng 1.5.2 it answers the first dialer's scope whatever its id. */
static nng_stat *find_dialer(nng_stat *all, nng_dialer d)
{
	for (nng_stat *s = nng_stat_child(all); s != NULL; s = nng_stat_next(s)) {
		if (nng_stat_type(s) == NNG_STAT_SCOPE && strcmp(nng_stat_name(s), "dialer") == 0 &&
		    stat_value(s, "id") == (uint64_t)nng_dialer_id(d))
			return s;
	}
	return NULL;
}

/* refused_only: the dialer never connected, tried, and every attempt was refused. Anything else
 * (a timeout, a TLS handshake that failed, an address that does not resolve) may be a slow or
 * misconfigured service rather than none, and keeps the caller's whole timeout. nng counts dial
 * outcomes only in its statistics; without them (a build without NNG_ENABLE_STATS) the answer
 * is false, which is the old behaviour. */
static bool refused_only(nng_dialer d)
{
	static const char *const others[] = { "timeout", "proto", "auth", "other", "reject", "disconnect",
					      "oom", "canceled" };
	nng_stat *all = NULL;
	if (nng_stats_get(&all) != 0)
		return false;
	nng_stat *ds = find_dialer(all, d);
	bool only = ds != NULL && stat_value(ds, "refused") > 0 && stat_value(ds, "connect") == 0;
	for (size_t i = 0; only && i < sizeof(others) / sizeof(others[0]); i++)
		only = stat_value(ds, others[i]) == 0;
	nng_stats_free(all);
	return only;
}

/* wait_up waits until a connection is up or the clock passes until; *ever tells whether one
 * ever was. */
static bool wait_up(jobqi_link *l, nng_time until, bool *ever)
{
	nng_mtx_lock(l->link_mu);
	while (l->up == 0 && nng_cv_until(l->cv, until) != NNG_ETIMEDOUT)
		;
	bool up = l->up > 0;
	*ever = l->ever;
	nng_mtx_unlock(l->link_mu);
	return up;
}

int jobqi_link_wait(jobqi_link *l, int ms)
{
	nng_time now = nng_clock(), until = now + (nng_time)(ms > 0 ? ms : 0);
	nng_time first = now + JOBQI_FIRST_CONNECT_MS;
	bool ever;
	if (wait_up(l, first < until ? first : until, &ever))
		return 0;
	if (!ever && refused_only(l->dialer))
		return NNG_ECONNREFUSED;
	return first < until && wait_up(l, until, &ever) ? 0 : NNG_ETIMEDOUT;
}
