"""Weights: manifest, fetch (local HTTP server), import, verify, safe loading, resolution, CLI."""

from __future__ import annotations

import builtins
import hashlib
import http.server
import os
import pickle
import re
import shutil
import socket
import threading
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch
from conftest import REPO

from retarget.cli import main
from retarget.errors import UsageError, WeightsError
from retarget.paths import weights_dir
from retarget.weights import (
    fetch_model,
    identify_checkpoint,
    import_weights,
    load_densepose_checkpoint,
    load_manifest,
    model_status,
    resolve_coordinpaint_checkpoints,
    resolve_densepose_weights,
    torch_load_checkpoint,
    warn_weight_free_once,
)
from retarget.weights import resolve as resolve_module
from retarget.weights.manifest import Manifest
from retarget.weights.store import MISMATCH, MISSING, VERIFIED, read_state
from tests.assets import coordinpaint_dir, densepose_dir

INPAINTER = "coordinpaint-inpainter"
REFINER = "coordinpaint-refiner"
R50 = "densepose-r50-fpn-s1x"


# ---------------------------------------------------------------------------------------------
# helpers


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files``; honours ``Range`` unless ``server.ranges`` is False; cuts the
    connection halfway through the body while ``server.cuts[path]`` > 0."""

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        server = self.server
        server.log.append((self.path, self.headers.get("Range")))
        data = server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and server.ranges:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Type", server.types.get(self.path, "application/octet-stream"))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.cuts.get(self.path, 0) > 0:
            server.cuts[self.path] -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.types, httpd.cuts, httpd.log, httpd.ranges = {}, {}, {}, [], True
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _fixture_bytes(name: str) -> bytes:
    return (coordinpaint_dir() / name).read_bytes()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _manifest_with(**changes_by_name) -> Manifest:
    """The shipped manifest with some entries changed (e.g. URLs pointed at the test server)."""
    manifest = load_manifest()
    models = tuple(replace(m, **changes_by_name[m.name]) if m.name in changes_by_name else m
                   for m in manifest.models)
    return replace(manifest, models=models)


def _direct_inpainter(server, sha256: str = "", path: str = "/inpainter.pth") -> Manifest:
    return _manifest_with(**{INPAINTER: {"urls": (server.url + path,), "archive": "", "sha256": sha256}})


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/model.pkl"


def _fixture_zip(tmp_path: Path, folder: str = "checkpoint") -> Path:
    archive = tmp_path / "coordinpaint-checkpoints.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in ("inpainter.pth", "refiner.pth"):
            z.write(coordinpaint_dir() / name, f"{folder}/{name}")
        z.writestr(f"{folder}/README.txt", "not a checkpoint")
        z.writestr("__MACOSX/._inpainter.pth", b"junk")
    return archive


class _Evil:
    """Unpickling this opens (creates) the marker file: code execution."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (str(self.marker), "w"))


def _densepose_like(n_res4_blocks: int) -> dict:
    """A few small tensors of a DensePose R-CNN, with the official R50/R101 shapes (a few KB)."""
    model = {f"backbone.bottom_up.res4.{i}.conv1.norm.weight": np.zeros(256, np.float32)
             for i in range(n_res4_blocks)}
    model["roi_heads.densepose_predictor.ann_index_lowres.bias"] = np.zeros(2, np.float32)
    return {"model": model, "__author__": "test"}


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


# ---------------------------------------------------------------------------------------------
# manifest


def test_manifest_lists_the_models_with_sources_and_terms():
    manifest = load_manifest()
    assert manifest.names == [INPAINTER, REFINER, R50, "densepose-r101-fpn-s1x"]
    assert manifest.get(R50).urls == (
        "https://dl.fbaipublicfiles.com/densepose/densepose_rcnn_R_50_FPN_s1x/165712039/model_final_162be9.pkl",)
    assert manifest.get("densepose-r101-fpn-s1x").urls[0].endswith(
        "/densepose_rcnn_R_101_FPN_s1x/165712084/model_final_c6ab63.pkl")
    assert manifest.get(R50).md5_prefix == "162be9"
    for entry in manifest.models:
        assert entry.license and entry.paper and entry.loader and entry.approx_size
        assert entry.urls or manifest.archive_of(entry)
    archive = manifest.archive_of(manifest.get(INPAINTER))
    assert set(archive.members) == {INPAINTER, REFINER}
    assert "10k4_JTVTVADyR2YGcnc8Z-dF58jpFffn" in archive.page
    with pytest.raises(UsageError, match="known:"):
        manifest.get("nope")


def test_manifest_is_package_data_and_can_be_overridden(tmp_path, monkeypatch):
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "manifest.toml" in pyproject["tool"]["setuptools"]["package-data"]["retarget.weights"]
    custom = tmp_path / "m.toml"
    custom.write_text('[[models]]\nname = "x"\npath = "x.pth"\nformat = "torch-state-dict"\n')
    monkeypatch.setenv("RETARGET_WEIGHTS_MANIFEST", str(custom))
    assert load_manifest().names == ["x"]


