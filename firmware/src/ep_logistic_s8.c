/* edgepack runtime: LOGISTIC, int8 (TFLM integer path: input in Q4.27, gemmlowp logistic). */
#include "ep_internal.h"

ep_status ep_sigmoid_check(const ep_sigmoid_params *p, const int8_t *input, const int8_t *output)
{
    if (p == NULL || input == NULL || output == NULL) return EP_ERR_ARG;
    if (p->size < 0) return EP_ERR_DIM;
    if (p->input_multiplier < 0 || p->input_left_shift < -31 || p->input_left_shift > 30) return EP_ERR_ARG;
    if (p->input_zero_point < -128 || p->input_zero_point > 127 || p->input_range_radius < 0) return EP_ERR_ARG;
    return EP_OK;
}

ep_status ep_logistic_s8(const ep_sigmoid_params *p, const int8_t *input, int8_t *output)
{
    enum { kInputIntegerBits = 4, kOutputIntegerBits = 8 };
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
            const int32_t out_q0 = ep_fp_logistic(in_q4, kInputIntegerBits);
            const int32_t v = ep_RoundingDivideByPOT(out_q0, 31 - kOutputIntegerBits) - 128;
            output[i] = (int8_t)ep_clamp_i32(v, -128, 127);
        }
    }
    return EP_OK;
}
