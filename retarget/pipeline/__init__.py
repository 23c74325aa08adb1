"""Pipeline stages and runners (single pair, video)."""

from retarget.pipeline.pair import (
    Models,
    PairResult,
    SourceState,
    TargetBatch,
    prepare_source,
    render_targets,
    run_pair,
    stage_arrays,
)

__all__ = ["Models", "PairResult", "Retargeter", "SourceState", "TargetBatch", "prepare_source", "render_targets",
           "run_pair", "stage_arrays"]


def __getattr__(name: str):
    if name == "Retargeter":  # live streams (retarget/pipeline/live.py), imported when asked for
        from retarget.pipeline.live import Retargeter

        return Retargeter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
