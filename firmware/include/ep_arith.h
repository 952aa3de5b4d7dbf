/*
 * edgepack runtime: quantized integer arithmetic, written once.
 *
 * Function names follow TensorFlow Lite's kernels/internal/common.h and gemmlowp's
 * fixedpoint.h so that each kernel reads like the TFLM reference kernel it mirrors.
 * Rounding is TFLM's (and CMSIS-NN's) double rounding: a rounding doubling high multiply
 * followed by a rounding right shift. See firmware/README.md.
 *
 * Portable C99. Every function is static inline; no state, no allocation.
 * Signed overflow is avoided by computing in 64 bits or through uint32_t where gemmlowp
 * relies on wrap-around, so the header is clean under -fsanitize=undefined.
 */
#ifndef EP_ARITH_H
#define EP_ARITH_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EP_INT32_MIN ((int32_t)(-2147483647 - 1))
#define EP_INT32_MAX ((int32_t)2147483647)

static inline int32_t ep_min_i32(int32_t a, int32_t b) { return a < b ? a : b; }
static inline int32_t ep_max_i32(int32_t a, int32_t b) { return a > b ? a : b; }
static inline int32_t ep_clamp_i32(int32_t x, int32_t lo, int32_t hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

/* Wrapping add/sub (gemmlowp's raw int32 + and -, which never overflow in these paths). */
static inline int32_t ep_wadd(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }
static inline int32_t ep_wsub(int32_t a, int32_t b) { return (int32_t)((uint32_t)a - (uint32_t)b); }

/* gemmlowp::SaturatingRoundingDoublingHighMul for int32. */
static inline int32_t ep_SaturatingRoundingDoublingHighMul(int32_t a, int32_t b)
{
    int64_t ab;
    int64_t nudge;
    if (a == EP_INT32_MIN && b == EP_INT32_MIN) {
        return EP_INT32_MAX;
    }
    ab = (int64_t)a * (int64_t)b;
    nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* gemmlowp::RoundingDivideByPOT for int32, exponent in [0, 31]. */
static inline int32_t ep_RoundingDivideByPOT(int32_t x, int exponent)
{
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* gemmlowp::SaturatingRoundingDoublingHighMul for int16 (used by HARD_SWISH). */
static inline int16_t ep_SaturatingRoundingDoublingHighMul16(int16_t a, int16_t b)
{
    int32_t ab;
    int32_t nudge;
    if (a == INT16_MIN && b == INT16_MIN) {
        return INT16_MAX;
    }
    ab = (int32_t)a * (int32_t)b;
    nudge = ab >= 0 ? (1 << 14) : (1 - (1 << 14));
    return (int16_t)((ab + nudge) / (1 << 15));
}

/* gemmlowp::RoundingDivideByPOT for int16. */
static inline int16_t ep_RoundingDivideByPOT16(int16_t x, int exponent)
{
    const int32_t mask = (1 << exponent) - 1;
    const int32_t remainder = (int32_t)x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (int16_t)(((int32_t)x >> exponent) + (remainder > threshold ? 1 : 0));
}

/* TFLite's SaturatingDoublingHighMul for int16 (no rounding; like SQDMULH). */
static inline int16_t ep_SaturatingDoublingHighMul16(int16_t a, int16_t b)
{
    if (a == INT16_MIN && b == INT16_MIN) {
        return INT16_MAX;
    }
    return (int16_t)(((int32_t)a * (int32_t)b) / (1 << 15));
}

/* TFLite's SaturatingLeftShift for int16. */
static inline int16_t ep_SaturatingLeftShift16(int16_t value, int amount)
{
    int64_t r = (int64_t)value * ((int64_t)1 << amount);
    if (r > INT16_MAX) r = INT16_MAX;
    if (r < INT16_MIN) r = INT16_MIN;
    return (int16_t)r;
}

/*
 * tflite::MultiplyByQuantizedMultiplier (double-rounding form, as TFLM computes it):
 * x * 2^shift * multiplier / 2^31, shift > 0 is a left shift applied before the multiply.
 */
static inline int32_t ep_MultiplyByQuantizedMultiplier(int32_t x, int32_t multiplier, int32_t shift)
{
    const int left = shift > 0 ? shift : 0;
    const int right = shift > 0 ? 0 : -shift;
    const int32_t shifted = (int32_t)(uint32_t)((uint32_t)x << left);
    return ep_RoundingDivideByPOT(ep_SaturatingRoundingDoublingHighMul(shifted, multiplier), right);
}

/* tflite::MultiplyByQuantizedMultiplierSmallerThanOneExp (left_shift <= 0). */
static inline int32_t ep_MultiplyByQuantizedMultiplierSmallerThanOneExp(int32_t x, int32_t multiplier,
                                                                       int32_t left_shift)
{
    return ep_RoundingDivideByPOT(ep_SaturatingRoundingDoublingHighMul(x, multiplier), -left_shift);
}

/* tflite::MultiplyByQuantizedMultiplierGreaterThanOne (left_shift >= 0). */
static inline int32_t ep_MultiplyByQuantizedMultiplierGreaterThanOne(int32_t x, int32_t multiplier,
                                                                    int32_t left_shift)
{
    return ep_SaturatingRoundingDoublingHighMul((int32_t)(uint32_t)((uint32_t)x << left_shift), multiplier);
}

/* Rounded integer division as TFLite's average pool / mean use it. */
static inline int32_t ep_rounded_div(int32_t acc, int32_t n)
{
    return acc > 0 ? (acc + n / 2) / n : (acc - n / 2) / n;
}

/* ----- gemmlowp fixed point (int32 raw values; template integer bits as arguments) ----- */

/* F<int_bits>::One() raw value. */
static inline int32_t ep_fp_one(int int_bits)
{
    return int_bits == 0 ? EP_INT32_MAX : (int32_t)((int32_t)1 << (31 - int_bits));
}

/* gemmlowp::SaturatingRoundingMultiplyByPOT<exponent>. */
static inline int32_t ep_SaturatingRoundingMultiplyByPOT(int32_t x, int exponent)
{
    if (exponent > 0) {
        const int32_t threshold = (int32_t)(((int32_t)1 << (31 - exponent)) - 1);
        if (x > threshold) return EP_INT32_MAX;
        if (x < -threshold) return EP_INT32_MIN;
        return (int32_t)((uint32_t)x << exponent);
    }
    if (exponent < 0) {
        return ep_RoundingDivideByPOT(x, -exponent);
    }
    return x;
}

/* gemmlowp::Rescale<dst_bits>(F<src_bits>). */
static inline int32_t ep_fp_rescale(int32_t x, int src_bits, int dst_bits)
{
    return ep_SaturatingRoundingMultiplyByPOT(x, src_bits - dst_bits);
}

/* Fixed-point multiply F<a> * F<b> -> F<a+b> (raw SRDHM). */
static inline int32_t ep_fp_mul(int32_t a, int32_t b) { return ep_SaturatingRoundingDoublingHighMul(a, b); }

/* gemmlowp::RoundingHalfSum for int32. */
static inline int32_t ep_RoundingHalfSum(int32_t a, int32_t b)
{
    const int64_t sum = (int64_t)a + (int64_t)b;
    const int64_t sign = sum >= 0 ? 1 : -1;
    return (int32_t)((sum + sign) / 2);
}

/* gemmlowp::exp_on_interval_between_negative_one_quarter_and_0_excl (F0 -> F0). */
static inline int32_t ep_exp_on_interval_between_negative_one_quarter_and_0_excl(int32_t a)
{
    const int32_t constant_term = 1895147668;     /* exp(-1/8) */
    const int32_t constant_1_over_3 = 715827883;  /* 1/3 */
    const int32_t x = ep_wadd(a, (int32_t)1 << 28); /* a + 1/8 */
    const int32_t x2 = ep_fp_mul(x, x);
    const int32_t x3 = ep_fp_mul(x2, x);
    const int32_t x4 = ep_fp_mul(x2, x2);
    const int32_t x4_over_4 = ep_SaturatingRoundingMultiplyByPOT(x4, -2);
    const int32_t poly = ep_SaturatingRoundingMultiplyByPOT(
        ep_wadd(ep_fp_mul(ep_wadd(x4_over_4, x3), constant_1_over_3), x2), -1);
    return ep_wadd(constant_term, ep_fp_mul(constant_term, ep_wadd(x, poly)));
}

/* gemmlowp::exp_on_negative_values (F<int_bits> -> F0), a <= 0. */
static inline int32_t ep_exp_on_negative_values(int32_t a, int int_bits)
{
    static const int32_t multipliers[7] = {1672461947, 1302514674, 790015084, 290630308,
                                           39332535,   720401,     242};
    const int frac_bits = 31 - int_bits;
    const int32_t one_quarter = (int32_t)1 << (frac_bits - 2);
    const int32_t mask = one_quarter - 1;
    const int32_t a_mod_quarter_minus_one_quarter = ep_wsub(a & mask, one_quarter);
    int32_t result = ep_exp_on_interval_between_negative_one_quarter_and_0_excl(
        ep_fp_rescale(a_mod_quarter_minus_one_quarter, int_bits, 0));
    const int32_t remainder = ep_wsub(a_mod_quarter_minus_one_quarter, a);
    int e;
    for (e = -2; e <= 4; ++e) {
        if (int_bits > e) {
            const int shift_amount = frac_bits + e;
            if (remainder & (int32_t)((uint32_t)1 << shift_amount)) {
                result = ep_fp_mul(result, multipliers[e + 2]);
            }
        }
    }
    if (int_bits > 5) {
        const int32_t clamp = -((int32_t)1 << (36 - int_bits)); /* -32.0 */
        if (a < clamp) result = 0;
    }
    if (a == 0) result = EP_INT32_MAX;
    return result;
}

/* Newton-Raphson core shared by the two functions below: returns x ~ 1/half_denominator in F2. */
static inline int32_t ep_fp_nr_reciprocal_f2(int32_t half_denominator)
{
    const int32_t constant_48_over_17 = 1515870810;
    const int32_t constant_neg_32_over_17 = -1010580540;
    const int32_t f2_one = (int32_t)1 << 29;
    int32_t x = ep_wadd(constant_48_over_17, ep_fp_mul(half_denominator, constant_neg_32_over_17));
    int i;
    for (i = 0; i < 3; ++i) {
        const int32_t half_denominator_times_x = ep_fp_mul(half_denominator, x);
        const int32_t one_minus = ep_wsub(f2_one, half_denominator_times_x);
        x = ep_wadd(x, ep_fp_rescale(ep_fp_mul(x, one_minus), 4, 2));
    }
    return x;
}

/* gemmlowp::one_over_one_plus_x_for_x_in_0_1 (F0 -> F0). */
static inline int32_t ep_one_over_one_plus_x_for_x_in_0_1(int32_t a)
{
    const int32_t half_denominator = ep_RoundingHalfSum(a, EP_INT32_MAX);
    const int32_t x = ep_fp_nr_reciprocal_f2(half_denominator);
    /* ExactMulByPot<-1> reinterprets the raw F2 value as F1; then Rescale<0>. */
    return ep_fp_rescale(x, 1, 0);
}

/* gemmlowp::one_minus_x_over_one_plus_x_for_x_in_0_1 (F0 -> F0). */
static inline int32_t ep_one_minus_x_over_one_plus_x_for_x_in_0_1(int32_t a)
{
    const int32_t half_denominator = ep_RoundingHalfSum(a, EP_INT32_MAX);
    const int32_t x = ep_fp_nr_reciprocal_f2(half_denominator);
    return ep_fp_rescale(ep_wsub(x, (int32_t)1 << 29), 2, 0);
}

/* gemmlowp::logistic (F<int_bits> -> F0). */
static inline int32_t ep_fp_logistic(int32_t a, int int_bits)
{
    int32_t abs_a;
    int32_t pos;
    if (a == 0) return (int32_t)1 << 30;
    abs_a = a > 0 ? a : ep_wsub(0, a);
    pos = ep_one_over_one_plus_x_for_x_in_0_1(ep_exp_on_negative_values(ep_wsub(0, abs_a), int_bits));
    return a > 0 ? pos : ep_wsub(EP_INT32_MAX, pos);
}

/* gemmlowp::tanh (F<int_bits> -> F0). */
static inline int32_t ep_fp_tanh(int32_t a, int int_bits)
{
    int32_t n;
    int32_t t;
    if (a == 0) return 0;
    n = a < 0 ? ep_wsub(0, a) : a;
    /* exp(-2|a|): ExactMulByPot<1> reinterprets -|a| as F<int_bits + 1>. */
    t = ep_one_minus_x_over_one_plus_x_for_x_in_0_1(ep_exp_on_negative_values(ep_wsub(0, n), int_bits + 1));
    return a < 0 ? ep_wsub(0, t) : t;
}

/* Count leading zeros of a uint32 (32 for 0). */
static inline int ep_clz32(uint32_t x)
{
#if defined(__GNUC__) || defined(__clang__)
    return x ? __builtin_clz(x) : 32;
#else
    int n = 0;
    if (x == 0) return 32;
    while (!(x & 0x80000000u)) { x <<= 1; ++n; }
    return n;
#endif
}

/* tflite::GetReciprocal: 1/x for x in F<x_integer_digits>, as F0 plus a shift. */
static inline int32_t ep_GetReciprocal(int32_t x, int x_integer_digits, int *num_bits_over_unit)
{
    const int headroom_plus_one = ep_clz32((uint32_t)x);
    const int32_t shifted_sum_minus_one =
        (int32_t)(((uint32_t)x << headroom_plus_one) - ((uint32_t)1 << 31));
    *num_bits_over_unit = x_integer_digits - headroom_plus_one;
    return ep_one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one);
}

#ifdef __cplusplus
}
#endif

#endif /* EP_ARITH_H */
