/*
 * edgepack runtime: int8 reference kernels, bit-exact with TensorFlow Lite Micro.
 *
 * The one public header. Portable C99, no allocation: scratch memory comes from the caller
 * (sized by the matching *_get_buffer_size function), every kernel returns an ep_status and
 * checks its own dimension arguments before touching memory.
 *
 * Conventions (TFLite int8 semantics):
 *  - Tensors are NHWC, int8, contiguous.
 *  - input_offset = -input_zero_point, output_offset = output_zero_point.
 *  - Requantization multipliers and shifts are computed offline (QuantizeMultiplier of
 *    in_scale * w_scale[c] / out_scale, see firmware/README.md) and passed as int32 arrays.
 *  - Fused activations come as an already clamped [act_min, act_max] int range.
 *  - Weights of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED are dense int8 or palette
 *    (int8 codebook of K <= 256 entries + packed indices of 1-8 bits; format in
 *    firmware/README.md and edgepack/packing.py). Kernels decode indices in the inner loop.
 */
#ifndef EDGEPACK_H
#define EDGEPACK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Status returned by every kernel and by ep_plan_run. */
typedef enum {
    EP_OK = 0,
    EP_ERR_ARG = -1,         /**< NULL pointer or a parameter outside its valid range */
    EP_ERR_DIM = -2,         /**< inconsistent or non-positive dimensions */
    EP_ERR_BUFFER = -3,      /**< weights, scratch or arena buffer too small / out of range */
    EP_ERR_UNSUPPORTED = -4  /**< kernel id or mode not supported */
} ep_status;

/** A 4-D NHWC shape. Lower-rank tensors put their dimensions last and 1 in front. */
typedef struct {
    int32_t n, h, w, c;
} ep_shape;

/** Weight storage forms. */
typedef enum {
    EP_WEIGHTS_DENSE = 0,   /**< int8 weights in TFLite element order */
    EP_WEIGHTS_PALETTE = 1  /**< int8 codebook + packed indices (firmware/README.md) */
} ep_weight_form;

/** A weight tensor, dense or palette. */
typedef struct {
    int32_t form;            /**< ep_weight_form */
    int32_t bits;            /**< palette: index width, 1..8 */
    int32_t num_codes;       /**< palette: codebook entries K, 1..256 (indices >= K read 0) */
    int32_t data_bytes;      /**< bytes readable at data (checked against the shape) */
    const int8_t *codebook;  /**< palette: K int8 values */
    const void *data;        /**< dense: int8 elements; palette: packed index rows */
} ep_weights;

/** Per-channel (count = output channels) or per-tensor (count = 1) requantization. */
typedef struct {
    const int32_t *multiplier;  /**< Q31 multipliers */
    const int32_t *shift;       /**< exponents (> 0 left shift, < 0 right shift) */
    int32_t count;
} ep_requant;

/* ------------------------------------------------------------------------------------ */
/* Convolutions and fully connected                                                     */
/* ------------------------------------------------------------------------------------ */

/** CONV_2D parameters. filter = {O, KH, KW, C_in}; output = {N, OH, OW, O}. */
typedef struct {
    ep_shape input;
    ep_shape filter;
    ep_shape output;
    int32_t stride_h, stride_w;
    int32_t dilation_h, dilation_w;
    int32_t pad_top, pad_left;  /**< computed by the caller (SAME or VALID) */
    int32_t input_offset;       /**< -input zero point */
    int32_t output_offset;      /**< output zero point */
    int32_t act_min, act_max;
    ep_requant requant;
    ep_weights weights;         /**< [O, KH, KW, C_in]; palette: one row per output channel */
    const int32_t *bias;        /**< O values, or NULL */
} ep_conv2d_params;

/**
 * CONV_2D, int8 in/out, int32 bias, per-channel or per-tensor requantization.
 * Scratch: ep_conv2d_s8_get_buffer_size(p) bytes, 4-byte aligned (per-channel sums of a tile of
 * output channels, im2col patches, and for palette weights a tile of decoded weight rows).
 * @return EP_OK, or an error status without writing output.
 */
ep_status ep_conv2d_s8(const ep_conv2d_params *p, const int8_t *input, int8_t *output, void *scratch,
                       int32_t scratch_bytes);
