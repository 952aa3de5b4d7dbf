/* edgepack runtime: STRIDED_SLICE (and SLICE, REVERSE_V2), int8, ranks 1..EP_MAX_DIMS. */
#include "ep_internal.h"

ep_status ep_strided_slice_s8(const ep_strided_slice_params *p, const int8_t *input, int8_t *output)
{
    int64_t in_stride[EP_MAX_DIMS];
    int32_t idx[EP_MAX_DIMS];
    int32_t d, rank, last;
    int64_t step;
    if (p == NULL || input == NULL || output == NULL) return EP_ERR_ARG;
    rank = p->rank;
    if (ep_dims_count(rank, p->input_dims) < 0 || ep_dims_count(rank, p->output_dims) < 0) return EP_ERR_DIM;
    for (d = 0; d < rank; ++d) {
        /* Both ends of the walk stay inside the input (64-bit: no overflow for any stride). */
        const int64_t end = (int64_t)p->begin[d] + (int64_t)(p->output_dims[d] - 1) * p->stride[d];
        if (p->stride[d] == 0 || p->begin[d] < 0 || p->begin[d] >= p->input_dims[d] || end < 0 ||
            end >= p->input_dims[d])
            return EP_ERR_ARG;
        idx[d] = 0;
    }
    in_stride[rank - 1] = 1;
    for (d = rank - 2; d >= 0; --d) in_stride[d] = in_stride[d + 1] * p->input_dims[d + 1];
    last = p->output_dims[rank - 1];
    step = p->stride[rank - 1];
    do {
        int64_t src = 0;
        int32_t k;
        for (d = 0; d < rank; ++d) src += ((int64_t)p->begin[d] + (int64_t)idx[d] * p->stride[d]) * in_stride[d];
        if (step == 1) {
            memcpy(output, input + src, (size_t)last);
        } else {
            for (k = 0; k < last; ++k) output[k] = input[src + k * step];
        }
        output += last;
    } while (ep_next_index(rank, p->output_dims, idx));
    return EP_OK;
}
