/* json_get.c — see json_get.h. */
#include "common/json_get.h"

#include <limits.h>
#include <math.h>

int json_int_value(json_t *v, long long lo, long long hi, long long *out) {
    long long x;
    if (json_is_integer(v)) x = json_integer_value(v);
    else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) && fabs(json_real_value(v)) < 9e15)
        x = (long long)json_real_value(v);
    else return -1;
    if (x < lo || x > hi) return -1;
    *out = x;
    return 0;
}

int json_get_int(json_t *o, const char *key, long long lo, long long hi, long long *out, kiln_err *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    long long x;
    if (json_int_value(v, LLONG_MIN, LLONG_MAX, &x)) return kiln_err_set(err, "'%s' must be an integer", key);
    if (x < lo || x > hi) return kiln_err_set(err, "'%s' must be between %lld and %lld, got %lld", key, lo, hi, x);
    *out = x;
    return 1;
}

int json_get_num(json_t *o, const char *key, double lo, double hi, double *out, kiln_err *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return kiln_err_set(err, "'%s' must be a number", key);
    double x = json_number_value(v);
    if (!isfinite(x) || !(x >= lo && x <= hi)) return kiln_err_set(err, "'%s' must be between %g and %g, got %g", key, lo, hi, x);
    *out = x;
    return 1;
}

int json_get_bool(json_t *o, const char *key, bool *out, kiln_err *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return kiln_err_set(err, "'%s' must be a boolean", key);
    *out = json_is_true(v);
    return 1;
}

int json_get_str(json_t *o, const char *key, const char **out, kiln_err *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) return kiln_err_set(err, "'%s' must be a string", key);
    *out = json_string_value(v);
    return 1;
}

int json_get_int_list(json_t *o, const char *key, long long lo, long long hi, long long *out, int max, int *n,
                      kiln_err *err) {
    json_t *v = json_object_get(o, key);
    *n = 0;
    if (!json_is_array(v)) {
        int rc = json_get_int(o, key, lo, hi, out, err);
        if (rc < 0) return kiln_err_set(err, "'%s' must be an integer between %lld and %lld (or a list of them)", key, lo, hi);
        *n = rc;
        return rc;
    }
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) {
        if ((int)i == max) return kiln_err_set(err, "'%s' has more than %d values", key, max);
        if (json_int_value(x, lo, hi, &out[i]))
            return kiln_err_set(err, "'%s[%zu]' must be an integer between %lld and %lld", key, i, lo, hi);
        (*n)++;
    }
    return 1;
}
