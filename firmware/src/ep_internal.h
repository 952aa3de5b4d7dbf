/*
 * edgepack runtime, private helpers: argument checks, weight access (dense and palette
 * rows), dot products. Not part of the public API.
 */
#ifndef EP_INTERNAL_H
#define EP_INTERNAL_H

#include <string.h>

#include "edgepack.h"
#include "ep_arith.h"

/* Helium (M-profile Vector Extension) is used only to fill the 1 KiB palette pair table;
 * define EP_PORTABLE_ONLY to keep every path in plain C. */
#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1) && !defined(EP_PORTABLE_ONLY)
#include <arm_mve.h>
#define EP_USE_MVE 1
#else
#define EP_USE_MVE 0
#endif

/* Arm cores with the DSP extension (Cortex-M4/M7/M33/M55/M85): dual 16-bit MACs through ACLE.
 * Define EP_PORTABLE_ONLY to force the plain C paths. */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && !defined(EP_PORTABLE_ONLY)
#include <arm_acle.h>
#define EP_USE_DSP 1
#else
#define EP_USE_DSP 0
#endif

/* Product of non-negative int32 values, or -1 when any is < 0 or the product exceeds INT32_MAX. */
static inline int64_t ep_prod(int64_t a, int64_t b)
{
    if (a < 0 || b < 0) return -1;
    if (a != 0 && b > (int64_t)EP_INT32_MAX / a) return -1;
    return a * b;
}

static inline int64_t ep_shape_count(const ep_shape *s)
{
    if (s->n <= 0 || s->h <= 0 || s->w <= 0 || s->c <= 0) return -1;
    return ep_prod(ep_prod(ep_prod(s->n, s->h), s->w), s->c);
}

/* Window coordinates out * stride + k * dilation stay inside int32. */
static inline int ep_window_ok(int32_t out, int32_t stride, int32_t k, int32_t dilation)
{
    const int64_t a = ep_prod(out, stride);
    const int64_t b = ep_prod(k, dilation);
    return a >= 0 && b >= 0 && a + b < (int64_t)EP_INT32_MAX - 65536;
}

static inline int ep_act_ok(int32_t lo, int32_t hi)
{
    return lo >= -128 && hi <= 127 && lo <= hi;
}

static inline int ep_requant_ok(const ep_requant *q, int32_t channels)
{
    int32_t i;
    if (q->multiplier == NULL || q->shift == NULL) return 0;
    if (q->count != 1 && q->count != channels) return 0;
    for (i = 0; i < q->count; ++i) {
        if (q->multiplier[i] < 0 || q->shift[i] < -31 || q->shift[i] > 30) return 0;
    }
    return 1;
}

/* Bytes between the starts of two packed rows: ceil(row_len * bits / 32) * 4. */
static inline int64_t ep_row_stride(int64_t row_len, int32_t bits)
{
    return ((row_len * bits + 31) / 32) * 4;
}

/*
 * Validate a weight tensor of `rows` rows of `row_len` elements (dense or palette) against its
 * byte count; *stride = bytes between rows. Returns EP_OK or an error status.
 */
static inline ep_status ep_weights_prepare(const ep_weights *w, int64_t rows, int64_t row_len, int64_t *stride)
{
    if (w->data == NULL) return EP_ERR_ARG;
    if (w->form == EP_WEIGHTS_DENSE) {
        const int64_t n = ep_prod(rows, row_len);
        if (n < 0 || w->data_bytes < n) return EP_ERR_BUFFER;
        *stride = row_len;
        return EP_OK;
    }
    if (w->form == EP_WEIGHTS_PALETTE) {
        int64_t total;
        if (w->bits < 1 || w->bits > 8) return EP_ERR_ARG;
        if (w->num_codes < 1 || w->num_codes > 256 || w->codebook == NULL) return EP_ERR_ARG;
        *stride = ep_row_stride(row_len, w->bits);
        total = ep_prod(rows, *stride);
        if (total < 0 || w->data_bytes < total) return EP_ERR_BUFFER;
        return EP_OK;
    }
    return EP_ERR_ARG;
}

