/* edgepack runtime: CONCATENATION on any axis, int8 (a copy: inputs share the output quantization). */
#include "ep_internal.h"

ep_status ep_concatenation_s8(const ep_concatenation_params *p, const int8_t *const *inputs, int8_t *output)
{
    int64_t total_axis = 0;
    int32_t i, o;
    if (p == NULL || inputs == NULL || output == NULL || p->axis_sizes == NULL) return EP_ERR_ARG;
    if (p->num_inputs < 1 || p->num_inputs > 65535 || p->outer < 1 || p->inner < 1) return EP_ERR_DIM;
    for (i = 0; i < p->num_inputs; ++i) {
        if (p->axis_sizes[i] < 0 || inputs[i] == NULL) return EP_ERR_ARG;
        total_axis += p->axis_sizes[i];
        if (total_axis > EP_INT32_MAX) return EP_ERR_DIM;
    }
    if (ep_prod(ep_prod(p->outer, total_axis), p->inner) < 0) return EP_ERR_DIM;
    for (o = 0; o < p->outer; ++o) {
        int8_t *dst = output + (int64_t)o * total_axis * p->inner;
        for (i = 0; i < p->num_inputs; ++i) {
            const int64_t chunk = (int64_t)p->axis_sizes[i] * p->inner;
            memcpy(dst, inputs[i] + (int64_t)o * chunk, (size_t)chunk);
            dst += chunk;
        }
    }
    return EP_OK;
}
