/* edgepack runtime: MIRROR_PAD (REFLECT / SYMMETRIC), int8, ranks 1..EP_MAX_DIMS. */
#include "ep_internal.h"

/* Input index of output index o along one dimension (TFLM's GetInputDimension). */
static int32_t mirrored(int32_t o, int32_t before, int32_t size, int32_t reflect)
{
    if (o < before) {
        const int32_t edge = before + reflect - 1;
        return edge - ep_min_i32(o, edge - reflect);
    }
    o -= before;
    if (o >= size) {
        const int32_t edge = size - 1 - reflect;
        return edge - ep_min_i32(o - size, edge);
    }
    return o;
}

ep_status ep_mirror_pad_s8(const ep_mirror_pad_params *p, const int8_t *input, int8_t *output)
{
    int64_t in_stride[EP_MAX_DIMS];
    int32_t idx[EP_MAX_DIMS];
    int32_t d, rank, last;
    if (p == NULL || input == NULL || output == NULL) return EP_ERR_ARG;
    rank = p->rank;
    if (ep_dims_count(rank, p->input_dims) < 0 || ep_dims_count(rank, p->output_dims) < 0) return EP_ERR_DIM;
    if (p->reflect != 0 && p->reflect != 1) return EP_ERR_ARG;
    for (d = 0; d < rank; ++d) {
        /* Each pad mirrors at most the input minus its edge (REFLECT): every index read is inside. */
        const int64_t after = (int64_t)p->output_dims[d] - p->input_dims[d] - p->before[d];
        if (p->before[d] < 0 || after < 0 || p->before[d] > p->input_dims[d] - p->reflect ||
            after > p->input_dims[d] - p->reflect)
            return EP_ERR_ARG;
        idx[d] = 0;
    }
    in_stride[rank - 1] = 1;
    for (d = rank - 2; d >= 0; --d) in_stride[d] = in_stride[d + 1] * p->input_dims[d + 1];
    last = rank - 1;
    do {
        int64_t base = 0;
        int32_t k;
        for (d = 0; d < last; ++d)
            base += mirrored(idx[d], p->before[d], p->input_dims[d], p->reflect) * in_stride[d];
        for (k = 0; k < p->output_dims[last]; ++k)
            *output++ = input[base + mirrored(k, p->before[last], p->input_dims[last], p->reflect)];
    } while (ep_next_index(rank, p->output_dims, idx));
    return EP_OK;
}
