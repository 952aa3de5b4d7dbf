/* edgepack runtime: SUB, int8, 4-D broadcasting (TFLM's int8 SUB: ADD's arithmetic, input2 subtracted). */
#include "ep_broadcast.h"

ep_status ep_sub_s8(const ep_sub_params *p, const int8_t *input1, const int8_t *input2, int8_t *output)
{
    int32_t n, h, w, c;
    ep_status st;
    if (p == NULL || input1 == NULL || input2 == NULL || output == NULL) return EP_ERR_ARG;
    st = ep_broadcast_check(&p->input1, &p->input2, &p->output);
    if (st != EP_OK) return st;
    if (p->left_shift < 0 || p->left_shift > 22) return EP_ERR_ARG;
    if (p->input1_offset < -127 || p->input1_offset > 128 || p->input2_offset < -127 || p->input2_offset > 128 ||
        p->output_offset < -128 || p->output_offset > 127)
        return EP_ERR_ARG;
    if (p->input1_shift > 0 || p->input2_shift > 0 || p->input1_shift < -31 || p->input2_shift < -31 ||
        p->output_shift < -31 || p->output_shift > 30 || p->input1_multiplier < 0 || p->input2_multiplier < 0 ||
        p->output_multiplier < 0)
        return EP_ERR_ARG;
    if (!ep_act_ok(p->act_min, p->act_max)) return EP_ERR_ARG;
    for (n = 0; n < p->output.n; ++n)
        for (h = 0; h < p->output.h; ++h)
            for (w = 0; w < p->output.w; ++w)
                for (c = 0; c < p->output.c; ++c) {
                    const int32_t a = (input1[ep_bcast_offset(&p->input1, n, h, w, c)] + p->input1_offset)
                                      * (1 << p->left_shift);
                    const int32_t b = (input2[ep_bcast_offset(&p->input2, n, h, w, c)] + p->input2_offset)
                                      * (1 << p->left_shift);
                    const int32_t sa =
                        ep_MultiplyByQuantizedMultiplierSmallerThanOneExp(a, p->input1_multiplier, p->input1_shift);
                    const int32_t sb =
                        ep_MultiplyByQuantizedMultiplierSmallerThanOneExp(b, p->input2_multiplier, p->input2_shift);
                    const int32_t raw = ep_wadd(
                        ep_MultiplyByQuantizedMultiplier(ep_wsub(sa, sb), p->output_multiplier, p->output_shift),
                        p->output_offset);
                    output[(((int64_t)n * p->output.h + h) * p->output.w + w) * p->output.c + c] =
                        (int8_t)ep_clamp_i32(raw, p->act_min, p->act_max);
                }
    return EP_OK;
}
