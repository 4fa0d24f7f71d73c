/*
 * jq_httpd — nng's HTTP server as jq_http and jq_console run it: held at an address given as
 * "host:port" (or an http:// URL), started, stopped; and an answer with the headers every answer
 * of jobqd carries (Content-Type, Cache-Control: no-store), the caller's own, and a copied body.
 *
 * Failures to hold or start are logged under the caller's name (`who`: "http", "console").
 * jq_httpd_reply may run on any thread, nng's handler threads included; it always finishes the
 * aio.
 */
#ifndef JQ_HTTPD_H
#define JQ_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>

/* jq_httpd_off: the address asks for no server (NULL, "" or "off"). */
bool jq_httpd_off(const char *addr);

/* jq_httpd_hold holds nng's HTTP server for addr in *out (release it with jq_httpd_release).
 * Returns 0, or -1 (logged) when the address is bad. */
int jq_httpd_hold(const char *who, const char *addr, nng_http_server **out);

/* jq_httpd_start starts serving srv's handlers. Returns 0, or -1 (logged) when the address is
 * taken. */
int jq_httpd_start(const char *who, const char *addr, nng_http_server *srv);

/* jq_httpd_release stops srv and drops the hold on it; NULL is a no-op. */
void jq_httpd_release(nng_http_server *srv);

/* jq_httpd_reply answers aio with status, Content-Type ctype, Cache-Control no-store, the headers
 * (name, value, ..., NULL; NULL for none) and a copy of body; when nng cannot build the answer,
 * the aio finishes with nng's error instead. */
void jq_httpd_reply(nng_aio *aio, uint16_t status, const char *ctype, const char *const *headers,
		    const void *body, size_t len);

#endif
