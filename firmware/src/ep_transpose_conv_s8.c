/* edgepack runtime: TRANSPOSE_CONV, int8, dense or palette weights, per-channel requantization.
 *
 * TFLM scatters every input pixel through the filter into an int32 output-sized scratch. Integer
 * sums are exact in any order, so this kernel gathers instead: output pixel (oy, ox) takes input
 * pixel (iy, ix) through tap (ky, kx) when iy * stride - pad + ky = oy (likewise x). No scratch. */
#include "ep_internal.h"

ep_status ep_transpose_conv_s8(const ep_transpose_conv_params *p, const int8_t *input, int8_t *output)
{
    int64_t stride;
    int32_t n, oy, ox, oc, ky, kx, ic;
    ep_status st;
    if (p == NULL || input == NULL || output == NULL) return EP_ERR_ARG;
    if (ep_shape_count(&p->input) < 0 || ep_shape_count(&p->filter) < 0 || ep_shape_count(&p->output) < 0)
        return EP_ERR_DIM;
    if (p->filter.c != p->input.c || p->output.c != p->filter.n || p->output.n != p->input.n) return EP_ERR_DIM;
    if (p->stride_h < 1 || p->stride_w < 1 || p->pad_top < 0 || p->pad_left < 0 || p->pad_top > 65536 ||
        p->pad_left > 65536 || !ep_window_ok(p->input.h, p->stride_h, p->filter.h, 1) ||
        !ep_window_ok(p->input.w, p->stride_w, p->filter.w, 1) || p->output.h > EP_INT32_MAX - 65536 ||
        p->output.w > EP_INT32_MAX - 65536)
        return EP_ERR_DIM;
    if (p->input_offset < -127 || p->input_offset > 128 || !ep_act_ok(p->act_min, p->act_max) ||
        !ep_requant_ok(&p->requant, p->output.c))
        return EP_ERR_ARG;
    st = ep_weights_prepare(&p->weights, p->filter.n, (int64_t)p->filter.h * p->filter.w * p->filter.c, &stride);
    if (st != EP_OK) return st;
    for (n = 0; n < p->output.n; ++n) {
        const int8_t *in_n = input + (int64_t)n * p->input.h * p->input.w * p->input.c;
        for (oy = 0; oy < p->output.h; ++oy) {
            /* Taps ky with oy + pad_top - ky = iy * stride_h: ky walks one residue class. */
            const int32_t ty = oy + p->pad_top;
            const int32_t ky0 = ty % p->stride_h;
            for (ox = 0; ox < p->output.w; ++ox) {
                const int32_t tx = ox + p->pad_left;
                const int32_t kx0 = tx % p->stride_w;
                for (oc = 0; oc < p->output.c; ++oc) {
                    const uint8_t *row = (const uint8_t *)p->weights.data + (int64_t)oc * stride;
                    int32_t acc = 0;
                    for (ky = ky0; ky < p->filter.h && ky <= ty; ky += p->stride_h) {
                        const int32_t iy = (ty - ky) / p->stride_h;
                        if (iy >= p->input.h) continue;
                        for (kx = kx0; kx < p->filter.w && kx <= tx; kx += p->stride_w) {
                            const int32_t ix = (tx - kx) / p->stride_w;
                            const int8_t *x;
                            int32_t e;
                            if (ix >= p->input.w) continue;
                            x = in_n + ((int64_t)iy * p->input.w + ix) * p->input.c;
                            e = (ky * p->filter.w + kx) * p->filter.c;
                            if (p->weights.form == EP_WEIGHTS_DENSE) {
                                const int8_t *wr = (const int8_t *)row + e;
                                for (ic = 0; ic < p->input.c; ++ic)
                                    acc = ep_wadd(acc, ((int32_t)x[ic] + p->input_offset) * wr[ic]);
                            } else {
                                for (ic = 0; ic < p->input.c; ++ic)
                                    acc = ep_wadd(acc, ((int32_t)x[ic] + p->input_offset) *
                                                           ep_code(&p->weights, (int32_t)ep_palette_index(
                                                                                    row, p->weights.bits, e + ic)));
                            }
                        }
                    }
                    if (p->bias != NULL) acc = ep_wadd(acc, p->bias[oc]);
                    *output++ = ep_requant_out(acc, &p->requant, oc, p->output_offset, p->act_min, p->act_max);
                }
            }
        }
    }
    return EP_OK;
}
