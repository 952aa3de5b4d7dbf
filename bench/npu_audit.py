"""The wide NPU-vs-TFLM audit: N random single-operator models per operator kind and MAC
configuration, compiled by Vela 5.2, run in edgepack's functional Ethos-U model and in TFLM.

    PYTHONPATH=. python bench/npu_audit.py [N per kind and accelerator, default 4] [--kinds A,B] [--json OUT]

Prints, per kind: configurations tried (on the NPU / left on the CPU by Vela / not executable by
the functional model), how many differ from TFLM, the largest difference in quantized steps, and
the features of the differing ones; then whether edgepack.npu.divergence's table predicts every
outcome (a kind outside a divergent class must never differ; only "not modelled" kinds may be
refused by the functional model). Split kernels, dilations and strides tried are counted too.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict

import numpy as np

from edgepack.npu.divergence import BY_KIND, NOT_MODELLED, classify
from tests.npu_audit import ACCELERATORS, KINDS, random_case, run_case


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv and not argv[0].startswith("-") else 4
    out = argv[argv.index("--json") + 1] if "--json" in argv else None
    kinds = argv[argv.index("--kinds") + 1].split(",") if "--kinds" in argv else KINDS
    t0 = time.time()
    rows, wrong = [], []
    for kind in kinds:
        rng = np.random.default_rng(sum(map(ord, kind)) * 7919)
        for accel in ACCELERATORS:
            for _ in range(n):
                case = random_case(kind, rng)
                r = run_case(case, accel, n_inputs=16)
                rows.append(r)
                if r.on_npu and r.differing >= 0 and r.differing and classify(kind, r.features) is None:
                    wrong.append(r)  # a bit-exact class differed
                if r.on_npu and r.differing < 0 and BY_KIND[kind].status != NOT_MODELLED:
                    wrong.append(r)  # the model refused a kind the table says it executes
    per = defaultdict(list)
    for r in rows:
        per[r.kind].append(r)
    print(f"{'kind':24} {'tried':>5} {'npu':>4} {'cpu':>4} {'unmod':>5} {'differ':>6} {'max':>4}  differing when")
    for kind in kinds:
        rs = per[kind]
        npu = [r for r in rs if r.on_npu and r.differing >= 0]
        diff = [r for r in npu if r.differing]
        when = sorted({json.dumps({k: v for k, v in r.features.items() if k in ("equal_quantization", "activation",
                                                                                   "broadcast", "equal_input_scales")})
                       for r in diff})
        print(f"{kind:24} {len(rs):5} {len(npu):4} {sum(not r.on_npu for r in rs):4} "
              f"{sum(r.on_npu and r.differing < 0 for r in rs):5} {len(diff):6} "
              f"{max((r.max_difference for r in diff), default=0):4}  {'; '.join(when)}")
    convs = [r for r in rows if r.kind in ("CONV_2D", "DEPTHWISE_CONV_2D") and r.on_npu]
    print(f"convolutions on the NPU: {len(convs)}, with kernels Vela splits (dilated extent > 8): "
          f"{sum(bool(r.features.get('split_kernel')) for r in convs)}, dilation 2: "
          f"{sum(r.features.get('dilation') == 2 for r in convs)}, a stride of 3: "
          f"{sum(3 in r.features.get('stride', ()) for r in convs)}")
    print(f"{len(rows)} configurations on {', '.join(ACCELERATORS)} in {time.time() - t0:.0f} s; "
          f"outcomes the divergence table does not predict: {len(wrong)}")
    for r in wrong:
        print("  unpredicted:", r)
    if out:
        with open(out, "w") as fh:
            json.dump([vars(r) for r in rows], fh, default=str, indent=1)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
