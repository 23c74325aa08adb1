"""What the CPU is: its feature flags (native bf16?), its model name and how many cores this process may use.

The lowest module of ``retarget.engine`` with :mod:`retarget.engine.runtime` (it imports neither);
:mod:`retarget.pipeline.precision` re-exports the flag helpers.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

#: /proc/cpuinfo flags of native bf16 arithmetic (AVX512-BF16; AMX tiles with bf16).
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def has_native_bf16(flags: set[str] | frozenset[str]) -> bool:
    """True when a set of /proc/cpuinfo flags includes a native bf16 instruction set."""
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU feature flags the kernel reports (empty where there is no /proc/cpuinfo)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (``/proc/cpuinfo``, else :func:`platform.processor`)."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS has one, else ``os.cpu_count()``), ≥ 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """``<model name>, <n> cores, native bf16 | no native bf16``: what the ``auto`` engine choice is cached per."""
    bf16 = "native bf16" if has_native_bf16(cpu_flags(cpuinfo)) else "no native bf16"
    return f"{cpu_name(cpuinfo)}, {usable_cores()} cores, {bf16}"
