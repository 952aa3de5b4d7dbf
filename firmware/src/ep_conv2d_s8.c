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

/*
 * Scratch (one layout for every build, so the arena plan does not depend on the target):
 *   [EP_CH_TILE int32: per-channel bias + input_offset * weight sum of the current tile]
 *   [patch area, 4 * len + 32 bytes: Helium four int8 im2col patches; DSP / plain C two int16
 *    patches of len + 2 elements]
 *   palette weights: [256-byte codebook table][a tile of decoded int8 weight rows]
 */
static int64_t conv_patch_bytes(int64_t len)
{
    return ((4 * len + 15) & ~(int64_t)15) + 16;
}

static int64_t conv_scratch(const ep_conv2d_params *p, int64_t len)
{
    int64_t s = 4 * EP_CH_TILE + conv_patch_bytes(len);
    if (p->weights.form == EP_WEIGHTS_PALETTE)
        s += EP_CODEBOOK_TABLE_BYTES + ((ep_palette_tile_rows(len, p->output.c) * len + 3) & ~(int64_t)3);
    return s;
}

int32_t ep_conv2d_s8_get_buffer_size(const ep_conv2d_params *p)
{
    int64_t len;
    if (conv_check(p, &len) != EP_OK) return -1;
    return (int32_t)conv_scratch(p, len);
}

/* What one tile of output channels needs. */
typedef struct {
    const ep_conv2d_params *p;
    const int8_t *input;  /* batch b */
    int8_t *output;       /* batch b */
    const int8_t *w;      /* nc rows of len int8 weights */
    int32_t c0, nc, len;
    int32_t *sums;        /* nc: bias + input_offset * weight sum (Helium) */
    void *patch;
} conv_tile;

#if EP_USE_MVE
/* n bytes from src to dst (n >= 0), 16 a step, the last step predicated. */
static inline void conv_copy_s8(int8_t *dst, const int8_t *src, int32_t n)
{
    for (; n > 0; n -= 16, dst += 16, src += 16) {
        const mve_pred16_t pr = vctp8q((uint32_t)n);
        vstrbq_p_s8(dst, vldrbq_z_s8(src, pr), pr);
    }
}

static inline void conv_fill_s8(int8_t *dst, int8x16_t v, int32_t n)
{
    for (; n > 0; n -= 16, dst += 16) vstrbq_p_s8(dst, v, vctp8q((uint32_t)n));
}

/* im2col of output pixel (oy, ox) as int8, padded taps = -input_offset (the input zero point), so
 * that every tap contributes w * (x + input_offset) and the offset is folded into the weight
 * sums. A filter row with dilation 1 and no horizontal clipping is one contiguous copy. Offsets
 * fit int32: the input has at most INT32_MAX elements (conv_check). */
static void conv_patch_s8(const conv_tile *t, int32_t oy, int32_t ox, int8_t *dst)
{
    const ep_conv2d_params *p = t->p;
    const int32_t y0 = oy * p->stride_h - p->pad_top, x0 = ox * p->stride_w - p->pad_left;
    const int32_t in_c = p->input.c, in_w = p->input.w, kw = p->filter.w, row = kw * in_c;
    const int32_t dw = p->dilation_w;
    const int8x16_t pad = vdupq_n_s8((int8_t)(-p->input_offset));
    const int whole_rows = dw == 1 && x0 >= 0 && x0 + kw <= in_w;
    int32_t ky, kx;
    for (ky = 0; ky < p->filter.h; ++ky, dst += row) {
        const int32_t iy = y0 + ky * p->dilation_h;
        const int8_t *src;
        if (iy < 0 || iy >= p->input.h) {
            conv_fill_s8(dst, pad, row);
            continue;
        }
        src = t->input + (iy * in_w + x0) * in_c;
        if (whole_rows) {
            conv_copy_s8(dst, src, row);
            continue;
        }
        for (kx = 0; kx < kw; ++kx) {
            const int32_t ix = x0 + kx * dw;
            if (ix < 0 || ix >= in_w)
                conv_fill_s8(dst + kx * in_c, pad, in_c);
            else
                conv_copy_s8(dst + kx * in_c, src + kx * dw * in_c, in_c);
        }
    }
}

