/* edgepack runtime: QUANTIZE, float32 -> int8 (a model's float input; TFLM's AffineQuantize). */
#include "ep_internal.h"

/* Round half away from zero of a float32 inside (-2^31, 2^31), without libm. */
static int32_t round_half_away(float q)
{
    const int32_t t = (int32_t)q; /* truncation; exact, as is q - t below 2^24 */
    if (q >= 8388608.0f || q <= -8388608.0f) return t; /* already an integer */
    if (q - (float)t >= 0.5f) return t + 1;
    if (q - (float)t <= -0.5f) return t - 1;
    return t;
}

ep_status ep_quantize_f32_s8(const ep_float_quant_params *p, const float *input, int8_t *output)
{
    int32_t i;
    if (p == NULL || input == NULL || output == NULL) return EP_ERR_ARG;
    if (p->size < 0) return EP_ERR_DIM;
    if (p->zero_point < -128 || p->zero_point > 127 || !(p->scale > 0.0f)) return EP_ERR_ARG;
    for (i = 0; i < p->size; ++i) {
        const float q = input[i] / p->scale; /* float32 division, as TFLM */
        /* NaN or beyond int32: TFLM's host conversion gives INT32_MIN (floats below 2^31 are
         * integers from 2^23 on, so rounding never leaves int32). The zero point is then added
         * with wrap-around, as the host does. */
        const int32_t r = (q > -2147483648.0f && q < 2147483648.0f) ? round_half_away(q) : EP_INT32_MIN;
        output[i] = (int8_t)ep_clamp_i32(ep_wadd(r, p->zero_point), -128, 127);
    }
    return EP_OK;
}
