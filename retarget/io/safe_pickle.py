"""Restricted unpickling of detectron2 ``.pkl`` checkpoints.

detectron2 model-zoo files are pickles of ``{"model": {name: numpy.ndarray}, ...}``. A plain
``pickle.load`` would run whatever code the file names; :func:`load_restricted_pickle` only admits the
few globals such files need (numpy array reconstruction, dtypes and scalars, ``OrderedDict``) and
refuses everything else *before* calling it.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from retarget.errors import WeightsError

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