/* Four dot products of one weight row with four int8 patches: per 16 weights one weight load,
 * four input loads and four VMLADAVA. */
static inline __attribute__((always_inline)) int32x4_t conv_dot4(const int8_t *w, const int8_t *c0,
                                                                 const int8_t *c1, const int8_t *c2,
                                                                 const int8_t *c3, int32_t n)
{
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    int32_t i = 0;
    int32x4_t r;
    for (; i + 16 <= n; i += 16) {
        const int8x16_t wv = vldrbq_s8(w + i);
        a0 = vmladavaq_s8(a0, wv, vldrbq_s8(c0 + i));
        a1 = vmladavaq_s8(a1, wv, vldrbq_s8(c1 + i));
        a2 = vmladavaq_s8(a2, wv, vldrbq_s8(c2 + i));
        a3 = vmladavaq_s8(a3, wv, vldrbq_s8(c3 + i));
    }
    if (i < n) {
        const mve_pred16_t pr = vctp8q((uint32_t)(n - i));
        const int8x16_t wv = vldrbq_z_s8(w + i, pr);
        a0 = vmladavaq_s8(a0, wv, vldrbq_z_s8(c0 + i, pr));
        a1 = vmladavaq_s8(a1, wv, vldrbq_z_s8(c1 + i, pr));
        a2 = vmladavaq_s8(a2, wv, vldrbq_z_s8(c2 + i, pr));
        a3 = vmladavaq_s8(a3, wv, vldrbq_z_s8(c3 + i, pr));
    }
    r = vdupq_n_s32(a0);
    r = vsetq_lane_s32(a1, r, 1);
    r = vsetq_lane_s32(a2, r, 2);
    return vsetq_lane_s32(a3, r, 3);
}

/* Helium: blocks of four output pixels; per block the patches are built once (or point straight
 * into the input for 1x1 filters), then every channel of the tile is one conv_dot4 and one
 * four-lane requantization, stored to the four pixels with a byte scatter. */
static void conv_tile_run(const conv_tile *t)
{
    const ep_conv2d_params *p = t->p;
    const int32_t len = t->len, oc_n = p->output.c, ow = p->output.w;
    const int32_t pixels = p->output.h * ow;
    const int pointwise = p->filter.h == 1 && p->filter.w == 1 && p->pad_top == 0 && p->pad_left == 0;
    const uint32x4_t offs = vmulq_n_u32(vidupq_n_u32(0, 1), (uint32_t)oc_n);
    const int32_t per_channel = p->requant.count == 1 ? 0 : 1;
    const int32_t out_offset = p->output_offset, lo = p->act_min, hi = p->act_max;
    int8_t *patch = (int8_t *)t->patch;
    int32_t j, pix, i;
    for (j = 0; j < t->nc; ++j) {
        const int8_t *w = t->w + (int64_t)j * len;
        int32_t s = 0;
        for (i = 0; i < len; i += 16) {
            const mve_pred16_t pr = vctp8q((uint32_t)(len - i));
            s = vaddvaq_p_s8(s, vldrbq_z_s8(w + i, pr), pr);
        }
        t->sums[j] = (int32_t)((uint32_t)(p->bias ? p->bias[t->c0 + j] : 0) +
                               (uint32_t)p->input_offset * (uint32_t)s);
    }
    for (pix = 0; pix < pixels; pix += 4) {
        const int32_t np = pixels - pix < 4 ? pixels - pix : 4;
        const mve_pred16_t store = vctp32q((uint32_t)np);
        const int8_t *col[4];
        const int32_t *mult = p->requant.multiplier + per_channel * t->c0;
        const int32_t *shift = p->requant.shift + per_channel * t->c0;
        const int8_t *w = t->w;
        int8_t *out = t->output + pix * oc_n + t->c0;
        int32_t oy = pix / ow, ox = pix - oy * ow;
        for (i = 0; i < 4; ++i) {
            if (i < np) {
                if (pointwise) {
                    col[i] = t->input + (oy * p->stride_h * p->input.w + ox * p->stride_w) * p->input.c;
                } else {
                    col[i] = patch + i * len;
                    conv_patch_s8(t, oy, ox, patch + i * len);
                }
                if (++ox == ow) {
                    ox = 0;
                    ++oy;
                }
            } else {
                col[i] = col[0];
            }
        }
        for (j = 0; j < t->nc; ++j, w += len, mult += per_channel, shift += per_channel) {
            int32x4_t acc = vaddq_n_s32(conv_dot4(w, col[0], col[1], col[2], col[3], len), t->sums[j]);
            acc = ep_mve_requant_n(acc, *mult, *shift);
            acc = vaddq_n_s32(acc, out_offset);
            acc = vminq_s32(vmaxq_s32(acc, vdupq_n_s32(lo)), vdupq_n_s32(hi));
            vstrbq_scatter_offset_p_s32(out + j, offs, acc, store);
        }
    }
}
#else
/* im2col of output pixel pix as int16 with the input offset applied (padded taps 0), rearranged
 * for the dual 16-bit MACs (ep_dense_prepare_row); x[len] = 0. */
