/*
 * edgepack runtime, private: palette rows decoded to int8 weights, for kernels that reuse each
 * weight across many output pixels (CONV_2D, DEPTHWISE_CONV_2D): a tile is decoded once into the
 * caller's scratch and then runs the dense inner loops, so palette weights cost flash bytes, not
 * instructions.
 */
#include "ep_internal.h"

void ep_codebook_table(const ep_weights *w, int8_t *table)
{
    /* Only the 2^bits entries an index can name; codes beyond K read 0. */
    const int32_t n = (int32_t)1 << w->bits;
    int32_t k = 0;
#if EP_USE_MVE
    for (; k < n; k += 16) {
        const int32_t rem = w->num_codes - k;
        const int8x16_t v = rem > 0 ? vldrbq_z_s8(w->codebook + k, vctp8q((uint32_t)rem)) : vdupq_n_s8(0);
        vstrbq_p_s8(table + k, v, vctp8q((uint32_t)(n - k)));
    }
#else
    for (; k < n; ++k) table[k] = (int8_t)ep_code(w, k);
#endif
}

/* One row of n indices. */
static void decode_row(const uint8_t *row, int32_t bits, int32_t n, const int8_t *table, int8_t *dst)
{
    int32_t e = 0;
#if EP_USE_MVE
    if (bits == 4) {
        /* 32 indices a 16-byte load: low nibbles (even elements) and high nibbles (odd ones)
         * gathered from the table, stored interleaved by VST20/VST21. */
        const uint8x16_t lo4 = vdupq_n_u8(0x0F);
        for (; e + 32 <= n; e += 32) {
            const uint8x16_t b = vldrbq_u8(row + (e >> 1));
            int8x16x2_t v;
            v.val[0] = vldrbq_gather_offset_s8(table, vandq_u8(b, lo4));
            v.val[1] = vldrbq_gather_offset_s8(table, vshrq_n_u8(b, 4));
            vst2q_s8(dst + e, v);
        }
        /* the rest, 16 at a time: a widening 8-byte load, VSLI + mask to byte lanes, one gather */
        for (; e < n; e += 16) {
            const mve_pred16_t in = vctp16q((uint32_t)(n - e + 1) >> 1);
            const int8x16_t v = vldrbq_gather_offset_s8(table, ep_mve_nibbles(row + (e >> 1), in));
            vstrbq_p_s8(dst + e, v, vctp8q((uint32_t)(n - e)));
        }
        return;
    }
    if (bits == 8) {
        for (; e < n; e += 16) {
            const mve_pred16_t pr = vctp8q((uint32_t)(n - e));
            vstrbq_p_s8(dst + e, vldrbq_gather_offset_s8(table, vldrbq_z_u8(row + e, pr)), pr);
        }
        return;
    }
#endif
    if (bits == 4) {
        for (; e + 2 <= n; e += 2) {
            const uint32_t b = row[e >> 1];
            dst[e] = table[b & 0xFu];
            dst[e + 1] = table[b >> 4];
        }
    } else if (bits == 8) {
        for (; e < n; ++e) dst[e] = table[row[e]];
    }
    for (; e < n; ++e) dst[e] = table[ep_palette_index(row, bits, e)];
}

void ep_palette_decode_rows(const uint8_t *rows, int32_t bits, int64_t stride, int32_t nrows, int32_t row_len,
                            const int8_t *table, int8_t *dst)
{
    int32_t r;
    for (r = 0; r < nrows; ++r) decode_row(rows + r * stride, bits, row_len, table, dst + (int64_t)r * row_len);
}