/** Scratch bytes ep_conv2d_s8 needs (negative if p is invalid). */
int32_t ep_conv2d_s8_get_buffer_size(const ep_conv2d_params *p);

/** DEPTHWISE_CONV_2D parameters. filter = {1, KH, KW, C_in * depth_multiplier}. */
typedef struct {
    ep_shape input;
    ep_shape filter;
    ep_shape output;            /**< {N, OH, OW, C_in * depth_multiplier} */
    int32_t depth_multiplier;
    int32_t stride_h, stride_w;
    int32_t dilation_h, dilation_w;
    int32_t pad_top, pad_left;
    int32_t input_offset;
    int32_t output_offset;
    int32_t act_min, act_max;
    ep_requant requant;
    ep_weights weights;         /**< palette: the whole tensor is one row */
    const int32_t *bias;
} ep_depthwise_conv2d_params;

/** DEPTHWISE_CONV_2D, int8. Scratch: ep_depthwise_conv2d_s8_get_buffer_size(p) bytes, 4-byte aligned
 *  (one int32 per output channel; for palette weights also the codebook table and the decoded filter). */
ep_status ep_depthwise_conv2d_s8(const ep_depthwise_conv2d_params *p, const int8_t *input, int8_t *output,
                                 void *scratch, int32_t scratch_bytes);
/** Scratch bytes ep_depthwise_conv2d_s8 needs (negative if p is invalid). */
int32_t ep_depthwise_conv2d_s8_get_buffer_size(const ep_depthwise_conv2d_params *p);

/** FULLY_CONNECTED parameters. input [batches, input_depth], weights [output_depth, input_depth]. */
typedef struct {
    int32_t batches;
    int32_t input_depth;
    int32_t output_depth;
    int32_t input_offset;
    int32_t weights_offset;  /**< -weights zero point (per-tensor only; 0 for symmetric) */
    int32_t output_offset;
    int32_t act_min, act_max;
    ep_requant requant;
    ep_weights weights;      /**< palette: one row per output */
    const int32_t *bias;
    /** Optional, computed offline by the build: output_depth sums of each row's stored weights
     *  (sum of w over the row, before weights_offset). Helium folds input_offset * sum into the
     *  accumulator with them instead of summing the weights in the inner loop. NULL: the kernel
     *  does that itself. Trusted as given. */
    const int32_t *weight_sums;
} ep_fully_connected_params;

/** FULLY_CONNECTED, int8. Scratch: ep_fully_connected_s8_get_buffer_size(p) bytes, 4-byte aligned
 *  (the int16 input row, and a 1 KiB decode table for palette weights). */
ep_status ep_fully_connected_s8(const ep_fully_connected_params *p, const int8_t *input, int8_t *output,
                                void *scratch, int32_t scratch_bytes);
/** Scratch bytes ep_fully_connected_s8 needs (negative if p is invalid). */
int32_t ep_fully_connected_s8_get_buffer_size(const ep_fully_connected_params *p);

/* ------------------------------------------------------------------------------------ */
/* Pooling and reductions                                                               */
/* ------------------------------------------------------------------------------------ */

/** MAX_POOL_2D / AVERAGE_POOL_2D parameters (input and output share scale and zero point). */
typedef struct {
    ep_shape input;
    ep_shape output;
    int32_t filter_h, filter_w;
    int32_t stride_h, stride_w;
    int32_t pad_top, pad_left;
    int32_t act_min, act_max;
} ep_pool_params;

/** MAX_POOL_2D, int8 (taps outside the image are skipped). */
ep_status ep_max_pool2d_s8(const ep_pool_params *p, const int8_t *input, int8_t *output);
/** AVERAGE_POOL_2D, int8: rounded mean over the taps inside the image. */
ep_status ep_avg_pool2d_s8(const ep_pool_params *p, const int8_t *input, int8_t *output);