# ---------------------------------------------------------------------------------------------
# fetch


def test_fetch_installs_verified_file(server, monkeypatch):
    data = _fixture_bytes("inpainter.pth")
    server.files["/inpainter.pth"] = data
    manifest = _direct_inpainter(server, sha256=_sha(data))
    dest = manifest.get(INPAINTER).installed_path()
    replaced = []
    real_replace = os.replace

    def spy(src, dst):
        replaced.append((Path(src), Path(dst), Path(dst).exists()))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    results = fetch_model(INPAINTER, manifest, progress=True, retries=0)
    monkeypatch.setattr(os, "replace", real_replace)
    assert [(r.name, r.action, r.path) for r in results] == [(INPAINTER, "installed", dest)]
    assert dest.read_bytes() == data
    # placed by one rename of the complete .part file in the same folder; nothing existed before
    assert (dest.with_name(dest.name + ".part"), dest, False) in replaced
    assert not list(dest.parent.glob("*.part"))
    assert read_state()[INPAINTER]["sha256"] == _sha(data)
    assert model_status(manifest.get(INPAINTER), rehash=True).state == VERIFIED
    again = fetch_model(INPAINTER, manifest, progress=False)
    assert again[0].action == "already installed" and len(server.log) == 1


def test_fetch_resumes_after_cut_connection(server):
    server.files["/inpainter.pth"] = _fixture_bytes("inpainter.pth")
    server.cuts["/inpainter.pth"] = 1
    manifest = _direct_inpainter(server, sha256=_sha(server.files["/inpainter.pth"]))
    fetch_model(INPAINTER, manifest, progress=False, retries=2, backoff_s=0)
    half = len(server.files["/inpainter.pth"]) // 2
    assert server.log == [("/inpainter.pth", None), ("/inpainter.pth", f"bytes={half}-")]
    assert manifest.get(INPAINTER).installed_path().read_bytes() == server.files["/inpainter.pth"]


def test_interrupted_fetch_leaves_part_and_next_fetch_resumes(server):
    data = _fixture_bytes("inpainter.pth")
    server.files["/inpainter.pth"] = data
    server.cuts["/inpainter.pth"] = 1
    manifest = _direct_inpainter(server, sha256=_sha(data))
    dest = manifest.get(INPAINTER).installed_path()
    with pytest.raises(WeightsError, match="retarget weights import PATH"):
        fetch_model(INPAINTER, manifest, progress=False, retries=0)
    part = dest.with_name(dest.name + ".part")
    assert not dest.exists() and part.stat().st_size == len(data) // 2
    fetch_model(INPAINTER, manifest, progress=False, retries=0)
    assert server.log[-1] == ("/inpainter.pth", f"bytes={len(data) // 2}-")
    assert dest.read_bytes() == data and not part.exists()


def test_fetch_restarts_when_server_ignores_range(server):
    data = _fixture_bytes("inpainter.pth")
    server.files["/inpainter.pth"], server.ranges = data, False
    manifest = _direct_inpainter(server, sha256=_sha(data))
    dest = manifest.get(INPAINTER).installed_path()
    dest.parent.mkdir(parents=True)
    dest.with_name(dest.name + ".part").write_bytes(b"stale bytes from another file")
    fetch_model(INPAINTER, manifest, progress=False, retries=0)
    assert dest.read_bytes() == data


def test_fetch_rejects_hash_mismatch_and_keeps_old_file(server):
    data = _fixture_bytes("inpainter.pth")
    server.files["/inpainter.pth"] = data
    manifest = _direct_inpainter(server, sha256="0" * 64)
    dest = manifest.get(INPAINTER).installed_path()
    with pytest.raises(WeightsError, match="not the published file.*nothing was installed"):
        fetch_model(INPAINTER, manifest, progress=False, retries=0)
    assert not dest.exists() and not list(dest.parent.glob("*.part"))
    dest.write_bytes(b"old install")  # a damaged install: refetch replaces it only when verified
    with pytest.raises(WeightsError):
        fetch_model(INPAINTER, manifest, progress=False, retries=0, force=True)
    assert dest.read_bytes() == b"old install"


def test_fetch_without_published_hash_checks_content_and_records_hash(server):
    server.files["/inpainter.pth"] = _fixture_bytes("refiner.pth")  # wrong file at that URL
    manifest = _direct_inpainter(server, sha256="")
    with pytest.raises(WeightsError, match="coordinpaint-refiner"):
        fetch_model(INPAINTER, manifest, progress=False, retries=0)
    assert not manifest.get(INPAINTER).installed_path().exists()
    data = _fixture_bytes("inpainter.pth")
    server.files["/inpainter.pth"] = data
    fetch_model(INPAINTER, manifest, progress=False, retries=0)
    record = read_state()[INPAINTER]
    assert record["sha256"] == _sha(data) and record["origin"].startswith("fetched from http")
    assert model_status(manifest.get(INPAINTER)).reference == "recorded"


