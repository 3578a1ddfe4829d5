/* json_get.h — typed, validated members of a JSON object (jansson), one convention for the whole
 * library: config.json, generation_config.json, tokenizer files and API request bodies.
 *
 * Each getter returns 0 when the key is absent or null (*out untouched: the caller's default stands),
 * 1 when it set *out, and -1 on a wrong type or a value outside [lo, hi], with err holding
 * "'key' must be ..." — the caller prefixes where it came from (a file path) or maps it to an HTTP 400
 * naming the parameter. Integers accept an integral real (3.0: JavaScript clients cannot tell them
 * apart), never 3.5. */
#ifndef KILN_JSON_GET_H
#define KILN_JSON_GET_H

#include <jansson.h>
#include <stdbool.h>

#include "kiln.h"

int json_get_int(json_t *o, const char *key, long long lo, long long hi, long long *out, kiln_err *err);
int json_get_num(json_t *o, const char *key, double lo, double hi, double *out, kiln_err *err); /* finite */
int json_get_bool(json_t *o, const char *key, bool *out, kiln_err *err);
int json_get_str(json_t *o, const char *key, const char **out, kiln_err *err); /* borrowed from o */
/* An integer or a list of integers, each in [lo, hi] (eos_token_id's shape): 0 when absent or null
 * (*n = 0), 1 when it set out[0..*n), -1 on a wrong type, a value out of range or more than max values. */
int json_get_int_list(json_t *o, const char *key, long long lo, long long hi, long long *out, int max, int *n,
                      kiln_err *err);
/* The largest token id a model file may name: ids index the logits, and no vocabulary we accept is
 * larger (1 << 28), so anything above is a corrupt file, not a model. */
#define JSON_MAX_TOKEN_ID (1LL << 30)

/* An integer JSON value (not a member) in [lo, hi]: 0 and *out set, else -1 (no message). */
int json_int_value(json_t *v, long long lo, long long hi, long long *out);

#endif
