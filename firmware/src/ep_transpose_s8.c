/* edgepack runtime: TRANSPOSE, int8, ranks 1..EP_MAX_DIMS (a byte permutation, no requantization). */
#include "ep_internal.h"

ep_status ep_transpose_s8(const ep_transpose_params *p, const int8_t *input, int8_t *output)
{
    int64_t in_stride[EP_MAX_DIMS], stride[EP_MAX_DIMS];
    int32_t out_dims[EP_MAX_DIMS], idx[EP_MAX_DIMS];
    int32_t seen = 0, d, rank, last;
    if (p == NULL || input == NULL || output == NULL) return EP_ERR_ARG;
    rank = p->rank;
    if (ep_dims_count(rank, p->input_dims) < 0) return EP_ERR_DIM;
    for (d = 0; d < rank; ++d) {
        const int32_t q = p->perm[d];
        if (q < 0 || q >= rank || (seen & (1 << q))) return EP_ERR_ARG;
        seen |= 1 << q;
    }
    in_stride[rank - 1] = 1;
    for (d = rank - 2; d >= 0; --d) in_stride[d] = in_stride[d + 1] * p->input_dims[d + 1];
    for (d = 0; d < rank; ++d) {
        out_dims[d] = p->input_dims[p->perm[d]];
        stride[d] = in_stride[p->perm[d]]; /* input step of output dimension d */
        idx[d] = 0;
    }
    last = out_dims[rank - 1];
    do {
        int64_t src = 0;
        int32_t k;
        for (d = 0; d < rank - 1; ++d) src += idx[d] * stride[d];
        if (stride[rank - 1] == 1) {
            memcpy(output, input + src, (size_t)last);
        } else {
            for (k = 0; k < last; ++k) output[k] = input[src + k * stride[rank - 1]];
        }
        output += last;
    } while (ep_next_index(rank, out_dims, idx));
    return EP_OK;
}
