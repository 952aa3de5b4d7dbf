/*
 * edgepack runtime, private: dot products of one weight row with an int16 input row whose
 * input offset is already applied, for dense int8 weights and for packed palette indices.
 * Kept out of line (one translation unit) so that each is compiled with its table pointer in
 * a register: a lookup is then one load with a scaled register offset.
 */
#include "ep_internal.h"


/* Accumulator type. Plain C accumulates in uint32_t so that even absurd row lengths wrap
 * instead of overflowing (no undefined behaviour under -fsanitize=undefined). The Arm DSP build
 * accumulates in int32_t, the type of the SMLAD intrinsic (which wraps), to keep the register
 * allocation tight; int32 accumulation overflows only beyond ~65 000 elements a row. */
#if EP_USE_DSP
typedef int32_t ep_acc;
#else
typedef uint32_t ep_acc;
#endif

/* Two adjacent int16 values as one 32-bit word, element i in the low half (endian-free; GCC
 * merges it into one LDR). */
static inline uint32_t ld_pair(const int16_t *p)
{
    return (uint32_t)(uint16_t)p[0] | ((uint32_t)(uint16_t)p[1] << 16);
}

#if EP_USE_DSP
/* SXTB16 of x rotated right by 8: bytes 1 and 3 as int16 lanes, one instruction (GCC 12 does not
 * fold the rotation into the __sxtb16 intrinsic). */
static inline uint32_t sxtb16_ror8(uint32_t x)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
#endif

/* acc + lo(a)*lo(b) + hi(a)*hi(b) on signed 16-bit halves (SMLABB + SMLATT on Arm). */
static inline ep_acc mac_pair(ep_acc acc, uint32_t a, uint32_t b)
{
#if EP_USE_DSP
    return __smlad(a, b, acc);
#else
    return acc + (uint32_t)((int16_t)(a & 0xFFFFu) * (int16_t)(b & 0xFFFFu)) +
           (uint32_t)((int16_t)(a >> 16) * (int16_t)(b >> 16));
#endif
}

/* Two int16-range values as the halves of one word (PKHBT on Arm). */
static inline uint32_t pack_pair(int32_t lo, int32_t hi)
{
    return (uint32_t)(uint16_t)lo | ((uint32_t)hi << 16);
}

#if defined(__GNUC__)
#define EP_UNROLL_FULLY _Pragma("GCC unroll 32")
#else
#define EP_UNROLL_FULLY
#endif

/* 32 indices of width b (3, 5, 6 or 7; a compile-time constant after inlining) fill exactly b
 * words: load them once, then every index is a shift-and-mask (or two, when it straddles two
 * words) at a constant position. */
static inline int32_t dot_group32(const uint8_t *row, const int32_t *lut, const int16_t *x, const int b)
{
    uint32_t wv[8];
    ep_acc acc = 0;
    int k, j;
    EP_UNROLL_FULLY
    for (k = 0; k < b; ++k) wv[k] = ep_load_u32le(row + 4 * k);
    EP_UNROLL_FULLY
    for (j = 0; j < 32; j += 2) {
        uint32_t v0, v1;
        int pos = j * b;
        int sh = pos & 31;
        v0 = wv[pos >> 5] >> sh;
        if (sh + b > 32) v0 |= wv[(pos >> 5) + 1] << (32 - sh);
        pos += b;
        sh = pos & 31;
        v1 = wv[pos >> 5] >> sh;
        if (sh + b > 32) v1 |= wv[(pos >> 5) + 1] << (32 - sh);
        acc = mac_pair(acc, pack_pair(lut[v0 & ((1u << b) - 1u)], lut[v1 & ((1u << b) - 1u)]), ld_pair(x + j));
    }
    return (int32_t)acc;
}

