#include "jq_auth.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "jq_log.h"
#include "jq_code.h"

#define NAME_MAX_LEN 64
/* A credentials file larger than this is a mistake, not a list of credentials. */
#define FILE_MAX_BYTES (1024 * 1024)

typedef struct credential {
	char name[NAME_MAX_LEN + 1];
	jq_role role;
	char token[JQ_AUTH_TOKEN_MAX + 1];
} credential;

typedef struct cred_table {
	credential *items;
	int n, cap;
} cred_table;

struct jq_auth {
	pthread_rwlock_t lock; /* guards table */
	cred_table table;      /* the file's credentials and the admin token */
	char *path;            /* NULL = none */
	char *admin_token;     /* NULL = none */
	jq_role tls_role;
	uint64_t seen;         /* jq_auth_stamp when the path was last read, well or not */
};

/* ---- roles ---- */

static const char *const role_names[] = { "none", "producer", "worker", "reader", "admin" };

const char *jq_role_name(jq_role role)
{
	if ((unsigned)role >= sizeof(role_names) / sizeof(role_names[0]))
		return "none";
	return role_names[role];
}

bool jq_role_parse(const char *s, jq_role *out)
{
	for (int r = JQ_ROLE_PRODUCER; r <= JQ_ROLE_ADMIN; r++) {
		if (strcmp(s, role_names[r]) == 0) {
			*out = (jq_role)r;
			return true;
		}
	}
	return false;
}

#define METHOD_PREFIX "/jobq.v1.JobQueue/"

/* Which roles may call each method (admin may call all): the one place this is decided. */
static const struct {
	const char *method;
	bool producer, worker, reader;
} grants[] = {
	{ "Enqueue", true, false, false },  { "Claim", false, true, false },
	{ "Heartbeat", false, true, false }, { "Complete", false, true, false },
	{ "Fail", false, true, false },      { "Get", true, true, true },
	{ "List", false, false, true },      { "Stats", false, false, true },
	{ "Retry", false, false, false },    { "Cancel", false, false, false },
	{ "Pause", false, false, false },    { "Resume", false, false, false },
	{ "ConfigureQueue", false, false, false },
	{ "Wait", true, true, true },
	{ "AddSchedule", false, false, false }, { "ListSchedules", false, false, true },
	{ "RemoveSchedule", false, false, false },
};

bool jq_role_allows(jq_role role, const char *method)
{
	size_t plen = strlen(METHOD_PREFIX);
	if (role == JQ_ROLE_ADMIN)
		return true;
	if (method == NULL || strncmp(method, METHOD_PREFIX, plen) != 0)
		return role != JQ_ROLE_NONE;
	for (size_t i = 0; i < sizeof(grants) / sizeof(grants[0]); i++) {
		if (strcmp(method + plen, grants[i].method) != 0)
			continue;
		switch (role) {
		case JQ_ROLE_PRODUCER:
			return grants[i].producer;
		case JQ_ROLE_WORKER:
			return grants[i].worker;
		case JQ_ROLE_READER:
			return grants[i].reader;
		default:
			return false;
		}
	}
	return role != JQ_ROLE_NONE;
}

/* ---- parsing ---- */

static void set_err(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

/* token_ok: min is JQ_AUTH_TOKEN_MIN for credentials; the single --auth-token keeps accepting
 * the shorter tokens it always did (min 1), so no existing deployment breaks. */
static bool token_ok(const char *t, size_t min)
{
	size_t n = strlen(t);
	if (n < min || n > JQ_AUTH_TOKEN_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] > 0x7e)
			return false;
	return true;
}

static bool name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > NAME_MAX_LEN)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return false;
	}
	return true;
}

