/* resolve.c — ORG/NAME → cached snapshot directory (placeholder until the hub cache lands). */
#include "kiln.h"

const char *kiln_hub_resolve_model(const char *repo_id) {
    (void)repo_id;
    return NULL;
}