/* 3-bit indices in pair mode: 16 pairs of 6 bits in 3 words, pair[p] holds both codes. */
static inline int32_t pair_group32_b3(const uint8_t *row, const uint32_t *pair, const int16_t *x)
{
    uint32_t wv[3];
    ep_acc acc = 0;
    int k, j;
    EP_UNROLL_FULLY
    for (k = 0; k < 3; ++k) wv[k] = ep_load_u32le(row + 4 * k);
    EP_UNROLL_FULLY
    for (j = 0; j < 16; ++j) {
        const int pos = j * 6;
        const int sh = pos & 31;
        uint32_t v = wv[pos >> 5] >> sh;
        if (sh + 6 > 32) v |= wv[(pos >> 5) + 1] << (32 - sh);
        acc = mac_pair(acc, pair[v & 63u], ld_pair(x + 2 * j));
    }
    return (int32_t)acc;
}

int32_t ep_dense_prepare_row(int16_t *x, int32_t n)
{
    /* Swap elements 1 and 2 of every full group of four: (x0, x2) and (x1, x3) become adjacent
     * pairs that line up with the (w0, w2) / (w1, w3) lanes ep_dot_dense splits a weight word
     * into. Returns sum(x). */
    uint32_t sum = 0;
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const int16_t t = x[i + 1];
        x[i + 1] = x[i + 2];
        x[i + 2] = t;
        sum += (uint32_t)(x[i] + x[i + 1] + x[i + 2] + x[i + 3]);
    }
    for (; i < n; ++i) sum += (uint32_t)x[i];
    return (int32_t)sum;
}

int32_t ep_dot_dense(const int8_t *w, const int16_t *x, int32_t n, int32_t sum_x)
{
    /* x as rearranged by ep_dense_prepare_row: per group of four, (x0, x2, x1, x3). */
    ep_acc acc = 0;
    int32_t i = 0;
#if EP_USE_DSP
    /* CMSIS-NN style: one load of four weights, SXTB16 splits them into the (w0, w2) and
     * (w1, w3) int16 lanes, SMLAD multiplies each with an (x0, x2) / (x1, x3) pair. */
    const uint8_t *wb = (const uint8_t *)w;
    for (; i + 4 <= n; i += 4) {
        const uint32_t wd = ep_load_u32le(wb + i);
        acc = __smlad(__sxtb16(wd), ld_pair(x + i), acc);
        acc = __smlad(sxtb16_ror8(wd), ld_pair(x + i + 2), acc);
    }
#else
    for (; i + 4 <= n; i += 4) {
        acc += w[i] * x[i];
        acc += w[i + 2] * x[i + 1];
        acc += w[i + 1] * x[i + 2];
        acc += w[i + 3] * x[i + 3];
    }
#endif
    for (; i < n; ++i) acc += w[i] * x[i];
    (void)sum_x;
    return (int32_t)acc;
}

