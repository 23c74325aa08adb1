"""Restricted unpickling of detectron2 ``.pkl`` checkpoints: the implementation lives in the standalone
DensePose package (:mod:`densepose_adapter.safe_pickle`), which reads the same files; re-exported here."""

from densepose_adapter.safe_pickle import UnsafePickleError, load_restricted_pickle, loads_restricted_pickle

__all__ = ["UnsafePickleError", "load_restricted_pickle", "loads_restricted_pickle"]
