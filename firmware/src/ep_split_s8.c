/* edgepack runtime: SPLIT / SPLIT_V / UNPACK, int8 (the inverse of CONCATENATION: copies only). */
#include "ep_internal.h"

ep_status ep_split_s8(const ep_split_params *p, const int8_t *input, int8_t *const *outputs)
{
    int64_t used;
    int32_t k, o;
    if (p == NULL || input == NULL || outputs == NULL || p->axis_sizes == NULL) return EP_ERR_ARG;
    if (p->num_outputs < 1 || p->num_outputs > EP_MAX_OP_OUTPUTS || p->outer < 1 || p->inner < 1 ||
        p->axis_total < 1 || p->axis_begin < 0)
        return EP_ERR_DIM;
    used = p->axis_begin;
    for (k = 0; k < p->num_outputs; ++k) {
        if (p->axis_sizes[k] < 1 || outputs[k] == NULL) return EP_ERR_ARG;
        used += p->axis_sizes[k];
    }
    if (used > p->axis_total || ep_prod(ep_prod(p->outer, p->axis_total), p->inner) < 0) return EP_ERR_DIM;
    for (o = 0; o < p->outer; ++o) {
        const int8_t *src = input + ((int64_t)o * p->axis_total + p->axis_begin) * p->inner;
        for (k = 0; k < p->num_outputs; ++k) {
            const int64_t chunk = (int64_t)p->axis_sizes[k] * p->inner;
            memcpy(outputs[k] + (int64_t)o * chunk, src, (size_t)chunk);
            src += chunk;
        }
    }
    return EP_OK;
}
