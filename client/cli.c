/* jobq — the command-line client. */
#include <stdio.h>
#include <string.h>

#include "jobq.h"

static void usage(FILE *out)
{
	fprintf(out, "Usage: jobq COMMAND [OPTIONS]\n\n"
		     "  --version   print the version\n"
		     "  --help      this text\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("jobq %s\n", jobq_version());
		return 0;
	}
	fprintf(stderr, "jobq: unknown command '%s' (see jobq --help)\n", argv[1]);
	return 2;
}
