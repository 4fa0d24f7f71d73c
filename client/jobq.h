/*
 * jobq.h — the public API of libjobq, the jobq client library.
 *
 * Link with build/lib/libjobq.a -lnng -lprotobuf-c -lpthread.
 */
#ifndef JOBQ_H
#define JOBQ_H

#define JOBQ_VERSION "0.1.0"

/* jobq_version returns the library version, a static string. */
const char *jobq_version(void);

#endif
