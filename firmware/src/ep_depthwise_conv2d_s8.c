/* edgepack runtime: DEPTHWISE_CONV_2D, int8, dense or palette weights (one packed row). */
#include "ep_internal.h"

static ep_status dw_check(const ep_depthwise_conv2d_params *p)
{
    if (p == NULL) return EP_ERR_ARG;
    if (ep_shape_count(&p->input) < 0 || ep_shape_count(&p->filter) < 0 || ep_shape_count(&p->output) < 0)
        return EP_ERR_DIM;
    if (p->depth_multiplier < 1) return EP_ERR_ARG;
    if (ep_prod(p->input.c, p->depth_multiplier) != p->output.c) return EP_ERR_DIM;
    if (p->filter.n != 1 || p->filter.c != p->output.c || p->output.n != p->input.n) return EP_ERR_DIM;
    if (p->stride_h < 1 || p->stride_w < 1 || p->dilation_h < 1 || p->dilation_w < 1) return EP_ERR_ARG;
    if (p->pad_top < 0 || p->pad_left < 0 || p->pad_top > 65535 || p->pad_left > 65535) return EP_ERR_ARG;
    if (p->stride_h > 65535 || p->stride_w > 65535 || p->dilation_h > 65535 || p->dilation_w > 65535)
        return EP_ERR_ARG;
    if (p->input_offset < -127 || p->input_offset > 128) return EP_ERR_ARG;
    if (p->output_offset < -128 || p->output_offset > 127) return EP_ERR_ARG;
    if (!ep_act_ok(p->act_min, p->act_max)) return EP_ERR_ARG;
    if (!ep_requant_ok(&p->requant, p->output.c)) return EP_ERR_ARG;
    if (!ep_window_ok(p->output.h, p->stride_h, p->filter.h, p->dilation_h) ||
        !ep_window_ok(p->output.w, p->stride_w, p->filter.w, p->dilation_w))
        return EP_ERR_DIM;
    return EP_OK;
}

/* Scratch: the palette lookup table (palette weights only). */
int32_t ep_depthwise_conv2d_s8_get_buffer_size(const ep_depthwise_conv2d_params *p)
{
    if (dw_check(p) != EP_OK) return -1;
    return p->weights.form == EP_WEIGHTS_PALETTE ? EP_PALETTE_TABLE_BYTES : 0;
}

ep_status ep_depthwise_conv2d_s8(const ep_depthwise_conv2d_params *p, const int8_t *input, int8_t *output,
                                 void *scratch, int32_t scratch_bytes)
{
    const int32_t *lut = NULL;
    int64_t stride64;
    int32_t b, oy, ox, ic, m, ky, kx;
    ep_status st;

    st = dw_check(p);
    if (st != EP_OK) return st;
    if (input == NULL || output == NULL) return EP_ERR_ARG;
    st = ep_weights_prepare(&p->weights, 1, (int64_t)p->filter.h * p->filter.w * p->filter.c, &stride64);
    if (st != EP_OK) return st;
    if (p->weights.form == EP_WEIGHTS_PALETTE) {
        if (scratch == NULL || (((uintptr_t)scratch) & 3u) != 0) return EP_ERR_ARG;
        if (scratch_bytes < EP_PALETTE_TABLE_BYTES) return EP_ERR_BUFFER;
        (void)ep_palette_table(&p->weights, 0, (uint32_t *)scratch); /* int32 lookup mode */
        lut = (const int32_t *)scratch;
    }

    for (b = 0; b < p->output.n; ++b) {
        for (oy = 0; oy < p->output.h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_top;
            for (ox = 0; ox < p->output.w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_left;
                int8_t *out = output + (((int64_t)b * p->output.h + oy) * p->output.w + ox) * p->output.c;
                for (ic = 0; ic < p->input.c; ++ic) {
                    for (m = 0; m < p->depth_multiplier; ++m) {
                        const int32_t oc = ic * p->depth_multiplier + m;
                        uint32_t acc = 0; /* wrapping: defined for any filter size */
                        for (ky = 0; ky < p->filter.h; ++ky) {
                            const int32_t iy = y0 + ky * p->dilation_h;
                            if (iy < 0 || iy >= p->input.h) continue;
                            for (kx = 0; kx < p->filter.w; ++kx) {
                                const int32_t ix = x0 + kx * p->dilation_w;
                                const int32_t e = (ky * p->filter.w + kx) * p->filter.c + oc;
                                int32_t wv;
                                int32_t xv;
                                if (ix < 0 || ix >= p->input.w) continue;
                                xv = input[(((int64_t)b * p->input.h + iy) * p->input.w + ix) * p->input.c + ic] +
                                     p->input_offset;
                                if (p->weights.form == EP_WEIGHTS_DENSE) {
                                    wv = ((const int8_t *)p->weights.data)[e];
                                } else {
                                    wv = lut[ep_palette_index((const uint8_t *)p->weights.data, p->weights.bits, e)];
                                }
                                acc += (uint32_t)(wv * xv);
                            }
                        }
                        if (p->bias) acc += (uint32_t)p->bias[oc];
                        out[oc] = ep_requant_out((int32_t)acc, &p->requant, oc, p->output_offset, p->act_min, p->act_max);
                    }
                }
            }
        }
    }
    return EP_OK;
}
