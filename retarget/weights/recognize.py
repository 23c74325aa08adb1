"""Safe checkpoint reading and recognition of a checkpoint by its content.

- ``.pth`` files are read with ``torch.load(weights_only=True)``: tensors and plain containers only,
  nothing is executed.
- detectron2 ``.pkl`` files are read with :func:`densepose_adapter.safe_pickle.load_restricted_pickle`;
  both loaders live in the standalone DensePose package, which reads the same files.

Recognition (what slot a file belongs to) looks at state-dict keys, never at file names:

- inpainter: ``gate1.conv_f.weight`` and ``sequence.0.conv_f.weight`` (the official GatedHourglass
  registers each gated conv twice);
- refiner: keys ending ``.conv.module.weight_bar`` (spectral-normalised convs), e.g.
  ``source_enc1.conv.module.weight_bar``;
- DensePose R-CNN: ``{"model": {...}}`` with ``roi_heads.densepose_predictor.*`` keys; ResNet-50 has 6
  ``backbone.bottom_up.res4.<i>`` blocks, ResNet-101 has 23.

Every failure is a one-line :class:`WeightsError`.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from densepose_adapter.safe_pickle import load_restricted_pickle, torch_load_plain
from retarget.errors import WeightsError

INPAINTER = "coordinpaint-inpainter"
REFINER = "coordinpaint-refiner"
DENSEPOSE_R50 = "densepose-r50-fpn-s1x"
DENSEPOSE_R101 = "densepose-r101-fpn-s1x"

_SLOT_NAMES = {"inpainter": INPAINTER, "refiner": REFINER}
_RES4_BLOCK = re.compile(r"^backbone\.bottom_up\.res4\.(\d+)\.")
_RES4_BLOCKS = {6: DENSEPOSE_R50, 23: DENSEPOSE_R101}


# ---------------------------------------------------------------------------------------------
# classification of loaded contents


def classify_state_dict(keys: Any) -> str | None:
    """``coordinpaint-inpainter``, ``coordinpaint-refiner`` or ``None`` for a collection of keys."""
    keys = {k for k in keys if isinstance(k, str)}
    if "gate1.conv_f.weight" in keys and "sequence.0.conv_f.weight" in keys:
        return INPAINTER
    if any(k.endswith(".conv.module.weight_bar") for k in keys) and any(
        k.startswith("source_enc") for k in keys
    ):
        return REFINER
    return None


def classify_densepose(checkpoint: Any) -> str | None:
    """``densepose-r50-fpn-s1x``, ``densepose-r101-fpn-s1x`` or ``None`` for an unpickled object."""
    model = checkpoint.get("model") if isinstance(checkpoint, Mapping) else None
    if not isinstance(model, Mapping):
        return None
    keys = [k for k in model if isinstance(k, str)]
    if not any(k.startswith("roi_heads.densepose_predictor.") for k in keys):
        return None
    blocks = {int(m.group(1)) for k in keys if (m := _RES4_BLOCK.match(k))}
    return _RES4_BLOCKS.get(len(blocks))


# ---------------------------------------------------------------------------------------------
# safe loading


def _as_state_dict(obj: Any, path: Path) -> dict:
    import torch

    if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for wrapper in ("state_dict", "model"):  # common {"state_dict": sd} wrappers
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not obj or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise WeightsError(f"{path}: not a state dict (expected a mapping of names to tensors)")
    return dict(obj)


def torch_load_checkpoint(path: str | Path, expected: str) -> dict:
    """Load an official coordinate-inpainting checkpoint safely and check it fits its slot.

    Args:
        path: a ``.pth`` file written by ``torch.save(model.state_dict())``.
        expected: ``"inpainter"`` or ``"refiner"``.

    Returns:
        The state dict (name → CPU tensor), keys as in the official file.

    Raises:
        WeightsError: one line, for a missing, unreadable, truncated or corrupt file, a file that is not
            a plain state dict (anything needing code to unpickle is refused), or a checkpoint of the
            other network (e.g. ``refiner.pth`` given as the inpainter).
    """
    if expected not in _SLOT_NAMES:
        raise ValueError(f"expected must be 'inpainter' or 'refiner', not {expected!r}")
    path = Path(path)
    state = _as_state_dict(torch_load_plain(path), path)
    kind = classify_state_dict(state)
    if kind != _SLOT_NAMES[expected]:
        what = {INPAINTER: "an inpainter", REFINER: "a refiner"}.get(kind, "not a coordinate-inpainting")
        raise WeightsError(f"{path}: {what} checkpoint, but the {expected} was expected "
                           f"(files swapped or wrong file?)")
    return state


def load_densepose_checkpoint(path: str | Path) -> tuple[dict, str]:
    """Read a detectron2 DensePose ``.pkl`` with the restricted unpickler.

    Returns:
        ``(weights, name)``: ``weights`` maps parameter names to numpy arrays (``checkpoint["model"]``);
        ``name`` is ``densepose-r50-fpn-s1x`` or ``densepose-r101-fpn-s1x``.

    Raises:
        WeightsError: missing/corrupt/truncated file, a pickle that references anything beyond numpy
            arrays and plain containers (refused before anything runs), or not a DensePose R-CNN.
    """
    path = Path(path)
    if path.is_dir():
        raise WeightsError(f"{path}: is a folder, not a checkpoint file")
    if not path.exists():
        raise WeightsError(f"{path}: file not found")
    checkpoint = load_restricted_pickle(path)
    name = classify_densepose(checkpoint)
    if name is None:
        raise WeightsError(f"{path}: not a DensePose R-CNN (R50/R101 FPN) checkpoint")
    return dict(checkpoint["model"]), name


# ---------------------------------------------------------------------------------------------
# sniffing a file of unknown kind


def _is_torch_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False
    return any(n.endswith("/data.pkl") or n == "data.pkl" for n in names) and len(
        {n.split("/", 1)[0] for n in names}) == 1


COMPRESSED = {"gzip": b"\x1f\x8b", "bz2": b"BZh", "xz": b"\xfd7zXZ\x00"}
ARCHIVE_FORMATS = ("tar", "zip", *COMPRESSED)


def is_tar_header(block: bytes) -> bool:
    """Whether ``block`` (the first 512 bytes of a file) is a tar header: a valid header checksum, and
    the ``ustar`` magic at offset 257 or, for pre-POSIX tars, a member name."""
    if len(block) < 512:
        return False
    field = block[148:156].split(b"\0", 1)[0].strip()
    try:
        stored = int(field, 8)
    except ValueError:
        return False
    rest = block[:148] + b" " * 8 + block[156:512]
    if stored not in (sum(rest), sum(b - 256 if b > 127 else b for b in rest)):
        return False
    return block[257:262] == b"ustar" or block[0] != 0


def sniff_format(path: Path) -> str | None:
    """What the bytes of ``path`` are (never its name), tested in a fixed order that members cannot fool.

    ``gzip`` / ``bz2`` / ``xz`` (compressed stream magic), ``tar`` (a valid tar header at offset 0,
    tested before any zip structure: a tar of torch checkpoints holds zip directories of its members),
    ``torch`` (a zip with one folder holding ``data.pkl``) or ``zip`` (local header at offset 0, else a
    zip directory at the end, as self-extracting archives have), ``torch-or-pickle`` (pickle protocol
    2+ opcode), or ``None``.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    for kind, magic in COMPRESSED.items():
        if head.startswith(magic):
            return kind
    if is_tar_header(head):
        return "tar"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "torch" if _is_torch_zip(path) else "zip"
    if head[:1] == b"\x80":
        # legacy torch.save files are pickles too: they start with a magic number pickle
        return "torch-or-pickle"
    try:
        if zipfile.is_zipfile(path):
            return "zip"
    except OSError:
        return None
    return None