/* Element count of an N-D shape (rank 1..EP_MAX_DIMS, every dim >= 1), or -1. */
static inline int64_t ep_dims_count(int32_t rank, const int32_t *dims)
{
    int64_t n = 1;
    int32_t d;
    if (rank < 1 || rank > EP_MAX_DIMS) return -1;
    for (d = 0; d < rank; ++d) {
        if (dims[d] < 1) return -1;
        n = ep_prod(n, dims[d]);
        if (n < 0) return -1;
    }
    return n;
}

/* Advance an N-D index (last dimension fastest) over dims[0..rank-2]; the caller walks the last
 * dimension itself. Returns 0 after the final index. */
static inline int ep_next_index(int32_t rank, const int32_t *dims, int32_t *idx)
{
    int32_t d;
    for (d = rank - 2; d >= 0; --d) {
        if (++idx[d] < dims[d]) return 1;
        idx[d] = 0;
    }
    return 0;
}

/* Bytes of the palette decode table kept in the caller's scratch. */
#define EP_PALETTE_TABLE_BYTES 1024

/* Little-endian 32-bit load (one LDR on little-endian targets with GCC -O2). */
static inline uint32_t ep_load_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* Index of element e of a packed row (any width 1..8). */
static inline uint32_t ep_palette_index(const uint8_t *row, int32_t bits, int32_t e)
{
    const uint32_t pos = (uint32_t)e * (uint32_t)bits;
    const uint8_t *wp = row + ((pos >> 5) << 2);
    const uint32_t sh = pos & 31u;
    uint32_t v = ep_load_u32le(wp) >> sh;
    if (sh + (uint32_t)bits > 32u) v |= ep_load_u32le(wp + 4) << (32u - sh);
    return v & ((1u << bits) - 1u);
}

/* Codebook value of index k (0 beyond K: any index value stays in bounds). */
static inline int32_t ep_code(const ep_weights *w, int32_t k)
{
    return k < w->num_codes ? (int32_t)w->codebook[k] : 0;
}

/*
 * Build the decode table for palette weights in `table` (EP_PALETTE_TABLE_BYTES, 4-aligned).
 * Pair mode (returns 1, for 1-, 2-, 3- and 4-bit indices when the call does at least
 * 2 * 2^(2b) multiply-accumulates: the table costs about 3 instructions an entry): table[i0 | i1 << b] holds the codebook values of two
 * adjacent indices as int16 halves, for ep_dot_palette_pair. Otherwise (returns 0)
 * table[k] = codebook value as int32, for ep_dot_palette_lut.
 */
