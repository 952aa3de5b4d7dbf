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

/*
 * How the kernel runs (measured on the Cortex-M55, bench/README.md): per output pixel the valid
 * taps form a rectangle (padding clips rows and columns independently), so it is found once and
 * walked with pointer steps. With depth multiplier 1, blocks of four channels run the taps with
 * four accumulators in registers: one 32-bit input load per tap gives the four channels' inputs
 * (SXTB16 splits them into the (x0, x2) / (x1, x3) int16 lanes), and the four channels' codes are
 * adjacent in the packed row, so 4-bit indices are one 16-bit load and two lookups in the pair
 * table (each entry holds two channels' int16 codes), 2-bit indices one byte and two lookups.
 * Other widths and the per-index lookup mode take the codes one index at a time; remaining
 * channels and depth multipliers above 1 run one channel at a time.
 */

/* How a block of four channels reads its codes. */
enum { DW_DENSE, DW_PAIR4, DW_PAIR2, DW_INDEXED };

/* Per-pixel walk over the valid taps and the per-channel constants. */
typedef struct {
    const int8_t *in;    /* input at the first valid tap, channel 0 */
    int32_t in_row;      /* input elements between tap rows */
    int32_t in_col;      /* input elements between tap columns */
    int32_t e0;          /* weight element of the first valid tap, channel 0 */
    int32_t w_row;       /* weight elements between tap rows (KW * OC) */
    int32_t w_col;       /* weight elements between tap columns (OC) */
    int32_t rows, cols;  /* valid taps */
} dw_taps;

/* Codes of palette element e as int16 (pair-table entries hold code(k) in the low half for
 * k < 2^bits; lookup-mode entries are the int32 code). */
static inline int32_t dw_code(const uint8_t *row, int32_t bits, const uint32_t *table, int32_t e)
{
    return (int16_t)(table[ep_palette_index(row, bits, e)] & 0xFFFFu);
}

/* Two int16 values as one word, a in the low half. */
static inline uint32_t dw_pack(int32_t a, int32_t b)
{
    return (uint32_t)(uint16_t)a | ((uint32_t)(uint16_t)b << 16);
}

static inline int32_t dw_lo(uint32_t v)
{
    return (int16_t)(v & 0xFFFFu);
}

static inline int32_t dw_hi(uint32_t v)
{
    return (int16_t)(v >> 16);
}

/* Four input channels (x0..x3) of one tap as the int16 lane pairs (x0, x2) and (x1, x3), input
 * offset added. */
static inline void dw_inputs(const int8_t *x, uint32_t off2, uint32_t *x02, uint32_t *x13)
{
    const uint32_t v = ep_load_u32le((const uint8_t *)x);
#if EP_USE_DSP
    *x02 = __sadd16(__sxtb16(v), off2);
    *x13 = __sadd16(__sxtb16((v >> 8) | (v << 24)), off2);
#else
    const int32_t off = dw_lo(off2);
    *x02 = dw_pack((int8_t)(v & 0xFFu) + off, (int8_t)((v >> 16) & 0xFFu) + off);
    *x13 = dw_pack((int8_t)((v >> 8) & 0xFFu) + off, (int8_t)(v >> 24) + off);
#endif
}

/* acc + the product of the chosen int16 halves (SMLAxy on Arm; wrapping). */
#if EP_USE_DSP
#define DW_MAC_BB(acc, a, b) ((acc) = (uint32_t)__smlabb((a), (b), (int32_t)(acc)))
#define DW_MAC_BT(acc, a, b) ((acc) = (uint32_t)__smlabt((a), (b), (int32_t)(acc)))
#define DW_MAC_TB(acc, a, b) ((acc) = (uint32_t)__smlatb((a), (b), (int32_t)(acc)))
#define DW_MAC_TT(acc, a, b) ((acc) = (uint32_t)__smlatt((a), (b), (int32_t)(acc)))
#else
#define DW_MAC_BB(acc, a, b) ((acc) += (uint32_t)(dw_lo(a) * dw_lo(b)))
#define DW_MAC_BT(acc, a, b) ((acc) += (uint32_t)(dw_lo(a) * dw_hi(b)))
#define DW_MAC_TB(acc, a, b) ((acc) += (uint32_t)(dw_hi(a) * dw_lo(b)))
#define DW_MAC_TT(acc, a, b) ((acc) += (uint32_t)(dw_hi(a) * dw_hi(b)))
#endif

