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

/* Scratch: C * M int32 (Helium: each channel's bias + input_offset * the sum of its whole
 * filter, the start of every unclipped window's accumulator), then for palette weights the
 * codebook table and the whole tensor decoded to int8 (KH * KW * C * M bytes: every output pixel
 * reuses it). */
static int64_t dw_scratch(const ep_depthwise_conv2d_params *p)
{
    const int64_t n = (int64_t)p->filter.h * p->filter.w * p->filter.c;
    return 4 * (int64_t)p->output.c +
           (p->weights.form == EP_WEIGHTS_PALETTE ? EP_CODEBOOK_TABLE_BYTES + ((n + 3) & ~(int64_t)3) : 0);
}

int32_t ep_depthwise_conv2d_s8_get_buffer_size(const ep_depthwise_conv2d_params *p)
{
    if (dw_check(p) != EP_OK) return -1;
    if (dw_scratch(p) > EP_INT32_MAX) return -1;
    return (int32_t)dw_scratch(p);
}

/*
 * How the kernel runs: per output pixel the valid taps form a rectangle (padding clips rows and
 * columns independently), found once and walked with pointer steps. Palette weights are first
 * decoded into scratch, then every path reads int8 weights.
 *  - Helium (depth multiplier 1): 4 channels x 4 output pixels per step: one widening weight
 *    load per tap serves four pixels (VMUL + VADD into four accumulators), the input offset is folded in
 *    once per block as offset x (sum of the block's weights), requantization is four lanes wide.
 *    Pixels whose window is clipped horizontally run one at a time (same code, one pixel).
 *  - DSP / plain C (depth multiplier 1): blocks of four channels in registers, one 32-bit input
 *    load per tap split by SXTB16 into the (x0, x2) / (x1, x3) int16 lanes, SMLAxy.
 *  - Remaining channels and depth multipliers above 1: one channel at a time.
 */

/* Per-pixel walk over the valid taps. */
typedef struct {
    const int8_t *in;    /* input at the first valid tap, channel 0 */
    int32_t in_row;      /* input elements between tap rows */
    int32_t in_col;      /* input elements between tap columns */
    int32_t e0;          /* weight element of the first valid tap, channel 0 */
    int32_t w_row;       /* weight elements between tap rows (KW * OC) */
    int32_t w_col;       /* weight elements between tap columns (OC) */
    int32_t rows, cols;  /* valid taps */
} dw_taps;

/* First valid tap and the number of valid taps along one axis: taps k with
 * 0 <= start + k * dilation < size. */
static void dw_axis(int32_t start, int32_t dilation, int32_t taps, int32_t size, int32_t *first, int32_t *count)
{
    int32_t k0 = 0, k1 = taps;
    if (start < 0) k0 = (-start + dilation - 1) / dilation;
    if (start + (int64_t)(taps - 1) * dilation >= size) {
        /* last valid k: (size - 1 - start) / dilation, when size - 1 - start >= 0 */
        k1 = size - 1 - start < 0 ? 0 : (size - 1 - start) / dilation + 1;
    }
    if (k1 < k0) k1 = k0;
    *first = k0;
    *count = k1 - k0;
}

/* One output channel oc (input channel oc / M) over the valid taps, any multiplier. */
static uint32_t dw_channel(const dw_taps *t, const int8_t *w, int32_t oc, int32_t m, int32_t input_offset)
{
    const int32_t ic = oc / m;
    uint32_t acc = 0; /* wrapping: defined for any filter size */
    int32_t ky, kx;
    for (ky = 0; ky < t->rows; ++ky) {
        const int8_t *x = t->in + ky * t->in_row + ic;
        int32_t e = t->e0 + ky * t->w_row + oc;
        for (kx = 0; kx < t->cols; ++kx, x += t->in_col, e += t->w_col)
            acc += (uint32_t)(w[e] * (*x + input_offset));
    }
    return acc;
}

