"""Whether ``--precision bf16`` can pay off on this machine, and what to run instead when not.

bfloat16 convolutions are only faster than fp32 on CPUs with native bf16 instructions (AVX512-BF16,
or AMX on newer Xeons). Elsewhere oneDNN emulates them and the refiner runs slower than in fp32
(2.8× slower was measured on an AVX-512 VNNI CPU without AVX512-BF16), so on such a CPU ``bf16``
prints one warning line and runs fp32.
"""

from __future__ import annotations

import sys
from pathlib import Path

from retarget.engine.cpu import NATIVE_BF16_FLAGS, cpu_flags, has_native_bf16  # noqa: F401 - re-exported

_warned = {"bf16": False}


#: Instruction-set extensions that decide int8 / bf16 throughput (named in benchmark output when present).
SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_description(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """``CPU <model name>, <n> cores, <extensions of SPEED_FLAGS it has>; load <1-min load average>``
    (what benchmark figures are measured on)."""
    import os
    import platform

    name = platform.processor() or platform.machine()
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name") and ":" in line:
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = cpu_flags(cpuinfo)
    have = [f for f in SPEED_FLAGS if f in flags] or ["none of " + ", ".join(SPEED_FLAGS)]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"CPU {name}, {os.cpu_count()} cores, {' '.join(have)}; load {load:.1f}"


def cpu_has_native_bf16() -> bool:
    """torch's own capability query (AVX512-BF16 or AMX), else the /proc/cpuinfo flags."""
    import torch

    queries = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(callable(query) for query in queries):
        try:
            return any(bool(query()) for query in queries)
        except Exception:  # noqa: BLE001 - a private torch API; fall back to the kernel's flags
            pass
    return has_native_bf16(cpu_flags())


def effective_precision(precision: str, device: str, native_bf16: bool) -> tuple[str, str | None]:
    """``(precision to run, warning or None)``: bf16 on a CPU without native bf16 becomes fp32."""
    if precision != "bf16" or not str(device).startswith("cpu") or native_bf16:
        return precision, None
    return "fp32", ("warning: --precision bf16: this CPU has no native bfloat16 (no AVX512-BF16 or AMX), so bf16 "
                    "would be emulated and slower than fp32; running fp32")


def resolve_precision(precision: str, device: str) -> str:
    """The precision to run; prints :func:`effective_precision`'s warning once per process."""
    if precision != "bf16" or not str(device).startswith("cpu"):
        return precision
    chosen, warning = effective_precision(precision, device, cpu_has_native_bf16())
    if warning and not _warned["bf16"]:
        _warned["bf16"] = True
        print(warning, file=sys.stderr)
    return chosen
