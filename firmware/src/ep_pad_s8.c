/* edgepack runtime: PAD (4-D), int8. */
#include "ep_internal.h"

ep_status ep_pad_s8(const ep_pad_params *p, const int8_t *input, int8_t *output)
{
    int32_t n, h, w;
    const int32_t *bf;
    if (p == NULL || input == NULL || output == NULL) return EP_ERR_ARG;
    if (ep_shape_count(&p->input) < 0 || ep_shape_count(&p->output) < 0) return EP_ERR_DIM;
    bf = p->before;
    if (bf[0] < 0 || bf[1] < 0 || bf[2] < 0 || bf[3] < 0) return EP_ERR_ARG;
    if ((int64_t)p->input.n + bf[0] > p->output.n || (int64_t)p->input.h + bf[1] > p->output.h ||
        (int64_t)p->input.w + bf[2] > p->output.w || (int64_t)p->input.c + bf[3] > p->output.c)
        return EP_ERR_DIM;
    if (p->pad_value < -128 || p->pad_value > 127) return EP_ERR_ARG;
    memset(output, (int)(int8_t)p->pad_value, (size_t)ep_shape_count(&p->output));
    for (n = 0; n < p->input.n; ++n)
        for (h = 0; h < p->input.h; ++h)
            for (w = 0; w < p->input.w; ++w) {
                const int8_t *src = input + (((int64_t)n * p->input.h + h) * p->input.w + w) * p->input.c;
                int8_t *dst = output +
                              (((int64_t)(n + bf[0]) * p->output.h + (h + bf[1])) * p->output.w + (w + bf[2])) *
                                  p->output.c +
                              bf[3];
                memcpy(dst, src, (size_t)p->input.c);
            }
    return EP_OK;
}
