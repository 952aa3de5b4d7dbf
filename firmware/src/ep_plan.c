/* edgepack runtime: execution plan dispatcher (no interpreter, no allocation). */
#include "ep_internal.h"
#include "ep_ethosu.h"

static int32_t shape_bytes(const ep_shape *s)
{
    const int64_t n = ep_shape_count(s);
    return n < 0 ? -1 : (int32_t)n;
}

static int32_t flat_bytes(int64_t a, int64_t b)
{
    const int64_t n = ep_prod(a, b);
    return n < 0 ? -1 : (int32_t)n;
}

static int32_t dims_bytes(int32_t rank, const int32_t *dims, int32_t elem_bytes)
{
    const int64_t n = ep_dims_count(rank, dims);
    return n < 0 ? -1 : flat_bytes(n, elem_bytes);
}

/* Tensor sizes of the issue-16 kernels (layout operators, resizes, TRANSPOSE_CONV, ARG_MAX/MIN,
 * float I/O); i as in ep_op_tensor_bytes, -2 when the kernel is not one of them. */
static int32_t layout_tensor_bytes(const ep_op *op, int32_t i)
{
    const void *pp = op->params;
    switch (op->kernel) {
    case EP_KERNEL_TRANSPOSE: {
        const ep_transpose_params *p = (const ep_transpose_params *)pp;
        return i <= 0 ? dims_bytes(p->rank, p->input_dims, 1) : -1;
    }
    case EP_KERNEL_STRIDED_SLICE: {
        const ep_strided_slice_params *p = (const ep_strided_slice_params *)pp;
        return i < 0 ? dims_bytes(p->rank, p->output_dims, 1) : (i == 0 ? dims_bytes(p->rank, p->input_dims, 1) : -1);
    }
    case EP_KERNEL_SQUARED_DIFFERENCE: {
        const ep_squared_difference_params *p = (const ep_squared_difference_params *)pp;
        return i < 0 ? shape_bytes(&p->output) : (i == 0 ? shape_bytes(&p->input1) : (i == 1 ? shape_bytes(&p->input2) : -1));
    }
    case EP_KERNEL_PRELU: {
        const ep_prelu_params *p = (const ep_prelu_params *)pp;
        return i == 1 ? shape_bytes(&p->alpha) : (i <= 0 ? shape_bytes(&p->input) : -1);
    }
    case EP_KERNEL_MIRROR_PAD: {
        const ep_mirror_pad_params *p = (const ep_mirror_pad_params *)pp;
        return i < 0 ? dims_bytes(p->rank, p->output_dims, 1) : (i == 0 ? dims_bytes(p->rank, p->input_dims, 1) : -1);
    }
    case EP_KERNEL_SPLIT: {
        const ep_split_params *p = (const ep_split_params *)pp;
        const int32_t j = -1 - i;
        if (i == 0) return flat_bytes(ep_prod(p->outer, p->axis_total), p->inner);
        if (i > 0 || p->axis_sizes == NULL || j >= p->num_outputs) return -1;
        return flat_bytes(ep_prod(p->outer, p->axis_sizes[j]), p->inner);
    }
    case EP_KERNEL_GATHER: {
        const ep_gather_params *p = (const ep_gather_params *)pp;
        if (i == 0) return flat_bytes(ep_prod(ep_prod(p->batch, p->outer), p->axis_size), p->inner);
        if (i == 1) return flat_bytes(ep_prod(p->batch, p->num_indices), 4);
        return flat_bytes(ep_prod(ep_prod(p->batch, p->outer), p->num_indices), p->inner);
    }
    case EP_KERNEL_RESIZE_NEAREST_NEIGHBOR:
    case EP_KERNEL_RESIZE_BILINEAR: {
        const ep_resize_params *p = (const ep_resize_params *)pp;
        return i < 0 ? shape_bytes(&p->output) : (i == 0 ? shape_bytes(&p->input) : -1);
    }
    case EP_KERNEL_SPACE_TO_BATCH_ND:
    case EP_KERNEL_BATCH_TO_SPACE_ND: {
        const ep_batch_space_params *p = (const ep_batch_space_params *)pp;
        return i < 0 ? shape_bytes(&p->output) : (i == 0 ? shape_bytes(&p->input) : -1);
    }
    case EP_KERNEL_TRANSPOSE_CONV: {
        const ep_transpose_conv_params *p = (const ep_transpose_conv_params *)pp;
        return i < 0 ? shape_bytes(&p->output) : (i == 0 ? shape_bytes(&p->input) : -1);
    }
    case EP_KERNEL_ARG_MAX:
    case EP_KERNEL_ARG_MIN: {
        const ep_arg_params *p = (const ep_arg_params *)pp;
        if (i == 0) return flat_bytes(ep_prod(p->outer, p->axis_size), p->inner);
        return i < 0 ? flat_bytes(ep_prod(p->outer, p->inner), 4) : -1;
    }
    case EP_KERNEL_DEQUANTIZE:
    case EP_KERNEL_QUANTIZE_F32: {
        const ep_float_quant_params *p = (const ep_float_quant_params *)pp;
        const int float_side = (op->kernel == EP_KERNEL_DEQUANTIZE) == (i < 0);
        return i <= 0 ? flat_bytes(p->size, float_side ? 4 : 1) : -1;
    }
    default:
        return -2;
    }
}

