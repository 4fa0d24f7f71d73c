#include "jq_tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/supplemental/tls/tls.h>

#include "jq_log.h"

#define PEM_MAX (1024 * 1024)

static bool given(const char *s)
{
	return s != NULL && s[0] != '\0';
}

bool jq_tls_url(const char *url)
{
	return url != NULL && strncmp(url, "tls+", 4) == 0;
}

/* read_pem reads a whole (small) file into a NUL-terminated malloc'd string; NULL on error. */
static char *read_pem(const char *path, const char *what)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t n;
	if (f == NULL) {
		jq_error("%s: cannot open %s: %s", what, path, strerror(errno));
		return NULL;
	}
	if ((buf = malloc(PEM_MAX + 1)) == NULL)
		goto out;
	n = fread(buf, 1, PEM_MAX, f);
	buf[n] = '\0';
	if (ferror(f) || n == PEM_MAX) {
		jq_error("%s: cannot read %s (or larger than 1 MiB)", what, path);
		free(buf);
		buf = NULL;
	}
out:
	fclose(f);
	return buf;
}

/* own_cert loads the certificate and key; the key text is wiped before it is freed. */
static int own_cert(nng_tls_config *cfg, const jq_tls_files *files, const char *what)
{
	char *cert = read_pem(files->cert, what), *key = read_pem(files->key, what);
	int rv = NNG_EINVAL;
	if (cert != NULL && key != NULL && (rv = nng_tls_config_own_cert(cfg, cert, key, NULL)) != 0)
		jq_error("%s: certificate %s / key %s rejected: %s", what, files->cert, files->key,
			 nng_strerror(rv));
	if (key != NULL)
		memset(key, 0, strlen(key));
	free(cert);
	free(key);
	return rv;
}

static int build(nng_tls_config *cfg, const jq_tls_files *files, const char *what)
{
	int rv;
	if ((rv = own_cert(cfg, files, what)) != 0)
		return rv;
	if (!given(files->ca))
		return nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_NONE);
	if ((rv = nng_tls_config_ca_file(cfg, files->ca)) != 0) {
		jq_error("%s: CA file %s rejected: %s", what, files->ca, nng_strerror(rv));
		return rv;
	}
	/* A CA means mutual TLS: a client without a certificate it signed is refused. */
	return nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED);
}

int jq_tls_setup_listener(nng_listener l, const char *url, const jq_tls_files *files, const char *what)
{
	nng_tls_config *cfg = NULL;
	int rv;
	if (!jq_tls_url(url))
		return 0;
	if (files == NULL || !given(files->cert) || !given(files->key)) {
		jq_error("%s: %s needs --tls-cert and --tls-key", what, url);
		return NNG_EINVAL;
	}
	if ((rv = nng_tls_config_alloc(&cfg, NNG_TLS_MODE_SERVER)) != 0) {
		jq_error("%s: TLS is not available in this build of nng (%s); use tcp:// behind a "
			 "TLS-terminating proxy instead", what, nng_strerror(rv));
		return rv;
	}
	if ((rv = build(cfg, files, what)) == 0 &&
	    (rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, cfg)) != 0)
		jq_error("%s: cannot set TLS on %s: %s", what, url, nng_strerror(rv));
	/* The listener holds its own reference. */
	nng_tls_config_free(cfg);
	if (rv == 0)
		jq_info("%s: TLS on %s (%s)", what, url,
			given(files->ca) ? "client certificates required" : "no client certificates");
	return rv;
}
