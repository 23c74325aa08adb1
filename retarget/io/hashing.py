"""Content hashes of files: the implementation lives in the standalone DensePose package
(:mod:`densepose_adapter.hashing`), which needs it for its cache keys; re-exported here for retarget."""

from densepose_adapter.hashing import cached_file_sha256, file_sha256

__all__ = ["cached_file_sha256", "file_sha256"]