static int32_t op_outputs(const ep_op *op)
{
    return op->num_outputs > 0 ? op->num_outputs : 1;
}

int32_t ep_op_tensor_bytes(const ep_op *op, int32_t i)
{
    const void *pp;
    int32_t b;
    if (op == NULL || op->params == NULL || i < -op_outputs(op) || i >= op->num_inputs) return -1;
    b = layout_tensor_bytes(op, i);
    if (b != -2) return b;
    if (i < -1) return -1;
    pp = op->params;
    switch (op->kernel) {
    case EP_KERNEL_CONV2D: {
        const ep_conv2d_params *p = (const ep_conv2d_params *)pp;
        return i < 0 ? shape_bytes(&p->output) : (i == 0 ? shape_bytes(&p->input) : -1);
    }
    case EP_KERNEL_DEPTHWISE_CONV2D: {
        const ep_depthwise_conv2d_params *p = (const ep_depthwise_conv2d_params *)pp;
        return i < 0 ? shape_bytes(&p->output) : (i == 0 ? shape_bytes(&p->input) : -1);
    }
    case EP_KERNEL_FULLY_CONNECTED: {
        const ep_fully_connected_params *p = (const ep_fully_connected_params *)pp;
        return i < 0 ? flat_bytes(p->batches, p->output_depth) : (i == 0 ? flat_bytes(p->batches, p->input_depth) : -1);
    }
    case EP_KERNEL_MAX_POOL2D:
    case EP_KERNEL_AVG_POOL2D: {
        const ep_pool_params *p = (const ep_pool_params *)pp;
        return i < 0 ? shape_bytes(&p->output) : (i == 0 ? shape_bytes(&p->input) : -1);
    }
    case EP_KERNEL_MEAN: {
        const ep_mean_params *p = (const ep_mean_params *)pp;
        return i < 0 ? flat_bytes(p->input.n, p->input.c) : (i == 0 ? shape_bytes(&p->input) : -1);
    }
    case EP_KERNEL_ADD: {
        const ep_add_params *p = (const ep_add_params *)pp;
        return i < 0 ? shape_bytes(&p->output) : (i == 0 ? shape_bytes(&p->input1) : shape_bytes(&p->input2));
    }
    case EP_KERNEL_MUL: {
        const ep_mul_params *p = (const ep_mul_params *)pp;
        return i < 0 ? shape_bytes(&p->output) : (i == 0 ? shape_bytes(&p->input1) : shape_bytes(&p->input2));
    }
    case EP_KERNEL_SUB: {
        const ep_sub_params *p = (const ep_sub_params *)pp;
        return i < 0 ? shape_bytes(&p->output) : (i == 0 ? shape_bytes(&p->input1) : shape_bytes(&p->input2));
    }
    case EP_KERNEL_MAXIMUM:
    case EP_KERNEL_MINIMUM: {
        const ep_minmax_params *p = (const ep_minmax_params *)pp;
        return i < 0 ? shape_bytes(&p->output) : (i == 0 ? shape_bytes(&p->input1) : shape_bytes(&p->input2));
    }
    case EP_KERNEL_RELU:
        return i <= 0 ? ((const ep_relu_params *)pp)->size : -1;
    case EP_KERNEL_LEAKY_RELU:
        return i <= 0 ? ((const ep_leaky_relu_params *)pp)->size : -1;
    case EP_KERNEL_SOFTMAX: {
        const ep_softmax_params *p = (const ep_softmax_params *)pp;
        return i <= 0 ? flat_bytes(p->rows, p->depth) : -1;
    }
    case EP_KERNEL_LOGISTIC:
    case EP_KERNEL_TANH:
        return i <= 0 ? ((const ep_sigmoid_params *)pp)->size : -1;
    case EP_KERNEL_HARD_SWISH:
        return i <= 0 ? ((const ep_hard_swish_params *)pp)->size : -1;
    case EP_KERNEL_PAD: {
        const ep_pad_params *p = (const ep_pad_params *)pp;
        return i < 0 ? shape_bytes(&p->output) : (i == 0 ? shape_bytes(&p->input) : -1);
    }
    case EP_KERNEL_CONCATENATION: {
        const ep_concatenation_params *p = (const ep_concatenation_params *)pp;
        int64_t total = 0;
        int32_t k;
        if (p->axis_sizes == NULL || p->num_inputs != op->num_inputs) return -1;
        if (i >= 0) return flat_bytes(ep_prod(p->outer, p->axis_sizes[i]), p->inner);
        for (k = 0; k < p->num_inputs; ++k) {
            if (p->axis_sizes[k] < 0) return -1;
            total += p->axis_sizes[k];
            if (total > EP_INT32_MAX) return -1;
        }
        return flat_bytes(ep_prod(p->outer, total), p->inner);
    }
    case EP_KERNEL_RESHAPE:
        return i <= 0 ? ((const ep_reshape_params *)pp)->size : -1;
    case EP_KERNEL_QUANTIZE:
        return i <= 0 ? ((const ep_quantize_params *)pp)->size : -1;
    case EP_KERNEL_ETHOSU: {
        const ep_ethosu_op_params *p = (const ep_ethosu_op_params *)pp;
        if (i >= (int32_t)(sizeof p->input_bytes / sizeof p->input_bytes[0])) return -1;
        return i < 0 ? p->output_bytes : p->input_bytes[i];
    }
    default:
        return -1;
    }
}

