/*
 * edgepack runtime, private helpers: argument checks, weight access (dense and palette
 * rows), dot products. Not part of the public API.
 */
#ifndef EP_INTERNAL_H
#define EP_INTERNAL_H

#include <string.h>

#include "edgepack.h"
#include "ep_arith.h"

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
 * Validate a weight tensor of `rows` rows of `row_len` elements and, for the palette form,
 * build a 256-entry lookup table (codebook values, 0 beyond K) so that any index value is
 * in bounds. Returns EP_OK or an error status.
 */
static inline ep_status ep_weights_prepare(const ep_weights *w, int64_t rows, int64_t row_len, int32_t *lut,
                                           int64_t *stride)
{
    if (w->data == NULL) return EP_ERR_ARG;
    if (w->form == EP_WEIGHTS_DENSE) {
        const int64_t n = ep_prod(rows, row_len);
        if (n < 0 || w->data_bytes < n) return EP_ERR_BUFFER;
        *stride = row_len;
        return EP_OK;
    }
    if (w->form == EP_WEIGHTS_PALETTE) {
        int32_t k;
        int64_t total;
        if (w->bits < 1 || w->bits > 8) return EP_ERR_ARG;
        if (w->num_codes < 1 || w->num_codes > 256 || w->codebook == NULL) return EP_ERR_ARG;
        *stride = ep_row_stride(row_len, w->bits);
        total = ep_prod(rows, *stride);
        if (total < 0 || w->data_bytes < total) return EP_ERR_BUFFER;
        for (k = 0; k < 256; ++k) lut[k] = k < w->num_codes ? (int32_t)w->codebook[k] : 0;
        return EP_OK;
    }
    return EP_ERR_ARG;
}

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

/* sum_i w[i] * x[i] for dense int8 weights and an int16 row (input offset already added). */
static inline int32_t ep_dot_dense(const int8_t *w, const int16_t *x, int32_t n)
{
    int32_t acc = 0;
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        acc += w[i] * x[i];
        acc += w[i + 1] * x[i + 1];
        acc += w[i + 2] * x[i + 2];
        acc += w[i + 3] * x[i + 3];
    }
    for (; i < n; ++i) acc += w[i] * x[i];
    return acc;
}

/*
 * sum_i lut[idx_i] * x[i] over a packed palette row that starts on a word boundary.
 * Specialised for 8, 4, 2 and 1 bits with one 32-bit word load per 4, 8, 16 or 32
 * indices; other widths use a generic bit reader.
 */
static inline int32_t ep_dot_palette(const uint8_t *row, int32_t bits, const int32_t *lut, const int16_t *x,
                                     int32_t n)
{
    int32_t acc = 0;
    int32_t i = 0;
    switch (bits) {
    case 8:
        for (; i + 4 <= n; i += 4, row += 4) {
            const uint32_t wd = ep_load_u32le(row);
            acc += lut[wd & 0xFFu] * x[i];
            acc += lut[(wd >> 8) & 0xFFu] * x[i + 1];
            acc += lut[(wd >> 16) & 0xFFu] * x[i + 2];
            acc += lut[wd >> 24] * x[i + 3];
        }
        for (; i < n; ++i) acc += lut[*row++] * x[i];
        return acc;
    case 4:
        for (; i + 8 <= n; i += 8, row += 4) {
            const uint32_t wd = ep_load_u32le(row);
            acc += lut[wd & 0xFu] * x[i];
            acc += lut[(wd >> 4) & 0xFu] * x[i + 1];
            acc += lut[(wd >> 8) & 0xFu] * x[i + 2];
            acc += lut[(wd >> 12) & 0xFu] * x[i + 3];
            acc += lut[(wd >> 16) & 0xFu] * x[i + 4];
            acc += lut[(wd >> 20) & 0xFu] * x[i + 5];
            acc += lut[(wd >> 24) & 0xFu] * x[i + 6];
            acc += lut[wd >> 28] * x[i + 7];
        }
        if (i < n) {
            uint32_t wd = ep_load_u32le(row);
            for (; i < n; ++i, wd >>= 4) acc += lut[wd & 0xFu] * x[i];
        }
        return acc;
    case 2:
        for (; i + 16 <= n; i += 16, row += 4) {
            const uint32_t wd = ep_load_u32le(row);
            int32_t j;
            for (j = 0; j < 16; ++j) acc += lut[(wd >> (2 * j)) & 3u] * x[i + j];
        }
        if (i < n) {
            uint32_t wd = ep_load_u32le(row);
            for (; i < n; ++i, wd >>= 2) acc += lut[wd & 3u] * x[i];
        }
        return acc;
    case 1: {
        /* w = lut[0] + bit * (lut[1] - lut[0]) */
        const int32_t base = lut[0];
        const int32_t delta = lut[1] - lut[0];
        int32_t sum_x = 0;
        int32_t sum_sel = 0;
        for (; i + 32 <= n; i += 32, row += 4) {
            const uint32_t wd = ep_load_u32le(row);
            int32_t j;
            for (j = 0; j < 32; ++j) {
                const int32_t xv = x[i + j];
                sum_x += xv;
                sum_sel += ((wd >> j) & 1u) ? xv : 0;
            }
        }
        if (i < n) {
            uint32_t wd = ep_load_u32le(row);
            for (; i < n; ++i, wd >>= 1) {
                sum_x += x[i];
                sum_sel += (wd & 1u) ? x[i] : 0;
            }
        }
        return base * sum_x + delta * sum_sel;
    }
    default: {
        /* Generic: keep a 32-bit window over the row, refilled word by word. */
        const uint32_t mask = (1u << bits) - 1u;
        uint32_t cur = 0;
        int32_t have = 0; /* valid bits in cur */
        for (; i < n; ++i) {
            uint32_t v;
            if (have >= bits) {
                v = cur & mask;
                cur >>= bits;
                have -= bits;
            } else {
                const uint32_t next = ep_load_u32le(row);
                row += 4;
                v = (cur | (next << have)) & mask;
                cur = (bits - have) >= 32 ? 0u : next >> (bits - have);
                have = 32 - (bits - have);
            }
            acc += lut[v] * x[i];
        }
        return acc;
    }
    }
}

/* Requantize an accumulator of output channel oc and clamp. */
static inline int8_t ep_requant_out(int32_t acc, const ep_requant *q, int32_t oc, int32_t out_offset, int32_t lo,
                                    int32_t hi)
{
    const int32_t k = q->count == 1 ? 0 : oc;
    int32_t v = ep_MultiplyByQuantizedMultiplier(acc, q->multiplier[k], q->shift[k]) + out_offset;
    return (int8_t)ep_clamp_i32(v, lo, hi);
}

#endif /* EP_INTERNAL_H */
