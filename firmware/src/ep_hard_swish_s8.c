/* edgepack runtime: HARD_SWISH, int8 (TFLite reference_ops::HardSwish, int16 fixed point). */
#include "ep_internal.h"

ep_status ep_hard_swish_s8(const ep_hard_swish_params *p, const int8_t *input, int8_t *output)
{
    int32_t i;
    if (p == NULL || input == NULL || output == NULL) return EP_ERR_ARG;
    if (p->size < 0) return EP_ERR_DIM;
    if (p->input_zero_point < -128 || p->input_zero_point > 127 || p->output_zero_point < -128 ||
        p->output_zero_point > 127)
        return EP_ERR_ARG;
    if (p->reluish_multiplier_fixedpoint_int16 < INT16_MIN || p->reluish_multiplier_fixedpoint_int16 > INT16_MAX ||
        p->output_multiplier_fixedpoint_int16 < INT16_MIN || p->output_multiplier_fixedpoint_int16 > INT16_MAX)
        return EP_ERR_ARG;
    if (p->output_multiplier_exponent > 0 || p->output_multiplier_exponent < -30 ||
        p->reluish_multiplier_exponent > 30 || p->reluish_multiplier_exponent < -30)
        return EP_ERR_ARG;
    for (i = 0; i < p->size; ++i) {
        const int16_t x = (int16_t)((int32_t)input[i] - p->input_zero_point);
        const int16_t hires = (int16_t)(x * (1 << 7));
        const int16_t preshift =
            ep_SaturatingRoundingDoublingHighMul16(hires, (int16_t)p->output_multiplier_fixedpoint_int16);
        int16_t reluish = hires;
        int16_t out_v;
        int32_t v;
        if (p->reluish_multiplier_exponent > 0) {
            reluish = ep_SaturatingLeftShift16(reluish, p->reluish_multiplier_exponent - 1);
        }
        reluish = ep_SaturatingRoundingDoublingHighMul16(reluish, (int16_t)p->reluish_multiplier_fixedpoint_int16);
        if (p->reluish_multiplier_exponent > 0) {
            reluish = ep_SaturatingLeftShift16(reluish, 1);
        }
        if (p->reluish_multiplier_exponent < 0) {
            reluish = ep_RoundingDivideByPOT16(reluish, -p->reluish_multiplier_exponent);
        }
        reluish = (int16_t)(((int32_t)reluish + (1 << 15)) >> 1);
        out_v = ep_SaturatingDoublingHighMul16(reluish, preshift);
        out_v = ep_RoundingDivideByPOT16(out_v, -p->output_multiplier_exponent);
        v = (int32_t)out_v + p->output_zero_point;
        output[i] = (int8_t)ep_clamp_i32(v, -128, 127);
    }
    return EP_OK;
}