static int32_t expected_inputs(int32_t kernel)
{
    switch (kernel) {
    case EP_KERNEL_ADD:
    case EP_KERNEL_MUL:
    case EP_KERNEL_SUB:
    case EP_KERNEL_MAXIMUM:
    case EP_KERNEL_MINIMUM:
        return 2;
    case EP_KERNEL_GATHER:
    case EP_KERNEL_PRELU:
    case EP_KERNEL_SQUARED_DIFFERENCE:
        return 2;
    case EP_KERNEL_CONCATENATION:
    case EP_KERNEL_ETHOSU:
        return -1; /* any */
    default:
        return 1;
    }
}

static int range_ok(int64_t off, int64_t len, int64_t size)
{
    return off >= 0 && len >= 0 && off + len <= size;
}

ep_status ep_plan_run(const ep_plan *plan, uint8_t *arena, int32_t arena_bytes, ep_op_hook hook, void *user)
{
    int32_t k, i;
    if (plan == NULL || arena == NULL || (plan->num_ops > 0 && plan->ops == NULL)) return EP_ERR_ARG;
    if (plan->num_ops < 0 || arena_bytes < plan->arena_bytes) return EP_ERR_BUFFER;
    if (plan->scratch_bytes > 0 && !range_ok(plan->scratch_offset, plan->scratch_bytes, arena_bytes))
        return EP_ERR_BUFFER;
    for (k = 0; k < plan->num_ops; ++k) {
        const ep_op *op = &plan->ops[k];
        const int8_t *in[EP_MAX_OP_INPUTS];
        int8_t *outs[EP_MAX_OP_OUTPUTS];
        int8_t *out;
        void *scratch = plan->scratch_bytes > 0 ? (void *)(arena + plan->scratch_offset) : NULL;
        const int32_t scratch_bytes = plan->scratch_bytes > 0 ? plan->scratch_bytes : 0;
        const int32_t want = expected_inputs(op->kernel);
        int32_t out_bytes;
        ep_status st;

        if (op->params == NULL || op->num_inputs < 1 || op->num_inputs > EP_MAX_OP_INPUTS || op->inputs == NULL)
            return EP_ERR_ARG;
        if (want > 0 && op->num_inputs != want) return EP_ERR_ARG;
        for (i = 0; i < op->num_inputs; ++i) {
            const int32_t bytes = ep_op_tensor_bytes(op, i);
            const int32_t ref = op->inputs[i];
            if (bytes < 0) return EP_ERR_DIM;
            if (ref < 0) {
                const int32_t c = -1 - ref;
                if (c >= plan->num_constants || plan->constants == NULL || plan->constants[c] == NULL)
                    return EP_ERR_ARG;
                in[i] = plan->constants[c];
            } else {
                if (!range_ok(ref, bytes, arena_bytes)) return EP_ERR_BUFFER;
                in[i] = (const int8_t *)(arena + ref);
            }
        }
        /* Several outputs (SPLIT) come as an offset list; every other kernel writes one. */
        if (op->num_outputs < 0 || op->num_outputs > EP_MAX_OP_OUTPUTS || (op->num_outputs > 0 && op->outputs == NULL))
            return EP_ERR_ARG;
        if ((op->kernel == EP_KERNEL_SPLIT) != (op->num_outputs > 0)) return EP_ERR_ARG;
        for (i = 0; i < op_outputs(op); ++i) {
            const int32_t off = op->num_outputs > 0 ? op->outputs[i] : op->output;
            out_bytes = ep_op_tensor_bytes(op, -1 - i);
            if (out_bytes < 0) return EP_ERR_DIM;
            if (!range_ok(off, out_bytes, arena_bytes)) return EP_ERR_BUFFER;
            outs[i] = (int8_t *)(arena + off);
        }
        out = outs[0];

        if (hook) hook(user, k, op, 0);
        switch (op->kernel) {
        case EP_KERNEL_CONV2D:
            st = ep_conv2d_s8((const ep_conv2d_params *)op->params, in[0], out, scratch, scratch_bytes);
            break;
        case EP_KERNEL_DEPTHWISE_CONV2D:
            st = ep_depthwise_conv2d_s8((const ep_depthwise_conv2d_params *)op->params, in[0], out, scratch,
                                        scratch_bytes);
            break;
        case EP_KERNEL_FULLY_CONNECTED:
            st = ep_fully_connected_s8((const ep_fully_connected_params *)op->params, in[0], out, scratch,
                                       scratch_bytes);
            break;
        case EP_KERNEL_MAX_POOL2D:
            st = ep_max_pool2d_s8((const ep_pool_params *)op->params, in[0], out);
            break;
        case EP_KERNEL_AVG_POOL2D:
            st = ep_avg_pool2d_s8((const ep_pool_params *)op->params, in[0], out);
            break;
        case EP_KERNEL_MEAN:
            st = ep_mean_s8((const ep_mean_params *)op->params, in[0], out);
            break;
        case EP_KERNEL_ADD:
            st = ep_add_s8((const ep_add_params *)op->params, in[0], in[1], out);
            break;
        case EP_KERNEL_MUL:
            st = ep_mul_s8((const ep_mul_params *)op->params, in[0], in[1], out);
            break;
        case EP_KERNEL_SUB:
            st = ep_sub_s8((const ep_sub_params *)op->params, in[0], in[1], out);
            break;
        case EP_KERNEL_MAXIMUM:
            st = ep_maximum_s8((const ep_minmax_params *)op->params, in[0], in[1], out);
            break;
        case EP_KERNEL_MINIMUM:
            st = ep_minimum_s8((const ep_minmax_params *)op->params, in[0], in[1], out);
            break;
        case EP_KERNEL_RELU:
            st = ep_relu_s8((const ep_relu_params *)op->params, in[0], out);
            break;
        case EP_KERNEL_LEAKY_RELU:
            st = ep_leaky_relu_s8((const ep_leaky_relu_params *)op->params, in[0], out);
            break;
        case EP_KERNEL_SOFTMAX:
            st = ep_softmax_s8((const ep_softmax_params *)op->params, in[0], out);
            break;
        case EP_KERNEL_LOGISTIC:
            st = ep_logistic_s8((const ep_sigmoid_params *)op->params, in[0], out);
            break;
        case EP_KERNEL_TANH:
            st = ep_tanh_s8((const ep_sigmoid_params *)op->params, in[0], out);
            break;
        case EP_KERNEL_HARD_SWISH:
            st = ep_hard_swish_s8((const ep_hard_swish_params *)op->params, in[0], out);
            break;
        case EP_KERNEL_PAD:
            st = ep_pad_s8((const ep_pad_params *)op->params, in[0], out);
            break;
        case EP_KERNEL_CONCATENATION:
            st = ep_concatenation_s8((const ep_concatenation_params *)op->params, in, out);
            break;
        case EP_KERNEL_RESHAPE:
            st = ep_reshape_s8((const ep_reshape_params *)op->params, in[0], out);
            break;
        case EP_KERNEL_QUANTIZE:
            st = ep_quantize_s8((const ep_quantize_params *)op->params, in[0], out);
            break;
        case EP_KERNEL_ETHOSU:
            /* driver statuses (EP_ETHOSU_*) pass through: they name the NPU's problem */
            st = (ep_status)ep_ethosu_run_op((const ep_ethosu_op_params *)op->params, arena, arena_bytes);
            break;
        /* issue 16 kernels; arena tensors are 16-byte aligned, so the int32 / float casts hold */
        case EP_KERNEL_TRANSPOSE:
            st = ep_transpose_s8((const ep_transpose_params *)op->params, in[0], out);
            break;
        case EP_KERNEL_STRIDED_SLICE:
            st = ep_strided_slice_s8((const ep_strided_slice_params *)op->params, in[0], out);
            break;
        case EP_KERNEL_SPLIT: {
            const ep_split_params *p = (const ep_split_params *)op->params;
            st = p->num_outputs == op->num_outputs ? ep_split_s8(p, in[0], outs) : EP_ERR_ARG;
            break;
        }
        case EP_KERNEL_GATHER:
            st = ep_gather_s8((const ep_gather_params *)op->params, in[0], (const int32_t *)(const void *)in[1], out);
            break;
        case EP_KERNEL_RESIZE_NEAREST_NEIGHBOR:
            st = ep_resize_nearest_neighbor_s8((const ep_resize_params *)op->params, in[0], out);
            break;
        case EP_KERNEL_RESIZE_BILINEAR:
            st = ep_resize_bilinear_s8((const ep_resize_params *)op->params, in[0], out);
            break;
        case EP_KERNEL_SQUARED_DIFFERENCE:
            st = ep_squared_difference_s8((const ep_squared_difference_params *)op->params, in[0], in[1], out);
            break;
        case EP_KERNEL_PRELU:
            st = ep_prelu_s8((const ep_prelu_params *)op->params, in[0], in[1], out);
            break;
        case EP_KERNEL_MIRROR_PAD:
            st = ep_mirror_pad_s8((const ep_mirror_pad_params *)op->params, in[0], out);
            break;
        case EP_KERNEL_SPACE_TO_BATCH_ND:
            st = ep_space_to_batch_nd_s8((const ep_batch_space_params *)op->params, in[0], out);
            break;
        case EP_KERNEL_BATCH_TO_SPACE_ND:
            st = ep_batch_to_space_nd_s8((const ep_batch_space_params *)op->params, in[0], out);
            break;
        case EP_KERNEL_TRANSPOSE_CONV:
            st = ep_transpose_conv_s8((const ep_transpose_conv_params *)op->params, in[0], out);
            break;
        case EP_KERNEL_ARG_MAX:
            st = ep_arg_max_s8((const ep_arg_params *)op->params, in[0], (int32_t *)(void *)out);
            break;
        case EP_KERNEL_ARG_MIN:
            st = ep_arg_min_s8((const ep_arg_params *)op->params, in[0], (int32_t *)(void *)out);
            break;
        case EP_KERNEL_DEQUANTIZE:
            st = ep_dequantize_s8((const ep_float_quant_params *)op->params, in[0], (float *)(void *)out);
            break;
        case EP_KERNEL_QUANTIZE_F32:
            st = ep_quantize_f32_s8((const ep_float_quant_params *)op->params, (const float *)(const void *)in[0], out);
            break;
        default:
            st = EP_ERR_UNSUPPORTED;
            break;
        }
        if (hook) hook(user, k, op, 1);
        if (st != EP_OK) return st;
    }
    return EP_OK;
}
