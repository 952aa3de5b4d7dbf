/* edgepack runtime, private: 4-D broadcasting for the elementwise binary kernels. */
#ifndef EP_BROADCAST_H
#define EP_BROADCAST_H
#include "ep_internal.h"

static inline int ep_bcast_dim_ok(int32_t in, int32_t out) { return in == out || in == 1; }

static inline ep_status ep_broadcast_check(const ep_shape *a, const ep_shape *b, const ep_shape *o)
{
    if (ep_shape_count(a) < 0 || ep_shape_count(b) < 0 || ep_shape_count(o) < 0) return EP_ERR_DIM;
    if (!ep_bcast_dim_ok(a->n, o->n) || !ep_bcast_dim_ok(a->h, o->h) || !ep_bcast_dim_ok(a->w, o->w) ||
        !ep_bcast_dim_ok(a->c, o->c))
        return EP_ERR_DIM;
    if (!ep_bcast_dim_ok(b->n, o->n) || !ep_bcast_dim_ok(b->h, o->h) || !ep_bcast_dim_ok(b->w, o->w) ||
        !ep_bcast_dim_ok(b->c, o->c))
        return EP_ERR_DIM;
    return EP_OK;
}

/* Offset of output coordinate (n,h,w,c) in a broadcast input of shape s. */
static inline int64_t ep_bcast_offset(const ep_shape *s, int32_t n, int32_t h, int32_t w, int32_t c)
{
    return (((int64_t)(s->n == 1 ? 0 : n) * s->h + (s->h == 1 ? 0 : h)) * s->w + (s->w == 1 ? 0 : w)) * s->c +
           (s->c == 1 ? 0 : c);
}

/* MAXIMUM (take_max 1) / MINIMUM (0): TFLM compares the raw int8 values, no requantization
 * (the converter gives inputs and output one quantization). */
static inline ep_status ep_minmax_s8(const ep_minmax_params *p, const int8_t *input1, const int8_t *input2,
                                     int8_t *output, int take_max)
{
    int32_t n, h, w, c;
    ep_status st;
    if (p == NULL || input1 == NULL || input2 == NULL || output == NULL) return EP_ERR_ARG;
    st = ep_broadcast_check(&p->input1, &p->input2, &p->output);
    if (st != EP_OK) return st;
    for (n = 0; n < p->output.n; ++n)
        for (h = 0; h < p->output.h; ++h)
            for (w = 0; w < p->output.w; ++w)
                for (c = 0; c < p->output.c; ++c) {
                    const int8_t a = input1[ep_bcast_offset(&p->input1, n, h, w, c)];
                    const int8_t b = input2[ep_bcast_offset(&p->input2, n, h, w, c)];
                    output[(((int64_t)n * p->output.h + h) * p->output.w + w) * p->output.c + c] =
                        take_max ? (a > b ? a : b) : (a < b ? a : b);
                }
    return EP_OK;
}

/* The parameter ranges ADD, SUB and SQUARED_DIFFERENCE (prepared as ADD) share: shapes that
 * broadcast, offsets of int8 data, shifts the fixed-point helpers take; `max_left_shift` keeps
 * the rescaled inputs inside int32 (20 + 2 for ADD/SUB, 7 for a squared difference). */
static inline ep_status ep_add_params_ok(const ep_add_params *p, int32_t max_left_shift)
{
    const ep_status st = ep_broadcast_check(&p->input1, &p->input2, &p->output);
    if (st != EP_OK) return st;
    if (p->left_shift < 0 || p->left_shift > max_left_shift) return EP_ERR_ARG;
    if (p->input1_offset < -127 || p->input1_offset > 128 || p->input2_offset < -127 || p->input2_offset > 128 ||
        p->output_offset < -128 || p->output_offset > 127)
        return EP_ERR_ARG;
    if (p->input1_shift > 0 || p->input2_shift > 0 || p->input1_shift < -31 || p->input2_shift < -31 ||
        p->output_shift < -31 || p->output_shift > 30 || p->input1_multiplier < 0 || p->input2_multiplier < 0 ||
        p->output_multiplier < 0)
        return EP_ERR_ARG;
    return ep_act_ok(p->act_min, p->act_max) ? EP_OK : EP_ERR_ARG;
}

/* ADD (subtract 0) / SUB (1): TFLM prepares and computes int8 SUB exactly as ADD, with the
 * rescaled second input subtracted instead of added. */
static inline ep_status ep_add_sub_s8(const ep_add_params *p, const int8_t *input1, const int8_t *input2,
                                      int8_t *output, int subtract)
{
    int32_t n, h, w, c;
    ep_status st;
    if (p == NULL || input1 == NULL || input2 == NULL || output == NULL) return EP_ERR_ARG;
    st = ep_add_params_ok(p, 22);
    if (st != EP_OK) return st;
    for (n = 0; n < p->output.n; ++n)
        for (h = 0; h < p->output.h; ++h)
            for (w = 0; w < p->output.w; ++w)
                for (c = 0; c < p->output.c; ++c) {
                    const int32_t a = (input1[ep_bcast_offset(&p->input1, n, h, w, c)] + p->input1_offset)
                                      * (1 << p->left_shift);
                    const int32_t b = (input2[ep_bcast_offset(&p->input2, n, h, w, c)] + p->input2_offset)
                                      * (1 << p->left_shift);
                    const int32_t sa =
                        ep_MultiplyByQuantizedMultiplierSmallerThanOneExp(a, p->input1_multiplier, p->input1_shift);
                    const int32_t sb =
                        ep_MultiplyByQuantizedMultiplierSmallerThanOneExp(b, p->input2_multiplier, p->input2_shift);
                    const int32_t raw = ep_wadd(
                        ep_MultiplyByQuantizedMultiplier(subtract ? ep_wsub(sa, sb) : ep_wadd(sa, sb),
                                                         p->output_multiplier, p->output_shift),
                        p->output_offset);
                    output[(((int64_t)n * p->output.h + h) * p->output.w + w) * p->output.c + c] =
                        (int8_t)ep_clamp_i32(raw, p->act_min, p->act_max);
                }
    return EP_OK;
}

#endif
