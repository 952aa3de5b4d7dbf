/* edgepack runtime: FULLY_CONNECTED, int8, dense or palette weights. */
#include "ep_internal.h"

static ep_status fc_check(const ep_fully_connected_params *p)
{
    if (p == NULL) return EP_ERR_ARG;
    if (p->batches < 1 || p->input_depth < 1 || p->output_depth < 1) return EP_ERR_DIM;
    if (ep_prod(p->batches, p->input_depth) < 0 || ep_prod(p->batches, p->output_depth) < 0 ||
        ep_prod(p->output_depth, p->input_depth) < 0 || p->input_depth > EP_INT32_MAX / 2)
        return EP_ERR_DIM;
    if (p->input_offset < -127 || p->input_offset > 128) return EP_ERR_ARG;
    if (p->weights_offset < -127 || p->weights_offset > 128) return EP_ERR_ARG;
    if (p->output_offset < -128 || p->output_offset > 127) return EP_ERR_ARG;
    if (!ep_act_ok(p->act_min, p->act_max)) return EP_ERR_ARG;
    if (!ep_requant_ok(&p->requant, p->output_depth)) return EP_ERR_ARG;
    return EP_OK;
}

/* Scratch: [palette table][int16 input row of input_depth + 1 (a zero pad for pair reads)]. */
static int64_t fc_scratch(const ep_fully_connected_params *p)
{
    return (p->weights.form == EP_WEIGHTS_PALETTE ? EP_PALETTE_TABLE_BYTES : 0) +
           ((((int64_t)p->input_depth + 1) * 2 + 3) & ~(int64_t)3);
}

int32_t ep_fully_connected_s8_get_buffer_size(const ep_fully_connected_params *p)
{
    if (fc_check(p) != EP_OK) return -1;
    return (int32_t)fc_scratch(p);
}

#if EP_USE_MVE
/* Weight rows read by the Helium loop: dense int8, or 4- / 8-bit palette indices decoded in
 * registers (a VLDRB gather from the 256-byte codebook table in scratch). */
enum { FC_DENSE, FC_PAL4, FC_PAL8 };

/* 16 weights of a row at packed position q (element i of the row: q = row + i for int8 and 8-bit
 * indices, row + i / 2 for 4-bit indices); rem < 16 only in the tail (lanes beyond read 0). */
static inline __attribute__((always_inline)) int8x16_t fc_load(const uint8_t *q, int32_t rem, const int8_t *table,
                                                               const int mode)
{
    if (rem >= 16) {
        if (mode == FC_PAL4) {
            const uint16x8_t b = vldrbq_u16(q);
            const uint8x16_t idx = vreinterpretq_u8_u16(vandq_u16(vsliq_n_u16(b, b, 4), vdupq_n_u16(0x0F0F)));
            return vldrbq_gather_offset_s8(table, idx);
        }
        if (mode == FC_PAL8) return vldrbq_gather_offset_s8(table, vldrbq_u8(q));
        return vldrbq_s8((const int8_t *)q);
    } else {
        const mve_pred16_t pr = vctp8q((uint32_t)rem);
        if (mode == FC_PAL4)
            return vldrbq_gather_offset_z_s8(table, ep_mve_nibbles(q, vctp16q((uint32_t)(rem + 1) >> 1)), pr);
        if (mode == FC_PAL8) return vldrbq_gather_offset_z_s8(table, vldrbq_z_u8(q, pr), pr);
        return vldrbq_z_s8((const int8_t *)q, pr);
    }
}

/* Four rows against one input vector: each 16-element input load is shared by four VMLADAVA.
 * `sums` (a constant): also sum the weights with VADDVA for the input offset
 * (sum w (x + o) = sum w x + o sum w), when the build did not store the sums. */
typedef struct {
    int32_t a0, a1, a2, a3; /* dot products */
    int32_t s0, s1, s2, s3; /* weight sums */
} fc_acc4;