static void conv_patch_s16(const conv_tile *t, int32_t pix, int16_t *dst)
{
    const ep_conv2d_params *p = t->p;
    const int32_t oy = pix / p->output.w, ox = pix - oy * p->output.w;
    const int32_t y0 = oy * p->stride_h - p->pad_top, x0 = ox * p->stride_w - p->pad_left;
    const int32_t in_c = p->input.c;
    int16_t *x = dst;
    int32_t ky, kx, c;
    for (ky = 0; ky < p->filter.h; ++ky) {
        const int32_t iy = y0 + ky * p->dilation_h;
        for (kx = 0; kx < p->filter.w; ++kx, dst += in_c) {
            const int32_t ix = x0 + kx * p->dilation_w;
            if (iy < 0 || iy >= p->input.h || ix < 0 || ix >= p->input.w) {
                for (c = 0; c < in_c; ++c) dst[c] = 0;
            } else {
                const int8_t *src = t->input + ((int64_t)iy * p->input.w + ix) * in_c;
                c = 0;
#if EP_USE_DSP
                if ((in_c & 3) == 0) {
                    /* Four inputs a word: SXTB16 gives (x0, x2) and (x1, x3), already the
                     * rearranged order, SADD16 adds the offset to both halves. */
                    const uint32_t off2 = (uint32_t)(uint16_t)p->input_offset * 0x10001u;
                    for (; c < in_c; c += 4) {
                        const uint32_t v = ep_load_u32le((const uint8_t *)src + c);
                        const uint32_t a = __sadd16(__sxtb16(v), off2);
                        const uint32_t b = __sadd16(__sxtb16((v >> 8) | (v << 24)), off2);
                        memcpy(dst + c, &a, 4);
                        memcpy(dst + c + 2, &b, 4);
                    }
                    continue;
                }
#endif
                for (; c < in_c; ++c) dst[c] = (int16_t)(src[c] + p->input_offset);
            }
        }
    }
    x[t->len] = 0;
#if EP_USE_DSP
    if ((in_c & 3) == 0) return; /* filled in rearranged order */
#endif
    (void)ep_dense_prepare_row(x, t->len);
}

/* Requantization constants of one tile, hoisted out of the pixel loop. */
typedef struct {
    const int32_t *bias;   /* t->sums: the tile's biases (0 without) */
    const int32_t *mult, *shift;
    int32_t step;          /* 1 per-channel, 0 per-tensor */
    int32_t out_offset, lo, hi;
} conv_rq;

static inline void conv_store(const conv_rq *q, int8_t *out, int32_t j, int32_t acc)
{
    const int32_t k = j * q->step;
    /* wrapping adds: defined for any parameters (the clamp bounds the result) */
    const int32_t v = ep_wadd(ep_mbqm_nonneg(ep_wadd(acc, q->bias[j]), q->mult[k], q->shift[k]), q->out_offset);
    out[j] = (int8_t)ep_clamp_i32(v, q->lo, q->hi);
}