def test_fetch_md5_prefix_mismatch_is_a_warning_not_a_refusal(server, capsys):
    data = pickle.dumps(_densepose_like(6), protocol=2)
    assert not hashlib.md5(data).hexdigest().startswith("162be9")
    server.files["/model_final_162be9.pkl"] = data
    manifest = _manifest_with(**{R50: {"urls": (server.url + "/model_final_162be9.pkl",)}})
    fetch_model(R50, manifest, progress=False, retries=0)
    assert resolve_densepose_weights(None) == manifest.get(R50).installed_path()
    warning = capsys.readouterr().err.strip()
    assert len(warning.splitlines()) == 1 and warning.startswith("warning: ")
    assert f"md5 starts {hashlib.md5(data).hexdigest()[:6]}" in warning and "says 162be9" in warning
    assert read_state()[R50]["sha256"] == _sha(data)  # the recorded sha256 is the check from now on
    assert main(["weights", "verify"]) == 0
    out = capsys.readouterr().out
    assert f"{R50}: ok (recorded sha256); note: md5 starts" in out


def test_fetch_with_matching_md5_prefix_warns_nothing(server, capsys):
    data = pickle.dumps(_densepose_like(6), protocol=2)
    prefix = hashlib.md5(data).hexdigest()[:6]
    server.files["/m.pkl"] = data
    fetch_model(R50, _manifest_with(**{R50: {"urls": (server.url + "/m.pkl",), "md5_prefix": prefix}}),
                progress=False, retries=0)
    assert "warning" not in capsys.readouterr().err


def test_fetch_refuses_a_densepose_file_with_other_shapes(server):
    server.files["/model_final_162be9.pkl"] = (densepose_dir() / "model_tiny.pkl").read_bytes()
    manifest = _manifest_with(**{R50: {"urls": (server.url + "/model_final_162be9.pkl",)}})
    with pytest.raises(WeightsError, match="not the published file.*shape"):
        fetch_model(R50, manifest, progress=False, retries=0)
    assert not manifest.get(R50).installed_path().exists()


def test_import_md5_prefix_mismatch_installs_with_one_warning(tmp_path, capsys):
    path = tmp_path / "model_final_162be9.pkl"
    path.write_bytes(pickle.dumps(_densepose_like(6), protocol=2))
    assert main(["weights", "import", str(path)]) == 0
    captured = capsys.readouterr()
    assert f"{R50}: installed" in captured.out
    warnings = captured.err.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("warning: ") and "162be9" in warnings[0]


def test_fetch_archive_installs_both_checkpoints(server, tmp_path):
    server.files["/drive"] = _fixture_zip(tmp_path).read_bytes()
    manifest = load_manifest()
    archive = replace(manifest.archives[0], urls=(server.url + "/drive",))
    manifest = replace(manifest, archives=(archive,))
    results = fetch_model(REFINER, manifest, progress=False, retries=0)
    assert sorted(r.name for r in results) == [INPAINTER, REFINER]
    assert resolve_coordinpaint_checkpoints(None) is not None
    assert not (weights_dir() / ".downloads" / (archive.file + ".part")).exists()


def test_fetch_drive_web_page_explains_browser_download(server):
    server.files["/drive"] = b"<html>Google Drive can't scan this file for viruses</html>"
    server.types["/drive"] = "text/html; charset=utf-8"
    manifest = load_manifest()
    manifest = replace(manifest, archives=(replace(manifest.archives[0], urls=(server.url + "/drive",)),))
    with pytest.raises(WeightsError) as info:
        fetch_model(INPAINTER, manifest, progress=False, retries=0)
    message = str(info.value)
    assert "web page" in message and "drive.google.com/file/d/" in message
    assert "retarget weights import PATH" in message and "\n" not in message


def test_fetch_without_network_fails_in_one_line(capsys, tmp_path, monkeypatch):
    url = _closed_port_url()
    manifest_file = tmp_path / "m.toml"
    manifest_file.write_text(f'[[models]]\nname = "{R50}"\npath = "dp.pkl"\nformat = "detectron2-pickle"\n'
                             f'urls = ["{url}"]\n')
    monkeypatch.setenv("RETARGET_WEIGHTS_MANIFEST", str(manifest_file))
    assert main(["weights", "fetch", R50, "--retries", "0", "--no-progress"]) == 1
    err = _one_line_error(capsys)
    assert url in err and "retarget weights import PATH" in err


# ---------------------------------------------------------------------------------------------
# import


