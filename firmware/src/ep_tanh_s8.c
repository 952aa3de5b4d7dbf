/* edgepack runtime: TANH, int8 (TFLM integer path: input in Q4.27, gemmlowp tanh). */
#include "ep_internal.h"

ep_status ep_tanh_s8(const ep_sigmoid_params *p, const int8_t *input, int8_t *output)
{
    enum { kInputIntegerBits = 4, kOutputScale = 7 };
    int32_t i;
    ep_status st = ep_sigmoid_check(p, input, output);
    if (st != EP_OK) return st;
    for (i = 0; i < p->size; ++i) {
        const int32_t x = (int32_t)input[i] - p->input_zero_point;
        if (x <= -p->input_range_radius) {
            output[i] = -128;
        } else if (x >= p->input_range_radius) {
            output[i] = 127;
        } else {
            const int32_t in_q4 = ep_MultiplyByQuantizedMultiplier(x, p->input_multiplier, p->input_left_shift);
            const int32_t out_q0 = ep_fp_tanh(in_q4, kInputIntegerBits);
            const int32_t v = ep_RoundingDivideByPOT(out_q0, 31 - kOutputScale);
            output[i] = (int8_t)ep_clamp_i32(v, -128, 127);
        }
    }
    return EP_OK;
}
