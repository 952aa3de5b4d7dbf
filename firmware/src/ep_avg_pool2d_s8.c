/* edgepack runtime: AVERAGE_POOL_2D, int8 (and the pooling argument check shared with MAX_POOL_2D). */
#include "ep_internal.h"

ep_status ep_pool_check(const ep_pool_params *p)
{
    if (p == NULL) return EP_ERR_ARG;
    if (ep_shape_count(&p->input) < 0 || ep_shape_count(&p->output) < 0) return EP_ERR_DIM;
    if (p->input.n != p->output.n || p->input.c != p->output.c) return EP_ERR_DIM;
    if (p->filter_h < 1 || p->filter_w < 1 || p->stride_h < 1 || p->stride_w < 1) return EP_ERR_ARG;
    if (p->pad_top < 0 || p->pad_left < 0 || p->pad_top > 65535 || p->pad_left > 65535) return EP_ERR_ARG;
    if (p->stride_h > 65535 || p->stride_w > 65535 || p->filter_h > 65535 || p->filter_w > 65535)
        return EP_ERR_ARG;
    if (!ep_window_ok(p->output.h, p->stride_h, p->filter_h, 1) ||
        !ep_window_ok(p->output.w, p->stride_w, p->filter_w, 1))
        return EP_ERR_DIM;
    if (ep_prod(p->filter_h, p->filter_w) < 0 || (int64_t)p->filter_h * p->filter_w > 4194304) return EP_ERR_ARG;
    if (!ep_act_ok(p->act_min, p->act_max)) return EP_ERR_ARG;
    return EP_OK;
}

ep_status ep_avg_pool2d_s8(const ep_pool_params *p, const int8_t *input, int8_t *output)
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
                const int32_t count = (ky1 > ky0 && kx1 > kx0) ? (ky1 - ky0) * (kx1 - kx0) : 0;
                int8_t *out = output + (((int64_t)b * p->output.h + oy) * p->output.w + ox) * p->output.c;
                for (c = 0; c < p->output.c; ++c) {
                    int32_t acc = 0;
                    for (ky = ky0; ky < ky1; ++ky) {
                        for (kx = kx0; kx < kx1; ++kx) {
                            acc += input[(((int64_t)b * p->input.h + y0 + ky) * p->input.w + x0 + kx) * p->input.c + c];
                        }
                    }
                    /* TFLite fails the op on an empty window; write the zero-tap value 0 clamped. */
                    acc = count > 0 ? ep_rounded_div(acc, count) : 0;
                    out[c] = (int8_t)ep_clamp_i32(acc, p->act_min, p->act_max);
                }
            }
        }
    }
    return EP_OK;
}