static inline int ep_palette_table(const ep_weights *w, int64_t macs, uint32_t *table)
{
    const int32_t b = w->bits;
    const int32_t codes = (int32_t)1 << b;
    int32_t k;
#ifdef EP_PALETTE_FORCE_LUT /* test builds: exercise the per-index lookup path everywhere */
    if (macs < 0) {
#else
    if ((b == 1 || b == 2 || b == 3 || b == 4) && macs >= ((int64_t)2 << (2 * b))) {
#endif
        uint32_t lo[16];
        int32_t hi;
        for (k = 0; k < codes; ++k) lo[k] = (uint16_t)(int16_t)ep_code(w, k);
#if EP_USE_MVE
        if (codes == 16) {
            const uint32x4_t l0 = vld1q_u32(lo), l1 = vld1q_u32(lo + 4);
            const uint32x4_t l2 = vld1q_u32(lo + 8), l3 = vld1q_u32(lo + 12);
            for (hi = 0; hi < 16; ++hi) {
                const uint32x4_t vh = vdupq_n_u32(lo[hi] << 16);
                uint32_t *t = table + (hi << 4);
                vst1q_u32(t, vorrq_u32(vh, l0));
                vst1q_u32(t + 4, vorrq_u32(vh, l1));
                vst1q_u32(t + 8, vorrq_u32(vh, l2));
                vst1q_u32(t + 12, vorrq_u32(vh, l3));
            }
            return 1;
        }
#endif
        for (hi = 0; hi < codes; ++hi) {
            const uint32_t vh = lo[hi] << 16;
            uint32_t *t = table + (hi << b);
            for (k = 0; k < codes; ++k) t[k] = vh | lo[k];
        }
        return 1;
    }
    for (k = 0; k < codes; ++k) table[k] = (uint32_t)ep_code(w, k);
    return 0;
}

/* Dot products (ep_dot.c). x holds int16 inputs with the input offset applied. */
int32_t ep_dense_prepare_row(int16_t *x, int32_t n);
int32_t ep_dot_dense(const int8_t *w, const int16_t *x, int32_t n, int32_t sum_x);
int32_t ep_dot_palette_lut(const uint8_t *row, int32_t bits, const int32_t *lut, const int16_t *x, int32_t n);
int32_t ep_dot_palette_pair(const uint8_t *row, int32_t bits, const uint32_t *pair, const int16_t *x, int32_t n);

/* Parameter checks shared by the kernels of one family (defined in ep_avg_pool2d_s8.c and
 * ep_logistic_s8.c). */
ep_status ep_pool_check(const ep_pool_params *p);
ep_status ep_sigmoid_check(const ep_sigmoid_params *p, const int8_t *input, const int8_t *output);

/*
 * MultiplyByQuantizedMultiplier for a multiplier m >= 0 (all ep_requant_ok admits), bit-exact
 * with ep_MultiplyByQuantizedMultiplier and branch-free: with m >= 0 the saturating case of
 * SaturatingRoundingDoublingHighMul (both operands INT32_MIN) cannot occur, and its rounding of
 * the 64-bit product ab (add 2^30, or 1 - 2^30 when ab < 0, then truncate) equals
 * floor((ab + 2^30) / 2^31), bits 31..62 of ab + 2^30 (|ab| < 2^62: they fit an int32).
 */
static inline int32_t ep_mbqm_nonneg(int32_t x, int32_t m, int32_t shift)
{
    const int left = shift > 0 ? shift : 0;
    const int right = shift > 0 ? 0 : -shift;
    const int64_t ab = (int64_t)(int32_t)((uint32_t)x << left) * m;
    const int32_t r = (int32_t)(uint32_t)((uint64_t)(ab + ((int64_t)1 << 30)) >> 31);
    return ep_RoundingDivideByPOT(r, right);
}

/* Requantize an accumulator of output channel oc and clamp. */
static inline int8_t ep_requant_out(int32_t acc, const ep_requant *q, int32_t oc, int32_t out_offset, int32_t lo,
                                    int32_t hi)
{
    const int32_t k = q->count == 1 ? 0 : oc;
    /* Wrapping add: defined behaviour even for hostile parameters (the clamp bounds the result). */
    int32_t v = ep_wadd(ep_mbqm_nonneg(acc, q->multiplier[k], q->shift[k]), out_offset);
    return (int8_t)ep_clamp_i32(v, lo, hi);
}


/* ---------------------------------------------------------------------------------------- */
/* Fast paths of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED (Helium, DSP, plain C)       */
/* ---------------------------------------------------------------------------------------- */

/* Output channels per tile: the per-channel terms of one tile (bias + input offset times the
 * channel's weight sum) live in EP_CH_TILE int32 of scratch. */
#define EP_CH_TILE 64
/* Budget for one tile of palette weights decoded to int8 (a tile is reused across every output
 * pixel, so decoding costs a fraction of an instruction per MAC). */
#define EP_PALETTE_TILE_BYTES 16384
/* The codebook as a 256-entry int8 table (entries >= K read 0) for decoding. */
#define EP_CODEBOOK_TABLE_BYTES 256

/* Rows of row_len int8 weights decoded at once: a multiple of 4 within EP_PALETTE_TILE_BYTES,
 * at least 4, at most EP_CH_TILE and at most `rows`. */
static inline int32_t ep_palette_tile_rows(int64_t row_len, int32_t rows)
{
    int64_t t = (EP_PALETTE_TILE_BYTES / (row_len > 0 ? row_len : 1)) & ~(int64_t)3;
    if (t < 4) t = 4;
    if (t > EP_CH_TILE) t = EP_CH_TILE;
    if (t > rows) t = rows;
    return (int32_t)t;
}

/* ep_palette_decode.c: the codebook table, and rows of packed indices decoded to int8 weights
 * (Helium: 4- and 8-bit indices 16 at a time through a VLDRB gather from the table). */
void ep_codebook_table(const ep_weights *w, int8_t *table);
void ep_palette_decode_rows(const uint8_t *rows, int32_t bits, int64_t stride, int32_t nrows, int32_t row_len,
                            const int8_t *table, int8_t *dst);

/* Dense 2 x 2 block (ep_dot.c): rows w0, w1 against inputs x0, x1 (rearranged by
 * ep_dense_prepare_row); acc[0] = w0.x0, acc[1] = w0.x1, acc[2] = w1.x0, acc[3] = w1.x1. */
void ep_dot_dense_2x2(const int8_t *w0, const int8_t *w1, const int16_t *x0, const int16_t *x1, int32_t n,
                      int32_t acc[4]);
/* Two rows against one input row: acc[0] = w0.x, acc[1] = w1.x. */
void ep_dot_dense_2x1(const int8_t *w0, const int8_t *w1, const int16_t *x, int32_t n, int32_t acc[2]);

#if EP_USE_MVE
/* MultiplyByQuantizedMultiplier on four lanes, per-lane multiplier and shift, bit-exact with the
 * scalar form: VQRDMULH equals SaturatingRoundingDoublingHighMul, and a rounding right shift of
 * (x - 1) for negative x equals RoundingDivideByPOT's round-half-away-from-zero. */
static inline int32x4_t ep_mve_requant(int32x4_t x, int32x4_t m, int32x4_t s)
{
    const int32x4_t zero = vdupq_n_s32(0);
    const int32x4_t right = vminq_s32(s, zero); /* -exponent, <= 0 */
    x = vshlq_s32(x, vmaxq_s32(s, zero));       /* wrapping left shift, as the scalar form */
    x = vqrdmulhq_s32(x, m);
    x = vqaddq_s32(x, vshrq_n_s32(vandq_s32(x, right), 31));
    return vrshlq_s32(x, right);
}

/* The same with one multiplier and shift for all lanes. */
static inline int32x4_t ep_mve_requant_n(int32x4_t x, int32_t m, int32_t s)
{
    const int32_t right = s > 0 ? 0 : -s;
    x = vshlq_r_s32(x, s > 0 ? s : 0);
    x = vqrdmulhq_n_s32(x, m);
    x = vqaddq_s32(x, vshrq_n_s32(vandq_s32(x, vdupq_n_s32(-right)), 31));
    return vrshlq_s32(x, vdupq_n_s32(-right));
}

/* Add the output offset and clamp to [lo, hi]. */
static inline int32x4_t ep_mve_finish(int32x4_t x, int32_t out_offset, int32_t lo, int32_t hi)
{
    x = vaddq_n_s32(x, out_offset);
    return vminq_s32(vmaxq_s32(x, vdupq_n_s32(lo)), vdupq_n_s32(hi));
}

/* 16 4-bit indices (8 bytes, element 0 in the low nibble) as 16 byte lanes; `pred` limits the
 * bytes read. */
static inline uint8x16_t ep_mve_nibbles(const uint8_t *p, mve_pred16_t pred)
{
    const uint16x8_t b = vldrbq_z_u16(p, pred);
    /* (b << 4) | (b & 0xF): low nibble in bits 0-3, high nibble in bits 8-11 */
    return vreinterpretq_u8_u16(vandq_u16(vsliq_n_u16(b, b, 4), vdupq_n_u16(0x0F0F)));
}
#endif

/* ARG_MAX (sign 1) and ARG_MIN (sign -1) along the middle axis of [outer, axis_size, inner]:
 * the index of the first extreme value, as TFLM picks it. */
static inline ep_status ep_arg_extreme_s8(const ep_arg_params *p, const int8_t *input,
                                          int32_t *output, int32_t sign)
{
    int32_t o, i, a;
    if (p == NULL || input == NULL || output == NULL) return EP_ERR_ARG;
    if (p->outer < 1 || p->axis_size < 1 || p->inner < 1) return EP_ERR_DIM;
    if (ep_prod(ep_prod(p->outer, p->axis_size), p->inner) < 0 || ep_prod(ep_prod(p->outer, p->inner), 4) < 0)
        return EP_ERR_DIM;
    for (o = 0; o < p->outer; ++o) {
        const int8_t *row = input + (int64_t)o * p->axis_size * p->inner;
        for (i = 0; i < p->inner; ++i) {
            int32_t best = sign * row[i];
            int32_t at = 0;
            for (a = 1; a < p->axis_size; ++a) {
                const int32_t v = sign * row[(int64_t)a * p->inner + i];
                if (v > best) {
                    best = v;
                    at = a;
                }
            }
            *output++ = at;
        }
    }
    return EP_OK;
}

#endif /* EP_INTERNAL_H */
