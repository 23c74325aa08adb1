"""Whether OpenVINO is there, and how to get it (the lowest module of ``retarget.engine``: the others
import it, it imports none of them)."""

from __future__ import annotations

import os

#: How to get OpenVINO (the optional extra).
INSTALL_HINT = "pip install 'retarget[openvino]'"


def auto_override() -> str | None:
    """``RETARGET_ENGINE`` when it names an engine (what ``auto`` then means), else ``None``."""
    value = os.environ.get("RETARGET_ENGINE", "").strip().lower()
    return value if value in ("torch", "openvino") else None


def openvino_available() -> bool:
    """True when OpenVINO can be imported (cheap after the first call)."""
    from densepose_adapter.openvino_cache import openvino_available as available

    return available()


def require_openvino(what: str = "--engine openvino"):
    """The ``openvino`` module, or a one-line :class:`~retarget.errors.UsageError` saying how to install it."""
    from densepose_adapter.openvino_cache import import_openvino

    return import_openvino(what, INSTALL_HINT)


__all__ = ["INSTALL_HINT", "auto_override", "openvino_available", "require_openvino"]
