"""Load the official ``inpainter.pth`` / ``refiner.pth`` checkpoints unchanged.

Each checkpoint format has one key-renaming function (``convert_official_*_state``) that maps the
official state dict onto our modules; ``build_*_for_state`` infers widths from the tensors; the
``load_official_*`` functions combine the two with strict checking and one-line errors.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from retarget.errors import WeightsError
from retarget.models.inpainter import Inpainter
from retarget.models.refiner import Refiner

StateDict = Mapping[str, torch.Tensor]

_SN_EPS = 1e-12


# ----------------------------------------------------------------------------------------------- inpainter
_INPAINTER_KEY = re.compile(r"^gate(\d+)\.(conv_f|conv_m|norm)\.(.+)$")
_INPAINTER_PART = {"conv_f": "feature_conv", "conv_m": "gate_conv", "norm": "norm"}


def convert_official_inpainter_state(state: StateDict) -> dict[str, torch.Tensor]:
    """Map an official ``GatedHourglass`` state dict onto :class:`Inpainter` keys.

    ``gateK.{conv_f,conv_m,norm}.*`` → ``gates.{K-1}.{feature_conv,gate_conv,norm}.*``,
    ``final.conv1.*`` → ``final.*``. The official file stores every gate a second time as
    ``sequence.<i>.*`` (the same modules in an ``nn.Sequential``); those duplicates are dropped.
    Unknown keys are kept unchanged so that strict loading reports them.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("sequence."):
            continue
        match = _INPAINTER_KEY.match(key)
        if match:
            index, part, rest = match.groups()
            out[f"gates.{int(index) - 1}.{_INPAINTER_PART[part]}.{rest}"] = value
        elif key.startswith("final.conv1."):
            out["final." + key[len("final.conv1."):]] = value
        else:
            out[key] = value
    return out


def build_inpainter_for_state(state: StateDict) -> Inpainter:
    """Build an :class:`Inpainter` whose widths match an official state dict."""
    try:
        first, final = state["gate1.conv_f.weight"], state["final.conv1.weight"]
    except KeyError as exc:
        raise WeightsError(f"not an inpainter checkpoint: key {exc.args[0]!r} is missing") from None
    return Inpainter(ngf=first.shape[0], in_channels=first.shape[1], out_channels=final.shape[0])


# ----------------------------------------------------------------------------------------------- refiner
_REFINER_BLOCK = re.compile(r"^(source_enc|target_enc|res|dec)(\d+)\.conv\.module\.(.+)$")
_REFINER_GROUP = {"source_enc": "source_encoder", "target_enc": "target_encoder", "res": "residual",
                  "dec": "decoder"}


def fold_spectral_norm(weight_bar: torch.Tensor, weight_u: torch.Tensor) -> torch.Tensor:
    """Turn a spectral-normalised weight into a plain one, exactly as the official forward pass does.

    One power iteration from the stored ``u``: ``v = normalize(Wᵀu)``, ``u' = normalize(W v)``,
    ``sigma = u'ᵀ W v``, result ``weight_bar / sigma`` (``W`` = ``weight_bar`` as out × rest,
    ``normalize(x) = x / (‖x‖ + 1e-12)``). The stored ``weight_v`` is not used by that iteration.

    Args:
        weight_bar: ``(out, in, k, k)`` raw weight.
        weight_u: ``(out,)`` stored left singular vector estimate.

    Returns:
        ``(out, in, k, k)`` weight to use in a plain convolution.
    """
    matrix = weight_bar.reshape(weight_bar.shape[0], -1)
    v = matrix.t().mv(weight_u)
    v = v / (v.norm() + _SN_EPS)
    u = matrix.mv(v)
    u = u / (u.norm() + _SN_EPS)
    sigma = u.dot(matrix.mv(v))
    return weight_bar / sigma