/* table_add appends a checked credential; -1 with the reason in err. */
static int table_add(cred_table *t, const char *name, jq_role role, const char *token,
		     size_t min, const char *where, char *err, size_t err_len)
{
	if (!name_ok(name)) {
		set_err(err, err_len, "%s: credential name '%.64s' must be 1-64 of [A-Za-z0-9._-]", where, name);
		return -1;
	}
	if (!token_ok(token, min)) {
		set_err(err, err_len, "%s: the token of '%s' must be %zu-%d printable characters without spaces",
			where, name, min, JQ_AUTH_TOKEN_MAX);
		return -1;
	}
	for (int i = 0; i < t->n; i++) {
		if (strcmp(t->items[i].name, name) == 0) {
			set_err(err, err_len, "%s: credential '%s' is named twice", where, name);
			return -1;
		}
		if (strcmp(t->items[i].token, token) == 0) {
			set_err(err, err_len, "%s: credentials '%s' and '%s' have the same token", where,
				t->items[i].name, name);
			return -1;
		}
	}
	if (t->n == t->cap) {
		int cap = t->cap ? t->cap * 2 : 8;
		credential *items = realloc(t->items, (size_t)cap * sizeof(*items));
		if (items == NULL) {
			set_err(err, err_len, "%s: out of memory", where);
			return -1;
		}
		t->items = items;
		t->cap = cap;
	}
	credential *c = &t->items[t->n++];
	memset(c, 0, sizeof(*c));
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->role = role;
	snprintf(c->token, sizeof(c->token), "%s", token);
	return 0;
}

static void table_clear(cred_table *t)
{
	if (t->items != NULL)
		explicit_bzero(t->items, (size_t)t->cap * sizeof(*t->items));
	free(t->items);
	memset(t, 0, sizeof(*t));
}

/* read_small reads a whole file of at most FILE_MAX_BYTES into a NUL-terminated buffer. */
static char *read_small(const char *path, char *err, size_t err_len)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t n;

	if (f == NULL) {
		set_err(err, err_len, "%s: %s", path, strerror(errno));
		return NULL;
	}
	buf = malloc(FILE_MAX_BYTES + 1);
	if (buf == NULL) {
		set_err(err, err_len, "%s: out of memory", path);
		goto done;
	}
	n = fread(buf, 1, FILE_MAX_BYTES + 1, f);
	if (ferror(f) || n > FILE_MAX_BYTES) {
		set_err(err, err_len, "%s: %s", path, ferror(f) ? "read error" : "larger than 1 MiB");
		free(buf);
		buf = NULL;
		goto done;
	}
	buf[n] = '\0';
done:
	fclose(f);
	return buf;
}

/* warn_if_readable: a credentials file others can read gives their roles away. */
static void warn_if_readable(const char *path, const struct stat *st)
{
	if (st->st_mode & S_IROTH)
		jq_warn("auth: %s is readable by every user (mode %03o); make it 0400 or 0600", path,
			(unsigned)(st->st_mode & 0777));
}

