"""Calibration inputs and the end-to-end check: the folded model against the model as given,
through the TFLM interpreter.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..isolate import Isolated, load_tflm, run_isolated
from ..tflite import Model, serialize_model
from .results import Agreement

PARALLEL_AGREEMENT_BYTES = 256 * 1024  # models this large run both TFLM passes at once
RANDOM_CALIBRATION_SAMPLES = 32
RANDOM_CALIBRATION_SEED = 0
AGREEMENT_STAGE = "checking the folded model against the model as given"


def load_calibration(path: str | Path) -> np.ndarray:
    """Read a calibration `.npy` (no pickles)."""
    p = Path(path)
    if not p.exists():
        raise UsageError("no such calibration file", str(path))
    if p.is_dir():
        raise UsageError("is a directory, expected a .npy calibration file", str(path))
    try:
        return np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise UsageError(f"not a readable .npy array ({err})", str(path)) from None


def calibration_inputs(model: Model, data: np.ndarray, source: str = "calibration") -> np.ndarray:
    """Calibration data as int8 model inputs [N, *input shape]. int8 is used as is; float is
    real-valued input, quantized with the input tensor's scale and zero point."""
    if len(model.inputs) != 1:
        raise UsageError(f"{source}: the model has {len(model.inputs)} inputs; calibration "
                         "files are supported for single-input models")
    x = model.tensors[model.inputs[0]]
    want = tuple(x.shape[1:]) if x.shape else ()
    data = np.asarray(data)
    given = list(data.shape)
    described = f"model input '{x.name}' {x.dtype} {list(x.shape)}"
    if data.dtype not in (np.int8, np.float32, np.float64):
        raise UsageError(f"{source}: dtype {data.dtype} does not match {described} (give int8 "
                         "values, or float32 real values to quantize with the input scale)")
    if data.ndim == len(want):
        data = data[None]
    if tuple(data.shape[1:]) != want or data.shape[0] == 0:
        raise UsageError(f"{source}: shape {given} does not match {described} "
                         f"(expected [N, {', '.join(map(str, want))}])")
    if x.dtype == "float32":  # float I/O around an int8 graph: the model quantizes itself
        return data.astype(np.float32)
    if data.dtype == np.int8:
        return data
    if x.quantization is None:
        raise UsageError(f"{source}: float data but {described} has no quantization to apply")
    s, zp = float(x.quantization.scale[0]), int(x.quantization.zero_point[0])
    return np.clip(np.round(data.astype(np.float64) / s) + zp, -128, 127).astype(np.int8)


def tflm_first_outputs(model: bytes, batches: list[np.ndarray]) -> np.ndarray:
    """[N, outputs] int64 (float64 for a float output): the first output of `model` through TFLM
    for each input row, in a forked child: a crash, a hang or TFLM's refusal is a one-line
    `StageError` (fold_model names the model in it)."""
    load_tflm()
    return run_isolated(tflm_first_outputs_in_process, model, batches, stage=AGREEMENT_STAGE,
                        model=None)


def tflm_first_outputs_in_process(model: bytes, batches: list[np.ndarray]) -> np.ndarray:
    """`tflm_first_outputs` in this process (what the forked child runs)."""
    from tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(model)
    rows = []
    for n in range(batches[0].shape[0]):
        for i, b in enumerate(batches):
            interp.set_input(b[n:n + 1].astype(b.dtype), i)
        interp.invoke()
        y = np.array(interp.get_output(0)).reshape(-1)
        rows.append(y.astype(np.float64 if y.dtype.kind == "f" else np.int64))
    return np.stack(rows)


def agreement_inputs(original: Model, calibration: np.ndarray | None):
    """The inputs of the agreement check, one batch per model input, and where they came from."""
    if calibration is None:
        rng = np.random.default_rng(RANDOM_CALIBRATION_SEED)
        shapes = [(RANDOM_CALIBRATION_SAMPLES,) + tuple(original.tensors[i].shape[1:])
                  for i in original.inputs]
        batches = [rng.integers(-128, 128, size=s, dtype=np.int8) if original.tensors[i].dtype != "float32"
                   else _random_real(original, i, s, rng) for i, s in zip(original.inputs, shapes)]
        source = f"{RANDOM_CALIBRATION_SAMPLES} random int8 inputs (seed {RANDOM_CALIBRATION_SEED})"
    else:
        batches = [calibration]
        source = f"{calibration.shape[0]} calibration inputs"
    return batches, source