#if EP_USE_MVE
/* Requantization constants of one block of four channels. */
typedef struct {
    int32x4_t m, left, right; /* multiplier, max(shift, 0), min(shift, 0) */
} dw_rq;

static inline dw_rq dw_rq_load(const ep_depthwise_conv2d_params *p, int32_t c, mve_pred16_t pr)
{
    dw_rq r;
    int32x4_t s;
    const int32x4_t zero = vdupq_n_s32(0);
    if (p->requant.count == 1) {
        r.m = vdupq_n_s32(p->requant.multiplier[0]);
        s = vdupq_n_s32(p->requant.shift[0]);
    } else {
        r.m = vldrwq_z_s32(p->requant.multiplier + c, pr);
        s = vldrwq_z_s32(p->requant.shift + c, pr);
    }
    r.left = vmaxq_s32(s, zero);
    r.right = vminq_s32(s, zero);
    return r;
}

/* acc requantized, stored to four channels of out. */
static inline void dw_rq_store(const ep_depthwise_conv2d_params *p, const dw_rq *r, int32x4_t acc, int8_t *out,
                               mve_pred16_t pr)
{
    acc = vshlq_s32(acc, r->left);
    acc = vqrdmulhq_s32(acc, r->m);
    acc = vqaddq_s32(acc, vshrq_n_s32(vandq_s32(acc, r->right), 31));
    acc = vrshlq_s32(acc, r->right);
    vstrbq_p_s32(out, ep_mve_finish(acc, p->output_offset, p->act_min, p->act_max), pr);
}

/* One tap of four pixels px_step apart, four channels: one widening weight load for the four. */
static inline __attribute__((always_inline)) void dw_tap4(int32x4_t *a0, int32x4_t *a1, int32x4_t *a2, int32x4_t *a3,
                                                          const int8_t *wp, const int8_t *x0, int32_t px_step,
                                                          mve_pred16_t pr, const int tail)
{
    const int8_t *x1 = x0 + px_step, *x2 = x1 + px_step, *x3 = x2 + px_step;
    if (tail) {
        const int32x4_t wv = vldrbq_z_s32(wp, pr);
        *a0 = vaddq_s32(*a0, vmulq_s32(vldrbq_z_s32(x0, pr), wv));
        *a1 = vaddq_s32(*a1, vmulq_s32(vldrbq_z_s32(x1, pr), wv));
        *a2 = vaddq_s32(*a2, vmulq_s32(vldrbq_z_s32(x2, pr), wv));
        *a3 = vaddq_s32(*a3, vmulq_s32(vldrbq_z_s32(x3, pr), wv));
    } else {
        const int32x4_t wv = vldrbq_s32(wp);
        *a0 = vaddq_s32(*a0, vmulq_s32(vldrbq_s32(x0), wv));
        *a1 = vaddq_s32(*a1, vmulq_s32(vldrbq_s32(x1), wv));
        *a2 = vaddq_s32(*a2, vmulq_s32(vldrbq_s32(x2), wv));
        *a3 = vaddq_s32(*a3, vmulq_s32(vldrbq_s32(x3), wv));
    }
}

/* Four output pixels px_step input elements apart (same row, unclipped windows, so one tap
 * rectangle), channels c..c+3: one widening weight load per tap serves the four pixels. The
 * offset term (offset x the taps' weight sum) starts the accumulators, so the tap loop keeps
 * only the four accumulators, the weights and one input in the eight Q registers.
 * `tail` (a constant) predicates the loads for the last C mod 4 channels. */
