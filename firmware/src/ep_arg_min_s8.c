/* edgepack runtime: ARG_MIN, int8 input, int32 indices (the first of equal minima, as TFLM). */
#include "ep_internal.h"

ep_status ep_arg_min_s8(const ep_arg_params *p, const int8_t *input, int32_t *output)
{
    int32_t o, i, a;
    if (p == NULL || input == NULL || output == NULL) return EP_ERR_ARG;
    if (p->outer < 1 || p->axis_size < 1 || p->inner < 1) return EP_ERR_DIM;
    if (ep_prod(ep_prod(p->outer, p->axis_size), p->inner) < 0 || ep_prod(ep_prod(p->outer, p->inner), 4) < 0)
        return EP_ERR_DIM;
    for (o = 0; o < p->outer; ++o) {
        const int8_t *row = input + (int64_t)o * p->axis_size * p->inner;
        for (i = 0; i < p->inner; ++i) {
            int8_t best = row[i];
            int32_t at = 0;
            for (a = 1; a < p->axis_size; ++a) {
                const int8_t v = row[(int64_t)a * p->inner + i];
                if (v < best) {
                    best = v;
                    at = a;
                }
            }
            *output++ = at;
        }
    }
    return EP_OK;
}
