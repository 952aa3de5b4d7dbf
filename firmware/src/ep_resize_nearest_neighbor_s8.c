/* edgepack runtime: RESIZE_NEAREST_NEIGHBOR, int8 (TFLM's GetNearestNeighbor, float32 arithmetic). */
#include "ep_internal.h"

/* Source index of output index v: TFLM's float32 expression; floor and round half away from zero
 * of a non-negative float without libm. */
static int32_t nearest(int32_t v, int32_t in_size, int32_t out_size, int32_t align_corners, int32_t half_pixel)
{
    const float scale = (align_corners && out_size > 1) ? (float)(in_size - 1) / (float)(out_size - 1)
                                                        : (float)in_size / (float)out_size;
    const float pos = ((float)v + (half_pixel ? 0.5f : 0.0f)) * scale;
    int32_t r = (int32_t)pos; /* pos >= 0 and below in_size: truncation is floor */
    if (align_corners && pos - (float)r >= 0.5f) r += 1;
    if (r > in_size - 1) r = in_size - 1;
    return r < 0 ? 0 : r;
}

static int resize_shapes_ok(const ep_resize_params *p)
{
    return ep_shape_count(&p->input) >= 0 && ep_shape_count(&p->output) >= 0 && p->input.n == p->output.n &&
           p->input.c == p->output.c && (p->align_corners == 0 || p->align_corners == 1) &&
           (p->half_pixel_centers == 0 || p->half_pixel_centers == 1) &&
           p->input.h <= (1 << 20) && p->input.w <= (1 << 20) && p->output.h <= (1 << 20) &&
           p->output.w <= (1 << 20);
}

ep_status ep_resize_nearest_neighbor_s8(const ep_resize_params *p, const int8_t *input, int8_t *output)
{
    int32_t b, y, x;
    const int32_t c = p == NULL ? 0 : p->input.c;
    if (p == NULL || input == NULL || output == NULL) return EP_ERR_ARG;
    if (!resize_shapes_ok(p)) return EP_ERR_DIM;
    for (b = 0; b < p->output.n; ++b) {
        const int8_t *in_b = input + (int64_t)b * p->input.h * p->input.w * c;
        for (y = 0; y < p->output.h; ++y) {
            const int32_t iy = nearest(y, p->input.h, p->output.h, p->align_corners, p->half_pixel_centers);
            for (x = 0; x < p->output.w; ++x) {
                const int32_t ix = nearest(x, p->input.w, p->output.w, p->align_corners, p->half_pixel_centers);
                memcpy(output, in_b + ((int64_t)iy * p->input.w + ix) * c, (size_t)c);
                output += c;
            }
        }
    }
    return EP_OK;
}