/** How MEAN rescales. */
typedef enum {
    /** TFLM (reference_ops::QuantizedMeanOrSum, every int8 MEAN):
     *  MultiplyByQuantizedMultiplier(sum(x) - zp_in * n, multiplier, shift) + zp_out, where the
     *  offline multiplier already includes 1/n: with (M, s) = QuantizeMultiplier(in/out scale),
     *  k = min(floor(log2 n), 32, 31 + s): multiplier = (M << k) / n, shift = s - k. */
    EP_MEAN_TFLM = 0,
    /** TFLite reference_integer_ops::Mean (keep_dims 4-D over H,W in TFLite and older TFLM):
     *  MultiplyByQuantizedMultiplier(sum(x - zp_in), M, s), then rounded division by n. */
    EP_MEAN_INTEGER_OPS = 1
} ep_mean_mode;

/** MEAN over H and W. Output [N, 1, 1, C] (or [N, C]). */
typedef struct {
    ep_shape input;
    int32_t mode;               /**< ep_mean_mode */
    int32_t input_zero_point;
    int32_t output_zero_point;
    int32_t multiplier, shift;  /**< see ep_mean_mode */
} ep_mean_params;

/** MEAN over H,W, int8. */
ep_status ep_mean_s8(const ep_mean_params *p, const int8_t *input, int8_t *output);

/* ------------------------------------------------------------------------------------ */
/* Elementwise binary ops (4-D broadcasting: each input dim equals the output dim or 1)  */
/* ------------------------------------------------------------------------------------ */

/** ADD parameters (TFLM int8: left_shift 20, per-input multipliers, output multiplier). */
typedef struct {
    ep_shape input1, input2, output;
    int32_t input1_offset, input2_offset, output_offset;
    int32_t left_shift;
    int32_t input1_multiplier, input1_shift;
    int32_t input2_multiplier, input2_shift;
    int32_t output_multiplier, output_shift;
    int32_t act_min, act_max;
} ep_add_params;

/** ADD, int8, with broadcasting. */
ep_status ep_add_s8(const ep_add_params *p, const int8_t *input1, const int8_t *input2, int8_t *output);

/** SUB parameters: ADD's (TFLM's int8 SUB computes them as ADD does). */
typedef ep_add_params ep_sub_params;

/** SUB, int8, with broadcasting: input1 - input2. */
ep_status ep_sub_s8(const ep_sub_params *p, const int8_t *input1, const int8_t *input2, int8_t *output);

/** MAXIMUM / MINIMUM parameters: shapes only (raw int8 comparison, no requantization). */
typedef struct {
    ep_shape input1, input2, output;
} ep_minmax_params;

/** MAXIMUM, int8, with broadcasting. */
ep_status ep_maximum_s8(const ep_minmax_params *p, const int8_t *input1, const int8_t *input2, int8_t *output);
/** MINIMUM, int8, with broadcasting. */
ep_status ep_minimum_s8(const ep_minmax_params *p, const int8_t *input1, const int8_t *input2, int8_t *output);

/** MUL parameters: multiplier = QuantizeMultiplier(s1 * s2 / s_out). */
typedef struct {
    ep_shape input1, input2, output;
    int32_t input1_offset, input2_offset, output_offset;
    int32_t output_multiplier, output_shift;
    int32_t act_min, act_max;
} ep_mul_params;

/** MUL, int8, with broadcasting. */
ep_status ep_mul_s8(const ep_mul_params *p, const int8_t *input1, const int8_t *input2, int8_t *output);

/* ------------------------------------------------------------------------------------ */
/* Activations                                                                          */
/* ------------------------------------------------------------------------------------ */

/** SOFTMAX over the last dimension (TFLM gemmlowp path; output scale 1/256, zero point -128). */
typedef struct {
    int32_t rows, depth;
    int32_t input_multiplier;   /**< PreprocessSoftmaxScaling(beta, in_scale, 5) */
    int32_t input_left_shift;
    int32_t diff_min;           /**< -CalculateInputRadius(5, input_left_shift) */
} ep_softmax_params;

/** SOFTMAX, int8 in, int8 out. */
ep_status ep_softmax_s8(const ep_softmax_params *p, const int8_t *input, int8_t *output);