static inline __attribute__((always_inline)) void dw_mve_block4(const ep_depthwise_conv2d_params *p,
                                                                const dw_taps *t, const int8_t *w, int32_t c,
                                                                int32_t px_step, int8_t *out, int32_t out_step,
                                                                const int32_t *init, const int tail)
{
    const mve_pred16_t pr = vctp32q((uint32_t)(p->output.c - c));
    int32x4_t a0, a1, a2, a3;
    const int8_t *wrow = w + t->e0 + c, *xrow = t->in + c;
    int32_t ky, kx;
    dw_rq r;
    if (init != NULL) {
        /* the whole filter: bias + offset * weight sum, computed once per call */
        a0 = tail ? vldrwq_z_s32(init + c, pr) : vldrwq_s32(init + c);
    } else {
        int32x4_t ws = vdupq_n_s32(0);
        a0 = p->bias ? (tail ? vldrwq_z_s32(p->bias + c, pr) : vldrwq_s32(p->bias + c)) : vdupq_n_s32(0);
        for (ky = 0; ky < t->rows; ++ky, wrow += t->w_row) {
            const int8_t *wp = wrow;
            for (kx = 0; kx < t->cols; ++kx, wp += t->w_col)
                ws = vaddq_s32(ws, tail ? vldrbq_z_s32(wp, pr) : vldrbq_s32(wp));
        }
        a0 = vmlaq_n_s32(a0, ws, p->input_offset);
    }
    a1 = a0;
    a2 = a0;
    a3 = a0;
    wrow = w + t->e0 + c;
    for (ky = 0; ky < t->rows; ++ky, wrow += t->w_row, xrow += t->in_row) {
        const int8_t *wp = wrow, *x0 = xrow;
        for (kx = 0; kx < t->cols; ++kx, wp += t->w_col, x0 += t->in_col)
            dw_tap4(&a0, &a1, &a2, &a3, wp, x0, px_step, pr, tail);
    }
    r = dw_rq_load(p, c, pr);
    dw_rq_store(p, &r, a0, out + c, pr);
    dw_rq_store(p, &r, a1, out + out_step + c, pr);
    dw_rq_store(p, &r, a2, out + 2 * out_step + c, pr);
    dw_rq_store(p, &r, a3, out + 3 * out_step + c, pr);
}

/* One output pixel (any clipped window), channels c..c+3 (predicated: any count). */
static inline void dw_mve_block1(const ep_depthwise_conv2d_params *p, const dw_taps *t, const int8_t *w, int32_t c,
                                 int8_t *out)
{
    const mve_pred16_t pr = vctp32q((uint32_t)(p->output.c - c));
    int32x4_t a0 = p->bias ? vldrwq_z_s32(p->bias + c, pr) : vdupq_n_s32(0), ws = vdupq_n_s32(0);
    const int8_t *wrow = w + t->e0 + c, *xrow = t->in + c;
    int32_t ky, kx;
    dw_rq r;
    for (ky = 0; ky < t->rows; ++ky, wrow += t->w_row, xrow += t->in_row) {
        const int8_t *wp = wrow, *x0 = xrow;
        for (kx = 0; kx < t->cols; ++kx, wp += t->w_col, x0 += t->in_col) {
            const int32x4_t wv = vldrbq_z_s32(wp, pr);
            ws = vaddq_s32(ws, wv);
            a0 = vaddq_s32(a0, vmulq_s32(vldrbq_z_s32(x0, pr), wv));
        }
    }
    r = dw_rq_load(p, c, pr);
    dw_rq_store(p, &r, vmlaq_n_s32(a0, ws, p->input_offset), out + c, pr);
}

/* Depth multiplier 1: rows of output pixels, four at a time where the four windows are not
 * clipped horizontally (then they share one tap rectangle), else one at a time. */
/* The channel blocks of four unclipped pixels; `init` when the window is the whole filter. Out of
 * line, so that the register allocator sees only this loop nest. */
static __attribute__((noinline)) void dw_mve_row4(const ep_depthwise_conv2d_params *p, const dw_taps *t,
                                                  const int8_t *w, int32_t px_step, int8_t *out, const int32_t *init)
{
    const int32_t oc_n = p->output.c, full = oc_n & ~3;
    int32_t c;
    if (init != NULL) {
        for (c = 0; c < full; c += 4) dw_mve_block4(p, t, w, c, px_step, out, oc_n, init, 0);
        if (c < oc_n) dw_mve_block4(p, t, w, c, px_step, out, oc_n, init, 1);
    } else {
        for (c = 0; c < full; c += 4) dw_mve_block4(p, t, w, c, px_step, out, oc_n, NULL, 0);
        if (c < oc_n) dw_mve_block4(p, t, w, c, px_step, out, oc_n, NULL, 1);
    }
}

