"""Offline quantization arithmetic: the constants TFLM computes in each kernel's Prepare,
computed once in Python so the firmware only runs the integer inner loops.

Each function names the TFLite/TFLM routine it mirrors. Where TFLM multiplies float32 scales
in float before widening (FULLY_CONNECTED per-tensor, HARD_SWISH), so do we: the last bit of a
multiplier decides bit-exactness. Used by codegen's lowering and by the runtime kernel tests.
"""

from __future__ import annotations

import math

import numpy as np

INT8_MIN, INT8_MAX = -128, 127
ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")


def f32(x: float) -> float:
    """A Python float holding the float32 value TFLite stores (scales are float32)."""
    return float(np.float32(x))


def tflite_round(x: float) -> int:
    """std::round / TfLiteRound: halves away from zero."""
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def quantize_multiplier(real: float) -> tuple[int, int]:
    """QuantizeMultiplier: `real = q * 2^(shift - 31)` with q an int32 in [2^30, 2^31).

    As TFLM builds it (double rounding, TFLITE_SINGLE_ROUNDING off, like the runtime): shifts
    above 30 are kept, not saturated to (2^31 - 1, 30) as the single-rounding build does;
    SOFTMAX's capped multiplier 2^31 - 1 needs its left shift of 31."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = tflite_round(q * (1 << 31))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:  # every bit would be shifted out: TFLM flushes to zero
        return 0, 0
    return q_fixed, shift


def activation_range(activation: str, scale: float, zero_point: int) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8 (quantizes in float32, as TFLite does)."""
    def q(f: float) -> int:
        return int(zero_point) + tflite_round(float(np.float32(f) / np.float32(scale)))

    lo, hi = INT8_MIN, INT8_MAX
    if activation == "RELU":
        lo = max(lo, q(0.0))
    elif activation == "RELU6":
        lo, hi = max(lo, q(0.0)), min(hi, q(6.0))
    elif activation == "RELU_N1_TO_1":
        lo, hi = max(lo, q(-1.0)), min(hi, q(1.0))
    elif activation != "NONE":
        raise ValueError(activation)
    return lo, hi


