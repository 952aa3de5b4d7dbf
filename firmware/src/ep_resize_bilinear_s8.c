/* edgepack runtime: RESIZE_BILINEAR, int8 (TFLM's ResizeBilinearInteger: positions in 10-bit fixed
 * point, products in 20 bits, rounded half away from zero). */
#include "ep_internal.h"

/* Fixed-point position of output index v and its two source indices (TFLM's
 * ComputeInterpolationValuesInteger). lo is also capped at size - 1: TFLM reads past the input
 * there (only for outputs over ~2000x the input), the runtime never does. */
static void position(int32_t v, int32_t scale_10, int32_t half_pixel, int32_t size, int32_t *pos, int32_t *lo,
                     int32_t *hi)
{
    *pos = half_pixel ? v * scale_10 + scale_10 / 2 - (1 << 9) : v * scale_10;
    *lo = ep_min_i32(ep_max_i32(*pos / (1 << 10), 0), size - 1);
    *hi = ep_min_i32((*pos + (1 << 10) - 1) / (1 << 10), size - 1);
    if (*hi < 0) *hi = 0;
}

static int small(int64_t w)
{
    return w >= -((int64_t)1 << 21) && w <= ((int64_t)1 << 21);
}

static int32_t scale_10(int32_t in_size, int32_t out_size, int32_t align_corners)
{
    if (align_corners && out_size > 1) return ((1 << 10) * (in_size - 1) + (out_size - 1) / 2) / (out_size - 1);
    return ((1 << 10) * in_size + out_size / 2) / out_size;
}

ep_status ep_resize_bilinear_s8(const ep_resize_params *p, const int8_t *input, int8_t *output)
{
    int32_t b, y, x, ch, sy, sx;
    if (p == NULL || input == NULL || output == NULL) return EP_ERR_ARG;
    if (ep_shape_count(&p->input) < 0 || ep_shape_count(&p->output) < 0 || p->input.n != p->output.n ||
        p->input.c != p->output.c || p->input.h > (1 << 20) || p->input.w > (1 << 20) ||
        p->output.h > (1 << 20) || p->output.w > (1 << 20))
        return EP_ERR_DIM;
    if ((p->align_corners != 0 && p->align_corners != 1) || (p->half_pixel_centers != 0 && p->half_pixel_centers != 1))
        return EP_ERR_ARG;
    sy = scale_10(p->input.h, p->output.h, p->align_corners);
    sx = scale_10(p->input.w, p->output.w, p->align_corners);
    /* v * scale_10 stays inside int32: scale_10 <= 1024 * in / out + 1 and v < out. */
    if ((int64_t)p->output.h * sy > EP_INT32_MAX / 2 || (int64_t)p->output.w * sx > EP_INT32_MAX / 2) return EP_ERR_DIM;
    for (b = 0; b < p->output.n; ++b) {
        const int8_t *in_b = input + (int64_t)b * p->input.h * p->input.w * p->input.c;
        for (y = 0; y < p->output.h; ++y) {
            int32_t py, y0, y1;
            position(y, sy, p->half_pixel_centers, p->input.h, &py, &y0, &y1);
            for (x = 0; x < p->output.w; ++x) {
                int32_t px, x0, x1;
                int64_t wy1, wy0, wx1, wx0, w00, w10, w01, w11, x0c, x1c;
                const int8_t *r0, *r1;
                position(x, sx, p->half_pixel_centers, p->input.w, &px, &x0, &x1);
                wy1 = py - (1 << 10) * y0;
                wy0 = (1 << 10) - wy1;
                wx1 = px - (1 << 10) * x0;
                wx0 = (1 << 10) - wx1;
                r0 = in_b + (int64_t)y0 * p->input.w * p->input.c;
                r1 = in_b + (int64_t)y1 * p->input.w * p->input.c;
                w00 = wy0 * wx0;
                w10 = wy1 * wx0;
                w01 = wy0 * wx1;
                w11 = wy1 * wx1;
                x0c = (int64_t)x0 * p->input.c;
                x1c = (int64_t)x1 * p->input.c;
                if (small(w00) && small(w10) && small(w01) && small(w11)) {
                    /* |weights| <= 2^21: the sum of four int8 products stays below 2^30 (int32), the
                     * common case; extrapolated half-pixel corners take the int64 loop below. */
                    const int32_t a = (int32_t)w00, b = (int32_t)w10, c = (int32_t)w01, d = (int32_t)w11;
                    for (ch = 0; ch < p->input.c; ++ch) {
                        const int32_t v = r0[x0c + ch] * a + r1[x0c + ch] * b + r0[x1c + ch] * c + r1[x1c + ch] * d;
                        *output++ = (int8_t)(uint8_t)((uint32_t)((v + (v > 0 ? (1 << 19) : -(1 << 19))) / (1 << 20)) & 0xFFu);
                    }
                } else {
                    for (ch = 0; ch < p->input.c; ++ch) {
                        const int64_t v = r0[x0c + ch] * w00 + r1[x0c + ch] * w10 + r0[x1c + ch] * w01 + r1[x1c + ch] * w11;
                        const int64_t q = (v + (v > 0 ? (1 << 19) : -(1 << 19))) / (1 << 20);
                        /* TFLM's static_cast<int8_t>: modulo 256 (only extrapolating half-pixel edges
                         * can leave [-128, 127]). */
                        *output++ = (int8_t)(uint8_t)((uint64_t)q & 0xFFu);
                    }
                }
            }
        }
    }
    return EP_OK;
}
