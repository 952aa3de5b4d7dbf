"""Every behaviour of the functional Ethos-U55 model that no document states, in one place.

Each rule is a hypothesis: it names the Vela source that implies it and the evidence that it
holds (outputs bit-exact with the TFLM interpreter).  No rule was tuned until outputs matched;
rules were written from the Vela sources first and then checked.  "Vela source" paths are inside
the ethos-u-vela 5.2.0 source distribution (`pip download --no-binary ethos-u-vela
ethos-u-vela==5.2.0`); `regor/...` is the default C++ backend that generated the command streams.

The model code refers to each rule by its name (grep for the name), so a rule that turns out
wrong on silicon or an FVP is changed here and at the places that cite it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    name: str
    statement: str
    source: str
    evidence: str


# Sub-fields of 16-bit command parameters that the Python register module
# (ethosu/vela/ethos_u55_regs/ethos_u55_regs.py) declares only as `param`.
# (field, lsb within the parameter, width).  This is a documented register layout, not an
# inferred behaviour: regor/architecture/ethosu65/ethos_u65_interface.hpp struct
# npu_set_kernel_stride_t (the U55 generator uses the U65 interface), and the Python backend
# ethosu/vela/register_command_stream_generator.py lines 506-517 emit the same bits.
PARAM_SUBFIELDS: dict[str, list[tuple[str, int, int]]] = {
    "NPU_SET_KERNEL_STRIDE": [
        ("stride_x_lsb", 0, 1),
        ("stride_y_lsb", 1, 1),
        ("weight_order", 2, 1),  # 1 = part-kernel first
        ("dilation_x", 3, 1),
        ("dilation_y", 4, 1),
        ("decomposition", 5, 1),
        ("stride_x_msb", 6, 1),
        ("stride_y_msb", 9, 1),
    ],
}


RULES: dict[str, Rule] = {}


def rule(name: str, statement: str, source: str, evidence: str) -> str:
    RULES[name] = Rule(name, statement, source, evidence)
    return name


_BITEXACT = "bit-exact with TFLM on the digits fixture models as given and as folded (200 random inputs x 4 models x ethos-u55-32/64/128/256, tests/test_npu_models.py)"
_SINGLE = "bit-exact with TFLM on single-operator models (tests/test_npu_ops.py)"

IFM_EXTENT_FROM_OFM = rule(
    "IFM_EXTENT_FROM_OFM",
    "A CONV/DEPTHWISE/POOL reads IFM rows/columns -pad_top .. (ofm_h-1)*stride_y + dilated_kernel_h - 1 - pad_top; "
    "positions < 0 or beyond the IFM extent (ofm extent*stride + kernel - pad_top - pad_bottom) read as padding. "
    "Padding equals the IFM zero point (contributes 0 to MAC sums) and is excluded from MAX pooling.",
    "regor/architecture/ethosu55/ethos_u55_register_cs_generator.cpp GeneratePadding / GenerateIFM (no IFM height/width "
    "register besides the tile sizes); NPU_SET_KERNEL_HEIGHT_M1 holds dilation*(h-1) (GenerateKernel, DilatedWH).",
    _BITEXACT + "; padded CONV/DEPTHWISE/AVERAGE_POOL single-op models",
)

WEIGHT_STREAM_ORDER = rule(
    "WEIGHT_STREAM_ORDER",
    "The decoded weight stream of one operation covers exactly its OFM_DEPTH channels, in the order of Vela's "
    "EthosUWeightOrdering::GetNext with ofmBlockDepth = OFM_BLK_DEPTH_M1+1, traversal from KERNEL_STRIDE.weight_order "
    "(or DEPTHWISE for NPU_OP_DEPTHWISE), micro-block depths of the MAC configuration, 8x8 (dilation-scaled) decomposition.",
    "regor/architecture/ethosu55/ethos_u55_weight_encoder.cpp EthosUWeightOrdering (lines ~105-300); "
    "ethosu/vela/architecture_features.py accelerator_configs (ublock depths).",
    _BITEXACT + " (every layer's weights recovered; wrong order gives wrong outputs immediately)",
)

TFL_ROUNDING = rule(
    "TFL_ROUNDING",
    "Output scaling v = acc * scale (64-bit), result = round(v / 2^shift). Round mode TFL ('DBL'): for shift <= 31 "
    "round half up; for shift > 31 first round half up at bit 31 (TFLite SaturatingRoundingDoublingHighMul) then "
    "round half away from zero over the remaining shift-31 bits (RoundingDivideByPOT). NATURAL: half up. "
    "TRUNCATE: toward zero.",
    "ethosu/vela/scaling.py quantise_scale (shift = 31 - TFLite exponent); regor round_mode::DBL used for TFLite ops.",
    _BITEXACT + " (DBL on CONV/FC/elementwise; NATURAL on average pooling and the softmax SHR). TRUNCATE is NOT "
    "exercised by any test: no int8 path of Vela 5.2 seen here emits it.",
)

CLAMP_BEFORE_LUT = rule(
    "CLAMP_BEFORE_LUT",
    "With a lookup-table activation, ACTIVATION_MIN/MAX clamp the scaled value (OFM zero point added) before it indexes "
    "the table (index = value + 128 for 256-entry tables); the table entry (int8, or int32 for 1024-byte tables) is "
    "the output. Without a table the clamp is the last step before saturation to the OFM precision.",
    "regor ethos_u55_register_cs_generator.cpp GenerateActivation: for a LUT with an int32 OFM the clip range is "
    "forced to INT8 and min/max to [-128,127] - meaningful only for the table index.",
    _BITEXACT + " (softmax exp table: SUB + LUT with int32 OFM)",
)

LUT_IN_SHRAM = rule(
    "LUT_IN_SHRAM",
    "Lookup tables are DMA'd into SHRAM (a DMA region with the 'internal' bit set addresses SHRAM). The LUT area is "
    "the last 2 KiB of SHRAM (SHRAM size from the driver payload's config word); ACTIVATION TABLE_n reads 256-byte "
    "slot n of it; entries are 1 byte (int8 OFM) or 4 bytes (int32 OFM) wide.",
    "ethosu/vela/architecture_features.py shram_lut_address = bank_size * available_shram_banks(True), "
    "shram_lut_size 2048, shram_lut_slot_size 256; regor GenerateActivation (lutStart + tableIndex * lutSlotSize).",
    _BITEXACT + " (softmax: DMA to SHRAM 0x5800 = 24 KiB - 2 KiB on U55-128); TANH/LOGISTIC/HARD_SWISH/LEAKY_RELU "
    "single-op models (int8 tables on an AVERAGE_POOL no-op)",
)

ELEMENTWISE_16BIT_SCALE = rule(
    "ELEMENTWISE_16BIT_SCALE",
    "ADD/SUB with IFM scale mode OPA_OPB_16: each operand is (x - zero_point) * OP{A,B}_SCALE (no shift), then the "
    "sum/difference is output-scaled with OFM_SCALE and its shift.",
    "regor ethos_u55_register_cs_generator.cpp GenerateScalingForElementwise (equal input scales: opaScale = "
    "scale >> shift, OPA_OPB_16).",
    _BITEXACT + " (softmax ADD/SUB)",
)

ADVANCED_ADD_SUB = rule(
    "ADVANCED_ADD_SUB",
    "ADD/SUB with IFM scale mode OPA_32 (resp. OPB_32): the scaled operand is ((x - zp) << 20) * OPA_SCALE rounded "
    "(OFM round mode) by OPA_SHIFT + 20, the other operand is (x - zp) << 19 (OPB_SCALE ignored); then output scaling.",
    "ethosu/vela/scaling.py advanced_elementwise_add_sub_scale (input_shift 20: the larger input's rescale is exactly "
    "2^19, the smaller's multiplier has 2^20 folded in); regor GenerateScalingForElementwise.",
    _SINGLE + " (ADD/SUB with different and with equal input scales: both OPA_32 and OPB_32 occur)",
)

OPERAND_ORDER = rule(
    "OPERAND_ORDER",
    "IFM2_BROADCAST.operand_order = 1 makes IFM2 the first operand (A) and IFM the second (B); OPA/OPB scale modes "
    "refer to A/B after this swap. broadcast_scalar takes IFM2 from IFM2_SCALAR (16-bit, sign-extended for signed "
    "IFM2 precision); broadcast_h/w/c repeat a size-1 IFM2 dimension.",
    "regor ethos_u55_register_cs_generator.cpp GenerateElementwiseOp (reversedOperands -> ORDER_A, ifm0Index) and "
    "GenerateIFM2Broadcast; GenerateScalingForElementwise (OPA_32 iff the scaled input is op->ifm[0]).",
    _SINGLE + " (SUB with a broadcast first operand, SUB with a constant scalar first, ADD with a constant scalar)",
)

MUL_32BIT_SHIFT_ONLY = rule(
    "MUL_32BIT_SHIFT_ONLY",
    "MUL with an int32 IFM ignores the OFM_SCALE multiplier and applies only its shift (with the OFM round mode) to "
    "the 64-bit product.",
    "regor compiler/softmax.cpp (int32 MULs of the Newton-Raphson reciprocal, scales built as multiplier+shift of "
    "Q31 values); feasibility experiment note npu-model.md.",
    _BITEXACT + " (softmax)",
)

SHR_ROUND_FROM_OFM = rule(
    "SHR_ROUND_FROM_OFM",
    "SHR shifts IFM right by IFM2 (per element or scalar) with the OFM round mode (TFL/NATURAL: add 2^(n-1) before the "
    "arithmetic shift; TRUNCATE: plain arithmetic shift); the OFM scale is not applied to SHR/SHL/CLZ.",
    "regor compiler/softmax.cpp CreateAsr (rounding set on the op's OFM); regor GenerateOFMPrecision writes the round mode.",
    _BITEXACT + " (softmax Asr)",
)

UNSCALED_ELEMENTWISE = rule(
    "UNSCALED_ELEMENTWISE",
    "Only ADD/SUB use OPA/OPB scales (Vela writes them for no other operation, so they hold stale values). An "
    "elementwise operation whose OFM_PRECISION selects per-channel scaling (Vela: MIN, MAX, SHL, SHR, CLZ) is not "
    "output-scaled at all (elementwise operations have no scale stream); with global scaling (ADD, SUB, MUL, ABS, "
    "LRELU) OFM_SCALE applies to the result computed from (x - zero point). LRELU multiplies only negative values "
    "by OFM_SCALE (alpha).",
    "regor GenerateElementwiseOp (useGlobalScale only for Add/Sub/Mul/LeakyRelu/Abs) and "
    "GenerateScalingForElementwise (LeakyRelu: ofmScale = alpha).",
    _SINGLE + " (MAXIMUM, MINIMUM, ABS) and " + _BITEXACT + " (CLZ, SHL, SHR). LRELU is NOT exercised: Vela 5.2 "
    "lowers int8 LEAKY_RELU to a lookup table.",
)

AVGPOOL_HW_DIVIDE = rule(
    "AVGPOOL_HW_DIVIDE",
    "AVERAGE pooling with padding and a unit OFM scale (scale 1, shift 0): the hardware divides the sum of valid taps by "
    "their number, rounding half away from zero (as TFLite's reference AveragePool).",
    "regor ethos_u55_register_cs_generator.cpp GenerateOFMScalingForPooling ('padded average-pools use HW-scaling', "
    "asserts a unit rescale).",
    _SINGLE + " (AVERAGE_POOL_2D SAME padding)",
)

REDUCE_SUM_OVER_DEPTH = rule(
    "REDUCE_SUM_OVER_DEPTH",
    "POOL mode REDUCE_SUM sums (x - zp) over the IFM channels within the kernel window and writes one OFM channel.",
    "regor compiler/softmax.cpp (ReduceSum over the class axis, OFM depth 1).",
    _BITEXACT + " (softmax)",
)

IFM_PRECISION_32_NO_ZERO_POINT = rule(
    "IFM_PRECISION_32_NO_ZERO_POINT",
    "For an int32 IFM (precision S32) the IFM zero point is not applied.",
    "regor softmax.cpp / Vela MEAN lowering build int32 intermediates with zero point 0 (noScaleQuantZp0); the register "
    "may hold a stale value.",
    _BITEXACT + "; MEAN single-op model (DEPTHWISE sum, then int32 MUL)",
)

ACC_BIAS_40BIT = rule(
    "ACC_BIAS_40BIT",
    "The 10-byte scale/bias entry is: 40-bit signed bias, 32-bit unsigned scale, 6-bit shift; the bias is added to the "
    "accumulator before output scaling; the accumulator is exact (no wrap) for the int8 models Vela emits.",
    "regor ethos_u55_weight_encoder.cpp EncodeBias.",
    _BITEXACT,
)

OFM_SATURATE = rule(
    "OFM_SATURATE",
    "After scaling, zero point and clamping the value saturates to the OFM precision (int8/int16/int32).",
    "regor GenerateActivation sets min/max only within 16 bits; int32 OFMs are not clamped unless clip range forces it.",
    _BITEXACT,
)

SIGNED_STRIDES = rule(
    "SIGNED_STRIDES",
    "IFM/IFM2/OFM STRIDE_X/Y/C are signed 32-bit byte strides: a negative stride walks the feature map backwards (addresses below the tile base).",
    "ethosu/vela/tflite_graph_optimiser.py convert_mirror_pad ('Create pools with negative stride to mirror edges', 'use negative height striding'): MIRROR_PAD becomes 1x1 pools writing their OFM with negative stride multipliers (the command stream holds strides >= 2^31).",
    "bit-exact with TFLM on MIRROR_PAD single-operator models, REFLECT and SYMMETRIC (tests/test_npu_audit.py)",
)


def rules_text() -> str:
    """All rules as Markdown (for the README and reports)."""
    out = []
    for r in RULES.values():
        out.append(f"- **{r.name}**: {r.statement}\n  - source: {r.source}\n  - evidence: {r.evidence}")
    return "\n".join(out)


README_BEGIN = "<!-- npu-rules: generated from edgepack/npu/rules.py, tests keep it in sync -->"
README_END = "<!-- /npu-rules -->"


def rules_summary_text() -> str:
    """Each rule with its evidence, one item each (the top-level README's list)."""
    return "\n".join(f"- **{r.name}**: {r.statement} *Evidence:* {r.evidence}." for r in RULES.values())