def same_padding(in_size: int, out_size: int, stride: int, filt: int, dilation: int = 1) -> int:
    """ComputePaddingWithOffset: the top/left padding of SAME (VALID pads 0)."""
    effective = (filt - 1) * dilation + 1
    return max(0, ((out_size - 1) * stride + effective - in_size) // 2)


def conv_output_size(padding: str, in_size: int, filt: int, stride: int, dilation: int = 1) -> int:
    """ComputeOutSize for SAME / VALID."""
    effective = (filt - 1) * dilation + 1
    if padding == "SAME":
        return (in_size + stride - 1) // stride
    return (in_size + stride - effective) // stride


def conv_multipliers(in_scale: float, w_scales, out_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """PopulateConvolutionQuantizationParams: QuantizeMultiplier(in * w[c] / out) per channel
    (one entry for per-tensor weights), in double from the float32 scales."""
    pairs = [quantize_multiplier(f32(in_scale) * float(ws) / f32(out_scale))
             for ws in np.atleast_1d(np.asarray(w_scales, np.float32))]
    return (np.array([p[0] for p in pairs], np.int32), np.array([p[1] for p in pairs], np.int32))


def fc_multipliers(in_scale: float, w_scales, out_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """FULLY_CONNECTED: per-tensor weights go through GetQuantizedConvolutionMultipler, which
    multiplies the float32 scales in float32 first; per-channel as convolution."""
    w_scales = np.atleast_1d(np.asarray(w_scales, np.float32))
    if w_scales.size == 1:
        product = float(np.float32(in_scale) * w_scales[0])
        m, s = quantize_multiplier(product / f32(out_scale))
        return np.array([m], np.int32), np.array([s], np.int32)
    return conv_multipliers(in_scale, w_scales, out_scale)


def calculate_input_radius(input_integer_bits: int, input_left_shift: int,
                           total_signed_bits: int = 31) -> int:
    """CalculateInputRadius."""
    max_rescaled = (((1 << input_integer_bits) - 1) * float(1 << (total_signed_bits - input_integer_bits))
                    / float(1 << input_left_shift))
    return int(math.floor(max_rescaled))


def sigmoid_params(in_scale: float) -> tuple[int, int, int]:
    """LOGISTIC / TANH int8 Prepare (input in Q4.27):
    (input_multiplier, input_left_shift, input_range_radius)."""
    q, shift = math.frexp(f32(in_scale) * float(1 << (31 - 4)))
    mult = tflite_round(q * (1 << 31))
    if mult == 1 << 31:  # cannot happen for a float32 scale; kept so the int32 never overflows
        mult //= 2
        shift += 1
    return mult, shift, calculate_input_radius(4, shift, 31)


def softmax_params(beta: float, in_scale: float) -> tuple[int, int, int]:
    """SOFTMAX int8 Prepare, PreprocessSoftmaxScaling(beta, in_scale, 5):
    (input_multiplier, input_left_shift, diff_min)."""
    real = min(f32(beta) * f32(in_scale) * float(1 << (31 - 5)), float((1 << 31) - 1))
    mult, shift = quantize_multiplier(real)  # QuantizeMultiplierGreaterThanOne
    return mult, shift, -calculate_input_radius(5, shift, 31)


def downscale_int32_to_int16_multiplier(m: int) -> int:
    """DownScaleInt32ToInt16Multiplier: round to the top 16 bits, saturating."""
    if m >= (1 << 31) - 1 - (1 << 15):
        return (1 << 15) - 1
    return (m + (1 << 15)) >> 16


def hard_swish_params(in_scale: float, out_scale: float) -> tuple[int, int, int, int]:
    """HARD_SWISH Prepare, all in float32: (reluish_multiplier_fixedpoint_int16,
    reluish_multiplier_exponent, output_multiplier_fixedpoint_int16, output_multiplier_exponent).
    TFLM requires output_multiplier_exponent <= 0."""
    hires = np.float32(1.0 / 128.0) * np.float32(in_scale)
    reluish_scale = np.float32(3.0) / np.float32(32768.0)
    om, oe = quantize_multiplier(float(hires / np.float32(out_scale)))
    rm, re = quantize_multiplier(float(hires / reluish_scale))
    return (downscale_int32_to_int16_multiplier(rm), re,
            downscale_int32_to_int16_multiplier(om), oe)


ADD_LEFT_SHIFT = 20  # TFLM's int8 ADD


def add_params(s1: float, s2: float, s_out: float) -> dict:
    """ADD int8 Prepare: left_shift 20, per-input multipliers against twice the larger input
    scale, and the output multiplier."""
    s1, s2, s_out = f32(s1), f32(s2), f32(s_out)
    twice_max = 2.0 * max(s1, s2)
    m1, sh1 = quantize_multiplier(s1 / twice_max)
    m2, sh2 = quantize_multiplier(s2 / twice_max)
    mo, sho = quantize_multiplier(twice_max / (float(1 << ADD_LEFT_SHIFT) * s_out))
    return dict(left_shift=ADD_LEFT_SHIFT, input1_multiplier=m1, input1_shift=sh1,
                input2_multiplier=m2, input2_shift=sh2, output_multiplier=mo, output_shift=sho)


def mul_multiplier(s1: float, s2: float, s_out: float) -> tuple[int, int]:
    """MUL int8 Prepare: QuantizeMultiplier(s1 * s2 / s_out) in double."""
    return quantize_multiplier(f32(s1) * f32(s2) / f32(s_out))


def requantize_multiplier(in_scale: float, out_scale: float) -> tuple[int, int]:
    """QUANTIZE int8 -> int8 Prepare: QuantizeMultiplier(in / out) in double."""
    return quantize_multiplier(f32(in_scale) / f32(out_scale))


def mean_multiplier(in_scale: float, out_scale: float, num_elements: int) -> tuple[int, int]:
    """MEAN int8 (QuantizedMeanOrSum): QuantizeMultiplier(in / out) = (M, s), then 1/n folded
    in exactly as TFLM does at run time: k = min(floor(log2 n), 32, 31 + s),
    multiplier = (M << k) // n, shift = s - k."""
    m, s = quantize_multiplier(f32(in_scale) / f32(out_scale))
    k = min(int(num_elements).bit_length() - 1, 32, 31 + s)
    return int((m << k) // int(num_elements)), int(s - k)


def relu_params(activation: str, in_scale: float, out_scale: float, in_zero_point: int,
                out_zero_point: int) -> dict:
    """Standalone RELU / RELU6 / RELU_N1_TO_1 as TFLM's int8 kernels compute them
    (ep_relu_params without size). RELU and RELU_N1_TO_1 (CalculateReluOpData, TFLite's
    Relu1): requantize by QuantizeMultiplier(in / out) in double, then clamp to the activation
    range in the output quantization. RELU6 (Relu6Prepare): clamp the raw input to
    [zp_in, zp_in + round(6 / in_scale)] in the input quantization; the output's is not used."""
    if activation == "RELU6":
        six = int(in_zero_point) + tflite_round(float(np.float32(6.0) / np.float32(in_scale)))
        return dict(mode=1, input_zero_point=int(in_zero_point), output_zero_point=int(in_zero_point),
                    multiplier=0, shift=0, act_min=int(in_zero_point), act_max=max(INT8_MIN, min(INT8_MAX, six)))
    m, s = requantize_multiplier(in_scale, out_scale)
    lo, hi = activation_range(activation, out_scale, out_zero_point)
    return dict(mode=0, input_zero_point=int(in_zero_point), output_zero_point=int(out_zero_point),
                multiplier=m, shift=s, act_min=lo, act_max=hi)


def leaky_relu_params(alpha: float, in_scale: float, out_scale: float) -> dict:
    """LEAKY_RELU int8 Prepare: both multipliers from float32 arithmetic widened to double,
    identity = in / out, alpha = in * alpha / out (negative for a negative alpha)."""
    s_in, s_out, a = np.float32(in_scale), np.float32(out_scale), np.float32(alpha)
    im, ish = quantize_multiplier(float(s_in / s_out))
    am, ash = quantize_multiplier(float(s_in * a / s_out))
    return dict(identity_multiplier=im, identity_shift=ish, alpha_multiplier=am, alpha_shift=ash)


def prelu_params(in_scale: float, alpha_scale: float, out_scale: float) -> dict:
    """PRELU int8 Prepare (TFLM's CalculatePreluParams): QuantizeMultiplier of in / out and of
    in * alpha / out, both in double from the float32 scales."""
    m1, s1 = quantize_multiplier(f32(in_scale) / f32(out_scale))
    m2, s2 = quantize_multiplier(f32(in_scale) * f32(alpha_scale) / f32(out_scale))
    return {"multiplier_1": m1, "shift_1": s1, "multiplier_2": m2, "shift_2": s2}


SQUARED_DIFFERENCE_LEFT_SHIFT = 7  # TFLM's int8 SQUARED_DIFFERENCE: 255^2 << 14 fits int32


def squared_difference_params(s1: float, s2: float, s_out: float) -> dict:
    """SQUARED_DIFFERENCE int8 Prepare: ADD's input multipliers with left_shift 7, and the output
    multiplier twice_max^2 / (2^14 * s_out) (2^14 * s_out in float32, exact)."""
    s1, s2, s_out = f32(s1), f32(s2), f32(s_out)
    twice_max = 2.0 * max(s1, s2)
    m1, sh1 = quantize_multiplier(s1 / twice_max)
    m2, sh2 = quantize_multiplier(s2 / twice_max)
    mo, sho = quantize_multiplier(twice_max * twice_max / f32((1 << 2 * SQUARED_DIFFERENCE_LEFT_SHIFT) * s_out))
    return dict(left_shift=SQUARED_DIFFERENCE_LEFT_SHIFT, input1_multiplier=m1, input1_shift=sh1,
                input2_multiplier=m2, input2_shift=sh2, output_multiplier=mo, output_shift=sho)
