"""Fold weights into layer-shared int8 codebooks ("palette" form).

A clustered network loses its clustering on the way to int8: per-channel quantization (and
batch-norm folding before it) turns one codebook of K real values into a different int8 codebook
in every output channel. Folding finds, per weight tensor, one int8 codebook of at most K values
shared by all output channels plus per-channel scales that absorb the channel gains, so that the
int8 weights are `codebook[index]` and `real = scale[c] * codebook[index]`.

The objective is the squared error against the original real weights `scale_c * (q - zp)`.
It is minimised by alternation, from two starting hypotheses (the lower error wins):

* `layer-wide scale`: the layer was clustered before per-channel quantization, so the real
  values already repeat across channels (start with gain 1 for every channel);
* `per-channel gain`: batch-norm folding multiplied every channel by its own gain, so values
  repeat once each channel is divided by its peak (start with gain = channel peak).

Real phase: fix the gains, cluster `w / g_c` (weight `g_c^2`) with an exact 1-D k-means (dynamic
programme on sorted values with prefix sums, refined by boundary-moving Lloyd); fix the
clusters, solve each gain in closed form; stop when the error no longer falls. Integer phase: map
the codebook onto the full int8 range, then alternate assignment, codebook (rounded weighted
means: the exact integer optimum of a separable quadratic) and per-channel scales until the
error no longer falls.

Zeros: every zero weight stays exactly zero (zero is a codebook entry pinned at 0 whenever the
tensor has a zero). A non-zero weight becomes zero only when zero is its nearest codebook value,
exactly as int8 rounding would do; those are counted in `FoldedTensor.zeros_added`.

Modules: `kmeans` (the exact weighted 1-D k-means), `gains` (per-channel gain recovery),
`tensor` (one weight tensor: real and integer phases, choosing K), `model` (every tensor of a
model, the process pool, biases), `agreement` (calibration inputs and the TFLM end-to-end
check), `results` (the dataclasses returned). The layer-shared count and gain recovery live in `edgepack.codebook` (shared with
`inspect`). Arrows run kmeans -> tensor -> model, and
agreement -> model; results is imported by all.
May import: errors, tflite, inspect, codebook, boards (data). Never: compile (vela), lowering, rendering, run, report, cli.
"""

from .agreement import calibration_inputs, load_calibration, load_labels, measure_agreement
from ..codebook import recover_gains
from .kmeans import cluster_1d, dp_centroids, dp_table, kmeans_dp
from .model import fold_model
from .results import Agreement, Codebook, FoldedTensor, FoldResult, Progress, WeightFold
from .tensor import fold_weights

__all__ = ["Agreement", "Codebook", "FoldResult", "FoldedTensor", "Progress", "WeightFold",
           "calibration_inputs", "cluster_1d", "dp_centroids", "dp_table", "fold_model",
           "fold_weights", "kmeans_dp", "load_calibration", "load_labels", "measure_agreement", "recover_gains"]
