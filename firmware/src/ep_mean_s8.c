/* edgepack runtime: MEAN over H and W, int8. */
#include "ep_internal.h"

ep_status ep_mean_s8(const ep_mean_params *p, const int8_t *input, int8_t *output)
{
    int32_t b, c, y, x, n;
    if (p == NULL || input == NULL || output == NULL) return EP_ERR_ARG;
    if (ep_shape_count(&p->input) < 0) return EP_ERR_DIM;
    if ((int64_t)p->input.h * p->input.w > 16777216) return EP_ERR_DIM;
    if (p->input_zero_point < -128 || p->input_zero_point > 127 || p->output_zero_point < -128 ||
        p->output_zero_point > 127)
        return EP_ERR_ARG;
    if (p->mode != EP_MEAN_REQUANT && p->mode != EP_MEAN_SAME_QUANT) return EP_ERR_UNSUPPORTED;
    if (p->mode == EP_MEAN_REQUANT && (p->multiplier < 0 || p->shift < -31 || p->shift > 30)) return EP_ERR_ARG;
    n = p->input.h * p->input.w;
    for (b = 0; b < p->input.n; ++b) {
        for (c = 0; c < p->input.c; ++c) {
            const int8_t *in = input + (int64_t)b * n * p->input.c + c;
            int32_t acc = 0;
            int32_t v;
            if (p->mode == EP_MEAN_REQUANT) {
                for (y = 0; y < p->input.h; ++y)
                    for (x = 0; x < p->input.w; ++x) acc += in[(int64_t)(y * p->input.w + x) * p->input.c] - p->input_zero_point;
                v = ep_MultiplyByQuantizedMultiplier(acc, p->multiplier, p->shift);
                v = ep_rounded_div(v, n) + p->output_zero_point;
            } else {
                for (y = 0; y < p->input.h; ++y)
                    for (x = 0; x < p->input.w; ++x) acc += in[(int64_t)(y * p->input.w + x) * p->input.c];
                v = acc / n;
            }
            output[(int64_t)b * p->input.c + c] = (int8_t)ep_clamp_i32(v, -128, 127);
        }
    }
    return EP_OK;
}
