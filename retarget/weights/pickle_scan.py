"""Which globals a pickle (or a torch checkpoint) references: the implementation lives in the
standalone DensePose package (:mod:`densepose_adapter.pickle_scan`), whose checkpoint reader uses it;
re-exported here for retarget's weights commands."""

from densepose_adapter.pickle_scan import checkpoint_globals, first_unsafe_global, scan_pickle_stream

__all__ = ["checkpoint_globals", "first_unsafe_global", "scan_pickle_stream"]
