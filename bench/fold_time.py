"""How long folding takes, and how the 1-D k-means inside compares with the PyPI libraries.

    .venv/bin/python bench/fold_time.py [--quick]

Prints four markdown tables:

0. `fold_model` on whole models (the digits fixtures and `tests/mobilenet_model.py`'s full-size
   MobileNetV2), with the default agreement check: one process (`workers=1`, the baseline,
   measured in the same run) against the default (a pool of forked processes on every core for
   models with at least POOL_MIN_TENSORS tensors and POOL_MIN_WEIGHTS weights; the TFLM pass of
   the model as given runs in the pool meanwhile), and that both give the same bytes.
1. A MobileNetV2-shaped network (alpha 0.35, 10 classes: 53 weight tensors, ~0.4 M weights),
   every layer clustered to 16 values with a batch-norm gain per channel, then quantized per
   channel: total fold time (`edgepack.fold.fold_weights` on every tensor) and the worst SQNR.
2. Fold time against weight count, 10^4 to 10^7, for one such layer; the baseline measured in
   the same run is one exact k-means of the same weights with `kmeans1d` (O(kn), C++): what a
   single clustering costs, so the ratio is what the alternation, the two hypotheses and the
   int8 refinement add.
3. The 1-D clustering on its own (K = 16, the layer's real weights): ours (DP on <= 512 value
   groups + boundary-moving Lloyd) against `kmeans1d` and `ckmeans` (both exact, unweighted) and
   plain Lloyd from quantile seeds, on the digits model's layers and on synthetic ones.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import edgepack.fold.model as fold_stage  # noqa: E402
from edgepack.fold import cluster_1d, fold_model, fold_weights  # noqa: E402
from edgepack.tflite import read_model  # noqa: E402


def clustered_bn_layer(rng, channels: int, per_channel: int, k: int = 16, window: bool = False):
    """int8 [C, N] weights of a layer clustered to k values (more weights near zero, as trained
    weights are), times a log-normal gain per channel (batch-norm folding), quantized per
    channel; and the scales. With `window` each channel uses only a window of the codebook
    (so large channels do not all contain the extremes and are not palette-ready already)."""
    codebook = np.sort(rng.normal(0, 1, k))
    p = np.exp(-codebook ** 2)
    labels = rng.choice(k, size=(channels, per_channel), p=p / p.sum())
    if window:
        lo = rng.integers(0, k // 4, channels)[:, None]
        hi = k - 1 - rng.integers(0, k // 4, channels)[:, None]
        labels = np.clip(labels, lo, hi)
    real = codebook[labels] * rng.lognormal(0, 0.5, channels)[:, None]
    peak = np.abs(real).max(axis=1)
    scales = (peak / 127).astype(np.float32)
    return np.round(real / scales[:, None]).astype(np.int8), scales


def mobilenet_v2_shapes(alpha: float = 0.35, classes: int = 10) -> list[tuple[int, int]]:
    """(output channels, weights per channel) of MobileNetV2's weight tensors."""
    def ch(c):
        return max(8, int(c * alpha + 4) // 8 * 8)

    shapes = [(ch(32), 3 * 3 * 3)]
    cin = ch(32)
    for t, c, n, _ in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for _ in range(n):
            hidden = cin * t
            if t != 1:
                shapes.append((hidden, cin))  # 1x1 expand
            shapes.append((hidden, 9))  # depthwise 3x3: one channel per filter
            shapes.append((ch(c), hidden))  # 1x1 project
            cin = ch(c)
    shapes.append((1280, cin))
    shapes.append((classes, 1280))
    return shapes


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def timed_cpu(fn, *args):
    """(result, wall seconds, CPU seconds of this process: robust to a busy machine)."""
    t, c = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - t, time.process_time() - c


def sqnr(w, centroids) -> float:
    c = np.sort(np.asarray(centroids, np.float64))
    idx = np.searchsorted((c[:-1] + c[1:]) / 2, w) if c.size > 1 else 0
    return 10 * np.log10(np.sum(w * w) / max(np.sum((w - c[idx]) ** 2), 1e-300))


def lloyd_quantile(w, k, rounds=100):
    c = np.quantile(w, (np.arange(k) + 0.5) / k)
    for _ in range(rounds):
        idx = np.searchsorted((c[:-1] + c[1:]) / 2, w)
        sums = np.bincount(idx, weights=w, minlength=k)
        counts = np.bincount(idx, minlength=k)
        new = np.where(counts > 0, sums / np.maximum(counts, 1), c)
        if np.allclose(new, c):
            break
        c = np.sort(new)
    return c


def best_of(n, fn, *args, **kw):
    """(result, lowest wall seconds of n runs): the machine is shared, the minimum is steadiest."""
    out, best = None, float("inf")
    for _ in range(n):
        t = time.perf_counter()
        out = fn(*args, **kw)
        best = min(best, time.perf_counter() - t)
    return out, best


def models_table(repeats: int) -> None:
    import os

    from tests.mobilenet_model import mobilenet_v2

    models = [(name, read_model(ROOT / "tests" / "fixtures" / f"{name}.tflite"))
              for name in ("digits_a_baseline_int8", "digits_b_cluster16_int8",
                           "digits_b_cluster16_int8_pertensor",
                           "digits_c_prune50_cluster16_sp_int8")]
    from edgepack.tflite import parse_model
    models.append(("MobileNetV2 (alpha 0.35, 96x96)",
                   parse_model(mobilenet_v2().tflite, "mobilenet_v2.tflite")))
    print(f"### fold_model, `--clusters auto`, agreement check included ({os.cpu_count()} cores, "
          f"best of {repeats})\n")
    print("| model | weight tensors | weights | baseline: one process | default | workers | "
          "speed-up | same bytes |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, model in models:
        jobs = [(op, t) for op, t in model.weight_tensors() if t.dtype == "int8"]
        one, t_one = best_of(repeats, fold_model, model, "auto", workers=1)
        pool, t_pool = best_of(repeats, fold_model, model, "auto")
        workers = fold_stage._pool_workers(None, jobs)
        same = one.model.sha256 == pool.model.sha256 and one.to_json() == pool.to_json()
        print(f"| {name} | {len(jobs)} | {sum(t.data.size for _, t in jobs):,} | {t_one:.2f} s | "
              f"{t_pool:.2f} s | {workers} | {t_one / t_pool:.2f}x | {'yes' if same else 'NO'} |")
    print()


def mobilenet_table(rng) -> None:
    shapes = mobilenet_v2_shapes()
    layers = [clustered_bn_layer(rng, c, n) for c, n in shapes]
    total = sum(q.size for q, _ in layers)
    folds, seconds, cpu = timed_cpu(
        lambda: [fold_weights(q, s, 16, per_channel=True) for q, s in layers])
    baseline = time.perf_counter()
    for q, s in layers:
        np.round(q * s[:, None].astype(np.float64) / s[:, None])  # one pass over the weights
    baseline = time.perf_counter() - baseline
    worst = min(f.sqnr_db for f in folds)
    gain = sum(f.hypothesis == "per-channel gain" for f in folds)
    print("### MobileNetV2-shaped network (alpha 0.35, 10 classes), K = 16\n")
    lossy = [f.sqnr_db for f in folds if np.isfinite(f.sqnr_db)]
    mean = float(np.mean(lossy)) if lossy else float("inf")
    lossless = len(folds) - len(lossy)
    print("| weight tensors | weights | fold wall time | fold CPU time | "
          "baseline: one numpy pass over the weights | worst / mean layer SQNR | "
          "layers folded as per-channel gain |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {len(layers)} | {total:,} | {seconds:.2f} s | {cpu:.2f} s | "
          f"{1000 * baseline:.1f} ms | {worst:.1f} / {mean:.1f} dB"
          f"{f' ({lossless} lossless)' if lossless else ''} | {gain} of {len(layers)} |\n")


def scaling_table(rng, sizes) -> None:
    import kmeans1d

    print("### Fold time against weight count (one BN-folded clustered layer, each channel "
          "using a window of the codebook, K = 16)\n")
    print("| weights | channels | fold wall | fold CPU | baseline: one kmeans1d clustering "
          "(wall) | fold / baseline | fold SQNR |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for n in sizes:
        channels = max(16, int(round(np.sqrt(n) / 4)))
        q, s = clustered_bn_layer(rng, channels, n // channels, window=True)
        w = (q * s[:, None].astype(np.float64)).ravel()
        fold, t_fold, c_fold = timed_cpu(fold_weights, q, s, 16, None, True)
        _, t_base = timed(kmeans1d.cluster, w, 16)
        print(f"| {q.size:,} | {channels} | {t_fold:.3f} s | {c_fold:.3f} s | {t_base:.3f} s | "
              f"{t_fold / t_base:.2f}x | {fold.sqnr_db:.1f} dB ({fold.hypothesis}) |")
    print()


def kmeans_table(rng) -> None:
    import ckmeans
    import kmeans1d

    cases = []
    for name in ("digits_b_cluster16_int8", "digits_c_prune50_cluster16_sp_int8"):
        model = read_model(ROOT / "tests" / "fixtures" / f"{name}.tflite")
        for op, t in model.weight_tensors():
            q = t.data.reshape(t.shape[0], -1).astype(np.float64)
            cases.append((f"{name.split('_')[1]} {t.name.split('/')[1]}",
                          (q * t.quantization.scale[:, None]).ravel()))
    for n in (10_000, 100_000):
        q, s = clustered_bn_layer(rng, 64, n // 64)
        cases.append((f"synthetic BN {n:,}", (q * s[:, None].astype(np.float64)).ravel()))
    cases.append(("gaussian 100,000", rng.normal(size=100_000)))

    engines = {
        "edgepack (DP + Lloyd)": lambda w: cluster_1d(w, np.ones(1), 16),
        "kmeans1d (exact)": lambda w: kmeans1d.cluster(w, 16)[1],
        "ckmeans (exact)": lambda w: ckmeans.ckmeans(w, 16),
        "Lloyd, quantile seeds": lambda w: lloyd_quantile(w, 16),
    }
    print("### 1-D k-means, K = 16, on a layer's real weights: SQNR dB / time\n")
    print("| layer | weights | " + " | ".join(engines) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in engines) + " |")
    for name, w in cases:
        cells = []
        for fn in engines.values():
            out, t = timed(fn, w)
            centroids = _centroids(out, w)
            cells.append(f"{sqnr(w, centroids):.2f} / {1000 * t:.1f} ms")
        print(f"| {name} | {w.size:,} | " + " | ".join(cells) + " |")
    print("\n(kmeans1d and ckmeans take no per-point weights, which the per-channel-gain "
          "hypothesis needs (weight = gain^2); edgepack's own runs weighted.)\n")


def _centroids(out, w):
    """Centroids from whatever a library returns (centroids, or labels)."""
    if hasattr(out, "labels") or (isinstance(out, tuple) and len(out) == 2):
        labels = np.asarray(out[0] if isinstance(out, tuple) else out.labels)
        return np.array([w[labels == c].mean() for c in np.unique(labels)])
    arr = np.asarray(out, dtype=object)
    if arr.dtype == object and arr.size and hasattr(arr.flat[0], "__len__"):
        return np.array([np.mean(g) for g in out if len(g)])  # groups of values
    return np.asarray(out, np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="stop the scaling table at 10^6")
    parser.add_argument("--repeats", type=int, default=3, help="runs per whole-model timing")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    models_table(args.repeats)
    mobilenet_table(rng)
    scaling_table(rng, [10 ** 4, 10 ** 5, 10 ** 6] + ([] if args.quick else [10 ** 7]))
    kmeans_table(rng)


if __name__ == "__main__":
    main()