/* parse_file reads `NAME ROLE TOKEN` lines. */
static int parse_file(const char *path, cred_table *t, char *err, size_t err_len)
{
	char *buf = read_small(path, err, err_len);
	char *line, *save = NULL;
	int lineno = 0, rc = 0;

	if (buf == NULL)
		return -1;
	for (line = strtok_r(buf, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char name[NAME_MAX_LEN + 2], role[16], token[JQ_AUTH_TOKEN_MAX + 2], extra[2], where[64];
		jq_role r;
		int fields;
		lineno++;
		line[strcspn(line, "#")] = '\0';
		fields = sscanf(line, "%65s %15s %257s %1s", name, role, token, extra);
		if (fields <= 0)
			continue;
		snprintf(where, sizeof(where), "line %d", lineno);
		if (fields != 3) {
			set_err(err, err_len, "%s: %s: expected NAME ROLE TOKEN", path, where);
			rc = -1;
			break;
		}
		if (!jq_role_parse(role, &r)) {
			set_err(err, err_len, "%s: %s: unknown role '%s' (producer, worker, reader, admin)",
				path, where, role);
			rc = -1;
			break;
		}
		char why[200];
		if (table_add(t, name, r, token, JQ_AUTH_TOKEN_MIN, where, why, sizeof(why)) != 0) {
			set_err(err, err_len, "%s: %s", path, why);
			rc = -1;
			break;
		}
	}
	explicit_bzero(buf, strlen(buf));
	free(buf);
	return rc;
}

/* parse_dir_entry reads one file of a credentials directory: named ROLE or ROLE.NAME. */
static int parse_dir_entry(const char *dir, const char *entry, cred_table *t, char *err,
			   size_t err_len)
{
	char path[4096], role[16];
	struct stat st;
	jq_role r;
	int rc;

	snprintf(path, sizeof(path), "%s/%s", dir, entry);
	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
		return 0; /* sub-folders (the volume's timestamped copy) are not credentials */
	size_t rlen = strcspn(entry, ".");
	snprintf(role, sizeof(role), "%.*s", (int)(rlen < sizeof(role) ? rlen : sizeof(role) - 1), entry);
	if (!jq_role_parse(role, &r)) {
		set_err(err, err_len, "%s: the file name must start with a role (producer, worker, reader, admin)",
			path);
		return -1;
	}
	warn_if_readable(path, &st);
	char *token = read_small(path, err, err_len);
	if (token == NULL)
		return -1;
	token[strcspn(token, "\r\n")] = '\0';
	rc = table_add(t, entry, r, token, JQ_AUTH_TOKEN_MIN, path, err, err_len);
	explicit_bzero(token, strlen(token));
	free(token);
	return rc;
}

static int parse_dir(const char *path, cred_table *t, char *err, size_t err_len)
{
	struct dirent **names = NULL;
	int n = scandir(path, &names, NULL, alphasort), rc = 0;

	if (n < 0) {
		set_err(err, err_len, "%s: %s", path, strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		if (rc == 0 && names[i]->d_name[0] != '.')
			rc = parse_dir_entry(path, names[i]->d_name, t, err, err_len);
		free(names[i]);
	}
	free(names);
	return rc;
}

/* load builds a table from the path and the admin token. */
static int load(const jq_auth *a, cred_table *t, char *err, size_t err_len)
{
	struct stat st;

	memset(t, 0, sizeof(*t));
	if (a->admin_token != NULL &&
	    table_add(t, "auth-token", JQ_ROLE_ADMIN, a->admin_token, 1, "--auth-token", err, err_len) != 0)
		goto fail;
	if (a->path == NULL)
		return 0;
	if (stat(a->path, &st) != 0) {
		set_err(err, err_len, "%s: %s", a->path, strerror(errno));
		goto fail;
	}
	if (S_ISDIR(st.st_mode) ? parse_dir(a->path, t, err, err_len) != 0
				: (warn_if_readable(a->path, &st), parse_file(a->path, t, err, err_len) != 0))
		goto fail;
	return 0;
fail:
	table_clear(t);
	return -1;
}

int jq_auth_new(const jq_auth_opts *opts, jq_auth **out, char *err, size_t err_len)
{
	jq_auth *a = calloc(1, sizeof(*a));

	*out = NULL;
	if (a == NULL) {
		set_err(err, err_len, "out of memory");
		return -1;
	}
	pthread_rwlock_init(&a->lock, NULL);
	a->tls_role = opts->tls_role;
	if ((opts->credentials_path != NULL && (a->path = strdup(opts->credentials_path)) == NULL) ||
	    (opts->admin_token != NULL && (a->admin_token = strdup(opts->admin_token)) == NULL)) {
		set_err(err, err_len, "out of memory");
		goto fail;
	}
	/* Stamped before reading: a change during the read is seen as a change afterwards. */
	a->seen = jq_auth_stamp(a);
	if (load(a, &a->table, err, err_len) != 0)
		goto fail;
	*out = a;
	return 0;
fail:
	jq_auth_free(a);
	return -1;
}

int jq_auth_reload(jq_auth *a, char *err, size_t err_len)
{
	cred_table fresh, old;

	if (a->path == NULL)
		return 0;
	a->seen = jq_auth_stamp(a);
	if (load(a, &fresh, err, err_len) != 0)
		return -1;
	pthread_rwlock_wrlock(&a->lock);
	old = a->table;
	a->table = fresh;
	pthread_rwlock_unlock(&a->lock);
	table_clear(&old);
	return 0;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static uint64_t stamp_one(uint64_t h, const char *path, const char *name)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return fnv(h, "?", 1);
	h = fnv(h, name, strlen(name));
	h = fnv(h, &st.st_ino, sizeof(st.st_ino));
	h = fnv(h, &st.st_size, sizeof(st.st_size));
	h = fnv(h, &st.st_mtim, sizeof(st.st_mtim));
	return h;
}

uint64_t jq_auth_stamp(const jq_auth *a)
{
	uint64_t h = 14695981039346656037ULL;
	struct stat st;

	if (a == NULL || a->path == NULL || stat(a->path, &st) != 0)
		return 0;
	if (!S_ISDIR(st.st_mode))
		return stamp_one(h, a->path, "");
	DIR *d = opendir(a->path);
	struct dirent *e;
	char path[4096];
	if (d == NULL)
		return 0;
	/* Entry order may vary between reads: combine per-entry hashes by addition. */
	uint64_t sum = 0;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", a->path, e->d_name);
		sum += stamp_one(h, path, e->d_name);
	}
	closedir(d);
	return sum != 0 ? sum : 1;
}

bool jq_auth_changed(const jq_auth *a)
{
	uint64_t now = jq_auth_stamp(a);
	return now != 0 && now != a->seen;
}

int jq_auth_count(jq_auth *a)
{
	int n;
	pthread_rwlock_rdlock(&a->lock);
	n = a->table.n;
	pthread_rwlock_unlock(&a->lock);
	return n;
}

bool jq_auth_required(const jq_auth *a)
{
	return a->path != NULL || a->admin_token != NULL || a->tls_role != JQ_ROLE_NONE;
}

/* Constant time in the length of the expected token, so timing does not reveal a prefix. */
static bool token_matches(const char *expected, const char *given)
{
	size_t n = strlen(expected), m = strlen(given);
	unsigned char diff = (unsigned char)(n != m);
	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char)(expected[i] ^ (i < m ? given[i] : 0));
	return diff == 0;
}

