#!/usr/bin/env bash
# The main job in one command, on a fresh Debian/Ubuntu machine: set up (apt + venv), build the
# bundled clustered digits model for the default board (Corstone-300: the firmware drives the
# Ethos-U55), run the firmware ELF under QEMU with the NPU co-simulated (edgepack's functional
# Ethos-U model answers the firmware's driver), and compare with the golden outputs bit for bit.
# Exits non-zero on any mismatch.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup
OUT=${EDGEPACK_DEMO_DIR:-build/demo-corstone-300}
mkdir -p "$(dirname "$OUT")"
.venv/bin/edgepack build examples/digits_cluster16.tflite --board corstone-300 -o "$OUT" --force
.venv/bin/edgepack run "$OUT"