/* Accumulate channels c..c+3 (depth multiplier 1) over the valid taps. `mode` is a constant
 * after inlining, so each form gets its own loop. */
static inline void dw_block4(const dw_taps *t, const ep_weights *w, const uint32_t *table, int32_t c, uint32_t off2,
                             const int mode, uint32_t acc[4])
{
    uint32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    const uint8_t *wd = (const uint8_t *)w->data;
    int32_t ky, kx;
    /* Weight position as a byte offset (dense, packed 4- or 2-bit) or an element index. */
    const int32_t sh = mode == DW_PAIR4 ? 1 : mode == DW_PAIR2 ? 2 : 0;
    const int32_t wcol = mode == DW_INDEXED ? t->w_col : t->w_col >> sh;
    const int32_t wrow = mode == DW_INDEXED ? t->w_row : t->w_row >> sh;
    int32_t wpos = mode == DW_INDEXED ? t->e0 + c : (t->e0 + c) >> sh;
    const int8_t *xrow = t->in + c;
    for (ky = 0; ky < t->rows; ++ky, xrow += t->in_row, wpos += wrow) {
        const int8_t *x = xrow;
        int32_t wp = wpos;
        for (kx = 0; kx < t->cols; ++kx, x += t->in_col, wp += wcol) {
            uint32_t x02, x13;
            dw_inputs(x, off2, &x02, &x13);
            if (mode == DW_DENSE) {
                /* weights split like the inputs: (w0, w2) and (w1, w3) */
                const uint32_t v = ep_load_u32le(wd + wp);
#if EP_USE_DSP
                const uint32_t w02 = __sxtb16(v), w13 = __sxtb16((v >> 8) | (v << 24));
#else
                const uint32_t w02 = dw_pack((int8_t)(v & 0xFFu), (int8_t)((v >> 16) & 0xFFu));
                const uint32_t w13 = dw_pack((int8_t)((v >> 8) & 0xFFu), (int8_t)(v >> 24));
#endif
                DW_MAC_BB(a0, w02, x02);
                DW_MAC_TT(a2, w02, x02);
                DW_MAC_BB(a1, w13, x13);
                DW_MAC_TT(a3, w13, x13);
            } else {
                /* codes as the pairs (c0, c1) and (c2, c3) */
                uint32_t p01, p23;
                if (mode == DW_PAIR4) {
                    p01 = table[wd[wp]];
                    p23 = table[wd[wp + 1]];
                } else if (mode == DW_PAIR2) {
                    const uint32_t v = wd[wp];
                    p01 = table[v & 0xFu];
                    p23 = table[v >> 4];
                } else {
                    p01 = dw_pack(dw_code(wd, w->bits, table, wp), dw_code(wd, w->bits, table, wp + 1));
                    p23 = dw_pack(dw_code(wd, w->bits, table, wp + 2), dw_code(wd, w->bits, table, wp + 3));
                }
                DW_MAC_BB(a0, p01, x02);
                DW_MAC_TB(a1, p01, x13);
                DW_MAC_BT(a2, p23, x02);
                DW_MAC_TT(a3, p23, x13);
            }
        }
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* One output channel oc (input channel oc / M) over the valid taps: any form, any multiplier. */
static uint32_t dw_channel(const dw_taps *t, const ep_weights *w, const uint32_t *table, int32_t oc, int32_t m,
                           int32_t input_offset)
{
    const int32_t ic = oc / m;
    uint32_t acc = 0; /* wrapping: defined for any filter size */
    int32_t ky, kx;
    for (ky = 0; ky < t->rows; ++ky) {
        const int8_t *x = t->in + ky * t->in_row + ic;
        int32_t e = t->e0 + ky * t->w_row + oc;
        for (kx = 0; kx < t->cols; ++kx, x += t->in_col, e += t->w_col) {
            const int32_t wv = w->form == EP_WEIGHTS_DENSE ? ((const int8_t *)w->data)[e]
                                                           : dw_code((const uint8_t *)w->data, w->bits, table, e);
            acc += (uint32_t)(wv * (*x + input_offset));
        }
    }
    return acc;
}

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

ep_status ep_depthwise_conv2d_s8(const ep_depthwise_conv2d_params *p, const int8_t *input, int8_t *output,
                                 void *scratch, int32_t scratch_bytes)
{
    const uint32_t *table = NULL;
    int64_t stride64;
    int32_t b, oy, ox, oc, mode = DW_DENSE;
    const int32_t oc_n = p != NULL ? p->output.c : 0;
    ep_status st;

    st = dw_check(p);
    if (st != EP_OK) return st;
    if (input == NULL || output == NULL) return EP_ERR_ARG;
    st = ep_weights_prepare(&p->weights, 1, (int64_t)p->filter.h * p->filter.w * p->filter.c, &stride64);
    if (st != EP_OK) return st;
    if (p->weights.form == EP_WEIGHTS_PALETTE) {
        const int64_t macs = ep_shape_count(&p->output) * (int64_t)p->filter.h * p->filter.w;
        int pair;
        if (scratch == NULL || (((uintptr_t)scratch) & 3u) != 0) return EP_ERR_ARG;
        if (scratch_bytes < EP_PALETTE_TABLE_BYTES) return EP_ERR_BUFFER;
        /* Pair entries hold adjacent channels' codes: only 4- and 2-bit rows where a block's
         * codes start on a byte (every channel count a multiple of 2 resp. 4) use them. */
        pair = ((p->weights.bits == 4 && (oc_n & 1) == 0) || (p->weights.bits == 2 && (oc_n & 3) == 0)) &&
               ep_palette_table(&p->weights, macs, (uint32_t *)scratch);
        if (!pair) (void)ep_palette_table(&p->weights, 0, (uint32_t *)scratch); /* int32 lookup mode */
        table = (const uint32_t *)scratch;
        mode = !pair ? DW_INDEXED : p->weights.bits == 4 ? DW_PAIR4 : DW_PAIR2;
    }

    {
        const int32_t in_c = p->input.c, in_w = p->input.w, in_h = p->input.h;
        const int32_t blocks = p->depth_multiplier == 1 ? (oc_n & ~3) : 0;
        const uint32_t off2 = dw_pack(p->input_offset, p->input_offset);
        dw_taps t;
        /* Steps are used only between two valid taps, and then stay inside the input (int32);
         * a step that would not fit belongs to a filter with a single valid row/column. */
        const int64_t in_row = (int64_t)p->dilation_h * in_w * in_c, in_col = (int64_t)p->dilation_w * in_c;
        t.in_row = in_row > EP_INT32_MAX ? 0 : (int32_t)in_row;
        t.in_col = in_col > EP_INT32_MAX ? 0 : (int32_t)in_col;
        t.w_row = p->filter.w * oc_n;
        t.w_col = oc_n;
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
                    for (oc = 0; oc < blocks; oc += 4) {
                        uint32_t acc[4] = {0, 0, 0, 0};
                        int32_t j;
                        switch (mode) {
                        case DW_DENSE: dw_block4(&t, &p->weights, table, oc, off2, DW_DENSE, acc); break;
                        case DW_PAIR4: dw_block4(&t, &p->weights, table, oc, off2, DW_PAIR4, acc); break;
                        case DW_PAIR2: dw_block4(&t, &p->weights, table, oc, off2, DW_PAIR2, acc); break;
                        default: dw_block4(&t, &p->weights, table, oc, off2, DW_INDEXED, acc); break;
                        }
                        for (j = 0; j < 4; ++j) {
                            const uint32_t a = acc[j] + (p->bias ? (uint32_t)p->bias[oc + j] : 0u);
                            out[oc + j] = ep_requant_out((int32_t)a, &p->requant, oc + j, p->output_offset,
                                                         p->act_min, p->act_max);
                        }
                    }
                    for (; oc < oc_n; ++oc) {
                        uint32_t acc = dw_channel(&t, &p->weights, table, oc, p->depth_multiplier, p->input_offset);
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
