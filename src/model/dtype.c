/* dtype.c — names of the storage/compute formats, as flags and JSON spell them (kern_formats[].name). */
#include <string.h>

#include "kernels/format.h"
#include "kiln.h"

const char *kiln_dtype_name(kiln_dtype dt) { return kern_dtype_valid((int)dt) ? kern_formats[dt].name : "?"; }

int kiln_dtype_parse(const char *name, kiln_dtype *out) {
    for (int i = 0; i < KILN_DT_COUNT; i++)
        if (strcmp(name, kern_formats[i].name) == 0) {
            *out = (kiln_dtype)i;
            return 0;
        }
    return -1;
}
