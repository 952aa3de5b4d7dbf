/* edgepack runtime: PRELU, int8, alpha broadcast over the input (TFLM's BroadcastPrelu4DSlow). */
#include "ep_broadcast.h"

ep_status ep_prelu_s8(const ep_prelu_params *p, const int8_t *input, const int8_t *alpha, int8_t *output)
{
    int32_t n, h, w, c;
    ep_status st;
    if (p == NULL || input == NULL || alpha == NULL || output == NULL) return EP_ERR_ARG;
    st = ep_broadcast_check(&p->input, &p->alpha, &p->input);
    if (st != EP_OK) return st;
    if (p->input_offset < -127 || p->input_offset > 128 || p->alpha_offset < -127 || p->alpha_offset > 128 ||
        p->output_offset < -128 || p->output_offset > 127 || p->multiplier_1 < 0 || p->multiplier_2 < 0 ||
        p->shift_1 < -31 || p->shift_1 > 30 || p->shift_2 < -31 || p->shift_2 > 30)
        return EP_ERR_ARG;
    for (n = 0; n < p->input.n; ++n)
        for (h = 0; h < p->input.h; ++h)
            for (w = 0; w < p->input.w; ++w)
                for (c = 0; c < p->input.c; ++c) {
                    const int32_t x = (int32_t)*input++ + p->input_offset;
                    int32_t v;
                    if (x >= 0) {
                        v = ep_MultiplyByQuantizedMultiplier(x, p->multiplier_1, p->shift_1);
                    } else {
                        const int32_t a = (int32_t)alpha[ep_bcast_offset(&p->alpha, n, h, w, c)] + p->alpha_offset;
                        v = ep_MultiplyByQuantizedMultiplier(x * a, p->multiplier_2, p->shift_2);
                    }
                    *output++ = (int8_t)ep_clamp_i32(ep_wadd(v, p->output_offset), -128, 127);
                }
    return EP_OK;
}