/** LOGISTIC and TANH (TFLM integer path, input in Q4.27). */
typedef struct {
    int32_t size;
    int32_t input_zero_point;
    int32_t input_range_radius;  /**< CalculateInputRadius(4, input_left_shift, 31) */
    int32_t input_multiplier;    /**< frexp(in_scale * 2^27): round(q * 2^31) */
    int32_t input_left_shift;    /**< frexp exponent */
} ep_sigmoid_params;

/** LOGISTIC, int8 (output scale 1/256, zero point -128). */
ep_status ep_logistic_s8(const ep_sigmoid_params *p, const int8_t *input, int8_t *output);
/** TANH, int8 (output scale 1/128, zero point 0). */
ep_status ep_tanh_s8(const ep_sigmoid_params *p, const int8_t *input, int8_t *output);

/** HARD_SWISH parameters (TFLite HardSwishParams; multipliers from float32 scales). */
typedef struct {
    int32_t size;
    int32_t input_zero_point;
    int32_t output_zero_point;
    int32_t reluish_multiplier_fixedpoint_int16;
    int32_t reluish_multiplier_exponent;
    int32_t output_multiplier_fixedpoint_int16;
    int32_t output_multiplier_exponent;  /**< <= 0 */
} ep_hard_swish_params;

/** HARD_SWISH, int8. */
ep_status ep_hard_swish_s8(const ep_hard_swish_params *p, const int8_t *input, int8_t *output);

/** How ep_relu_s8 maps input to output. */
typedef enum {
    /** TFLM ReluQuantized (int8 RELU; TFLite's RELU_N1_TO_1): requantize with
     *  multiplier = QuantizeMultiplier(in_scale / out_scale), then clamp to [act_min, act_max]
     *  (act_min = max(-128, zp_out + round(lo / out_scale)), likewise act_max). */
    EP_RELU_REQUANTIZE = 0,
    /** TFLM's int8 RELU6: clamp the raw input to [zp_in, zp_in + round(6 / in_scale)] (clamped
     *  to int8); the output quantization is not used. */
    EP_RELU_CLAMP = 1
} ep_relu_mode;

/** RELU / RELU6 / RELU_N1_TO_1 parameters. */
typedef struct {
    int32_t size;
    int32_t mode;  /**< ep_relu_mode */
    int32_t input_zero_point, output_zero_point;
    int32_t multiplier, shift;  /**< EP_RELU_REQUANTIZE only */
    int32_t act_min, act_max;
} ep_relu_params;

/** RELU / RELU6 / RELU_N1_TO_1, int8. */
ep_status ep_relu_s8(const ep_relu_params *p, const int8_t *input, int8_t *output);

/** LEAKY_RELU parameters: identity = QuantizeMultiplier(float(in_scale / out_scale)),
 *  alpha = QuantizeMultiplier(float(in_scale * alpha / out_scale)) (float32 products, as TFLM;
 *  negative for a negative alpha). */
typedef struct {
    int32_t size;
    int32_t input_zero_point, output_zero_point;
    int32_t identity_multiplier, identity_shift;
    int32_t alpha_multiplier, alpha_shift;
} ep_leaky_relu_params;

/** LEAKY_RELU, int8. */
ep_status ep_leaky_relu_s8(const ep_leaky_relu_params *p, const int8_t *input, int8_t *output);

/* ------------------------------------------------------------------------------------ */
/* Data movement                                                                        */
/* ------------------------------------------------------------------------------------ */

/** PAD (4-D). after[d] = output[d] - input[d] - before[d] must be >= 0. */
typedef struct {
    ep_shape input, output;
    int32_t before[4];  /**< N, H, W, C */
    int32_t pad_value;  /**< the output zero point (PAD) or the constant (PADV2), -128..127 */
} ep_pad_params;

/** PAD, int8. */
ep_status ep_pad_s8(const ep_pad_params *p, const int8_t *input, int8_t *output);

/** CONCATENATION on any axis, seen as [outer, axis, inner]. Inputs share the output's quantization. */
typedef struct {
    int32_t num_inputs;
    int32_t outer, inner;
    const int32_t *axis_sizes;  /**< num_inputs sizes of the concatenated axis */
} ep_concatenation_params;

/** CONCATENATION, int8. inputs: num_inputs pointers. */
ep_status ep_concatenation_s8(const ep_concatenation_params *p, const int8_t *const *inputs, int8_t *output);

