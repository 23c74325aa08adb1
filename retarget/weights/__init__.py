"""Model weights: the manifest, fetch / import / verify, safe loading, and resolution for commands.

What commands call:

- :func:`resolve_coordinpaint_checkpoints` (``--checkpoint-dir`` or installed, else ``None``) and
  :func:`warn_weight_free_once`;
- :func:`resolve_densepose_weights` (``--densepose-weights`` or installed, else a one-line error);
- :func:`torch_load_checkpoint` / :func:`load_densepose_checkpoint` for safe reading.

Where files live: :func:`retarget.paths.weights_dir` (``$RETARGET_HOME/weights``). See docs/weights.md.
"""

from retarget.weights.fetch import FetchResult, download, fetch_model
from retarget.weights.importer import ImportOutcome, import_weights
from retarget.weights.manifest import ArchiveEntry, Manifest, ModelEntry, load_manifest, parse_manifest
from retarget.weights.recognize import (
    identify_checkpoint,
    load_densepose_checkpoint,
    torch_load_checkpoint,
)
from retarget.weights.resolve import (
    densepose_model_name,
    resolve_coordinpaint_checkpoints,
    resolve_densepose_weights,
    warn_weight_free_once,
)
from retarget.weights.store import ModelStatus, all_statuses, hash_file, model_status

__all__ = [
    "ArchiveEntry",
    "FetchResult",
    "ImportOutcome",
    "Manifest",
    "ModelEntry",
    "ModelStatus",
    "all_statuses",
    "densepose_model_name",
    "download",
    "fetch_model",
    "hash_file",
    "identify_checkpoint",
    "import_weights",
    "load_densepose_checkpoint",
    "load_manifest",
    "model_status",
    "parse_manifest",
    "resolve_coordinpaint_checkpoints",
    "resolve_densepose_weights",
    "torch_load_checkpoint",
    "warn_weight_free_once",
]
