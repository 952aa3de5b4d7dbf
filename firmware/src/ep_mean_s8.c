/* edgepack runtime: MEAN over H and W, int8. */
#include "ep_internal.h"

ep_status ep_mean_s8(const ep_mean_params *p, const int8_t *input, int8_t *output)
{
    int32_t b, c, i, n;
    if (p == NULL || input == NULL || output == NULL) return EP_ERR_ARG;
    if (ep_shape_count(&p->input) < 0) return EP_ERR_DIM;
    if ((int64_t)p->input.h * p->input.w > 4194304) return EP_ERR_DIM; /* |sum - zp * n| < 2^31 */
    if (p->input_zero_point < -128 || p->input_zero_point > 127 || p->output_zero_point < -128 ||
        p->output_zero_point > 127)
        return EP_ERR_ARG;
    if (p->mode != EP_MEAN_TFLM && p->mode != EP_MEAN_INTEGER_OPS) return EP_ERR_UNSUPPORTED;
    if (p->multiplier < 0 || p->shift < -31 || p->shift > 30) return EP_ERR_ARG;
    n = p->input.h * p->input.w;
    for (b = 0; b < p->input.n; ++b) {
        const int8_t *in = input + (int64_t)b * n * p->input.c;
        for (c = 0; c < p->input.c; ++c) {
            int32_t acc = 0;
            int32_t v;
            for (i = 0; i < n; ++i) acc += in[(int64_t)i * p->input.c + c];
            acc -= p->input_zero_point * n;
            v = ep_MultiplyByQuantizedMultiplier(acc, p->multiplier, p->shift);
            if (p->mode == EP_MEAN_INTEGER_OPS) v = ep_rounded_div(v, n);
            output[(int64_t)b * p->input.c + c] = (int8_t)ep_clamp_i32(ep_wadd(v, p->output_zero_point), -128, 127);
        }
    }
    return EP_OK;
}