/** RESHAPE: a copy of size bytes (memmove; in place allowed). */
typedef struct {
    int32_t size;
} ep_reshape_params;

/** RESHAPE, int8. */
ep_status ep_reshape_s8(const ep_reshape_params *p, const int8_t *input, int8_t *output);

/** QUANTIZE int8 -> int8 (requantize): multiplier = QuantizeMultiplier(in_scale / out_scale). */
typedef struct {
    int32_t size;
    int32_t input_zero_point, output_zero_point;
    int32_t multiplier, shift;
} ep_quantize_params;

/** QUANTIZE, int8 -> int8. */
ep_status ep_quantize_s8(const ep_quantize_params *p, const int8_t *input, int8_t *output);

/* ------------------------------------------------------------------------------------ */
/* Layout operators, gathers, resizes, TRANSPOSE_CONV, ARG_MAX/MIN, float I/O            */
/* (N-D data movement: ranks 1..EP_MAX_DIMS, dims outermost first; none requantizes:     */
/* TFLM copies the int8 bytes, the lowering checks input and output share quantization)  */
/* ------------------------------------------------------------------------------------ */

/** Highest tensor rank of the N-D kernels below (TFLM runs TRANSPOSE and STRIDED_SLICE up to 5-D). */
#define EP_MAX_DIMS 6

/** TRANSPOSE (also SPACE_TO_DEPTH and DEPTH_TO_SPACE, which are 4-D transposes of a reshaped view):
 *  output dimension d is input dimension perm[d]. */
typedef struct {
    int32_t rank;                     /**< 1..EP_MAX_DIMS */
    int32_t input_dims[EP_MAX_DIMS];  /**< the first rank entries are used */
    int32_t perm[EP_MAX_DIMS];        /**< a permutation of 0..rank-1 */
} ep_transpose_params;

/** TRANSPOSE, int8. */
ep_status ep_transpose_s8(const ep_transpose_params *p, const int8_t *input, int8_t *output);

/** STRIDED_SLICE (also SLICE, stride 1, and REVERSE_V2, stride -1 from the last index):
 *  output[o] = input[begin + o * stride] in every dimension. TFLM's masks, negative indices and
 *  clamping are resolved offline into begin / stride / output_dims. */
typedef struct {
    int32_t rank;                      /**< 1..EP_MAX_DIMS */
    int32_t input_dims[EP_MAX_DIMS];
    int32_t begin[EP_MAX_DIMS];        /**< first input index read, 0..input_dims-1 */
    int32_t stride[EP_MAX_DIMS];       /**< non-zero; negative walks backwards */
    int32_t output_dims[EP_MAX_DIMS];  /**< >= 1; every index read stays inside the input */
} ep_strided_slice_params;

/** STRIDED_SLICE, int8. */
ep_status ep_strided_slice_s8(const ep_strided_slice_params *p, const int8_t *input, int8_t *output);

/** SPLIT / SPLIT_V / UNPACK: the input seen as [outer, axis_total, inner]; output k takes
 *  axis_sizes[k] consecutive entries of the axis, the first starting at axis_begin. */
typedef struct {
    int32_t num_outputs;        /**< 1..EP_MAX_OP_OUTPUTS */
    int32_t outer, inner;
    int32_t axis_total;         /**< input's axis size */
    int32_t axis_begin;         /**< first axis entry output 0 takes (0 unless a split is cut in steps) */
    const int32_t *axis_sizes;  /**< num_outputs sizes, each >= 1, sum + axis_begin <= axis_total */
} ep_split_params;

/** SPLIT / SPLIT_V / UNPACK, int8. outputs: num_outputs pointers. */
ep_status ep_split_s8(const ep_split_params *p, const int8_t *input, int8_t *const *outputs);

/** GATHER: the input seen as [batch, outer, axis_size, inner], indices as [batch, num_indices];
 *  output [batch, outer, num_indices, inner] (TFLM's batch_dims = the dimensions in batch). */
typedef struct {
    int32_t batch, outer, axis_size, inner;
    int32_t num_indices;  /**< per batch */
} ep_gather_params;

