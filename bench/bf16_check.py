"""Refiner per-frame time in fp32 and in bf16 autocast on this CPU (CPU seconds, alternating runs).

    .venv/bin/python bench/bf16_check.py

Full-size models (random weights), one 64x64 target. CPU seconds (time.process_time) rather than wall
time, so that other jobs on a shared machine distort the ratio less. bf16 is forced here even where
`retarget` would fall back to fp32 (retarget/pipeline/precision.py): this measures what the fallback
avoids. docs/performance.md records a run.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import time  # noqa: E402

import torch  # noqa: E402

from retarget.models import Inpainter, Refiner  # noqa: E402
from retarget.pipeline import Models, prepare_source, render_targets  # noqa: E402
from retarget.pipeline.precision import cpu_flags, cpu_has_native_bf16  # noqa: E402

torch.set_num_threads(2)
torch.manual_seed(0)
models = Models(Inpainter(), Refiner()).to("cpu")
S = 64
img = torch.rand(1, 3, S, S)
uv = torch.rand(1, 2, S, S) * 2 - 1
state = prepare_source(img, uv, models)
tgt = torch.rand(1, 2, S, S) * 2 - 1
res = {}
for prec in ("fp32", "bf16", "fp32", "bf16"):
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if prec == "bf16" else torch.autocast("cpu", enabled=False)
    with torch.no_grad(), ctx:
        t = time.process_time()
        render_targets(state, tgt, models)
        dt = time.process_time() - t
    res.setdefault(prec, []).append(dt)
    print(prec, round(dt, 3), flush=True)
best = {k: round(min(v), 3) for k, v in res.items()}
print(best, "ratio bf16/fp32 (min)", round(best["bf16"] / best["fp32"], 2))
flags = " ".join(sorted(f for f in cpu_flags() if "avx512" in f or "amx" in f)) or "no AVX-512/AMX flags"
print("native bf16:", cpu_has_native_bf16(), "|", flags)
