/*
 * jobq_tls.c — dialing for libjobq's sockets, with TLS for tls+tcp:// addresses (nng's mbed TLS
 * engine on Debian 12). Files are read once, at connect; the key text is wiped after use.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>

#include "jobq_internal.h"

#define PEM_MAX (1024 * 1024)

typedef struct tls_files {
	const char *cert, *key, *ca;
} tls_files;

/* read_pem reads a small file into a NUL-terminated malloc'd string; NULL (err set) on error. */
static char *read_pem(const char *path, jobq_error *err)
{
	FILE *f = fopen(path, "r");
	char *buf;
	size_t n;
	if (f == NULL) {
		jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	buf = malloc(PEM_MAX + 1);
	n = buf ? fread(buf, 1, PEM_MAX, f) : 0;
	if (buf == NULL || ferror(f) || n == PEM_MAX) {
		jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "cannot read %s (or larger than 1 MiB)", path);
		free(buf);
		buf = NULL;
	} else {
		buf[n] = '\0';
	}
	fclose(f);
	return buf;
}

static int own_cert(nng_tls_config *cfg, const tls_files *f, jobq_error *err)
{
	char *cert = read_pem(f->cert, err), *key = cert ? read_pem(f->key, err) : NULL;
	int rv = NNG_EINVAL;
	if (cert != NULL && key != NULL && (rv = nng_tls_config_own_cert(cfg, cert, key, NULL)) != 0)
		jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "TLS certificate %s / key %s rejected: %s",
			      f->cert, f->key, nng_strerror(rv));
	if (key != NULL)
		memset(key, 0, strlen(key));
	free(cert);
	free(key);
	return rv;
}

/* server_name: nng checks the service's certificate against the URL's host. */
static int server_name(nng_tls_config *cfg, const char *url, jobq_error *err)
{
	nng_url *u;
	int rv = nng_url_parse(&u, url);
	if (rv != 0) {
		jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "bad address %s: %s", url, nng_strerror(rv));
		return rv;
	}
	rv = nng_tls_config_server_name(cfg, u->u_hostname);
	nng_url_free(u);
	return rv;
}

static int build(nng_tls_config *cfg, const char *url, const tls_files *f, jobq_error *err)
{
	int rv;
	if ((f->cert != NULL) != (f->key != NULL)) {
		jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "TLS: a certificate needs its key and a key its certificate");
		return NNG_EINVAL;
	}
	if (f->cert != NULL && (rv = own_cert(cfg, f, err)) != 0)
		return rv;
	if ((rv = server_name(cfg, url, err)) != 0)
		return rv;
	if (f->ca == NULL)
		return nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_NONE);
	if ((rv = nng_tls_config_ca_file(cfg, f->ca)) != 0) {
		jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "TLS CA file %s rejected: %s", f->ca, nng_strerror(rv));
		return rv;
	}
	return nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED);
}

static int setup_tls(nng_dialer d, const char *url, const jobq_options *opts, jobq_error *err)
{
	tls_files f = { jobqi_opt_str(opts ? opts->tls_cert : NULL, "JOBQ_TLS_CERT", NULL),
			jobqi_opt_str(opts ? opts->tls_key : NULL, "JOBQ_TLS_KEY", NULL),
			jobqi_opt_str(opts ? opts->tls_ca : NULL, "JOBQ_TLS_CA", NULL) };
	nng_tls_config *cfg;
	int rv = nng_tls_config_alloc(&cfg, NNG_TLS_MODE_CLIENT);
	if (rv != 0) {
		jobqi_set_err(err, JOBQ_UNIMPLEMENTED, "TLS is not available in this build of nng: %s",
			      nng_strerror(rv));
		return rv;
	}
	if ((rv = build(cfg, url, &f, err)) == 0 && (rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg)) != 0)
		jobqi_set_err(err, JOBQ_INVALID_ARGUMENT, "cannot set TLS on %s: %s", url, nng_strerror(rv));
	nng_tls_config_free(cfg); /* the dialer keeps its own reference */
	return rv;
}

int jobqi_dial(nng_socket sock, const char *url, const jobq_options *opts, nng_dialer *d, jobq_error *err)
{
	int rv = nng_dialer_create(d, sock, url);
	if (rv != 0)
		return rv;
	if (strncmp(url, "tls+", 4) == 0 && (rv = setup_tls(*d, url, opts, err)) != 0) {
		nng_dialer_close(*d);
		return rv;
	}
	return nng_dialer_start(*d, NNG_FLAG_NONBLOCK);
}
