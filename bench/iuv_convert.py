"""Throughput of DensePose IUV → SMPL-UV conversion (``retarget.uvmap.iuv_to_uv``) on 256×256 batches.

Also reports the one-off table build (empty cache) and the cached load. Run:
``.venv/bin/python bench/iuv_convert.py``.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np


def main(batch: int = 64, repeats: int = 10, size: int = 256) -> None:
    with tempfile.TemporaryDirectory() as cache:
        os.environ["RETARGET_CACHE_DIR"] = cache
        from retarget.uvmap import TABLES, get_lookup, iuv_to_uv
        from retarget.uvmap import cache as uvcache

        for table in TABLES:
            start = time.perf_counter()
            get_lookup(table)
            built = time.perf_counter() - start
            uvcache.clear_memory_cache()
            start = time.perf_counter()
            get_lookup(table)
            loaded = time.perf_counter() - start
            print(f"table {table:9s} build {built:6.2f} s   cached load {loaded * 1000:6.1f} ms")

        rng = np.random.default_rng(0)
        frames = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
        frames[..., 0] %= 25
        for table in TABLES:
            iuv_to_uv(frames[:1], table)  # warm
            start = time.perf_counter()
            for _ in range(repeats):
                iuv_to_uv(frames, table)
            elapsed = time.perf_counter() - start
            print(f"convert {table:9s} {batch * repeats / elapsed:8.0f} frames/s "
                  f"({size}x{size}, batches of {batch})")


if __name__ == "__main__":
    main()
