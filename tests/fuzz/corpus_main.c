/*
 * corpus_main — replays files through LLVMFuzzerTestOneInput without libFuzzer, so the committed
 * corpus (and any crash file a fuzz run found) is a regression test in `make test` with gcc.
 * Usage: fuzz_rpc_replay FILE_OR_DIR...  Exit 0 when every input ran (a failure aborts).
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		perror(path);
		return -1;
	}
	uint8_t *buf = malloc(1 << 20);
	if (buf == NULL) {
		fclose(f);
		return -1;
	}
	size_t n = fread(buf, 1, 1 << 20, f);
	fclose(f);
	LLVMFuzzerTestOneInput(buf, n);
	free(buf);
	return 0;
}

static int run_path(const char *path, int *count)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		perror(path);
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		(*count)++;
		return run_file(path);
	}
	DIR *d = opendir(path);
	if (d == NULL)
		return -1;
	struct dirent *e;
	int rc = 0;
	while (rc == 0 && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		char child[4096];
		snprintf(child, sizeof(child), "%s/%s", path, e->d_name);
		rc = run_path(child, count);
	}
	closedir(d);
	return rc;
}

int main(int argc, char **argv)
{
	int count = 0;
	for (int i = 1; i < argc; i++) {
		if (run_path(argv[i], &count) != 0)
			return 1;
	}
	printf("fuzz_rpc_replay: %d inputs replayed, no failure\n", count);
	return count > 0 ? 0 : 1;
}
