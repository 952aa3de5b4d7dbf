"""End-to-end accuracy of folded digits models on tests/fixtures/digits_test.npz (360 images),
against the same models unfolded, measured in the same run.

    .venv/bin/python bench/accuracy.py

LiteRT runs the int8 models (fast; TFLM is the bit-exact reference elsewhere, not needed for an
accuracy figure). Inputs are the float test images quantized with the model's input scale and
zero point. Folding uses `fold_model` as `edgepack build` does ("auto": each tensor's own
clustering; dense tensors stay dense) and, for the dense baseline, forced K = 16 and K = 4 to show
what palette form costs a model that was never clustered.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgepack.fold import fold_model  # noqa: E402
from edgepack.tflite import read_model, serialize_model  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
MODELS = ["digits_a_baseline_int8", "digits_b_cluster16_int8",
          "digits_b_cluster16_int8_pertensor", "digits_c_prune50_cluster16_sp_int8"]
FORCED = {"digits_a_baseline_int8": [16, 4]}


def predict(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    """Arg-max class of every image, one invoke per image (the model's batch is 1)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model_bytes)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    scale, zp = inp["quantization"]
    q = np.clip(np.round(x / scale) + zp, -128, 127).astype(inp["dtype"])
    pred = np.empty(len(q), np.int64)
    for i in range(len(q)):
        it.set_tensor(inp["index"], q[i:i + 1])
        it.invoke()
        pred[i] = int(np.argmax(it.get_tensor(out["index"])[0]))
    return pred


def main() -> int:
    data = np.load(FIXTURES / "digits_test.npz")
    x, y = data["x"].astype(np.float32), data["y"]
    t0 = time.perf_counter()
    print(f"### Accuracy on digits_test.npz ({len(y)} images, LiteRT)\n")
    print("| model | fold | unfolded accuracy (baseline) | folded accuracy | change "
          "| same prediction | weight SQNR min (dB) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name in MODELS:
        model = read_model(FIXTURES / f"{name}.tflite")
        base = predict(serialize_model(model), x)
        base_acc = float(np.mean(base == y))
        for clusters in ["auto"] + FORCED.get(name, []):
            fr = fold_model(model, clusters=clusters, check_agreement=False)
            pred = predict(serialize_model(fr.model), x)
            acc = float(np.mean(pred == y))
            folded = [t for t in fr.tensors if t.folded]
            sqnr = min((t.sqnr_db for t in folded), default=float("inf"))
            how = ("auto: " + (f"{len(folded)}/{len(fr.tensors)} tensors, K<={max(t.clusters for t in folded)}"
                               if folded else "all dense")) if clusters == "auto" else f"K={clusters}"
            print(f"| {name} | {how} | {base_acc:.4f} | {acc:.4f} | {100 * (acc - base_acc):+.2f} pt "
                  f"| {np.mean(pred == base):.4f} | "
                  f"{'lossless' if sqnr == float('inf') else f'{sqnr:.1f}'} |")
    print(f"\n({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
