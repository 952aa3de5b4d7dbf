#!/usr/bin/env bash
# The main job in one command, on a fresh Debian/Ubuntu machine: set up (apt + venv), build the
# bundled clustered digits model for the default board (Corstone-300), run the firmware under
# QEMU (and Vela's NPU command stream in edgepack's functional Ethos-U model), and compare with
# TFLM bit for bit. Exits non-zero on any mismatch.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup
OUT=${EDGEPACK_DEMO_DIR:-build/demo-corstone-300}
mkdir -p "$(dirname "$OUT")"
.venv/bin/edgepack build examples/digits_cluster16.tflite --board corstone-300 -o "$OUT" --force
.venv/bin/edgepack run "$OUT"