/* 16 elements of the four rows at q[0..3] (rem < 16: the tail, lanes beyond read 0). */
static inline __attribute__((always_inline)) void fc_step(fc_acc4 *a, const uint8_t *const q[4], int8x16_t xv,
                                                          int32_t rem, const int8_t *table, const int mode,
                                                          const int sums)
{
    const int8x16_t w0 = fc_load(q[0], rem, table, mode), w1 = fc_load(q[1], rem, table, mode);
    const int8x16_t w2 = fc_load(q[2], rem, table, mode), w3 = fc_load(q[3], rem, table, mode);
    a->a0 = vmladavaq_s8(a->a0, w0, xv);
    a->a1 = vmladavaq_s8(a->a1, w1, xv);
    a->a2 = vmladavaq_s8(a->a2, w2, xv);
    a->a3 = vmladavaq_s8(a->a3, w3, xv);
    if (sums) {
        a->s0 = vaddvaq_s8(a->s0, w0);
        a->s1 = vaddvaq_s8(a->s1, w1);
        a->s2 = vaddvaq_s8(a->s2, w2);
        a->s3 = vaddvaq_s8(a->s3, w3);
    }
}

/* 32 4-bit indices of one row (16 bytes at q) against the de-interleaved inputs; returns q + 16. */
static inline __attribute__((always_inline)) const uint8_t *fc_pal4_row32(const uint8_t *q, int8x16x2_t xv,
                                                                          const int8_t *table, uint8x16_t lo4,
                                                                          const int sums, int32_t *acc, int32_t *sum)
{
    const uint8x16_t b = vldrbq_u8(q);
    const int8x16_t we = vldrbq_gather_offset_s8(table, vandq_u8(b, lo4));
    const int8x16_t wo = vldrbq_gather_offset_s8(table, vshrq_n_u8(b, 4));
    *acc = vmladavaq_s8(vmladavaq_s8(*acc, we, xv.val[0]), wo, xv.val[1]);
    if (sums) *sum = vaddvaq_s8(vaddvaq_s8(*sum, we), wo);
    return q + 16;
}

static inline __attribute__((always_inline)) void fc_rows4(const uint8_t *const r[4], const int8_t *x, int32_t n,
                                                           const int8_t *table, const int mode, const int sums,
                                                           int32x4_t *dot, int32x4_t *wsum)
{
    const int32_t step = mode == FC_PAL4 ? 8 : 16; /* packed bytes per 16 elements */
    const uint8_t *q[4];
    fc_acc4 a = {0, 0, 0, 0, 0, 0, 0, 0};
    int32_t i = 0;
    q[0] = r[0];
    q[1] = r[1];
    q[2] = r[2];
    q[3] = r[3];
    if (mode == FC_PAL4) {
        /* 32 indices a row per 16-byte load: low nibbles are the even elements, high nibbles the
         * odd ones; one de-interleaving input load (VLD20/VLD21) serves the four rows. */
        const uint8x16_t lo4 = vdupq_n_u8(0x0F);
        for (; i + 32 <= n; i += 32, x += 32) {
            const int8x16x2_t xv = vld2q_s8(x);
            q[0] = fc_pal4_row32(q[0], xv, table, lo4, sums, &a.a0, &a.s0);
            q[1] = fc_pal4_row32(q[1], xv, table, lo4, sums, &a.a1, &a.s1);
            q[2] = fc_pal4_row32(q[2], xv, table, lo4, sums, &a.a2, &a.s2);
            q[3] = fc_pal4_row32(q[3], xv, table, lo4, sums, &a.a3, &a.s3);
        }
    }
    for (; i + 16 <= n; i += 16, x += 16) {
        fc_step(&a, q, vldrbq_s8(x), 16, table, mode, sums);
        q[0] += step;
        q[1] += step;
        q[2] += step;
        q[3] += step;
    }
    if (i < n) fc_step(&a, q, vldrbq_z_s8(x, vctp8q((uint32_t)(n - i))), n - i, table, mode, sums);
    *dot = vsetq_lane_s32(a.a3, vsetq_lane_s32(a.a2, vsetq_lane_s32(a.a1, vdupq_n_s32(a.a0), 1), 2), 3);
    *wsum = vsetq_lane_s32(a.s3, vsetq_lane_s32(a.s2, vsetq_lane_s32(a.s1, vdupq_n_s32(a.s0), 1), 2), 3);
}

