/* edgepack runtime: LEAKY_RELU, int8 (TFLite reference_ops::QuantizeLeakyRelu). */
#include "ep_internal.h"

ep_status ep_leaky_relu_s8(const ep_leaky_relu_params *p, const int8_t *input, int8_t *output)
{
    int32_t i;
    if (p == NULL || input == NULL || output == NULL) return EP_ERR_ARG;
    if (p->size < 0) return EP_ERR_DIM;
    if (p->input_zero_point < -128 || p->input_zero_point > 127 || p->output_zero_point < -128 ||
        p->output_zero_point > 127)
        return EP_ERR_ARG;
    /* alpha may be negative, so its multiplier may be too (QuantizeMultiplier keeps the sign). */
    if (p->identity_multiplier < 0 || p->identity_shift < -31 || p->identity_shift > 30 ||
        p->alpha_multiplier == EP_INT32_MIN || p->alpha_shift < -31 || p->alpha_shift > 30)
        return EP_ERR_ARG;
    for (i = 0; i < p->size; ++i) {
        const int32_t x = (int32_t)input[i] - p->input_zero_point;
        const int32_t scaled = x >= 0 ? ep_MultiplyByQuantizedMultiplier(x, p->identity_multiplier, p->identity_shift)
                                      : ep_MultiplyByQuantizedMultiplier(x, p->alpha_multiplier, p->alpha_shift);
        output[i] = (int8_t)ep_clamp_i32(ep_wadd(scaled, p->output_zero_point), -128, 127);
    }
    return EP_OK;
}