static void dw_run_mve(const ep_depthwise_conv2d_params *p, const int8_t *input, int8_t *output, const int8_t *w,
                       dw_taps *t, int32_t *init)
{
    const int32_t in_c = p->input.c, in_w = p->input.w, in_h = p->input.h, oc_n = p->output.c;
    const int32_t kw = p->filter.w, ow = p->output.w;
    const int32_t taps = p->filter.h * kw;
    int32_t b, oy, ox;
    for (ox = 0; ox < oc_n; ox += 4) {
        const mve_pred16_t pr = vctp32q((uint32_t)(oc_n - ox));
        int32x4_t ws = vdupq_n_s32(0), v = p->bias ? vldrwq_z_s32(p->bias + ox, pr) : vdupq_n_s32(0);
        for (b = 0; b < taps; ++b) ws = vaddq_s32(ws, vldrbq_z_s32(w + b * oc_n + ox, pr));
        vstrwq_p_s32(init + ox, vmlaq_n_s32(v, ws, p->input_offset), pr);
    }
    for (b = 0; b < p->output.n; ++b) {
        for (oy = 0; oy < p->output.h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_top;
            const int8_t *in_row;
            int8_t *out_row = output + ((int64_t)b * p->output.h + oy) * ow * oc_n;
            int32_t ky0, rows;
            dw_axis(y0, p->dilation_h, p->filter.h, in_h, &ky0, &rows);
            in_row = rows > 0 ? input + ((int64_t)b * in_h + y0 + ky0 * p->dilation_h) * in_w * in_c : input;
            for (ox = 0; ox < ow;) {
                const int32_t x0 = ox * p->stride_w - p->pad_left;
                const int32_t x3 = (ox + 3) * p->stride_w - p->pad_left;
                int32_t c;
                if (rows > 0 && ox + 4 <= ow && x0 >= 0 && x3 + (int64_t)(kw - 1) * p->dilation_w < in_w) {
                    const int32_t *whole = rows == p->filter.h ? init : NULL;
                    t->rows = rows;
                    t->cols = kw;
                    t->e0 = ky0 * kw * oc_n;
                    t->in = in_row + (int64_t)x0 * in_c;
                    dw_mve_row4(p, t, w, p->stride_w * in_c, out_row + (int64_t)ox * oc_n, whole);
                    ox += 4;
                } else {
                    int32_t kx0;
                    dw_axis(x0, p->dilation_w, kw, in_w, &kx0, &t->cols);
                    t->rows = rows;
                    if (rows == 0 || t->cols == 0) {
                        t->rows = t->cols = 0; /* no valid tap: the bias alone */
                        t->in = input;
                    } else {
                        t->in = in_row + (int64_t)(x0 + kx0 * p->dilation_w) * in_c;
                    }
                    t->e0 = (ky0 * kw + kx0) * oc_n;
                    for (c = 0; c < oc_n; c += 4) dw_mve_block1(p, t, w, c, out_row + (int64_t)ox * oc_n);
                    ox += 1;
                }
            }
        }
    }
}
#else
/* Four input channels (x0..x3) of one tap as the int16 lane pairs (x0, x2) and (x1, x3), input
 * offset added. */