def test_import_zip_of_fixture_checkpoints(tmp_path, capsys):
    archive = _fixture_zip(tmp_path)
    assert main(["weights", "import", str(archive)]) == 0
    out = capsys.readouterr().out
    assert f"{INPAINTER}: installed" in out and f"{REFINER}: installed" in out
    inpainter, refiner = resolve_coordinpaint_checkpoints(None)
    assert inpainter.read_bytes() == _fixture_bytes("inpainter.pth")
    assert refiner.read_bytes() == _fixture_bytes("refiner.pth")
    assert inpainter == weights_dir() / "coordinpaint" / "inpainter.pth"
    assert read_state()[REFINER]["origin"].endswith("checkpoint/refiner.pth")
    again = import_weights(archive)
    assert {o.action for o in again if o.name} == {"already installed"}


def test_import_folder_recognises_files_by_content(tmp_path):
    folder = tmp_path / "downloads"
    folder.mkdir()
    shutil.copy(coordinpaint_dir() / "refiner.pth", folder / "a.pth")  # names swapped
    shutil.copy(coordinpaint_dir() / "inpainter.pth", folder / "refiner.pth")
    (folder / "notes.pth").write_bytes(b"garbage")
    outcomes = {Path(o.source).name: o for o in import_weights(folder)}
    assert outcomes["a.pth"].name == REFINER and outcomes["a.pth"].action == "installed"
    assert outcomes["refiner.pth"].name == INPAINTER
    assert outcomes["notes.pth"].action == "skipped" and "corrupt" in outcomes["notes.pth"].detail
    manifest = load_manifest()
    assert manifest.get(REFINER).installed_path().read_bytes() == _fixture_bytes("refiner.pth")


def test_identify_densepose_r50_and_r101(tmp_path):
    assert identify_checkpoint(densepose_dir() / "model_tiny.pkl") == R50
    for blocks, name in ((6, R50), (23, "densepose-r101-fpn-s1x"), (4, None)):
        path = tmp_path / f"m{blocks}.pkl"
        path.write_bytes(pickle.dumps(_densepose_like(blocks), protocol=2))
        assert identify_checkpoint(path) == name
    weights, name = load_densepose_checkpoint(densepose_dir() / "model_tiny.pkl")
    assert name == R50 and any(k.startswith("roi_heads.densepose_predictor.") for k in weights)


def test_import_refuses_unpublished_densepose_file(capsys):
    tiny = densepose_dir() / "model_tiny.pkl"
    assert main(["weights", "import", str(tiny)]) == 1
    err = _one_line_error(capsys)
    assert "not the published file" in err and "--densepose-weights" in err
    assert not load_manifest().get(R50).installed_path().exists()


def test_import_unknown_or_missing_path_errors(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        import_weights(tmp_path / "nothing.zip")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="no checkpoint"):
        import_weights(tmp_path / "empty")
    odd = tmp_path / "odd.pth"
    torch.save({"layer.weight": torch.zeros(1)}, odd)
    with pytest.raises(WeightsError, match="not a checkpoint retarget uses"):
        import_weights(odd)


# ---------------------------------------------------------------------------------------------
# verify / list


def test_verify_exit_code_on_tampered_file(tmp_path, capsys):
    assert main(["weights", "import", str(_fixture_zip(tmp_path))]) == 0
    assert main(["weights", "verify"]) == 0
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"{INPAINTER}\s+verified\*", out) and re.search(rf"{R50}\s+missing", out)
    path = load_manifest().get(INPAINTER).installed_path()
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    assert main(["weights", "verify"]) == 1
    captured = capsys.readouterr()
    assert f"{INPAINTER}: HASH MISMATCH" in captured.out
    assert "Traceback" not in captured.err and len(captured.err.strip().splitlines()) == 1
    assert model_status(load_manifest().get(INPAINTER)).state == MISMATCH
    with pytest.raises(WeightsError, match="damaged"):
        resolve_coordinpaint_checkpoints(None)


def test_cli_list_fetch_unknown_name(capsys):
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    for name in load_manifest().names:
        assert name in out
    assert "CC-BY-SA-3.0" in out and "MIT" in out
    assert main(["weights", "fetch", "no-such-model"]) == 2


def test_list_shows_where_each_file_comes_from(capsys):
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    manifest = load_manifest()
    rows = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert "SOURCE" in out.splitlines()[1]
    assert manifest.get(R50).urls[0] in rows[R50]
    assert manifest.get("densepose-r101-fpn-s1x").urls[0] in rows["densepose-r101-fpn-s1x"]
    for name in (INPAINTER, REFINER):
        assert f"manual download: {manifest.archives[0].page}" in rows[name]


