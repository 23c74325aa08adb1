"""Loading official detectron2 DensePose checkpoints (``.pkl``) into :class:`DensePoseRCNN`.

A model-zoo file is a pickle of ``{"model": {name: numpy.ndarray}, "__author__": ...}`` (latin1).
It is read with the restricted unpickler (:func:`densepose_adapter.safe_pickle.load_restricted_pickle`),
never with plain ``pickle``. :func:`convert_detectron2_densepose_state` is the single place where
detectron2 names become our parameter names (our modules mirror detectron2's, so the mapping is the
identity except for a few non-parameter entries that are dropped); :func:`load_detectron2_state`
loads strictly and explains every mismatch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from densepose_adapter.errors import WeightsError
from densepose_adapter.safe_pickle import load_restricted_pickle, torch_load_plain

# Entries of some detectron2 checkpoints that are not parameters of the inference model.
_DROPPED_SUFFIXES = ("num_batches_tracked",)
_DROPPED_KEYS = ("pixel_mean", "pixel_std")
_DROPPED_PARTS = ("anchor_generator.cell_anchors",)


def _rename(name: str) -> str | None:
    """detectron2 key → our key (``None``: not a parameter of the inference model)."""
    if name in _DROPPED_KEYS or name.endswith(_DROPPED_SUFFIXES):
        return None
    if any(part in name for part in _DROPPED_PARTS):
        return None
    return name


def convert_detectron2_densepose_state(sd: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Map a detectron2 DensePose state dict (numpy arrays or tensors) to our names and tensors.

    Accepts the whole checkpoint dict (then its ``"model"`` entry is used) or the model dict itself.

    Raises:
        WeightsError: not a state dict, or an entry is not a numeric array.
    """
    if isinstance(sd, Mapping) and "model" in sd and isinstance(sd["model"], Mapping):
        sd = sd["model"]
    if not isinstance(sd, Mapping):
        raise WeightsError(f"expected a state dict (name → array), got {type(sd).__name__}")
    out: dict[str, torch.Tensor] = {}
    for name, value in sd.items():
        new = _rename(str(name))
        if new is None:
            continue
        if isinstance(value, torch.Tensor):
            t = value.detach()
        else:
            arr = np.asarray(value)
            if arr.dtype.kind not in "fiu":
                raise WeightsError(f"checkpoint entry {name!r} is not a numeric array ({arr.dtype})")
            t = torch.from_numpy(np.ascontiguousarray(arr))
        out[new] = t.float() if t.is_floating_point() else t
    return out


def _short(keys: list[str], n: int = 6) -> str:
    return ", ".join(keys[:n]) + (f" … (+{len(keys) - n} more)" if len(keys) > n else "")


def load_detectron2_state(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint"
                          ) -> None:
    """Strictly copy ``state`` (already converted) into ``model``.

    Raises:
        WeightsError: missing keys, unexpected keys or shape mismatches, with the first offenders
        named and a hint when the file looks like another depth / width than the config.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape = [f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({_short(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_short(unexpected)})")
        if shape:
            parts.append(f"{len(shape)} with other shapes ({_short(shape, 3)})")
        hint = ""
        if any(".res4.6." in k for k in unexpected):
            hint = " — the file looks like a ResNet-101 model: use the r101 config"
        elif any(".res4.6." in k for k in missing) and not any(".res4.6." in k for k in state):
            hint = " — the file looks like a ResNet-50 model: use the r50 config"
        elif shape:
            hint = " — the widths differ from the config: use the config the file was trained with"
        raise WeightsError(f"{source}: does not match the DensePose model: " + "; ".join(parts) + hint)
    with torch.no_grad():
        for k, v in own.items():
            v.copy_(state[k].to(v.dtype))


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a detectron2 ``.pkl`` (restricted unpickler) or a torch ``.pth`` state dict (weights only)
    and return converted tensors."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    if path.suffix.lower() in (".pth", ".pt"):
        data = torch_load_plain(path)  # a code-running file is refused naming the global it references
    else:
        data = load_restricted_pickle(path)
    if not isinstance(data, Mapping):
        raise WeightsError(f"{path}: expected a dict checkpoint, got {type(data).__name__}")
    if "model" not in data and not any(isinstance(v, (np.ndarray, torch.Tensor)) for v in data.values()):
        raise WeightsError(f"{path}: no 'model' entry — not a detectron2 checkpoint")
    try:
        return convert_detectron2_densepose_state(data)
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None
