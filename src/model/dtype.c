/* dtype.c — names of the storage/compute formats, as flags and JSON spell them. */
#include "kiln.h"

#include <string.h>

static const char *const names[KILN_DT_COUNT] = {"f32", "f16", "bf16", "q8_0", "q4_0"};

const char *kiln_dtype_name(kiln_dtype dt) { return (unsigned)dt < KILN_DT_COUNT ? names[dt] : "?"; }

int kiln_dtype_parse(const char *name, kiln_dtype *out) {
    for (int i = 0; i < KILN_DT_COUNT; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (kiln_dtype)i;
            return 0;
        }
    return -1;
}