/** GATHER, int8 data, int32 indices (each must lie in [0, axis_size): EP_ERR_ARG otherwise, as
 *  TFLM fails the invocation). */
ep_status ep_gather_s8(const ep_gather_params *p, const int8_t *input, const int32_t *indices, int8_t *output);

/** SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND parameters (NHWC; 3-D tensors as [N, H, 1, C], block_w 1).
 *  SPACE_TO_BATCH_ND: output batch (sy * block_w + sx) * N + n holds the input padded by pad_top /
 *  pad_left (pad_value elsewhere) sampled at (oy * block_h + sy, ox * block_w + sx).
 *  BATCH_TO_SPACE_ND: the inverse, with pad_top / pad_left the crops. */
typedef struct {
    ep_shape input, output;
    int32_t block_h, block_w;    /**< >= 1 */
    int32_t pad_top, pad_left;   /**< paddings (SPACE_TO_BATCH_ND) or crops (BATCH_TO_SPACE_ND), >= 0 */
    int32_t pad_value;           /**< SPACE_TO_BATCH_ND's padding; TFLM pads with 0 whatever the zero point */
} ep_batch_space_params;

/** SPACE_TO_BATCH_ND, int8. */
ep_status ep_space_to_batch_nd_s8(const ep_batch_space_params *p, const int8_t *input, int8_t *output);
/** BATCH_TO_SPACE_ND, int8 (every output element is written: output h + crop_top <= input h * block_h). */
ep_status ep_batch_to_space_nd_s8(const ep_batch_space_params *p, const int8_t *input, int8_t *output);

/** MIRROR_PAD parameters: output[d] = input_dims[d] + before[d] + after[d], the pads mirrored from
 *  the input (REFLECT leaves out the edge element, SYMMETRIC repeats it). */
typedef struct {
    int32_t rank;                      /**< 1..EP_MAX_DIMS */
    int32_t input_dims[EP_MAX_DIMS];
    int32_t before[EP_MAX_DIMS];       /**< 0 .. input_dims - reflect */
    int32_t output_dims[EP_MAX_DIMS];  /**< after[d] = output - input - before: 0 .. input_dims - reflect */
    int32_t reflect;                   /**< 1: REFLECT, 0: SYMMETRIC */
} ep_mirror_pad_params;

/** MIRROR_PAD, int8. */
ep_status ep_mirror_pad_s8(const ep_mirror_pad_params *p, const int8_t *input, int8_t *output);

/** PRELU parameters (TFLM's CalculatePreluParams, in double): multiplier_1 = QuantizeMultiplier(in / out),
 *  multiplier_2 = QuantizeMultiplier(in * alpha / out). alpha broadcasts to the input (4-D). */
typedef struct {
    ep_shape input, alpha;  /**< the output has the input's shape */
    int32_t input_offset, alpha_offset, output_offset;
    int32_t multiplier_1, shift_1;  /**< x + input_offset >= 0 */
    int32_t multiplier_2, shift_2;  /**< otherwise, times alpha + alpha_offset */
} ep_prelu_params;

/** PRELU, int8 input and alpha. */
ep_status ep_prelu_s8(const ep_prelu_params *p, const int8_t *input, const int8_t *alpha, int8_t *output);

/** SQUARED_DIFFERENCE parameters: ADD's (TFLM prepares it as ADD with left_shift 7; the output
 *  multiplier is twice_max^2 / (2^14 * s_out)); act_min / act_max -128, 127. */
typedef ep_add_params ep_squared_difference_params;

/** SQUARED_DIFFERENCE, int8, with broadcasting: (rescaled input1 - rescaled input2)^2, requantized. */
ep_status ep_squared_difference_s8(const ep_squared_difference_params *p, const int8_t *input1,
                                   const int8_t *input2, int8_t *output);

/** RESIZE_NEAREST_NEIGHBOR / RESIZE_BILINEAR parameters (NHWC; N and C match). */
typedef struct {
    ep_shape input, output;
    int32_t align_corners;       /**< 0 or 1 */
    int32_t half_pixel_centers;  /**< 0 or 1 */
} ep_resize_params;

