/* edgepack runtime: GATHER, int8 data, int32 indices (batch_dims folded into `batch`). */
#include "ep_internal.h"

ep_status ep_gather_s8(const ep_gather_params *p, const int8_t *input, const int32_t *indices, int8_t *output)
{
    int32_t b, o, i;
    if (p == NULL || input == NULL || indices == NULL || output == NULL) return EP_ERR_ARG;
    if (p->batch < 1 || p->outer < 1 || p->axis_size < 1 || p->inner < 1 || p->num_indices < 1) return EP_ERR_DIM;
    if (ep_prod(ep_prod(ep_prod(p->batch, p->outer), p->axis_size), p->inner) < 0 ||
        ep_prod(ep_prod(ep_prod(p->batch, p->outer), p->num_indices), p->inner) < 0 ||
        ep_prod(p->batch, p->num_indices) < 0)
        return EP_ERR_DIM;
    /* Every index is checked before any byte is written (TFLM fails the invocation instead). */
    for (i = 0; i < p->batch * p->num_indices; ++i)
        if (indices[i] < 0 || indices[i] >= p->axis_size) return EP_ERR_ARG;
    for (b = 0; b < p->batch; ++b) {
        const int32_t *idx = indices + (int64_t)b * p->num_indices;
        for (o = 0; o < p->outer; ++o) {
            const int8_t *src = input + ((int64_t)b * p->outer + o) * p->axis_size * p->inner;
            for (i = 0; i < p->num_indices; ++i) {
                memcpy(output, src + (int64_t)idx[i] * p->inner, (size_t)p->inner);
                output += p->inner;
            }
        }
    }
    return EP_OK;
}
