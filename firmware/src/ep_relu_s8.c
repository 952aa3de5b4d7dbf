/* edgepack runtime: RELU / RELU6 / RELU_N1_TO_1, int8 (TFLM ReluQuantized and Relu6Quantized). */
#include "ep_internal.h"

ep_status ep_relu_s8(const ep_relu_params *p, const int8_t *input, int8_t *output)
{
    int32_t i;
    if (p == NULL || input == NULL || output == NULL) return EP_ERR_ARG;
    if (p->size < 0) return EP_ERR_DIM;
    if (p->input_zero_point < -128 || p->input_zero_point > 127 || p->output_zero_point < -128 ||
        p->output_zero_point > 127 || !ep_act_ok(p->act_min, p->act_max))
        return EP_ERR_ARG;
    if (p->mode == EP_RELU_CLAMP) {
        /* TFLM's int8 RELU6 clamps the raw input to [zero, six] of the input quantization. */
        for (i = 0; i < p->size; ++i) output[i] = (int8_t)ep_clamp_i32(input[i], p->act_min, p->act_max);
        return EP_OK;
    }
    if (p->mode != EP_RELU_REQUANTIZE) return EP_ERR_UNSUPPORTED;
    if (p->multiplier < 0 || p->shift < -31 || p->shift > 30) return EP_ERR_ARG;
    for (i = 0; i < p->size; ++i) {
        const int32_t v = ep_wadd(ep_MultiplyByQuantizedMultiplier((int32_t)input[i] - p->input_zero_point,
                                                                   p->multiplier, p->shift),
                                  p->output_zero_point);
        output[i] = (int8_t)ep_clamp_i32(v, p->act_min, p->act_max);
    }
    return EP_OK;
}