/** RESIZE_NEAREST_NEIGHBOR, int8 (TFLM's float32 source-index arithmetic). */
ep_status ep_resize_nearest_neighbor_s8(const ep_resize_params *p, const int8_t *input, int8_t *output);
/** RESIZE_BILINEAR, int8 (TFLM's integer path: 10-bit fixed-point positions, 20-bit rounding). */
ep_status ep_resize_bilinear_s8(const ep_resize_params *p, const int8_t *input, int8_t *output);

/** TRANSPOSE_CONV parameters. filter = {O, KH, KW, C_in}; output = {N, OH, OW, O}; pads as TFLM
 *  computes them from the output size (ComputePaddingHeightWidth with the output as "input"). */
typedef struct {
    ep_shape input;
    ep_shape filter;
    ep_shape output;
    int32_t stride_h, stride_w;
    int32_t pad_top, pad_left;
    int32_t input_offset, output_offset;
    int32_t act_min, act_max;
    ep_requant requant;   /**< per output channel or per tensor */
    ep_weights weights;   /**< dense, or palette with one row per output channel */
    const int32_t *bias;  /**< O values, or NULL */
} ep_transpose_conv_params;

/** TRANSPOSE_CONV, int8: each output pixel sums the input pixels whose window covers it (the
 *  same int32 sums TFLM scatters; no scratch). */
ep_status ep_transpose_conv_s8(const ep_transpose_conv_params *p, const int8_t *input, int8_t *output);

/** ARG_MAX / ARG_MIN: the input seen as [outer, axis_size, inner]; output [outer, inner]. */
typedef struct {
    int32_t outer, axis_size, inner;
} ep_arg_params;

/** ARG_MAX, int8 input, int32 output (raw int8 comparison; the first of equal maxima). TFLM
 *  writes int32 indices only (it fails an int64 output at run time). */
ep_status ep_arg_max_s8(const ep_arg_params *p, const int8_t *input, int32_t *output);
/** ARG_MIN, int8 input, int32 output (the first of equal minima). */
ep_status ep_arg_min_s8(const ep_arg_params *p, const int8_t *input, int32_t *output);

/** DEQUANTIZE int8 -> float32 and QUANTIZE float32 -> int8 (per-tensor, the model's float I/O). */
typedef struct {
    int32_t size;
    int32_t zero_point;  /**< of the int8 side */
    float scale;         /**< of the int8 side, > 0 */
} ep_float_quant_params;

/** DEQUANTIZE, int8 -> float32: scale * (x - zero_point), one float32 rounding (as TFLM's double
 *  product cast to float: the product of a float32 and a 9-bit integer is exact in double). */
ep_status ep_dequantize_s8(const ep_float_quant_params *p, const int8_t *input, float *output);
/** QUANTIZE, float32 -> int8: round half away from zero of the float32 quotient x / scale, plus
 *  the zero point, clamped. NaN and quotients outside int32 convert to INT32_MIN before the
 *  zero point is added with wrap-around, as TFLM's host build does (the C++ conversion is
 *  undefined there; x86 returns INT32_MIN): -128 for zero points >= 0, 127 below. */
ep_status ep_quantize_f32_s8(const ep_float_quant_params *p, const float *input, int8_t *output);

/* ------------------------------------------------------------------------------------ */
/* Execution plan: static data emitted by a generator, no interpreter, no allocation     */
/* ------------------------------------------------------------------------------------ */