static inline __attribute__((always_inline)) void fc_run_mve(const ep_fully_connected_params *p, const int8_t *input,
                                                             int8_t *output, int64_t stride, const int8_t *table,
                                                             const int mode, const int sums)
{
    const int32_t n = p->input_depth, oc_n = p->output_depth;
    const uint8_t *w = (const uint8_t *)p->weights.data;
    int32_t b, oc, i;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *x = input + (int64_t)b * n;
        int8_t *out = output + (int64_t)b * oc_n;
        int32_t sum_x = 0;
        /* per-tensor weights offset: + wo * sum (x + o) */
        if (p->weights_offset != 0) {
            for (i = 0; i < n; i += 16) sum_x = vaddvaq_s8(sum_x, vldrbq_z_s8(x + i, vctp8q((uint32_t)(n - i))));
            sum_x = (int32_t)((uint32_t)p->weights_offset *
                              ((uint32_t)sum_x + (uint32_t)p->input_offset * (uint32_t)n));
        }
        for (oc = 0; oc < oc_n; oc += 4) {
            const int32_t nr = oc_n - oc < 4 ? oc_n - oc : 4;
            const mve_pred16_t pr = vctp32q((uint32_t)nr);
            const uint8_t *r[4];
            int32x4_t acc, ws;
            for (i = 0; i < 4; ++i) r[i] = w + (int64_t)(oc + (i < nr ? i : 0)) * stride;
            fc_rows4(r, x, n, table, mode, sums, &acc, &ws);
            if (!sums) ws = vldrwq_z_s32(p->weight_sums + oc, pr);
            acc = vmlaq_n_s32(acc, ws, p->input_offset);
            acc = vaddq_n_s32(acc, sum_x);
            if (p->bias) acc = vaddq_s32(acc, vldrwq_z_s32(p->bias + oc, pr));
            if (p->requant.count == 1)
                acc = ep_mve_requant_n(acc, p->requant.multiplier[0], p->requant.shift[0]);
            else
                acc = ep_mve_requant(acc, vldrwq_z_s32(p->requant.multiplier + oc, pr),
                                     vldrwq_z_s32(p->requant.shift + oc, pr));
            vstrbq_p_s32(out + oc, ep_mve_finish(acc, p->output_offset, p->act_min, p->act_max), pr);
        }
    }
}

/* One specialised loop per weight form, with and without stored weight sums. */
static inline __attribute__((always_inline)) void fc_run_mve_form(const ep_fully_connected_params *p,
                                                                  const int8_t *input, int8_t *output, int64_t stride,
                                                                  const int8_t *table, const int mode)
{
    if (p->weight_sums != NULL)
        fc_run_mve(p, input, output, stride, table, mode, 0);
    else
        fc_run_mve(p, input, output, stride, table, mode, 1);
}

static void fc_dense_mve(const ep_fully_connected_params *p, const int8_t *input, int8_t *output, int64_t stride)
{
    fc_run_mve_form(p, input, output, stride, NULL, FC_DENSE);
}

static void fc_pal4_mve(const ep_fully_connected_params *p, const int8_t *input, int8_t *output, int64_t stride,
                        const int8_t *table)
{
    fc_run_mve_form(p, input, output, stride, table, FC_PAL4);
}

static void fc_pal8_mve(const ep_fully_connected_params *p, const int8_t *input, int8_t *output, int64_t stride,
                        const int8_t *table)
{
    fc_run_mve_form(p, input, output, stride, table, FC_PAL8);
}
#endif

