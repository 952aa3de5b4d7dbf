/* edgepack runtime: SQUARED_DIFFERENCE, int8, 4-D broadcasting (TFLM prepares it as ADD with
 * left_shift 7: the rescaled difference squared fits int32, then one requantization). */
#include "ep_broadcast.h"

ep_status ep_squared_difference_s8(const ep_squared_difference_params *p, const int8_t *input1,
                                   const int8_t *input2, int8_t *output)
{
    int32_t n, h, w, c;
    ep_status st;
    if (p == NULL || input1 == NULL || input2 == NULL || output == NULL) return EP_ERR_ARG;
    /* left_shift <= 7 keeps (255 << 7)^2 inside int32, as TFLM chose it */
    st = ep_add_params_ok(p, 7);
    if (st != EP_OK) return st;
    for (n = 0; n < p->output.n; ++n)
        for (h = 0; h < p->output.h; ++h)
            for (w = 0; w < p->output.w; ++w)
                for (c = 0; c < p->output.c; ++c) {
                    const int32_t a = (input1[ep_bcast_offset(&p->input1, n, h, w, c)] + p->input1_offset)
                                      * (1 << p->left_shift);
                    const int32_t b = (input2[ep_bcast_offset(&p->input2, n, h, w, c)] + p->input2_offset)
                                      * (1 << p->left_shift);
                    const int32_t d =
                        ep_MultiplyByQuantizedMultiplierSmallerThanOneExp(a, p->input1_multiplier, p->input1_shift) -
                        ep_MultiplyByQuantizedMultiplierSmallerThanOneExp(b, p->input2_multiplier, p->input2_shift);
                    const int32_t raw = ep_wadd(
                        ep_MultiplyByQuantizedMultiplier(d * d, p->output_multiplier, p->output_shift), p->output_offset);
                    *output++ = (int8_t)ep_clamp_i32(raw, p->act_min, p->act_max);
                }
    return EP_OK;
}