int32_t ep_dot_palette_lut(const uint8_t *row, int32_t bits, const int32_t *lut, const int16_t *x, int32_t n)
{
    ep_acc acc = 0;
    int32_t i = 0;
    switch (bits) {
    case 8:
        for (; i + 4 <= n; i += 4, row += 4) {
            acc = mac_pair(acc, pack_pair(lut[row[0]], lut[row[1]]), ld_pair(x + i));
            acc = mac_pair(acc, pack_pair(lut[row[2]], lut[row[3]]), ld_pair(x + i + 2));
        }
        for (; i < n; ++i) acc += lut[*row++] * x[i];
        return (int32_t)acc;
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
        return (int32_t)acc;
    case 2:
        for (; i + 16 <= n; i += 16, row += 4) {
            const uint32_t wd = ep_load_u32le(row);
            acc += lut[wd & 3u] * x[i];
            acc += lut[(wd >> 2) & 3u] * x[i + 1];
            acc += lut[(wd >> 4) & 3u] * x[i + 2];
            acc += lut[(wd >> 6) & 3u] * x[i + 3];
            acc += lut[(wd >> 8) & 3u] * x[i + 4];
            acc += lut[(wd >> 10) & 3u] * x[i + 5];
            acc += lut[(wd >> 12) & 3u] * x[i + 6];
            acc += lut[(wd >> 14) & 3u] * x[i + 7];
            acc += lut[(wd >> 16) & 3u] * x[i + 8];
            acc += lut[(wd >> 18) & 3u] * x[i + 9];
            acc += lut[(wd >> 20) & 3u] * x[i + 10];
            acc += lut[(wd >> 22) & 3u] * x[i + 11];
            acc += lut[(wd >> 24) & 3u] * x[i + 12];
            acc += lut[(wd >> 26) & 3u] * x[i + 13];
            acc += lut[(wd >> 28) & 3u] * x[i + 14];
            acc += lut[wd >> 30] * x[i + 15];
        }
        if (i < n) {
            uint32_t wd = ep_load_u32le(row);
            for (; i < n; ++i, wd >>= 2) acc += lut[wd & 3u] * x[i];
        }
        return (int32_t)acc;
    case 1: {
        /* w = c0 + bit * (c1 - c0): accumulate sum(x) and the sum of x where the bit is set. */
        uint32_t sum_x = 0;
        uint32_t sum_sel = 0;
        for (; i + 32 <= n; i += 32, row += 4) {
            const uint32_t wd = ep_load_u32le(row);
            int32_t j;
            for (j = 0; j < 32; ++j) {
                const int32_t xv = x[i + j];
                sum_x += (uint32_t)xv;
                sum_sel += ((wd >> j) & 1u) ? (uint32_t)xv : 0u;
            }
        }
        if (i < n) {
            uint32_t wd = ep_load_u32le(row);
            for (; i < n; ++i, wd >>= 1) {
                sum_x += (uint32_t)x[i];
                sum_sel += (wd & 1u) ? (uint32_t)x[i] : 0u;
            }
        }
        return (int32_t)((uint32_t)lut[0] * sum_x + (uint32_t)(lut[1] - lut[0]) * sum_sel);
    }
    default: {
        /* Widths 3, 5, 6, 7: groups of 32 indices (b words), then a 32-bit window over the rest. */
        const uint32_t mask = (1u << bits) - 1u;
        switch (bits) {
        case 3:
            for (; i + 32 <= n; i += 32, row += 12) acc += dot_group32(row, lut, x + i, 3);
            break;
        case 5:
            for (; i + 32 <= n; i += 32, row += 20) acc += dot_group32(row, lut, x + i, 5);
            break;
        case 6:
            for (; i + 32 <= n; i += 32, row += 24) acc += dot_group32(row, lut, x + i, 6);
            break;
        default:
            for (; i + 32 <= n; i += 32, row += 28) acc += dot_group32(row, lut, x + i, 7);
            break;
        }
        uint32_t cur = 0;
        int32_t have = 0;
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
                cur = next >> (bits - have);
                have = 32 - (bits - have);
            }
            acc += lut[v] * x[i];
        }
        return (int32_t)acc;
    }
    }
}

