/*
 * jq_httpd — see jq_httpd.h.
 */
#include "jq_httpd.h"

#include <stdio.h>
#include <string.h>

#include "jq_log.h"

bool jq_httpd_off(const char *addr)
{
	return addr == NULL || addr[0] == '\0' || strcmp(addr, "off") == 0;
}

int jq_httpd_hold(const char *who, const char *addr, nng_http_server **out)
{
	char url_text[300];
	nng_url *url = NULL;
	int rv;
	snprintf(url_text, sizeof(url_text), "%s%s", strncmp(addr, "http://", 7) ? "http://" : "", addr);
	if ((rv = nng_url_parse(&url, url_text)) != 0) {
		jq_error("%s: bad address '%s': %s", who, addr, nng_strerror(rv));
		return -1;
	}
	rv = nng_http_server_hold(out, url);
	nng_url_free(url);
	if (rv != 0) {
		jq_error("%s: cannot create a server for %s: %s", who, addr, nng_strerror(rv));
		return -1;
	}
	return 0;
}

int jq_httpd_start(const char *who, const char *addr, nng_http_server *srv)
{
	int rv = nng_http_server_start(srv);
	if (rv != 0) {
		jq_error("%s: cannot listen on %s: %s", who, addr, nng_strerror(rv));
		return -1;
	}
	return 0;
}

void jq_httpd_release(nng_http_server *srv)
{
	if (srv == NULL)
		return;
	nng_http_server_stop(srv);
	nng_http_server_release(srv);
}

void jq_httpd_reply(nng_aio *aio, uint16_t status, const char *ctype, const char *const *headers,
		    const void *body, size_t len)
{
	nng_http_res *res;
	int rv = nng_http_res_alloc(&res);
	if (rv != 0) {
		nng_aio_finish(aio, rv);
		return;
	}
	if ((rv = nng_http_res_set_status(res, status)) != 0 ||
	    (rv = nng_http_res_set_header(res, "Content-Type", ctype)) != 0 ||
	    (rv = nng_http_res_set_header(res, "Cache-Control", "no-store")) != 0)
		goto fail;
	for (const char *const *h = headers; h != NULL && h[0] != NULL; h += 2)
		if ((rv = nng_http_res_set_header(res, h[0], h[1])) != 0)
			goto fail;
	if ((rv = nng_http_res_copy_data(res, body, len)) != 0)
		goto fail;
	nng_aio_set_output(aio, 0, res);
	nng_aio_finish(aio, 0);
	return;
fail:
	nng_http_res_free(res);
	nng_aio_finish(aio, rv);
}