/* lookup: the role of token, JQ_ROLE_NONE if no credential has it. Every credential is
 * compared, so the time does not tell which one matched. */
static jq_role lookup(jq_auth *a, const char *token)
{
	jq_role role = JQ_ROLE_NONE;
	pthread_rwlock_rdlock(&a->lock);
	for (int i = 0; i < a->table.n; i++)
		if (token_matches(a->table.items[i].token, token))
			role = a->table.items[i].role;
	pthread_rwlock_unlock(&a->lock);
	return role;
}

jq_code jq_auth_authorize(void *auth, const char *method, const char *token, bool tls_verified,
			   int *principal, char *why, size_t why_len)
{
	jq_auth *a = auth;
	jq_role role;

	*principal = JQ_ROLE_NONE;
	if (!jq_auth_required(a)) {
		*principal = JQ_ROLE_ADMIN;
		return JQ_OK;
	}
	if (token[0] != '\0')
		role = lookup(a, token);
	else
		role = tls_verified ? a->tls_role : JQ_ROLE_NONE;
	if (role == JQ_ROLE_NONE) {
		set_err(why, why_len, token[0] != '\0' ? "unknown credential"
						       : "missing credential (set JOBQ_AUTH_TOKEN)");
		return JQ_UNAUTHENTICATED;
	}
	if (!jq_role_allows(role, method)) {
		set_err(why, why_len, "role %s may not call %.64s", jq_role_name(role),
			strncmp(method, METHOD_PREFIX, strlen(METHOD_PREFIX)) == 0
				? method + strlen(METHOD_PREFIX)
				: method);
		return JQ_PERMISSION_DENIED;
	}
	*principal = role;
	return JQ_OK;
}

bool jq_auth_bearer(const char *value, char *out, size_t cap)
{
	out[0] = '\0';
	if (value == NULL)
		return true;
	value += strspn(value, " \t");
	if (strncasecmp(value, "Bearer", 6) != 0 || (value[6] != ' ' && value[6] != '\t'))
		return false;
	value += 6 + strspn(value + 6, " \t");
	size_t n = strcspn(value, " \t");
	if (n == 0 || n >= cap || value[n + strspn(value + n, " \t")] != '\0')
		return false;
	memcpy(out, value, n);
	out[n] = '\0';
	return true;
}

void jq_auth_free(jq_auth *a)
{
	if (a == NULL)
		return;
	table_clear(&a->table);
	if (a->admin_token != NULL)
		explicit_bzero(a->admin_token, strlen(a->admin_token));
	free(a->admin_token);
	free(a->path);
	pthread_rwlock_destroy(&a->lock);
	free(a);
}
