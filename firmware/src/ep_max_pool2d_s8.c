/* edgepack runtime: MAX_POOL_2D, int8. */
#include "ep_internal.h"

ep_status ep_max_pool2d_s8(const ep_pool_params *p, const int8_t *input, int8_t *output)
{
    int32_t b, oy, ox, c, ky, kx;
    ep_status st = ep_pool_check(p);
    if (st != EP_OK) return st;
    if (input == NULL || output == NULL) return EP_ERR_ARG;
    for (b = 0; b < p->output.n; ++b) {
        for (oy = 0; oy < p->output.h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_top;
            const int32_t ky0 = ep_max_i32(0, -y0);
            const int32_t ky1 = ep_min_i32(p->filter_h, p->input.h - y0);
            for (ox = 0; ox < p->output.w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_left;
                const int32_t kx0 = ep_max_i32(0, -x0);
                const int32_t kx1 = ep_min_i32(p->filter_w, p->input.w - x0);
                int8_t *out = output + (((int64_t)b * p->output.h + oy) * p->output.w + ox) * p->output.c;
                for (c = 0; c < p->output.c; ++c) {
                    int32_t mx = -128;
                    for (ky = ky0; ky < ky1; ++ky) {
                        for (kx = kx0; kx < kx1; ++kx) {
                            const int32_t v =
                                input[(((int64_t)b * p->input.h + y0 + ky) * p->input.w + x0 + kx) * p->input.c + c];
                            if (v > mx) mx = v;
                        }
                    }
                    out[c] = (int8_t)ep_clamp_i32(mx, p->act_min, p->act_max);
                }
            }
        }
    }
    return EP_OK;
}
