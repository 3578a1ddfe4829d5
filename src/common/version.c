/* version.c — the commit this build was made from (the Makefile bakes it into this one object). */
#include "kiln.h"

#ifndef KILN_GIT_COMMIT
#define KILN_GIT_COMMIT "unknown"
#endif

const char *kiln_build_commit(void) { return KILN_GIT_COMMIT; }