/* DSP and plain C: two output pixels x two channels per inner loop (ep_dot_dense_2x2). */
static void conv_tile_run(const conv_tile *t)
{
    const ep_conv2d_params *p = t->p;
    const int32_t len = t->len, oc_n = p->output.c;
    const int32_t pixels = p->output.h * p->output.w;
    int16_t *xa = (int16_t *)t->patch;
    int16_t *xb = xa + ((len + 2) & ~1);
    int32_t pix, j;
    conv_rq q;
    for (j = 0; j < t->nc; ++j) t->sums[j] = p->bias ? p->bias[t->c0 + j] : 0;
    q.bias = t->sums;
    q.step = p->requant.count == 1 ? 0 : 1;
    q.mult = p->requant.multiplier + q.step * t->c0;
    q.shift = p->requant.shift + q.step * t->c0;
    q.out_offset = p->output_offset;
    q.lo = p->act_min;
    q.hi = p->act_max;
    for (pix = 0; pix < pixels; pix += 2) {
        int8_t *oa = t->output + (int64_t)pix * oc_n + t->c0;
        const int8_t *w = t->w;
        conv_patch_s16(t, pix, xa);
        if (pix + 1 < pixels) {
            int8_t *ob = oa + oc_n;
            conv_patch_s16(t, pix + 1, xb);
            for (j = 0; j + 2 <= t->nc; j += 2, w += 2 * len) {
                int32_t acc[4];
                ep_dot_dense_2x2(w, w + len, xa, xb, len, acc);
                conv_store(&q, oa, j, acc[0]);
                conv_store(&q, ob, j, acc[1]);
                conv_store(&q, oa, j + 1, acc[2]);
                conv_store(&q, ob, j + 1, acc[3]);
            }
            if (j < t->nc) {
                conv_store(&q, oa, j, ep_dot_dense(w, xa, len, 0));
                conv_store(&q, ob, j, ep_dot_dense(w, xb, len, 0));
            }
        } else {
            for (j = 0; j < t->nc; ++j, w += len) conv_store(&q, oa, j, ep_dot_dense(w, xa, len, 0));
        }
    }
}
#endif

ep_status ep_conv2d_s8(const ep_conv2d_params *p, const int8_t *input, int8_t *output, void *scratch,
                       int32_t scratch_bytes)
{
    int64_t len64, stride64;
    int32_t b, c0, tile;
    const int8_t *table = NULL;
    int8_t *decoded = NULL;
    conv_tile t;
    ep_status st;

    st = conv_check(p, &len64);
    if (st != EP_OK) return st;
    if (input == NULL || output == NULL || scratch == NULL) return EP_ERR_ARG;
    if ((((uintptr_t)scratch) & 3u) != 0) return EP_ERR_ARG;
    st = ep_weights_prepare(&p->weights, p->filter.n, len64, &stride64);
    if (st != EP_OK) return st;
    if ((int64_t)scratch_bytes < conv_scratch(p, len64)) return EP_ERR_BUFFER;
    t.p = p;
    t.len = (int32_t)len64;
    t.sums = (int32_t *)scratch;
    t.patch = (uint8_t *)scratch + 4 * EP_CH_TILE;
    tile = EP_CH_TILE;
    if (p->weights.form == EP_WEIGHTS_PALETTE) {
        int8_t *tb = (int8_t *)t.patch + conv_patch_bytes(len64);
        ep_codebook_table(&p->weights, tb);
        table = tb;
        decoded = tb + EP_CODEBOOK_TABLE_BYTES;
        tile = ep_palette_tile_rows(len64, p->output.c);
    }
    /* Channel tiles outside, batches inside: palette rows are decoded once per tile. */
    for (c0 = 0; c0 < p->output.c; c0 += tile) {
        t.c0 = c0;
        t.nc = p->output.c - c0 < tile ? p->output.c - c0 : tile;
        if (decoded != NULL) {
            ep_palette_decode_rows((const uint8_t *)p->weights.data + c0 * stride64, p->weights.bits, stride64, t.nc,
                                   t.len, table, decoded);
            t.w = decoded;
        } else {
            t.w = (const int8_t *)p->weights.data + (int64_t)c0 * t.len;
        }
        for (b = 0; b < p->output.n; ++b) {
            t.input = input + (int64_t)b * p->input.h * p->input.w * p->input.c;
            t.output = output + (int64_t)b * p->output.h * p->output.w * p->output.c;
            conv_tile_run(&t);
        }
    }
    return EP_OK;
}