static inline void dw_inputs(const int8_t *x, uint32_t off2, uint32_t *x02, uint32_t *x13)
{
    const uint32_t v = ep_load_u32le((const uint8_t *)x);
#if EP_USE_DSP
    *x02 = __sadd16(__sxtb16(v), off2);
    *x13 = __sadd16(__sxtb16((v >> 8) | (v << 24)), off2);
#else
    const int32_t off = (int16_t)(off2 & 0xFFFFu);
    *x02 = (uint32_t)(uint16_t)((int8_t)(v & 0xFFu) + off) | ((uint32_t)((int8_t)((v >> 16) & 0xFFu) + off) << 16);
    *x13 = (uint32_t)(uint16_t)((int8_t)((v >> 8) & 0xFFu) + off) | ((uint32_t)((int8_t)(v >> 24) + off) << 16);
#endif
}

static inline int32_t dw_lo(uint32_t v)
{
    return (int16_t)(v & 0xFFFFu);
}

static inline int32_t dw_hi(uint32_t v)
{
    return (int16_t)(v >> 16);
}

/* acc + the product of the chosen int16 halves (SMLAxy on Arm; wrapping). */
#if EP_USE_DSP
#define DW_MAC_BB(acc, a, b) ((acc) = (uint32_t)__smlabb((a), (b), (int32_t)(acc)))
#define DW_MAC_TT(acc, a, b) ((acc) = (uint32_t)__smlatt((a), (b), (int32_t)(acc)))
#else
#define DW_MAC_BB(acc, a, b) ((acc) += (uint32_t)(dw_lo(a) * dw_lo(b)))
#define DW_MAC_TT(acc, a, b) ((acc) += (uint32_t)(dw_hi(a) * dw_hi(b)))
#endif