int32_t ep_dot_palette_pair(const uint8_t *row, int32_t bits, const uint32_t *pair, const int16_t *x, int32_t n)
{
    /* pair[p]: codebook values of two adjacent indices (p = i0 | i1 << bits) as int16 halves.
     * x[n] must be 0 when n is odd (the last pair reads it). */
    ep_acc acc = 0;
    int32_t i = 0;
    uint32_t wd;
    switch (bits) {
    case 4:
        for (; i + 8 <= n; i += 8, row += 4, x += 8) {
            wd = ep_load_u32le(row);
            acc = mac_pair(acc, pair[wd & 0xFFu], ld_pair(x));
            acc = mac_pair(acc, pair[(wd >> 8) & 0xFFu], ld_pair(x + 2));
            acc = mac_pair(acc, pair[(wd >> 16) & 0xFFu], ld_pair(x + 4));
            acc = mac_pair(acc, pair[wd >> 24], ld_pair(x + 6));
        }
        if (i < n) {
            wd = ep_load_u32le(row);
            for (; i < n; i += 2, wd >>= 8, x += 2) acc = mac_pair(acc, pair[wd & 0xFFu], ld_pair(x));
        }
        return (int32_t)acc;
    case 2:
        for (; i + 16 <= n; i += 16, row += 4, x += 16) {
            wd = ep_load_u32le(row);
            acc = mac_pair(acc, pair[wd & 0xFu], ld_pair(x));
            acc = mac_pair(acc, pair[(wd >> 4) & 0xFu], ld_pair(x + 2));
            acc = mac_pair(acc, pair[(wd >> 8) & 0xFu], ld_pair(x + 4));
            acc = mac_pair(acc, pair[(wd >> 12) & 0xFu], ld_pair(x + 6));
            acc = mac_pair(acc, pair[(wd >> 16) & 0xFu], ld_pair(x + 8));
            acc = mac_pair(acc, pair[(wd >> 20) & 0xFu], ld_pair(x + 10));
            acc = mac_pair(acc, pair[(wd >> 24) & 0xFu], ld_pair(x + 12));
            acc = mac_pair(acc, pair[wd >> 28], ld_pair(x + 14));
        }
        if (i < n) {
            wd = ep_load_u32le(row);
            for (; i < n; i += 2, wd >>= 4, x += 2) acc = mac_pair(acc, pair[wd & 0xFu], ld_pair(x));
        }
        return (int32_t)acc;
    case 3:
        for (; i + 32 <= n; i += 32, row += 12, x += 32) acc += pair_group32_b3(row, pair, x);
        if (i < n) {
            /* The remaining < 32 indices of the row's last words: pairs through a bit window. */
            uint32_t cur = 0;
            int32_t have = 0;
            for (; i < n; i += 2, x += 2) {
                /* A last odd index takes only its own 3 bits (the row may end right after them);
                 * its pair entry then has code 0 in the high half, multiplied by the zero pad x[n]. */
                const int32_t nb = n - i >= 2 ? 6 : 3;
                const uint32_t mask = (1u << nb) - 1u;
                uint32_t v;
                if (have >= nb) {
                    v = cur & mask;
                    cur >>= nb;
                    have -= nb;
                } else {
                    const uint32_t next = ep_load_u32le(row);
                    row += 4;
                    v = (cur | (next << have)) & mask;
                    cur = next >> (nb - have);
                    have = 32 - (nb - have);
                }
                acc = mac_pair(acc, pair[v], ld_pair(x));
            }
        }
        return (int32_t)acc;
    default: /* 1 */
        for (; i + 32 <= n; i += 32, row += 4, x += 32) {
            int32_t j;
            wd = ep_load_u32le(row);
            for (j = 0; j < 16; ++j) acc = mac_pair(acc, pair[(wd >> (2 * j)) & 3u], ld_pair(x + 2 * j));
        }
        if (i < n) {
            wd = ep_load_u32le(row);
            for (; i < n; i += 2, wd >>= 2, x += 2) acc = mac_pair(acc, pair[wd & 3u], ld_pair(x));
        }
        return (int32_t)acc;
    }
}