/** Kernel ids used in ep_op.kernel. */
typedef enum {
    EP_KERNEL_CONV2D = 1,
    EP_KERNEL_DEPTHWISE_CONV2D = 2,
    EP_KERNEL_FULLY_CONNECTED = 3,
    EP_KERNEL_MAX_POOL2D = 4,
    EP_KERNEL_AVG_POOL2D = 5,
    EP_KERNEL_MEAN = 6,
    EP_KERNEL_ADD = 7,
    EP_KERNEL_MUL = 8,
    EP_KERNEL_SOFTMAX = 9,
    EP_KERNEL_LOGISTIC = 10,
    EP_KERNEL_TANH = 11,
    EP_KERNEL_HARD_SWISH = 12,
    EP_KERNEL_PAD = 13,
    EP_KERNEL_CONCATENATION = 14,
    EP_KERNEL_RESHAPE = 15,
    EP_KERNEL_QUANTIZE = 16,
    EP_KERNEL_SUB = 17,
    EP_KERNEL_RELU = 18,
    EP_KERNEL_LEAKY_RELU = 19,
    EP_KERNEL_MAXIMUM = 20,
    EP_KERNEL_MINIMUM = 21,
    /* issue 16: layout operators, resizes, TRANSPOSE_CONV, ARG_MAX/MIN, float I/O (ids from 40) */
    EP_KERNEL_TRANSPOSE = 40,
    EP_KERNEL_STRIDED_SLICE = 41,
    EP_KERNEL_SPLIT = 42,               /**< several outputs: ep_op.num_outputs / outputs */
    EP_KERNEL_GATHER = 43,              /**< input 1: int32 indices */
    EP_KERNEL_RESIZE_NEAREST_NEIGHBOR = 44,
    EP_KERNEL_RESIZE_BILINEAR = 45,
    EP_KERNEL_TRANSPOSE_CONV = 46,
    EP_KERNEL_ARG_MAX = 47,             /**< int32 output */
    EP_KERNEL_ARG_MIN = 48,
    EP_KERNEL_DEQUANTIZE = 49,          /**< float32 output */
    EP_KERNEL_QUANTIZE_F32 = 50,        /**< float32 input */
    EP_KERNEL_SPACE_TO_BATCH_ND = 51,
    EP_KERNEL_BATCH_TO_SPACE_ND = 52,
    EP_KERNEL_MIRROR_PAD = 53,
    EP_KERNEL_PRELU = 54,               /**< input 1: alpha */
    EP_KERNEL_SQUARED_DIFFERENCE = 55,
    EP_KERNEL_ETHOSU = 64     /**< an `ethos-u` operator on the NPU: ep_ethosu_op_params (ep_ethosu.h) */
} ep_kernel_id;

/** Upper bound on ep_op.num_inputs. */
#define EP_MAX_OP_INPUTS 16
/** Upper bound on ep_op.num_outputs (a longer SPLIT is cut into several steps by axis_begin). */
#define EP_MAX_OP_OUTPUTS 16

/** Constant-tensor reference in ep_op.inputs: EP_CONST(i) names plan->constants[i]. */
#define EP_CONST(i) (-1 - (int32_t)(i))

/** One kernel call. */
typedef struct {
    int32_t kernel;           /**< ep_kernel_id */
    const void *params;       /**< the kernel's ep_*_params struct */
    int32_t num_inputs;
    const int32_t *inputs;    /**< arena byte offsets, or EP_CONST(i) */
    int32_t output;           /**< arena byte offset (the single output; ignored when num_outputs > 0) */
    int32_t num_outputs;      /**< 0: one output at `output`; else outputs[0..num_outputs-1] (SPLIT) */
    const int32_t *outputs;   /**< arena byte offsets, or NULL */
} ep_op;

/** A model: ops in execution order over one arena. */
typedef struct {
    const ep_op *ops;
    int32_t num_ops;
    int32_t arena_bytes;      /**< arena size the plan needs */
    int32_t scratch_offset;   /**< kernel scratch region inside the arena */
    int32_t scratch_bytes;
    const int8_t *const *constants;
    int32_t num_constants;
} ep_plan;

/** Per-op hook, called with phase 0 before and phase 1 after each op (e.g. to count cycles). */
typedef void (*ep_op_hook)(void *user, int32_t op_index, const ep_op *op, int32_t phase);

/**
 * Run every op of the plan. Checks that each tensor an op reads or writes lies inside the
 * arena (sizes from the op's params) before calling the kernel; stops at the first error.
 * hook may be NULL.
 */
ep_status ep_plan_run(const ep_plan *plan, uint8_t *arena, int32_t arena_bytes, ep_op_hook hook, void *user);

/** Bytes the tensor an op reads at input i (i >= 0) or writes at output j (i = -1 - j) spans;
 *  negative if invalid. */
int32_t ep_op_tensor_bytes(const ep_op *op, int32_t i);

#ifdef __cplusplus
}
#endif

#endif /* EDGEPACK_H */