/* Accumulate channels c..c+3 (depth multiplier 1) over the valid taps. */
static inline void dw_block4(const dw_taps *t, const int8_t *w, int32_t c, uint32_t off2, uint32_t acc[4])
{
    uint32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    const uint8_t *wd = (const uint8_t *)w;
    int32_t ky, kx;
    int32_t wpos = t->e0 + c;
    const int8_t *xrow = t->in + c;
    for (ky = 0; ky < t->rows; ++ky, xrow += t->in_row, wpos += t->w_row) {
        const int8_t *x = xrow;
        int32_t wp = wpos;
        for (kx = 0; kx < t->cols; ++kx, x += t->in_col, wp += t->w_col) {
            uint32_t x02, x13;
            /* weights split like the inputs: (w0, w2) and (w1, w3) */
            const uint32_t v = ep_load_u32le(wd + wp);
#if EP_USE_DSP
            const uint32_t w02 = __sxtb16(v), w13 = __sxtb16((v >> 8) | (v << 24));
#else
            const uint32_t w02 = (uint32_t)(uint16_t)(int8_t)(v & 0xFFu) | ((uint32_t)(int8_t)((v >> 16) & 0xFFu) << 16);
            const uint32_t w13 = (uint32_t)(uint16_t)(int8_t)((v >> 8) & 0xFFu) | ((uint32_t)(int8_t)(v >> 24) << 16);
#endif
            dw_inputs(x, off2, &x02, &x13);
            DW_MAC_BB(a0, w02, x02);
            DW_MAC_TT(a2, w02, x02);
            DW_MAC_BB(a1, w13, x13);
            DW_MAC_TT(a3, w13, x13);
        }
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}
#endif

ep_status ep_depthwise_conv2d_s8(const ep_depthwise_conv2d_params *p, const int8_t *input, int8_t *output,
                                 void *scratch, int32_t scratch_bytes)
{
    int64_t stride64;
    int32_t b, oy, ox, oc;
    const int32_t oc_n = p != NULL ? p->output.c : 0;
    const int8_t *w;
    dw_taps t;
    ep_status st;

    st = dw_check(p);
    if (st != EP_OK) return st;
    if (input == NULL || output == NULL) return EP_ERR_ARG;
    st = ep_weights_prepare(&p->weights, 1, (int64_t)p->filter.h * p->filter.w * p->filter.c, &stride64);
    if (st != EP_OK) return st;
    if (scratch == NULL || (((uintptr_t)scratch) & 3u) != 0) return EP_ERR_ARG;
    if ((int64_t)scratch_bytes < dw_scratch(p)) return EP_ERR_BUFFER;
    w = (const int8_t *)p->weights.data;
    if (p->weights.form == EP_WEIGHTS_PALETTE) {
        int8_t *table = (int8_t *)scratch + 4 * p->output.c;
        ep_codebook_table(&p->weights, table);
        ep_palette_decode_rows((const uint8_t *)p->weights.data, p->weights.bits, stride64, 1,
                               p->filter.h * p->filter.w * p->filter.c, table, table + EP_CODEBOOK_TABLE_BYTES);
        w = table + EP_CODEBOOK_TABLE_BYTES;
    }
    {
        const int32_t in_c = p->input.c, in_w = p->input.w, in_h = p->input.h;
        /* Steps are used only between two valid taps, and then stay inside the input (int32);
         * a step that would not fit belongs to a filter with a single valid row/column. */
        const int64_t in_row = (int64_t)p->dilation_h * in_w * in_c, in_col = (int64_t)p->dilation_w * in_c;
#if !EP_USE_MVE
        const int32_t blocks = p->depth_multiplier == 1 ? (oc_n & ~3) : 0;
        const uint32_t off2 = (uint32_t)(uint16_t)p->input_offset * 0x10001u;
#endif
        t.in_row = in_row > EP_INT32_MAX ? 0 : (int32_t)in_row;
        t.in_col = in_col > EP_INT32_MAX ? 0 : (int32_t)in_col;
        t.w_row = p->filter.w * oc_n;
        t.w_col = oc_n;
#if EP_USE_MVE
        if (p->depth_multiplier == 1) {
            dw_run_mve(p, input, output, w, &t, (int32_t *)scratch);
            return EP_OK;
        }
#endif
        for (b = 0; b < p->output.n; ++b) {
            for (oy = 0; oy < p->output.h; ++oy) {
                const int32_t y0 = oy * p->stride_h - p->pad_top;
                int32_t ky0;
                dw_axis(y0, p->dilation_h, p->filter.h, in_h, &ky0, &t.rows);
                for (ox = 0; ox < p->output.w; ++ox) {
                    const int32_t x0 = ox * p->stride_w - p->pad_left;
                    int8_t *out = output + (((int64_t)b * p->output.h + oy) * p->output.w + ox) * oc_n;
                    int32_t kx0;
                    dw_axis(x0, p->dilation_w, p->filter.w, in_w, &kx0, &t.cols);
                    if (t.rows == 0 || t.cols == 0) {
                        t.rows = t.cols = 0; /* no valid tap: the bias alone */
                        t.in = input;
                    } else {
                        t.in = input + (((int64_t)b * in_h + y0 + ky0 * p->dilation_h) * in_w + x0 +
                                        kx0 * p->dilation_w) * in_c;
                    }
                    t.e0 = (ky0 * p->filter.w + kx0) * oc_n;
                    oc = 0;
#if !EP_USE_MVE
                    for (; oc < blocks; oc += 4) {
                        uint32_t acc[4] = {0, 0, 0, 0};
                        int32_t j;
                        dw_block4(&t, w, oc, off2, acc);
                        for (j = 0; j < 4; ++j) {
                            const uint32_t a = acc[j] + (p->bias ? (uint32_t)p->bias[oc + j] : 0u);
                            out[oc + j] = ep_requant_out((int32_t)a, &p->requant, oc + j, p->output_offset,
                                                         p->act_min, p->act_max);
                        }
                    }
#endif
                    for (; oc < oc_n; ++oc) {
                        uint32_t acc = dw_channel(&t, w, oc, p->depth_multiplier, p->input_offset);
                        if (p->bias) acc += (uint32_t)p->bias[oc];
                        out[oc] = ep_requant_out((int32_t)acc, &p->requant, oc, p->output_offset, p->act_min,
                                                 p->act_max);
                    }
                }
            }
        }
    }
    return EP_OK;
}
