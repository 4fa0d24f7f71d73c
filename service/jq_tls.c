#include "jq_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

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

/* new_config allocates a server configuration and loads the files into it; NULL on error
 * (logged). */
static nng_tls_config *new_config(const jq_tls_files *files, const char *what)
{
	nng_tls_config *cfg = NULL;
	int rv;

	if ((rv = nng_tls_config_alloc(&cfg, NNG_TLS_MODE_SERVER)) != 0) {
		jq_error("%s: TLS is not available in this build of nng (%s); use tcp:// behind a "
			 "TLS-terminating proxy instead", what, nng_strerror(rv));
		return NULL;
	}
	if (build(cfg, files, what) != 0) {
		nng_tls_config_free(cfg);
		return NULL;
	}
	return cfg;
}

int jq_tls_setup_listener(nng_listener l, const char *url, const jq_tls_files *files, const char *what,
			  jq_tls_slot *slot)
{
	nng_tls_config *cfg;
	int rv;

	if (!jq_tls_url(url))
		return 0;
	if (files == NULL || !given(files->cert) || !given(files->key)) {
		jq_error("%s: %s needs --tls-cert and --tls-key", what, url);
		return NNG_EINVAL;
	}
	if ((cfg = new_config(files, what)) == NULL)
		return NNG_EINVAL;
	if ((rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, cfg)) != 0) {
		jq_error("%s: cannot set TLS on %s: %s", what, url, nng_strerror(rv));
		nng_tls_config_free(cfg);
		return rv;
	}
	slot->cur = cfg; /* the listener holds a reference of its own */
	jq_info("%s: TLS on %s (%s)", what, url,
		given(files->ca) ? "client certificates required" : "no client certificates");
	return 0;
}

/* use_up_pending_accept: nng 1.5.2 keeps one accept posted, and that accept took the listener's
 * configuration when it was posted, so without this the first client after a reload would still
 * get the old certificate. A plain TCP connection that closes at once consumes it (its TLS
 * handshake fails and no pipe is made); the accept posted next uses the new configuration. */
static void use_up_pending_accept(nng_listener l, const char *what)
{
	nng_sockaddr sa;
	struct sockaddr_storage ss = { 0 };
	socklen_t len = 0;

	if (nng_listener_get_addr(l, NNG_OPT_LOCADDR, &sa) != 0)
		return;
	if (sa.s_family == NNG_AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		in->sin_family = AF_INET;
		in->sin_port = sa.s_in.sa_port; /* both in network order */
		in->sin_addr.s_addr = sa.s_in.sa_addr ? sa.s_in.sa_addr : htonl(INADDR_LOOPBACK);
		len = sizeof(*in);
	} else if (sa.s_family == NNG_AF_INET6) {
		static const uint8_t any[16];
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = sa.s_in6.sa_port;
		memcpy(&in6->sin6_addr,
		       memcmp(sa.s_in6.sa_addr, any, 16) != 0 ? sa.s_in6.sa_addr : in6addr_loopback.s6_addr, 16);
		len = sizeof(*in6);
	} else {
		return;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval tv = { .tv_sec = 1 };
	if (fd < 0)
		return;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&ss, len) != 0)
		jq_debug("%s: could not reach the listener after the reload (%s); the next client may "
			 "still get the previous certificate", what, strerror(errno));
	close(fd);
}

int jq_tls_reload(nng_listener l, const jq_tls_files *files, const char *what, jq_tls_slot *slot)
{
	nng_tls_config *cfg;
	int rv;

	if (slot->cur == NULL)
		return 0;
	if ((cfg = new_config(files, what)) == NULL) {
		jq_error("%s: TLS reload failed; the previous certificate stays in use", what);
		return NNG_EINVAL;
	}
	if ((rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, cfg)) != 0) {
		jq_error("%s: TLS reload failed (%s); the previous certificate stays in use", what,
			 nng_strerror(rv));
		nng_tls_config_free(cfg);
		return rv;
	}
	if (slot->prev != NULL)
		nng_tls_config_free(slot->prev);
	slot->prev = slot->cur;
	slot->cur = cfg;
	use_up_pending_accept(l, what);
	jq_info("%s: TLS certificate reloaded from %s", what, files->cert);
	return 0;
}

/* fnv1a folds n bytes into the running hash h (64-bit FNV-1a). */
static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211u;
	return h;
}

uint64_t jq_tls_stamp(const jq_tls_files *files)
{
	const char *paths[3] = { files->cert, files->key, files->ca };
	uint64_t h = 1469598103934665603u;
	bool any = false;
	for (int i = 0; i < 3; i++) {
		struct stat st;
		if (!given(paths[i]) || stat(paths[i], &st) != 0)
			continue;
		int64_t v[5] = { (int64_t)st.st_dev, (int64_t)st.st_ino, (int64_t)st.st_size,
				 (int64_t)st.st_ctim.tv_sec, (int64_t)st.st_ctim.tv_nsec };
		h = fnv1a(h, v, sizeof(v));
		any = true;
	}
	return any ? (h ? h : 1) : 0;
}

void jq_tls_slot_release(jq_tls_slot *slot)
{
	if (slot->prev != NULL)
		nng_tls_config_free(slot->prev);
	if (slot->cur != NULL)
		nng_tls_config_free(slot->cur);
	slot->prev = slot->cur = NULL;
}