def convert_official_refiner_state(state: StateDict) -> dict[str, torch.Tensor]:
    """Map an official ``ResHourglassDeformableSkip`` state dict onto :class:`Refiner` keys.

    ``<group>K.conv.module.{weight_bar,weight_u,weight_v,bias}`` → ``<our group>.{K-1}.conv.{weight,bias}``
    and ``final.conv1.module.*`` → ``final.*``, folding spectral norm with :func:`fold_spectral_norm`.
    Keys that do not fit are kept unchanged so that strict loading reports them.
    """
    prefixes: dict[str, str] = {}
    for key in state:
        match = _REFINER_BLOCK.match(key)
        if match:
            group, index, _ = match.groups()
            prefixes[f"{group}{index}.conv.module."] = f"{_REFINER_GROUP[group]}.{int(index) - 1}.conv."
        elif key.startswith("final.conv1.module."):
            prefixes["final.conv1.module."] = "final."

    out: dict[str, torch.Tensor] = {}
    consumed: set[str] = set()
    for old, new in prefixes.items():
        bar, u, bias = old + "weight_bar", old + "weight_u", old + "bias"
        if bar in state and u in state:
            out[new + "weight"] = fold_spectral_norm(state[bar].float(), state[u].float())
            consumed.update({bar, u, old + "weight_v"})
        if bias in state:
            out[new + "bias"] = state[bias]
            consumed.add(bias)
    for key, value in state.items():
        if key not in consumed:
            out[key] = value
    return out


def build_refiner_for_state(state: StateDict) -> Refiner:
    """Build a :class:`Refiner` whose widths match an official state dict."""
    try:
        source = state["source_enc1.conv.module.weight_bar"]
        target = state["target_enc1.conv.module.weight_bar"]
        final = state["final.conv1.module.weight_bar"]
    except KeyError as exc:
        raise WeightsError(f"not a refiner checkpoint: key {exc.args[0]!r} is missing") from None
    return Refiner(in_source=source.shape[1], in_target=target.shape[1], out_channels=final.shape[0],
                   ngf=source.shape[0])


# ----------------------------------------------------------------------------------------------- common
def load_state_strict(model: nn.Module, state: StateDict, what: str) -> None:
    """``model.load_state_dict`` with one readable error for missing/unexpected/mis-shaped keys."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if keys:
            shown = ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")
            problems.append(f"{label} keys: {shown}")
    if problems:
        raise WeightsError(f"{what} does not match the model: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def inpainter_from_state(state: StateDict, what: str = "inpainter checkpoint") -> Inpainter:
    """Build and load an :class:`Inpainter` from an official state dict (eval mode)."""
    if "source_enc1.conv.module.weight_bar" in state:
        raise WeightsError(f"{what} is a refiner checkpoint, not an inpainter (files swapped?)")
    model = build_inpainter_for_state(state)
    load_state_strict(model, convert_official_inpainter_state(state), what)
    return model.eval()


def refiner_from_state(state: StateDict, what: str = "refiner checkpoint") -> Refiner:
    """Build and load a :class:`Refiner` from an official state dict (eval mode, spectral norm folded)."""
    if "gate1.conv_f.weight" in state:
        raise WeightsError(f"{what} is an inpainter checkpoint, not a refiner (files swapped?)")
    model = build_refiner_for_state(state)
    load_state_strict(model, convert_official_refiner_state(state), what)
    return model.eval()


def load_official_inpainter(path: str | Path) -> Inpainter:
    """Load an official ``inpainter.pth`` (any width) into an :class:`Inpainter`.

    The file is read with ``torch.load(weights_only=True)`` and checked to be an inpainter state dict
    (:func:`retarget.weights.torch_load_checkpoint`); every problem is a one-line :class:`WeightsError`.
    """
    from retarget.weights import torch_load_checkpoint

    return inpainter_from_state(torch_load_checkpoint(path, "inpainter"), str(path))


def load_official_refiner(path: str | Path) -> Refiner:
    """Load an official ``refiner.pth`` (any width) into a :class:`Refiner` (see :func:`load_official_inpainter`)."""
    from retarget.weights import torch_load_checkpoint

    return refiner_from_state(torch_load_checkpoint(path, "refiner"), str(path))
