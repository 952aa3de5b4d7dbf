"""Where Vela's compilation for the Ethos-U55/U65 computes differently from TFLM: the audit's table.

Measured by the audit (tests/npu_audit.py, bench/npu_audit.py): random single-operator int8 models
of every operator kind Vela 5.2 places on the NPU, on every MAC configuration the functional model
executes, compiled by Vela and run in the functional model and in TFLM. `AUDIT` is the table, as
data; `classify` says whether an operator falls in a divergent class; `divergent_operators` names
those of a model that Vela placed on the NPU (the build warns about each).
"""

from __future__ import annotations

from dataclasses import dataclass

BIT_EXACT, DIVERGENT, NOT_MODELLED = "bit-exact", "divergent", "not modelled"
NO_ORACLE = "no TFLM kernel"  # TFLM cannot run it in int8: nothing to compare with


@dataclass(frozen=True)
class KindAudit:
    kind: str
    status: str  # BIT_EXACT, DIVERGENT (under `condition`, else bit-exact) or NOT_MODELLED
    condition: str = ""  # when it diverges, in words
    max_difference: int = 0  # largest |NPU - TFLM| the sweep saw, in output quantization steps
    why: str = ""
    tried: int = 0  # random configurations the sweep ran on the NPU (all five MAC configurations)
    differing: int = 0  # of which differed from TFLM


# `tried`/`differing`: bench/npu_audit.py 4 (4 random configurations per kind and MAC configuration,
# ethos-u55-32/64/128/256 and ethos-u65-256: 20 per kind; counted: those Vela placed on the NPU
# and the functional model executed). The CI test (tests/test_npu_audit.py) reruns a fixed seeded
# sample of every kind.
AUDIT = [
    KindAudit("ABS", BIT_EXACT, tried=20),
    KindAudit("ADD", BIT_EXACT, tried=20),
    KindAudit("ARG_MAX", NOT_MODELLED, "unknown: Vela lowers it with int16 lookup tables",
              why="the functional model does not execute int16 lookup tables", tried=0),
    KindAudit("AVERAGE_POOL_2D", BIT_EXACT, tried=20),
    # Vela lowers it to an input copy, MUL (int32) and REDUCE_SUM with its own output rescaling;
    # which of Vela's scales or TFLM's rounding makes the 1-step differences is not established
    KindAudit("BATCH_MATMUL", DIVERGENT, "any quantization (some outputs)", 1,
              "Vela lowers it to MUL + REDUCE_SUM and rescales the sum its own way", tried=20, differing=4),
    KindAudit("CONCATENATION", BIT_EXACT, tried=20),
    KindAudit("CONV_2D", BIT_EXACT, tried=20),
    KindAudit("DEPTHWISE_CONV_2D", BIT_EXACT, tried=20),
    KindAudit("EXP", NO_ORACLE, "unknown: TFLM's EXP is float only"),
    KindAudit("EXPAND_DIMS", BIT_EXACT, tried=20),
    KindAudit("FULLY_CONNECTED", BIT_EXACT, tried=20),
    KindAudit("HARD_SWISH", BIT_EXACT, tried=20),
    KindAudit("LEAKY_RELU", BIT_EXACT, tried=20),
    KindAudit("LOGISTIC", BIT_EXACT, tried=20),
    KindAudit("MAXIMUM", BIT_EXACT, tried=20),
    KindAudit("MAX_POOL_2D", BIT_EXACT, tried=20),
    KindAudit("MEAN", BIT_EXACT, tried=20),
    KindAudit("MINIMUM", BIT_EXACT, tried=20),
    KindAudit("MIRROR_PAD", BIT_EXACT, tried=20),
    KindAudit("MUL", BIT_EXACT, tried=20),
    KindAudit("PACK", BIT_EXACT, tried=20),
    KindAudit("PAD", BIT_EXACT, tried=20),
    KindAudit("PRELU", BIT_EXACT, tried=20),
    KindAudit("QUANTIZE", BIT_EXACT, tried=20),
    KindAudit("RELU", BIT_EXACT, tried=20),
    KindAudit("RELU6", DIVERGENT, "input and output quantization differ", 125,
              "Vela requantizes to the output scale (as TFLite's reference kernel); TFLM's int8 RELU6 "
              "clamps the raw input and ignores the output quantization", tried=20, differing=12),
    KindAudit("RELU_0_TO_1", NO_ORACLE, "unknown: TFLM has no RELU_0_TO_1 kernel"),
    KindAudit("RELU_N1_TO_1", NO_ORACLE, "unknown: TFLM has no RELU_N1_TO_1 kernel"),
    KindAudit("RESHAPE", BIT_EXACT, tried=20),
    # Vela lowers most resizes (and strided TRANSPOSE_CONV) with IFM upscaling, which the
    # functional model refuses (never guesses); the few it executed were bit-exact.
    KindAudit("RESIZE_BILINEAR", NOT_MODELLED, "unknown: Vela lowers it with IFM upscaling",
              why="the functional model does not execute IFM upscaling", tried=2),
    KindAudit("RESIZE_NEAREST_NEIGHBOR", NOT_MODELLED, "unknown: Vela lowers it with IFM upscaling",
              why="the functional model does not execute IFM upscaling", tried=1),
    KindAudit("RSQRT", BIT_EXACT, tried=20),
    KindAudit("SLICE", BIT_EXACT, tried=20),
    KindAudit("SOFTMAX", BIT_EXACT, tried=20),
    KindAudit("SPLIT", BIT_EXACT, tried=20),
    KindAudit("SPLIT_V", BIT_EXACT, tried=20),
    KindAudit("SQUARED_DIFFERENCE", BIT_EXACT, tried=20),
    KindAudit("SQUEEZE", BIT_EXACT, tried=20),
    KindAudit("STRIDED_SLICE", BIT_EXACT, tried=20),
    KindAudit("SUB", BIT_EXACT, tried=20),
    KindAudit("TANH", BIT_EXACT, tried=20),
    KindAudit("TRANSPOSE", BIT_EXACT, tried=20),
    KindAudit("TRANSPOSE_CONV", NOT_MODELLED, "unknown with stride 2: Vela upscales the IFM",
              why="the functional model does not execute IFM upscaling", tried=8),
    KindAudit("UNPACK", BIT_EXACT, tried=20),
]
BY_KIND = {a.kind: a for a in AUDIT}


