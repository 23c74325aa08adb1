"""Finding the weights a command should use: explicit options first, then the installed ones.

Commands call these instead of looking at folders themselves, so every command behaves the same:

- :func:`resolve_coordinpaint_checkpoints` → ``(inpainter.pth, refiner.pth)`` or ``None`` (weight-free
  path; then call :func:`warn_weight_free_once`);
- :func:`resolve_densepose_weights` → the DensePose ``.pkl`` or a one-line error naming the command that
  installs it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from retarget.errors import DensePoseWeightsMissing, UsageError, WeightsError
from retarget.weights.manifest import load_manifest
from retarget.weights.recognize import DENSEPOSE_R50, DENSEPOSE_R101, INPAINTER, REFINER
from retarget.weights.store import MISMATCH, MISSING, model_status

_DENSEPOSE_CONFIG = re.compile(r"r[-_ ]?(50|101)", re.IGNORECASE)
_warned = {"weight_free": False}


def densepose_model_name(config: str = "r50") -> str:
    """Manifest name for a DensePose config: ``r50``/``r101`` (or e.g. ``densepose_rcnn_R_101_FPN_s1x``)."""
    match = _DENSEPOSE_CONFIG.search(config or "")
    if not match:
        raise UsageError(f"unknown DensePose config {config!r}; use r50 or r101")
    return DENSEPOSE_R50 if match.group(1) == "50" else DENSEPOSE_R101


def _installed_or_error(name: str) -> Path | None:
    """Installed path of ``name``; ``None`` when missing; WeightsError when it fails its hash."""
    status = model_status(load_manifest().get(name))
    if status.state == MISSING:
        return None
    if status.state == MISMATCH:
        raise WeightsError(f"installed {name} at {status.path} is damaged ({status.detail}); "
                           f"reinstall it: `retarget weights fetch {name}` or "
                           "`retarget weights import PATH`")
    return status.path


def resolve_coordinpaint_checkpoints(checkpoint_dir: Path | None) -> tuple[Path, Path] | None:
    """The coordinate-inpainting checkpoints to use.

    Args:
        checkpoint_dir: ``--checkpoint-dir`` (a folder holding ``inpainter.pth`` and ``refiner.pth``,
            the official layout), or ``None`` to use the installed weights.

    Returns:
        ``(inpainter_path, refiner_path)``, or ``None`` when no folder is given and the weights are not
        (both) installed — the caller then runs the weight-free path and calls
        :func:`warn_weight_free_once`.

    Raises:
        WeightsError: the given folder is missing or lacks a file (named), or an installed file fails
            its hash check.
    """
    if checkpoint_dir is not None:
        folder = Path(checkpoint_dir).expanduser()
        if not folder.is_dir():
            raise WeightsError(f"--checkpoint-dir {folder}: not a folder")
        files = (folder / "inpainter.pth", folder / "refiner.pth")
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise WeightsError(f"--checkpoint-dir {folder}: missing {' and '.join(missing)} "
                               "(expected inpainter.pth and refiner.pth)")
        return files
    inpainter, refiner = _installed_or_error(INPAINTER), _installed_or_error(REFINER)
    if inpainter is None or refiner is None:
        return None
    return inpainter, refiner


def resolve_densepose_weights(explicit: Path | None, config: str = "r50") -> Path:
    """The DensePose R-CNN checkpoint to use.

    Args:
        explicit: ``--densepose-weights`` (any detectron2 DensePose ``.pkl``), or ``None``.
        config: ``r50`` or ``r101`` — which installed model to use when ``explicit`` is ``None``.

    Raises:
        WeightsError: one line: the explicit file does not exist, or the model is not installed
            (naming ``retarget weights fetch <name>`` and ``retarget weights import PATH``), or the
            installed file fails its hash check.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsError(f"--densepose-weights {path}: file not found")
        return path
    name = densepose_model_name(config)
    path = _installed_or_error(name)
    if path is None:
        raise DensePoseWeightsMissing(f"DensePose weights are not installed; {densepose_install_hint(name)}", name)
    return path


def open_densepose_backend(name: str, **kwargs):
    """:func:`densepose_adapter.backends.make_backend`, with the installed checkpoint when none is given.

    The DensePose package never looks for installed weights: it raises
    :class:`~densepose_adapter.errors.WeightsNotGiven` (after checking every other option, so a bad
    option is still reported first), and the backend is built again with the installed file for the
    config's depth (:func:`resolve_densepose_weights`).

    Raises:
        DensePoseWeightsMissing: no weights given and none installed; callers that know which input
            needs DensePose turn it into a message naming that input and their own options.
    """
    from densepose_adapter.backends import make_backend
    from densepose_adapter.errors import WeightsNotGiven

    try:
        return make_backend(name, **kwargs)
    except WeightsNotGiven as exc:
        weights = resolve_densepose_weights(None, "r101" if exc.depth == 101 else "r50")
    return make_backend(name, **{**kwargs, "weights": weights})


