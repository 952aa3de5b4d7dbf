/* edgepack runtime: DEQUANTIZE, int8 -> float32 (a model's float output). */
#include "ep_internal.h"

ep_status ep_dequantize_s8(const ep_float_quant_params *p, const int8_t *input, float *output)
{
    int32_t i;
    if (p == NULL || input == NULL || output == NULL) return EP_ERR_ARG;
    if (p->size < 0) return EP_ERR_DIM;
    if (p->zero_point < -128 || p->zero_point > 127 || !(p->scale > 0.0f)) return EP_ERR_ARG;
    /* TFLM computes (float)(double(scale) * (x - zp)); that double product is exact (24 + 9 bits),
     * so one float32 multiply rounds to the same value. */
    for (i = 0; i < p->size; ++i) output[i] = p->scale * (float)((int32_t)input[i] - p->zero_point);
    return EP_OK;
}