def classify(kind: str, features: dict) -> KindAudit | None:
    """The divergent class an operator with these features falls in, else None (bit-exact).
    `features`: {"equal_quantization": bool} for element-wise unary operators."""
    audit = BY_KIND.get(kind)
    if audit is None or audit.status != DIVERGENT:
        return None
    if kind == "RELU6" and not features.get("equal_quantization", True):
        return audit
    if kind == "BATCH_MATMUL":
        return audit
    return None


@dataclass
class Divergence:
    """An operator of a model that the NPU will compute differently from TFLM."""

    operator: int
    opcode: str
    name: str  # its output tensor
    condition: str
    max_difference: int  # the audit's bound, in output steps
    why: str

    def describe(self) -> str:
        return (f"operator {self.operator} {self.opcode} ({self.name!r}): {self.condition}; the NPU "
                f"differs from TFLM by up to {self.max_difference} steps ({self.why})")


def _features(model, op) -> dict:
    if not op.inputs or not op.outputs:
        return {}
    qi, qo = model.tensors[op.inputs[0]].quantization, model.tensors[op.outputs[0]].quantization
    if qi is None or qo is None:
        return {}
    same = (list(map(float, qi.scale)) == list(map(float, qo.scale))
            and list(map(int, qi.zero_point)) == list(map(int, qo.zero_point)))
    return {"equal_quantization": same}


def divergent_operators(model, npu_operators: set[int]) -> list[Divergence]:
    """The operators of `model` (edgepack.tflite.Model) that Vela placed on the NPU (indices in
    `npu_operators`) and that fall in a divergent class of the audit."""
    found = []
    for op in model.operators:
        if op.index not in npu_operators:
            continue
        audit = classify(op.name, _features(model, op))
        if audit is not None:
            out = model.tensors[op.outputs[0]].name if op.outputs else ""
            found.append(Divergence(op.index, op.name, out, audit.condition, audit.max_difference, audit.why))
    return found


def unaudited_operators(model, npu_operators: set[int]) -> list[tuple[int, str]]:
    """(index, opcode) of NPU operators whose kind the audit could not compare with TFLM."""
    return [(op.index, op.name) for op in model.operators if op.index in npu_operators
            and (op.name not in BY_KIND or BY_KIND[op.name].status in (NOT_MODELLED, NO_ORACLE))]


def audit_table() -> str:
    """The audit as a Markdown table (README and edgepack/npu/README.md carry it verbatim)."""
    lines = ["| operator | NPU vs TFLM | diverges when | configurations run (differing) | max difference (steps) |",
             "| --- | --- | --- | --- | --- |"]
    for a in AUDIT:
        lines.append(f"| {a.kind} | {a.status} | {a.condition or '-'} | {a.tried} ({a.differing}) | "
                     f"{a.max_difference if a.status == DIVERGENT else '-'} |")
    return "\n".join(lines)


@dataclass
class Unmodelled:
    """An NPU operator whose command stream the functional model cannot execute, so neither the
    golden outputs nor the co-simulation could check what the device computes for it."""

    operator: int
    opcode: str
    why: str

    def describe(self) -> str:
        return f"operator {self.operator} {self.opcode}: {self.why}"


def unmodelled_operators(model, npu_operators: set[int]) -> list[Unmodelled]:
    """The operators of `model` Vela placed on the NPU (indices in `npu_operators`) that Vela
    lowers with hardware features the functional model refuses (never guesses): IFM upscaling
    (resizes, strided TRANSPOSE_CONV) and int16 lookup tables (ARG_MAX)."""
    found = []
    for op in model.operators:
        if op.index not in npu_operators:
            continue
        strided = max(int(op.options.get("stride_h", 1)), int(op.options.get("stride_w", 1))) > 1
        if op.name in ("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR") or (
                op.name == "TRANSPOSE_CONV" and strided):
            found.append(Unmodelled(op.index, op.name, "Vela lowers it with IFM upscaling, which the "
                                    "functional Ethos-U model does not execute"))
        elif op.name == "ARG_MAX":
            found.append(Unmodelled(op.index, op.name, "Vela lowers it with int16 lookup tables, which "
                                    "the functional Ethos-U model does not execute"))
    return found