ep_status ep_fully_connected_s8(const ep_fully_connected_params *p, const int8_t *input, int8_t *output,
                                void *scratch, int32_t scratch_bytes)
{
    uint32_t *table = NULL;
    int pair_mode = 0;
    int64_t stride64;
    int32_t b, i, oc;
    int16_t *xrow;
    ep_status st = fc_check(p);
    if (st != EP_OK) return st;
    if (input == NULL || output == NULL || scratch == NULL) return EP_ERR_ARG;
    if ((((uintptr_t)scratch) & 3u) != 0) return EP_ERR_ARG;
    st = ep_weights_prepare(&p->weights, p->output_depth, p->input_depth, &stride64);
    if (st != EP_OK) return st;
    if ((int64_t)scratch_bytes < fc_scratch(p)) return EP_ERR_BUFFER;
#if EP_USE_MVE
    if (p->weights.form == EP_WEIGHTS_DENSE) {
        fc_dense_mve(p, input, output, stride64);
        return EP_OK;
    }
    if (p->weights.bits == 4 || p->weights.bits == 8) {
        ep_codebook_table(&p->weights, (int8_t *)scratch);
        if (p->weights.bits == 4)
            fc_pal4_mve(p, input, output, stride64, (const int8_t *)scratch);
        else
            fc_pal8_mve(p, input, output, stride64, (const int8_t *)scratch);
        return EP_OK;
    }
#endif
    xrow = (int16_t *)scratch;
    if (p->weights.form == EP_WEIGHTS_PALETTE) {
        const int64_t macs = (int64_t)p->batches * p->output_depth * p->input_depth;
        table = (uint32_t *)scratch;
        xrow = (int16_t *)((uint8_t *)scratch + EP_PALETTE_TABLE_BYTES);
        pair_mode = ep_palette_table(&p->weights, macs, table);
    }
    xrow[p->input_depth] = 0;

    for (b = 0; b < p->batches; ++b) {
        const int8_t *in = input + (int64_t)b * p->input_depth;
        int8_t *out = output + (int64_t)b * p->output_depth;
        uint32_t sum_x = 0;
        for (i = 0; i < p->input_depth; ++i) {
            xrow[i] = (int16_t)(in[i] + p->input_offset);
            sum_x += (uint32_t)xrow[i];
        }
        /* sum (w + wo)(x + xo) = sum w (x + xo) + wo * sum (x + xo) */
        sum_x *= (uint32_t)p->weights_offset;
        if (p->weights.form == EP_WEIGHTS_DENSE) {
            const int8_t *w = (const int8_t *)p->weights.data;
            const int32_t sum_row = ep_dense_prepare_row(xrow, p->input_depth);
            /* two rows a step share each input load */
            for (oc = 0; oc + 2 <= p->output_depth; oc += 2, w += 2 * p->input_depth) {
                int32_t acc[2], j;
                ep_dot_dense_2x1(w, w + p->input_depth, xrow, p->input_depth, acc);
                for (j = 0; j < 2; ++j) {
                    int32_t a = ep_wadd(acc[j], (int32_t)sum_x);
                    if (p->bias) a = ep_wadd(a, p->bias[oc + j]);
                    out[oc + j] = ep_requant_out(a, &p->requant, oc + j, p->output_offset, p->act_min, p->act_max);
                }
            }
            if (oc < p->output_depth) {
                int32_t acc = ep_wadd(ep_dot_dense(w, xrow, p->input_depth, sum_row), (int32_t)sum_x);
                if (p->bias) acc = ep_wadd(acc, p->bias[oc]);
                out[oc] = ep_requant_out(acc, &p->requant, oc, p->output_offset, p->act_min, p->act_max);
            }
        } else {
            const uint8_t *row = (const uint8_t *)p->weights.data;
            for (oc = 0; oc < p->output_depth; ++oc, row += stride64) {
                int32_t acc = ep_wadd(pair_mode ? ep_dot_palette_pair(row, p->weights.bits, table, xrow,
                                                                      p->input_depth)
                                                 : ep_dot_palette_lut(row, p->weights.bits, (const int32_t *)table,
                                                                      xrow, p->input_depth),
                                      (int32_t)sum_x);
                if (p->bias) acc = ep_wadd(acc, p->bias[oc]);
                out[oc] = ep_requant_out(acc, &p->requant, oc, p->output_offset, p->act_min, p->act_max);
            }
        }
    }
    return EP_OK;
}
