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
            for (oc = 0; oc < p->output_depth; ++oc, w += p->input_depth) {
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
