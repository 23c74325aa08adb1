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

__all__ = ["Models", "PairResult", "SourceState", "TargetBatch", "prepare_source", "render_targets",
           "run_pair", "stage_arrays"]