def densepose_install_hint(name: str) -> str:
    """Where the DensePose checkpoint ``name`` comes from: the fetch command, or its URL + import."""
    manifest = load_manifest()
    url = manifest.download_hint(manifest.get(name))
    return (f"install them with `retarget weights fetch {name}` (or download {url} and run "
            "`retarget weights import FILE`)")


#: Per command and input: the option that gives precomputed DensePose instead (``{stem}`` is the
#: input's file stem), and the option that names a DensePose checkpoint. Every option named here
#: exists on that command (tests/test_cli_messages.py checks it).
_PRECOMPUTED = {
    ("video", "driver"): "--driver-iuv FOLDER|FILE.npz, or a {stem}.iuv/ folder or {stem}.iuv.npz beside it",
    ("video", "source"): "--source-iuv FILE, or {stem}_IUV.png beside it",
    ("frames", "driver"): "--driver-iuv FOLDER|FILE.npz, or a {stem}.iuv/ folder or {stem}.iuv.npz beside it",
    ("frames", "source"): "--source-iuv FILE, or {stem}_IUV.png beside it",
    ("batch", "driver"): "a {stem}.iuv/ folder or {stem}.iuv.npz beside it, or a driver_iuv column in a jobs file",
    ("batch", "source"): "{stem}_IUV.png beside it, or a source_iuv column in a jobs file",
    ("texture", "source"): "--source-iuv FILE, or {stem}_IUV.png beside it",
    ("video", "garment"): "--garment-iuv FILE, or {stem}_IUV.png beside it",
    ("frames", "garment"): "--garment-iuv FILE, or {stem}_IUV.png beside it",
    ("batch", "garment"): "{stem}_IUV.png beside it, or a garment_iuv column in a jobs file",
    ("stream", "stream"): "--input-iuv FOLDER|FILE.npz",
    ("stream", "source"): "--source-iuv FILE, or {stem}_IUV.png beside it",
    ("ui", "driver"): "upload its IUV as a driver IUV (.npz, or a .zip of *_IUV.png)",
    ("ui", "source"): "upload its IUV PNG as the source IUV",
}
_WEIGHTS_OPTION = {"video": "--densepose-weights", "frames": "--densepose-weights", "batch": "--densepose-weights",
                   "texture": "--densepose-weights", "densepose": "--weights", "stream": "--densepose-weights"}
_ROLE = {"driver": "the driving video", "source": "the source photo", "garment": "the garment photo",
         "stream": "the input stream"}


def precomputed_hint(command: str, role: str, path: Path) -> str:
    """How ``command`` takes precomputed DensePose for ``role`` (``driver``/``source``) input ``path``."""
    return _PRECOMPUTED[command, role].format(stem=Path(path).stem)


def densepose_missing_message(name: str, needs: list[tuple[str, Path]], command: str,
                              subject: str | None = None) -> str:
    """One line: which inputs need DensePose, the precomputed alternatives, and how to get the weights.

    Args:
        name: manifest name of the DensePose checkpoint that is not installed.
        needs: ``(role, path)`` per input that needs DensePose from the model; role ``driver`` or
            ``source`` (any other role: the command's own input, as for ``retarget densepose``).
        command: ``video``, ``frames``, ``batch`` or ``densepose``: the options named are that command's.
        subject: what needs DensePose, instead of naming each input (``retarget batch`` lists jobs).
    """
    if subject is not None:
        described = subject
    elif len(needs) == 1:
        role, path = needs[0]
        described = f"{path}: {_ROLE[role]} needs DensePose" if role in _ROLE else f"{path}: needs DensePose"
    else:
        described = " and ".join(f"{path} ({_ROLE.get(role, 'input')})" for role, path in needs) + " need DensePose"
    parts = [f"{described}, but no DensePose weights are installed"]
    stems: dict[str, set[str]] = {}
    for role, path in needs:
        stems.setdefault(role, set()).add(Path(path).stem)
    alternatives = [f"for {_ROLE[role]} " + _PRECOMPUTED[command, role].format(
                        stem=next(iter(found)) if len(found) == 1 else "<stem>")
                    for role, found in stems.items() if (command, role) in _PRECOMPUTED]
    if alternatives:
        parts.append("give precomputed DensePose IUV instead (" + "; ".join(alternatives) + ")")
    parts.append(("or " if alternatives else "") + densepose_install_hint(name))
    option = _WEIGHTS_OPTION.get(command)
    if option:
        parts.append(f"or pass {option} FILE.pkl")
    return "; ".join(parts)


def weight_free_message() -> str:
    """The one-line notice printed when the coordinate-inpainting weights are missing."""
    manifest = load_manifest()
    hint = manifest.download_hint(manifest.get(INPAINTER))
    return ("note: coordinate-inpainting weights not installed, using the weight-free path "
            "(texture completed without a network, no refiner); for full quality run "
            f"`retarget weights fetch coordinpaint-inpainter` or download {hint} and run "
            "`retarget weights import FILE`")


def warn_weight_free_once() -> None:
    """Print :func:`weight_free_message` on stderr, at most once per process."""
    if _warned["weight_free"]:
        return
    _warned["weight_free"] = True
    print(weight_free_message(), file=sys.stderr)