def _random_real(model: Model, index: int, shape, rng) -> np.ndarray:
    """Float inputs (read by QUANTIZE): the real values of random int8 codes of its output."""
    q = next(model.tensors[op.outputs[0]] for op in model.operators if index in op.inputs)
    s, zp = float(q.quantization.scale[0]), int(q.quantization.zero_point[0])
    return ((rng.integers(-128, 128, size=shape) - zp) * s).astype(np.float32)


def compare_outputs(given: np.ndarray, folded: np.ndarray, source: str,
                    labels: np.ndarray | None = None) -> Agreement:
    diff = np.abs(given - folded)
    acc = given_acc = None
    if labels is not None:
        acc = float(np.mean(folded.argmax(1) == labels))
        given_acc = float(np.mean(given.argmax(1) == labels))
    return Agreement(samples=int(diff.shape[0]), source=source,
                     mean_abs_diff=float(diff.mean()), max_abs_diff=int(np.ceil(diff.max())),
                     top1_agreement=float(np.mean(given.argmax(1) == folded.argmax(1))),
                     classifier=given.shape[1] > 1, accuracy=acc, given_accuracy=given_acc)


def load_labels(path: str | Path, calibration: np.ndarray | None, model: Model,
                calibration_path: str | None = None) -> np.ndarray:
    """`--labels Y.npy`: one integer class per calibration input, each a valid output index."""
    if calibration is None:
        raise UsageError("--labels needs --calibration X.npy (the inputs they label)", str(path))
    y = load_calibration(path)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise UsageError(f"labels must be a 1-D integer array (one class per input), got "
                         f"{y.dtype} {list(y.shape)}", str(path))
    n = calibration.shape[0] if calibration.ndim > len(model.tensors[model.inputs[0]].shape) - 1 \
        else 1
    if y.shape[0] != n:
        raise UsageError(f"{y.shape[0]} labels for {n} calibration inputs"
                         + (f" in {calibration_path}" if calibration_path else ""), str(path))
    classes = int(np.prod(model.tensors[model.outputs[0]].shape[1:]))
    if y.size and (y.min() < 0 or y.max() >= classes):
        raise UsageError(f"labels must be classes 0..{classes - 1} (the model's first output "
                         f"has {classes} values), found {int(y.min())}..{int(y.max())}", str(path))
    return y.astype(np.int64)


def measure_agreement(original: Model, folded: Model,
                      calibration: np.ndarray | None = None) -> Agreement:
    """Run both models through the TFLM interpreter (the bit-exact reference) on the same
    inputs and compare the first output."""
    batches, source = agreement_inputs(original, calibration)
    models = [serialize_model(m) for m in (original, folded)]
    # TFLM runs in forked children: a model it crashes on is one line, not edgepack's death
    stage = AGREEMENT_STAGE
    load_tflm()
    if len(models[0]) >= PARALLEL_AGREEMENT_BYTES and (os.cpu_count() or 1) > 1:
        # TFLM holds the GIL: the two passes run in two children at once
        given = Isolated(tflm_first_outputs_in_process, models[0], batches, stage=stage,
                         model=original.path)
        try:
            folded_out = run_isolated(tflm_first_outputs_in_process, models[1], batches, stage=stage,
                                      model=original.path)
        except BaseException:
            given.cancel()
            raise
        outs = [given.result(), folded_out]
    else:
        outs = run_isolated(tflm_passes, models, batches, stage=stage, model=original.path)
    return compare_outputs(outs[0], outs[1], source)


def tflm_passes(models: list[bytes], batches: list[np.ndarray]) -> list[np.ndarray]:
    """`tflm_first_outputs` of each model, one after the other."""
    return [tflm_first_outputs_in_process(m, batches) for m in models]