void ep_dot_dense_2x2(const int8_t *w0, const int8_t *w1, const int16_t *x0, const int16_t *x1, int32_t n,
                      int32_t acc[4])
{
    /* Two rows against two pixels (CMSIS-NN's DSP block): each weight word and each input pair
     * is loaded once for two MACs. x0, x1 as rearranged by ep_dense_prepare_row. */
    ep_acc a00 = 0, a01 = 0, a10 = 0, a11 = 0;
    int32_t i = 0;
#if EP_USE_DSP
    /* Per four elements: the two pixels' input pairs are loaded once, then each row's weight
     * word is split by SXTB16 (and SXTB16 with ROR #8) into the (w0, w2) / (w1, w3) lanes and
     * used for both pixels. Pointers advance by post-increment. */
    const uint8_t *b0 = (const uint8_t *)w0, *b1 = (const uint8_t *)w1;
    const int16_t *p0 = x0, *p1 = x1;
    int32_t k;
    for (k = n >> 2; k > 0; --k) {
        const uint32_t xa02 = ld_pair(p0), xa13 = ld_pair(p0 + 2);
        const uint32_t xb02 = ld_pair(p1), xb13 = ld_pair(p1 + 2);
        uint32_t wd = ep_load_u32le(b0);
        a00 = __smlad(__sxtb16(wd), xa02, a00);
        a01 = __smlad(__sxtb16(wd), xb02, a01);
        wd = sxtb16_ror8(wd);
        a00 = __smlad(wd, xa13, a00);
        a01 = __smlad(wd, xb13, a01);
        wd = ep_load_u32le(b1);
        a10 = __smlad(__sxtb16(wd), xa02, a10);
        a11 = __smlad(__sxtb16(wd), xb02, a11);
        wd = sxtb16_ror8(wd);
        a10 = __smlad(wd, xa13, a10);
        a11 = __smlad(wd, xb13, a11);
        b0 += 4;
        b1 += 4;
        p0 += 4;
        p1 += 4;
    }
    i = n & ~3;
#else
    for (; i + 4 <= n; i += 4) {
        int32_t k;
        for (k = 0; k < 4; ++k) {
            const int32_t xi = k == 1 ? 2 : k == 2 ? 1 : k; /* (x0, x2, x1, x3) order */
            a00 += (uint32_t)(w0[i + k] * x0[i + xi]);
            a01 += (uint32_t)(w0[i + k] * x1[i + xi]);
            a10 += (uint32_t)(w1[i + k] * x0[i + xi]);
            a11 += (uint32_t)(w1[i + k] * x1[i + xi]);
        }
    }
#endif
    for (; i < n; ++i) {
        a00 += (ep_acc)(w0[i] * x0[i]);
        a01 += (ep_acc)(w0[i] * x1[i]);
        a10 += (ep_acc)(w1[i] * x0[i]);
        a11 += (ep_acc)(w1[i] * x1[i]);
    }
    acc[0] = (int32_t)a00;
    acc[1] = (int32_t)a01;
    acc[2] = (int32_t)a10;
    acc[3] = (int32_t)a11;
}

void ep_dot_dense_2x1(const int8_t *w0, const int8_t *w1, const int16_t *x, int32_t n, int32_t acc[2])
{
    /* Two rows against one input row (FULLY_CONNECTED): each input pair is loaded once for both
     * rows. x as rearranged by ep_dense_prepare_row. */
    ep_acc a0 = 0, a1 = 0;
    int32_t i = 0;
#if EP_USE_DSP
    const uint8_t *b0 = (const uint8_t *)w0, *b1 = (const uint8_t *)w1;
    const int16_t *p = x;
    int32_t k;
    for (k = n >> 2; k > 0; --k) {
        const uint32_t x02 = ld_pair(p), x13 = ld_pair(p + 2);
        const uint32_t wa = ep_load_u32le(b0), wb = ep_load_u32le(b1);
        a0 = __smlad(__sxtb16(wa), x02, a0);
        a1 = __smlad(__sxtb16(wb), x02, a1);
        a0 = __smlad(sxtb16_ror8(wa), x13, a0);
        a1 = __smlad(sxtb16_ror8(wb), x13, a1);
        b0 += 4;
        b1 += 4;
        p += 4;
    }
    i = n & ~3;
#else
    for (; i + 4 <= n; i += 4) {
        int32_t k;
        for (k = 0; k < 4; ++k) {
            const int32_t xi = k == 1 ? 2 : k == 2 ? 1 : k; /* (x0, x2, x1, x3) order */
            a0 += (uint32_t)(w0[i + k] * x[i + xi]);
            a1 += (uint32_t)(w1[i + k] * x[i + xi]);
        }
    }
#endif
    for (; i < n; ++i) {
        a0 += (ep_acc)(w0[i] * x[i]);
        a1 += (ep_acc)(w1[i] * x[i]);
    }
    acc[0] = (int32_t)a0;
    acc[1] = (int32_t)a1;
}
