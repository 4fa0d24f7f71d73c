#include "jobq.h"

const char *jobq_version(void)
{
	return JOBQ_VERSION;
}