TORCH_SUFFIXES = (".pth", ".pt")
PICKLE_SUFFIXES = (".pkl", ".pickle")


def identify_checkpoint(path: str | Path, suffix: str | None = None) -> str | None:
    """The manifest name a checkpoint file is, judged by its content; ``None`` if not recognised.

    ``.pth``/``.pt`` (or torch zip content) is read with ``torch.load(weights_only=True)``; ``.pkl``
    (or other pickle content) with the restricted unpickler. ``suffix`` overrides the file's own
    (e.g. for a ``.part`` download).

    Raises:
        WeightsError: the file is corrupt, truncated or unsafe (one line).
    """
    path = Path(path)
    suffix = (suffix if suffix is not None else path.suffix).lower()
    kind = sniff_format(path)
    if suffix in TORCH_SUFFIXES or kind == "torch":
        return classify_state_dict(_as_state_dict(torch_load_plain(path), path))
    if suffix in PICKLE_SUFFIXES:
        return classify_densepose(load_restricted_pickle(path))
    if kind == "torch-or-pickle":
        try:
            state = torch_load_plain(path)
        except WeightsError:
            return classify_densepose(load_restricted_pickle(path))
        return classify_state_dict(_as_state_dict(state, path))
    return None


def official_shape_mismatch(weights: Mapping[str, Any], name: str) -> str:
    """``""`` when a DensePose checkpoint has the tensor shapes of the official model ``name``, else what
    differs (e.g. a small test model or a retrained variant with other widths)."""
    import torch

    from densepose_adapter.rcnn import DensePoseRCNN, preset

    with torch.device("meta"):
        model = DensePoseRCNN(preset("r101" if name == DENSEPOSE_R101 else "r50"))
    for key, tensor in model.state_dict().items():
        value = weights.get(key)
        shape = tuple(getattr(value, "shape", ()))
        if value is not None and shape != tuple(tensor.shape):
            return f"{key} has shape {shape}, the official model {tuple(tensor.shape)}"
    return ""
