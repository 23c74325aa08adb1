"""Safe reading of checkpoints: restricted unpickling of detectron2 ``.pkl``, checked ``torch.load``.

detectron2 model-zoo files are pickles of ``{"model": {name: numpy.ndarray}, ...}``. A plain
``pickle.load`` would run whatever code the file names; :func:`load_restricted_pickle` only admits the
few globals such files need (numpy array reconstruction, dtypes and scalars, ``OrderedDict``) and
refuses everything else *before* calling it. Torch ``.pth`` state dicts are read by
:func:`torch_load_plain` (``weights_only=True`` after a scan of the globals the pickle names).

Every failure is a one-line :class:`densepose_adapter.errors.WeightsError` naming the file.
"""

from __future__ import annotations

import errno
import io
import pickle
from pathlib import Path
from typing import Any

from densepose_adapter.errors import WeightsError
from densepose_adapter.pickle_scan import first_unsafe_global

# (module, name) pairs a detectron2 / DensePose model-zoo pickle may reference.
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("collections", "OrderedDict"),
    # Python 3 pickles at protocol 2 store bytes (the array data) as _codecs.encode(str, "latin1");
    # it only converts text to bytes (torch's weights_only unpickler admits it for the same reason).
    ("_codecs", "encode"),
}


class UnsafePickleError(WeightsError):
    """The pickle references a global outside the allow-list."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if module.startswith("numpy") and name.endswith("DType") and module.endswith("dtypes"):
            return super().find_class(module, name)  # numpy>=2 dtype classes, e.g. Float32DType
        raise UnsafePickleError(
            f"refusing to load: the pickle references {module}.{name}, which a weights file never "
            "needs (it may execute code)"
        )


def loads_restricted_pickle(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` admitting only numpy arrays/dtypes/scalars and plain containers.

    Args:
        data: the pickle bytes.
        source: name used in error messages.

    Raises:
        UnsafePickleError: a disallowed global is referenced (nothing is executed).
        WeightsError: the data is truncated or not a pickle.
    """
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{source}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, MemoryError) as exc:
        raise WeightsError(
            f"{source}: not a readable checkpoint pickle (truncated or corrupt: {type(exc).__name__})"
        ) from None


def load_restricted_pickle(path: str | Path) -> Any:
    """Read a ``.pkl`` file with :func:`loads_restricted_pickle`; errors name the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return loads_restricted_pickle(data, source=str(path))


def _one_line(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _refused(path: Path, name: str) -> WeightsError:
    return WeightsError(f"{path}: refused: the file references {name}, beyond tensors and plain containers "
                        "(it could execute code); only plain state dicts are loaded")


def torch_load_plain(path: str | Path) -> Any:
    """``torch.load(weights_only=True)`` after our own scan of the pickle's globals.

    A global outside torch that a plain state dict never needs (``posix.system``, ``builtins.eval``,
    ``subprocess.Popen``, any module torch does not know) is refused before torch reads the file;
    when torch refuses the file for any other reason, the first global beyond plain containers is
    named. Neither depends on how torch words its refusal.
    """
    import torch

    path = Path(path)
    suspect = first_unsafe_global(path)
    if suspect is not None and not suspect.startswith("torch."):
        raise _refused(path, suspect)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"{path}: checkpoint not found") from None
    except IsADirectoryError:
        raise WeightsError(f"{path}: is a folder, not a checkpoint file") from None
    except OSError as exc:
        if path.is_file() and exc.errno in (None, errno.EINVAL):  # seeking past the end of a cut zip
            raise WeightsError(f"{path}: not a readable torch checkpoint (truncated or corrupt)") from None
        raise WeightsError(f"{path}: cannot read ({exc.strerror or _one_line(exc)})") from None
    except Exception:  # noqa: BLE001 - torch's refusal (UnpicklingError) or a damaged file, in many ways
        if suspect is not None:
            raise _refused(path, suspect) from None
        raise WeightsError(f"{path}: not a readable torch checkpoint (truncated or corrupt)") from None
