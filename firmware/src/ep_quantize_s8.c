/* edgepack runtime: QUANTIZE int8 -> int8 (TFLite reference_ops::Requantize). */
#include "ep_internal.h"

ep_status ep_quantize_s8(const ep_quantize_params *p, const int8_t *input, int8_t *output)
{
    int32_t i;
    if (p == NULL || input == NULL || output == NULL) return EP_ERR_ARG;
    if (p->size < 0) return EP_ERR_DIM;
    if (p->input_zero_point < -128 || p->input_zero_point > 127 || p->output_zero_point < -128 ||
        p->output_zero_point > 127 || p->multiplier < 0 || p->shift < -31 || p->shift > 30)
        return EP_ERR_ARG;
    for (i = 0; i < p->size; ++i) {
        const int32_t v = ep_wadd(ep_MultiplyByQuantizedMultiplier((int32_t)input[i] - p->input_zero_point,
                                                                   p->multiplier, p->shift),
                                  p->output_zero_point);
        output[i] = (int8_t)ep_clamp_i32(v, -128, 127);
    }
    return EP_OK;
}
