/* edgepack runtime: CONV_2D, int8, dense or palette weights. */
#include "ep_internal.h"

static ep_status conv_check(const ep_conv2d_params *p, int64_t *patch_len)
{
    int64_t len;
    if (p == NULL) return EP_ERR_ARG;
    if (ep_shape_count(&p->input) < 0 || ep_shape_count(&p->filter) < 0 || ep_shape_count(&p->output) < 0)
        return EP_ERR_DIM;
    if (p->filter.c != p->input.c || p->filter.n != p->output.c || p->output.n != p->input.n) return EP_ERR_DIM;
    if (p->stride_h < 1 || p->stride_w < 1 || p->dilation_h < 1 || p->dilation_w < 1) return EP_ERR_ARG;
    if (p->pad_top < 0 || p->pad_left < 0 || p->pad_top > 65535 || p->pad_left > 65535) return EP_ERR_ARG;
    if (p->stride_h > 65535 || p->stride_w > 65535 || p->dilation_h > 65535 || p->dilation_w > 65535)
        return EP_ERR_ARG;
    if (p->input_offset < -127 || p->input_offset > 128) return EP_ERR_ARG;
    if (p->output_offset < -128 || p->output_offset > 127) return EP_ERR_ARG;
    if (!ep_act_ok(p->act_min, p->act_max)) return EP_ERR_ARG;
    if (!ep_requant_ok(&p->requant, p->output.c)) return EP_ERR_ARG;
    /* Coordinates stay within int32: (out - 1) * stride + (k - 1) * dilation. */
    if (!ep_window_ok(p->output.h, p->stride_h, p->filter.h, p->dilation_h) ||
        !ep_window_ok(p->output.w, p->stride_w, p->filter.w, p->dilation_w))
        return EP_ERR_DIM;
    len = ep_prod(ep_prod(p->filter.h, p->filter.w), p->filter.c);
    if (len < 0 || len > (int64_t)EP_INT32_MAX / 2) return EP_ERR_DIM;
    *patch_len = len;
    return EP_OK;
}

/* Scratch: [palette table][int16 patch of len + 1 (a zero pad for pair reads)]. */
static int64_t conv_scratch(const ep_conv2d_params *p, int64_t len)
{
    return (p->weights.form == EP_WEIGHTS_PALETTE ? EP_PALETTE_TABLE_BYTES : 0) + (((len + 1) * 2 + 3) & ~(int64_t)3);
}

int32_t ep_conv2d_s8_get_buffer_size(const ep_conv2d_params *p)
{
    int64_t len;
    if (conv_check(p, &len) != EP_OK) return -1;
    return (int32_t)conv_scratch(p, len);
}

ep_status ep_conv2d_s8(const ep_conv2d_params *p, const int8_t *input, int8_t *output, void *scratch,
                       int32_t scratch_bytes)
{
    uint32_t *table = NULL;
    int pair_mode = 0;
    int64_t patch_len64;
    int64_t stride64;
    int32_t patch_len;
    int16_t *patch;
    int32_t b, oy, ox, oc, ky, kx, c;
    ep_status st;
    const int32_t in_h = p ? p->input.h : 0;
    const int32_t in_w = p ? p->input.w : 0;
    const int32_t in_c = p ? p->input.c : 0;

    st = conv_check(p, &patch_len64);
    if (st != EP_OK) return st;
    if (input == NULL || output == NULL || scratch == NULL) return EP_ERR_ARG;
    if ((((uintptr_t)scratch) & 3u) != 0) return EP_ERR_ARG;
    st = ep_weights_prepare(&p->weights, p->filter.n, patch_len64, &stride64);
    if (st != EP_OK) return st;
    if ((int64_t)scratch_bytes < conv_scratch(p, patch_len64)) return EP_ERR_BUFFER;
    patch_len = (int32_t)patch_len64;
    patch = (int16_t *)scratch;
    if (p->weights.form == EP_WEIGHTS_PALETTE) {
        const int64_t macs = (int64_t)p->output.n * p->output.h * p->output.w * p->output.c * patch_len64;
        table = (uint32_t *)scratch;
        patch = (int16_t *)((uint8_t *)scratch + EP_PALETTE_TABLE_BYTES);
        pair_mode = ep_palette_table(&p->weights, macs, table);
    }
    patch[patch_len] = 0;

    for (b = 0; b < p->output.n; ++b) {
        for (oy = 0; oy < p->output.h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_top;
            for (ox = 0; ox < p->output.w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_left;
                int8_t *out = output + (((int64_t)b * p->output.h + oy) * p->output.w + ox) * p->output.c;
                int16_t *dst = patch;
                /* im2col with the input offset applied; taps outside the image contribute 0. */
                for (ky = 0; ky < p->filter.h; ++ky) {
                    const int32_t iy = y0 + ky * p->dilation_h;
                    for (kx = 0; kx < p->filter.w; ++kx) {
                        const int32_t ix = x0 + kx * p->dilation_w;
                        if (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w) {
                            for (c = 0; c < in_c; ++c) dst[c] = 0;
                        } else {
                            const int8_t *src = input + (((int64_t)b * in_h + iy) * in_w + ix) * in_c;
                            for (c = 0; c < in_c; ++c) dst[c] = (int16_t)(src[c] + p->input_offset);
                        }
                        dst += in_c;
                    }
                }
                if (p->weights.form == EP_WEIGHTS_DENSE) {
                    const int8_t *w = (const int8_t *)p->weights.data;
                    const int32_t sum_x = ep_dense_prepare_row(patch, patch_len);
                    for (oc = 0; oc < p->output.c; ++oc, w += patch_len) {
                        int32_t acc = ep_dot_dense(w, patch, patch_len, sum_x);
                        if (p->bias) acc = ep_wadd(acc, p->bias[oc]);
                        out[oc] = ep_requant_out(acc, &p->requant, oc, p->output_offset, p->act_min, p->act_max);
                    }
                } else {
                    const uint8_t *row = (const uint8_t *)p->weights.data;
                    for (oc = 0; oc < p->output.c; ++oc, row += stride64) {
                        int32_t acc = pair_mode
                                          ? ep_dot_palette_pair(row, p->weights.bits, table, patch, patch_len)
                                          : ep_dot_palette_lut(row, p->weights.bits, (const int32_t *)table, patch,
                                                               patch_len);
                        if (p->bias) acc = ep_wadd(acc, p->bias[oc]);
                        out[oc] = ep_requant_out(acc, &p->requant, oc, p->output_offset, p->act_min, p->act_max);
                    }
                }
            }
        }
    }
    return EP_OK;
}
