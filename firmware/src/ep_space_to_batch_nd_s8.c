/* edgepack runtime: SPACE_TO_BATCH_ND, int8 (TFLM's reference loop: padding then blocks to batches). */
#include "ep_internal.h"

ep_status ep_space_to_batch_nd_s8(const ep_batch_space_params *p, const int8_t *input, int8_t *output)
{
    int32_t ob, oy, ox;
    const ep_shape *in;
    if (p == NULL || input == NULL || output == NULL) return EP_ERR_ARG;
    in = &p->input;
    if (ep_shape_count(in) < 0 || ep_shape_count(&p->output) < 0 || p->block_h < 1 || p->block_w < 1 ||
        p->output.c != in->c || ep_prod(ep_prod(in->n, p->block_h), p->block_w) != p->output.n ||
        p->pad_top < 0 || p->pad_left < 0 || ep_prod(p->output.h, p->block_h) < 0 || ep_prod(p->output.w, p->block_w) < 0)
        return EP_ERR_DIM;
    if (p->pad_value < -128 || p->pad_value > 127) return EP_ERR_ARG;
    for (ob = 0; ob < p->output.n; ++ob) {
        const int32_t n = ob % in->n;
        const int32_t sx = (ob / in->n) % p->block_w;
        const int32_t sy = (ob / in->n) / p->block_w;
        for (oy = 0; oy < p->output.h; ++oy) {
            const int64_t iy = (int64_t)oy * p->block_h + sy - p->pad_top;
            for (ox = 0; ox < p->output.w; ++ox) {
                const int64_t ix = (int64_t)ox * p->block_w + sx - p->pad_left;
                if (iy < 0 || iy >= in->h || ix < 0 || ix >= in->w) {
                    memset(output, (int)(int8_t)p->pad_value, (size_t)in->c);
                } else {
                    memcpy(output, input + (((int64_t)n * in->h + iy) * in->w + ix) * in->c, (size_t)in->c);
                }
                output += in->c;
            }
        }
    }
    return EP_OK;
}