def test_verify_with_nothing_installed_says_so_and_how_to_install(capsys):
    assert main(["weights", "verify"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # not four "missing" lines
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: no weights are installed in ")
    assert "nothing to verify" in err and "`retarget weights fetch all`" in err
    assert "retarget weights import FILE" in err and load_manifest().archives[0].page in err


def test_verify_lists_models_not_installed_without_failing(tmp_path, capsys):
    assert main(["weights", "import", str(_fixture_zip(tmp_path))]) == 0
    capsys.readouterr()
    assert main(["weights", "verify"]) == 0
    out = capsys.readouterr().out
    assert f"{R50}: not installed (`retarget weights fetch {R50}`)" in out
    assert f"{INPAINTER}: ok (recorded sha256)" in out


# ---------------------------------------------------------------------------------------------
# safety


def test_restricted_unpickler_refuses_code_execution(tmp_path, capsys):
    marker = tmp_path / "executed"
    evil = tmp_path / "model_final_162be9.pkl"
    payload = _densepose_like(6)
    payload["model"]["roi_heads.densepose_predictor.x"] = _Evil(marker)
    evil.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(WeightsError, match="refusing to load.*open"):
        load_densepose_checkpoint(evil)
    assert main(["weights", "import", str(evil)]) == 1
    assert "refusing" in _one_line_error(capsys)
    assert not marker.exists()


def test_torch_checkpoint_with_code_is_refused(tmp_path, capsys):
    marker = tmp_path / "executed"
    evil = tmp_path / "inpainter.pth"
    torch.save({"gate1.conv_f.weight": torch.zeros(1), "payload": _Evil(marker)}, evil)
    assert not marker.exists()  # saving pickles the call, it does not run it
    with pytest.raises(WeightsError, match="refused"):
        torch_load_checkpoint(evil, expected="inpainter")
    assert main(["weights", "import", str(evil)]) == 1
    _one_line_error(capsys)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["inpainter.pth", "model_tiny.pkl"])
def test_truncated_or_corrupt_checkpoint_gives_one_line(tmp_path, capsys, name):
    source = (coordinpaint_dir() if name.endswith(".pth") else densepose_dir()) / name
    data = source.read_bytes()
    truncated, corrupt = tmp_path / f"truncated_{name}", tmp_path / f"corrupt_{name}"
    truncated.write_bytes(data[: len(data) // 3])
    corrupt.write_bytes(os.urandom(4096))
    for path in (truncated, corrupt):
        with pytest.raises(WeightsError) as info:
            if name.endswith(".pth"):
                torch_load_checkpoint(path, expected="inpainter")
            else:
                load_densepose_checkpoint(path)
        assert "\n" not in str(info.value) and str(path) in str(info.value)
        assert main(["weights", "import", str(path)]) == 1
        _one_line_error(capsys)


def test_torch_load_checkpoint_checks_slot():
    state = torch_load_checkpoint(coordinpaint_dir() / "inpainter.pth", expected="inpainter")
    assert "gate1.conv_f.weight" in state and "sequence.0.conv_f.weight" in state
    refiner = torch_load_checkpoint(coordinpaint_dir() / "refiner.pth", expected="refiner")
    assert "source_enc1.conv.module.weight_bar" in refiner
    with pytest.raises(WeightsError, match="a refiner checkpoint, but the inpainter was expected"):
        torch_load_checkpoint(coordinpaint_dir() / "refiner.pth", expected="inpainter")
    with pytest.raises(WeightsError, match="not found"):
        torch_load_checkpoint(coordinpaint_dir() / "missing.pth", expected="inpainter")


def test_torch_load_checkpoint_rejects_non_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(WeightsError, match="not a state dict"):
        torch_load_checkpoint(path, expected="refiner")


# ---------------------------------------------------------------------------------------------
# resolution used by the commands


def test_resolve_coordinpaint_explicit_and_missing(tmp_path):
    assert resolve_coordinpaint_checkpoints(None) is None
    assert resolve_coordinpaint_checkpoints(coordinpaint_dir()) == (
        coordinpaint_dir() / "inpainter.pth", coordinpaint_dir() / "refiner.pth")
    partial = tmp_path / "ck"
    partial.mkdir()
    shutil.copy(coordinpaint_dir() / "inpainter.pth", partial)
    with pytest.raises(WeightsError, match="missing refiner.pth"):
        resolve_coordinpaint_checkpoints(partial)
    with pytest.raises(WeightsError, match="not a folder"):
        resolve_coordinpaint_checkpoints(tmp_path / "nope")


def test_resolve_densepose_names_the_install_command(tmp_path):
    with pytest.raises(WeightsError) as info:
        resolve_densepose_weights(None)
    assert "retarget weights fetch densepose-r50-fpn-s1x" in str(info.value)
    assert "retarget weights import FILE" in str(info.value)
    assert load_manifest().get(R50).urls[0] in str(info.value)
    with pytest.raises(WeightsError, match="fetch densepose-r101-fpn-s1x"):
        resolve_densepose_weights(None, config="R_101")
    explicit = densepose_dir() / "model_tiny.pkl"
    assert resolve_densepose_weights(explicit) == explicit
    with pytest.raises(WeightsError, match="file not found"):
        resolve_densepose_weights(tmp_path / "x.pkl")
    with pytest.raises(UsageError):
        resolve_densepose_weights(None, config="r18")


def test_open_densepose_backend_uses_the_installed_file_only_when_none_is_given(monkeypatch, tmp_path):
    from densepose_adapter.errors import WeightsNotGiven

    from retarget.errors import DensePoseWeightsMissing

    tiny = densepose_dir()
    config = str(tiny / "meta.json")
    with pytest.raises(DensePoseWeightsMissing) as info:  # nothing installed: the install hint, as before
        resolve_module.open_densepose_backend("torchvision", config=config)
    assert info.value.model == R50 and "retarget weights fetch densepose-r50-fpn-s1x" in str(info.value)
    with pytest.raises(UsageError, match="--densepose-size must be >= 32"):  # a bad option is still reported first
        resolve_module.open_densepose_backend("torchvision", config=config, densepose_size=16)
    asked = []
    monkeypatch.setattr(resolve_module, "resolve_densepose_weights",
                        lambda explicit, name: asked.append((explicit, name)) or tiny / "model_tiny.pkl")
    backend = resolve_module.open_densepose_backend("torchvision", config=config, densepose_size=64)
    assert asked == [(None, "r50")] and backend.weights_path == tiny / "model_tiny.pkl"
    given = tmp_path / "given.pkl"
    shutil.copy(tiny / "model_tiny.pkl", given)
    assert resolve_module.open_densepose_backend("torchvision", weights=given, config=config).weights_path == given
    assert asked == [(None, "r50")]  # a given file is used as it is
    from densepose_adapter.backends import make_backend

    with pytest.raises(WeightsNotGiven) as bare:  # the package alone never looks for installed weights
        make_backend("torchvision", config=config)
    assert bare.value.depth == 50


def test_weight_free_notice_is_printed_once(capsys, monkeypatch):
    monkeypatch.setitem(resolve_module._warned, "weight_free", False)
    warn_weight_free_once()
    warn_weight_free_once()
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "weight-free" in err and "retarget weights import" in err


def test_status_of_missing_model():
    assert model_status(load_manifest().get(R50)).state == MISSING


# ---------------------------------------------------------------------------------------------
# code-running checkpoints: recognised by the globals their pickle references, not torch's wording


class _Calls:
    """Unpickling this calls ``func(*args)``: code execution through the global ``func``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def _payloads(marker: Path) -> dict[str, object]:
    """Globals torch blocks by module (posix, os, builtins, subprocess) and ones it knows nothing of."""
    import subprocess
    import webbrowser

    return {
        "posix.system": _Calls(os.system, f"touch {marker}"),
        "os.popen": _Calls(os.popen, f"touch {marker}"),
        "builtins.eval": _Calls(builtins.eval, f"open({str(marker)!r}, 'w')"),
        "subprocess.Popen": _Calls(subprocess.Popen, ["touch", str(marker)]),
        "shutil.rmtree": _Calls(shutil.rmtree, str(marker.parent / "victim")),
        "webbrowser.open": _Calls(webbrowser.open, "http://127.0.0.1:9/"),
    }


SAVE_FORMATS = {
    "zip": {},
    "zip-protocol4": {"pickle_protocol": 4},  # STACK_GLOBAL instead of GLOBAL
    "legacy": {"_use_new_zipfile_serialization": False},
}


def _evil_checkpoint(path: Path, payload, fmt: str) -> Path:
    state = {"gate1.conv_f.weight": torch.zeros(2), "sequence.0.conv_f.weight": torch.zeros(2),
             "final.conv1.weight": payload}
    torch.save(state, path, **SAVE_FORMATS[fmt])
    return path


@pytest.mark.parametrize("fmt", sorted(SAVE_FORMATS))
@pytest.mark.parametrize("name", sorted(_payloads(Path("/x"))))
def test_code_running_checkpoint_is_refused_naming_its_global(tmp_path, capsys, name, fmt):
    marker = tmp_path / "executed"
    (tmp_path / "victim").mkdir()
    evil = _evil_checkpoint(tmp_path / "inpainter.pth", _payloads(marker)[name], fmt)
    from densepose_adapter.rcnn.convert import read_checkpoint

    with pytest.raises(WeightsError, match=rf"refused: the file references {re.escape(name)},"):
        torch_load_checkpoint(evil, expected="inpainter")
    with pytest.raises(WeightsError, match=rf"references {re.escape(name)},"):
        read_checkpoint(evil)  # --densepose-weights x.pth
    assert main(["weights", "import", str(evil)]) == 1
    err = _one_line_error(capsys)
    assert f"references {name}" in err and str(evil) in err
    archive = tmp_path / "download.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(evil, "checkpoint/inpainter.pth")
    assert main(["weights", "import", str(archive)]) == 1
    err = _one_line_error(capsys)
    assert f"references {name}" in err and "checkpoint/inpainter.pth" in err
    assert not marker.exists() and (tmp_path / "victim").is_dir()
    assert not load_manifest().get(INPAINTER).installed_path().exists()


def test_pickle_scan_lists_globals_without_running_anything(tmp_path):
    from retarget.weights.pickle_scan import checkpoint_globals, first_unsafe_global, scan_pickle_stream

    marker = tmp_path / "executed"
    for protocol in (0, 1, 2, 4, 5):
        data = pickle.dumps({"a": [1, _Calls(os.system, f"touch {marker}")]}, protocol=protocol)
        import io

        assert scan_pickle_stream(io.BytesIO(data)) == ["posix.system"], protocol
    plain = (coordinpaint_dir() / "inpainter.pth")
    assert first_unsafe_global(plain) is None and "torch._utils._rebuild_tensor_v2" in checkpoint_globals(plain)
    legacy = tmp_path / "legacy.pth"
    torch.save({"w": torch.zeros(3)}, legacy, _use_new_zipfile_serialization=False)
    assert first_unsafe_global(legacy) is None and checkpoint_globals(legacy)
    assert torch_load_checkpoint(plain, expected="inpainter")  # plain files still load
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------
# archives: recognised by their headers, read once, with size and ratio limits


def _tar_of_fixtures(path: Path, mode: str = "w") -> Path:
    import tarfile

    with tarfile.open(path, mode) as archive:
        for name in ("inpainter.pth", "refiner.pth"):  # the last member's zip directory ends the tar
            archive.add((coordinpaint_dir() / name), f"checkpoint/{name}")
    return path


@pytest.mark.parametrize("name,mode", [("ckpt.tar", "w"), ("ckpt.tar.gz", "w:gz"), ("ckpt.tar.bz2", "w:bz2"),
                                       ("ckpt.tar.xz", "w:xz"), ("named-like-a.zip", "w"), ("no_suffix", "w:gz")])
def test_import_tar_archives_by_their_headers(tmp_path, capsys, name, mode):
    from retarget.weights.recognize import sniff_format

    archive = _tar_of_fixtures(tmp_path / name, mode)
    assert zipfile.is_zipfile(archive) or mode != "w"  # the trap: a zip directory inside the tar
    assert sniff_format(archive) == {"w": "tar", "w:gz": "gzip", "w:bz2": "bz2", "w:xz": "xz"}[mode]
    assert main(["weights", "import", str(archive)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"{INPAINTER}: installed" in out and f"{REFINER}: installed" in out
    assert load_manifest().get(REFINER).installed_path().read_bytes() == _fixture_bytes("refiner.pth")
    assert not [p for p in weights_dir().rglob(".*") if p.name != STATE_NAME]  # no scratch left


STATE_NAME = "state.json"


def _zip_member(path: Path, member: str, head: bytes, zeros: int, compression=zipfile.ZIP_DEFLATED) -> Path:
    """A zip whose ``member`` is ``head`` followed by ``zeros`` zero bytes, written in chunks."""
    with zipfile.ZipFile(path, "w", compression) as z, z.open(member, "w", force_zip64=True) as sink:
        sink.write(head)
        chunk = bytes(1 << 20)
        for _ in range(zeros >> 20):
            sink.write(chunk)
    return path


@pytest.mark.parametrize("case", ["zeros", "pickle-then-zeros", "declared-too-large", "tgz-bomb", "not-an-archive",
                                  "file-of-zeros", "file-too-large"])
def test_import_refuses_bombs_early_and_cleanly(tmp_path, capsys, monkeypatch, case):
    import tarfile
    import time

    from retarget.weights import importer

    if case == "zeros":  # cannot be a checkpoint: refused after the first chunk
        archive = _zip_member(tmp_path / "a.zip", "big/inpainter.pth", b"", 8 << 20, zipfile.ZIP_STORED)
        says = "not a checkpoint"
    elif case == "pickle-then-zeros":  # looks like a pickle, but compresses 1000x
        archive, says = _zip_member(tmp_path / "a.zip", "inpainter.pth", b"\x80\x02", 64 << 20), "decompression bomb"
    elif case == "declared-too-large":
        monkeypatch.setattr(importer, "MAX_MEMBER_BYTES", 1 << 20)
        archive = _zip_member(tmp_path / "a.zip", "inpainter.pth", b"\x80\x02", 2 << 20, zipfile.ZIP_STORED)
        says = "larger than any checkpoint"
    elif case == "tgz-bomb":
        member = tmp_path / "inpainter.pth"
        with open(member, "wb") as f:
            f.write(b"\x80\x02")
            f.truncate(64 << 20)
        archive = tmp_path / "a.tgz"
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(member, "inpainter.pth")
        member.unlink()
        says = "decompression bomb"
    elif case.startswith("file-"):  # a checkpoint file given directly: judged before it is hashed
        archive = tmp_path / "inpainter.pth"
        with open(archive, "wb") as f:
            f.write(b"\x80\x02" if case == "file-too-large" else b"\0")
            f.truncate((2 << 30) if case == "file-too-large" else (64 << 20))  # sparse: no disk used
        says = "larger than any checkpoint" if case == "file-too-large" else "not a checkpoint"
    else:
        archive, says = tmp_path / "a.zip", "not a zip or tar archive"
        archive.write_bytes(b"\0" * 4096)
    start = time.perf_counter()
    assert main(["weights", "import", str(archive)]) == 1
    assert time.perf_counter() - start < 20
    err = _one_line_error(capsys)
    assert says in err and str(archive) in err, err
    assert not weights_dir().exists() or sorted(p.name for p in weights_dir().iterdir()) == []  # nothing left


def test_stale_import_scratch_of_dead_processes_is_swept(tmp_path):
    dead = subprocess_pid_that_exited()
    root = weights_dir()
    (root / "coordinpaint").mkdir(parents=True)
    stale = root / f".import.{dead}-x1y2"
    stale.mkdir()
    (stale / "0.pth").write_bytes(b"\x80" + bytes(1000))
    stale_copy = root / "coordinpaint" / f".inpainter.pth.{dead}-abc.import"
    stale_copy.write_bytes(b"partial")
    alive = root / f".import.{os.getpid()}-live"  # a concurrent import's folder is never touched
    alive.mkdir()
    import_weights(_fixture_zip(tmp_path))
    assert not stale.exists() and not stale_copy.exists() and alive.is_dir()


def subprocess_pid_that_exited() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


_KILL_SCRIPT = """
import os, signal, sys
from retarget.weights import importer
point = sys.argv[1]
def die(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)
if point == "extracting":  # partway through a member's bytes
    real = importer._extract_one
    def extract(stream, target, *rest):
        stream.read(4096)
        open(target, "wb").write(b"PK")
        die()
    importer._extract_one = extract
elif point == "recognising":  # member extracted, torch reading it
    importer.identify_checkpoint = die
elif point == "installing":  # the copy into the weights folder written, not yet renamed
    def move(path, dest):
        return False
    importer._move = move
    real_replace = os.replace
    def replace(src, dst):
        if str(src).endswith(".import"):
            die()
        return real_replace(src, dst)
    importer.os.replace = replace
elif point == "recording":  # the checkpoint moved into place, state.json not yet updated
    importer.record_installed = die
from retarget.cli import main
sys.exit(main(["weights", "import", sys.argv[2]]))
"""


@pytest.mark.parametrize("point", ["extracting", "recognising", "installing", "recording"])
def test_kill_9_during_import_leaves_only_what_the_next_import_removes(tmp_path, point):
    import signal
    import subprocess
    import sys

    archive = _fixture_zip(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, point, str(archive)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == -signal.SIGKILL, run.stderr
    root = weights_dir()
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    print(f"left after kill -9 while {point}: {left}")
    assert left, "the kill came too late to test anything"
    # hidden temporaries named after the dead process; a checkpoint under its real name only when complete
    for item in left:
        if item == "coordinpaint/inpainter.pth":
            assert (root / item).read_bytes() == _fixture_bytes("inpainter.pth")
        else:
            assert any(part.startswith((".import.", ".inpainter.pth.", ".refiner.pth."))
                       for part in Path(item).parts), left
    assert main(["weights", "import", str(archive)]) == 0
    assert sorted(p.name for p in root.rglob(".*")) == []
    assert load_manifest().get(INPAINTER).installed_path().read_bytes() == _fixture_bytes("inpainter.pth")


@pytest.mark.slow
def test_real_kill_9_mid_extraction_then_next_import_sweeps(tmp_path):
    """A real ``retarget weights import`` killed while it extracts a large member (no hooks)."""
    import signal
    import subprocess
    import sys
    import time

    archive = tmp_path / "big.zip"
    block = os.urandom(1 << 20)  # incompressible: a member as large as a real checkpoint, not a bomb
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z, z.open("inpainter.pth", "w",
                                                                         force_zip64=True) as sink:
        sink.write(b"\x80\x02")
        for _ in range(600):
            sink.write(block)
    with zipfile.ZipFile(archive, "a") as z:
        z.write((coordinpaint_dir() / "refiner.pth"), "refiner.pth")
    root = weights_dir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([str(Path(sys.executable).with_name("retarget")), "weights", "import", str(archive)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    partial = []
    while time.monotonic() < deadline and not partial:
        partial = [p for p in root.glob(".import.*/*") if p.stat().st_size > (8 << 20)]
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert partial, "the import finished before it could be killed"
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    print(f"left after a real kill -9 mid-extraction: {left}")
    assert left and all(item.startswith(f".import.{child.pid}-") for item in left), left
    outcomes = import_weights(archive)
    assert {o.name for o in outcomes if o.action == "installed"} == {REFINER}
    assert not list(root.glob(".import.*")) and not list(root.rglob(".*.import"))
