/* edgepack runtime: SOFTMAX, int8 in / int8 out (TFLM gemmlowp path). */
#include "ep_internal.h"

ep_status ep_softmax_s8(const ep_softmax_params *p, const int8_t *input, int8_t *output)
{
    enum { kScaledDiffIntegerBits = 5, kAccumulationIntegerBits = 12 };
    int32_t r, c;
    if (p == NULL || input == NULL || output == NULL) return EP_ERR_ARG;
    if (p->rows < 1 || p->depth < 1 || ep_prod(p->rows, p->depth) < 0) return EP_ERR_DIM;
    if (p->input_multiplier < 0 || p->input_left_shift < 0 || p->input_left_shift > 31) return EP_ERR_ARG;
    if (p->diff_min > 0) return EP_ERR_ARG; /* the row maximum must always count: sum of exps > 0 */
    for (r = 0; r < p->rows; ++r) {
        const int8_t *in = input + (int64_t)r * p->depth;
        int8_t *out = output + (int64_t)r * p->depth;
        int32_t max_in_row = -128;
        int32_t sum_of_exps = 0; /* F12 */
        int num_bits_over_unit;
        int32_t shifted_scale;
        for (c = 0; c < p->depth; ++c) max_in_row = ep_max_i32(max_in_row, in[c]);
        for (c = 0; c < p->depth; ++c) {
            const int32_t diff = (int32_t)in[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t scaled = ep_MultiplyByQuantizedMultiplierGreaterThanOne(diff, p->input_multiplier,
                                                                                      p->input_left_shift);
                const int32_t e = ep_exp_on_negative_values(scaled, kScaledDiffIntegerBits);
                sum_of_exps = ep_wadd(sum_of_exps, ep_fp_rescale(e, 0, kAccumulationIntegerBits));
            }
        }
        shifted_scale = ep_GetReciprocal(sum_of_exps, kAccumulationIntegerBits, &num_bits_over_unit);
        for (c = 0; c < p->depth; ++c) {
            const int32_t diff = (int32_t)in[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t scaled = ep_MultiplyByQuantizedMultiplierGreaterThanOne(diff, p->input_multiplier,
                                                                                      p->input_left_shift);
                const int32_t e = ep_exp_on_negative_values(scaled, kScaledDiffIntegerBits);
                /* exponent > 31 (a sum of exps >= 2^29 in Q12, i.e. >= 1024 near-equal inputs) would be
                 * an out-of-range shift in TFLite; the exact quotient rounds to 0 there. */
                const int exponent = num_bits_over_unit + 31 - 8;
                const int32_t unsat =
                    exponent > 31 ? 0 : ep_RoundingDivideByPOT(ep_fp_mul(shifted_scale, e), exponent);
                out[c] = (int8_t)ep_clamp_i32(unsat - 128, -128, 127);
            } else {
                out[c] = -128;
            }
        }
    }
    return EP_OK;
}
