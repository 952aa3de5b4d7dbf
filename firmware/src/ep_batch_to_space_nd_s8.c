/* edgepack runtime: BATCH_TO_SPACE_ND, int8 (batches back into blocks, then the crops). */
#include "ep_internal.h"

ep_status ep_batch_to_space_nd_s8(const ep_batch_space_params *p, const int8_t *input, int8_t *output)
{
    int32_t ib, iy, ix;
    const ep_shape *out;
    if (p == NULL || input == NULL || output == NULL) return EP_ERR_ARG;
    out = &p->output;
    if (ep_shape_count(&p->input) < 0 || ep_shape_count(out) < 0 || p->block_h < 1 || p->block_w < 1 ||
        p->input.c != out->c || ep_prod(ep_prod(out->n, p->block_h), p->block_w) != p->input.n ||
        p->pad_top < 0 || p->pad_left < 0)
        return EP_ERR_DIM;
    /* The blocks cover every output element (no byte is left unwritten). */
    if ((int64_t)out->h + p->pad_top > ep_prod(p->input.h, p->block_h) ||
        (int64_t)out->w + p->pad_left > ep_prod(p->input.w, p->block_w) || ep_prod(p->input.h, p->block_h) < 0 ||
        ep_prod(p->input.w, p->block_w) < 0)
        return EP_ERR_DIM;
    for (ib = 0; ib < p->input.n; ++ib) {
        const int32_t n = ib % out->n;
        const int32_t spatial = ib / out->n;
        for (iy = 0; iy < p->input.h; ++iy) {
            const int64_t oy = (int64_t)iy * p->block_h + spatial / p->block_w - p->pad_top;
            if (oy < 0 || oy >= out->h) continue;
            for (ix = 0; ix < p->input.w; ++ix) {
                const int64_t ox = (int64_t)ix * p->block_w + spatial % p->block_w - p->pad_left;
                if (ox < 0 || ox >= out->w) continue;
                memcpy(output + (((int64_t)n * out->h + oy) * out->w + ox) * out->c,
                       input + (((int64_t)ib * p->input.h + iy) * p->input.w + ix) * out->c, (size_t)out->c);
            }
        }
    }
    return EP_OK;
}
