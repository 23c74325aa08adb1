"""`retarget batch`: planning, DensePose shared per driver, verified skipping, failures, jobs files, Ray."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from retarget.batch import load_jobs_file
from retarget.cli import main
from retarget.errors import UsageError
from tests.assets import densepose_args
from tests.conftest import EXAMPLE_IUV, EXAMPLE_PHOTO
from tests.media import make_driver, read_video

FRAMES = {"walk": 4, "jump": 3}


def _sources(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("anna", "bea"):  # the same photo under two names: two sources of the batch
        shutil.copyfile(EXAMPLE_PHOTO, folder / f"{name}.jpg")
        shutil.copyfile(EXAMPLE_IUV, folder / f"{name}_IUV.png")
    return folder


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Two sources (with IUV sidecars) and two tiny drivers without IUV (DensePose from the model)."""
    root = tmp_path_factory.mktemp("batch_media")
    sources = _sources(root / "sources")
    drivers = root / "drivers"
    drivers.mkdir()
    make_driver(drivers / "walk.mp4", n=FRAMES["walk"], width=96, height=80, audio=False, sidecar=False)
    make_driver(drivers / "jump.mp4", n=FRAMES["jump"], width=96, height=80, audio=False, sidecar=False,
                person_scale=0.5)
    return sources, drivers


def model_args() -> list[str]:
    """The real torchvision DensePose port with a tiny generated checkpoint, on small inputs."""
    return densepose_args(64)


def batch_args(sources: Path, drivers: Path, out: Path, *extra: str) -> list[str]:
    return ["batch", "--sources", str(sources), "--drivers", str(drivers), "--out-dir", str(out),
            "--size", "64", "--weight-free", *model_args(), *extra]


def report_of(out: Path) -> dict:
    return json.loads((out / "batch_report.json").read_text())


def jobs_by_name(report: dict) -> dict[str, dict]:
    return {job["name"]: job for job in report["jobs"]}


def test_two_sources_two_drivers_densepose_once_per_driver_then_skip(media, tmp_path, capsys):
    sources, drivers = media
    out = tmp_path / "out"
    assert main(batch_args(sources, drivers, out, "--workers", "2")) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out / "batch_report.json")
    assert "plan: 4 jobs (2 sources × 2 drivers)" in captured.err
    assert "distinct drivers: 2" in captured.err
    names = {f"{d}_as_{s}.mp4" for d in FRAMES for s in ("anna", "bea")}
    assert {p.name for p in out.glob("*.mp4")} == names

    report = report_of(out)
    assert report["summary"]["ok"] == 4 and report["summary"]["failed"] == 0
    jobs = jobs_by_name(report)
    for driver, frames in FRAMES.items():
        calls = [jobs[f"{driver}_as_{s}.mp4"]["densepose_calls"] for s in ("anna", "bea")]
        assert sorted(calls) == [0, frames]  # computed once (by the lead job), read from the cache after
    assert report["summary"]["densepose_calls"] == sum(FRAMES.values())  # twice, not four times
    for name, job in jobs.items():
        frames, _ = read_video(out / name)
        assert job["status"] == "ok" and job["frames"] == len(frames) == FRAMES[name.split("_as_")[0]]
        assert job["output_sha256"] and job["error"] is None and job["seconds"] > 0
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")}

    # the same command again: everything verified by the report and skipped, nothing rewritten
    assert main(batch_args(sources, drivers, out)) == 0
    err = capsys.readouterr().err
    assert "outputs already finished (verified by the report): 4 → skipped" in err
    assert {j["status"] for j in report_of(out)["jobs"]} == {"skipped"}
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")} == mtimes

    # an output changed behind the report's back is not trusted, and not replaced without --overwrite
    tampered = out / "walk_as_anna.mp4"
    tampered.write_bytes(tampered.read_bytes() + b"\0")
    assert main(batch_args(sources, drivers, out, "--workers", "1")) == 1
    err = capsys.readouterr().err
    assert "error: 1 of 4 jobs failed" in err
    record = jobs_by_name(report_of(out))["walk_as_anna.mp4"]
    assert record["status"] == "failed" and "--overwrite" in record["error"]
    assert main(batch_args(sources, drivers, out, "--workers", "1", "--overwrite")) == 0
    report = jobs_by_name(report_of(out))
    assert report["walk_as_anna.mp4"]["status"] == "ok"
    assert report["walk_as_anna.mp4"]["densepose_calls"] == 0  # the driver's DensePose came from the cache
    assert sum(r["status"] == "skipped" for r in report.values()) == 3


def test_corrupt_driver_fails_only_its_jobs_and_the_exit_code_says_so(tmp_path, capsys):
    sources = _sources(tmp_path / "sources")
    drivers = tmp_path / "drivers"
    drivers.mkdir()
    make_driver(drivers / "good.mp4", n=3, width=96, height=80, audio=False)  # with its IUV sidecar
    (drivers / "broken.mp4").write_bytes(os.urandom(4096))
    shutil.copytree(drivers / "good.iuv", drivers / "broken.iuv")  # IUV given: only the video is broken
    out = tmp_path / "out"
    args = ["batch", "--sources", str(sources), "--drivers", str(drivers), "--out-dir", str(out), "--size", "64",
            "--weight-free", "--workers", "1"]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "error: 2 of 4 jobs failed" in captured.err
    jobs = jobs_by_name(report_of(out))
    for source in ("anna", "bea"):
        assert jobs[f"good_as_{source}.mp4"]["status"] == "ok"
        assert (out / f"good_as_{source}.mp4").is_file()
        bad = jobs[f"broken_as_{source}.mp4"]
        assert bad["status"] == "failed" and "broken.mp4" in bad["error"] and "\n" not in bad["error"]
        assert not (out / f"broken_as_{source}.mp4").exists()
    assert not list(out.glob(".*part*"))
    # a re-run retries the failed jobs only
    assert main(args) == 1
    jobs = jobs_by_name(report_of(out))
    assert [jobs[f"good_as_{s}.mp4"]["status"] for s in ("anna", "bea")] == ["skipped", "skipped"]
    assert [jobs[f"broken_as_{s}.mp4"]["status"] for s in ("anna", "bea")] == ["failed", "failed"]


def test_jobs_files_csv_and_toml(tmp_path, capsys):
    sources = _sources(tmp_path / "sources")
    make_driver(tmp_path / "clip.mp4", n=3, width=96, height=80, audio=False)
    (tmp_path / "jobs.csv").write_text("source,driver,output,output_mode,side_by_side\n"
                                       "sources/anna.jpg,clip.mp4,,crop,\n"
                                       "sources/bea.jpg,clip.mp4,named.mp4,,true\n")
    jobs = load_jobs_file(tmp_path / "jobs.csv", tmp_path / "out")
    # a relative output is relative to --out-dir (and stays in it)
    assert [j.output for j in jobs] == [tmp_path / "out" / "clip_as_anna.mp4", tmp_path / "out" / "named.mp4"]
    assert jobs[0].source == sources / "anna.jpg" and jobs[0].options == {"output_mode": "crop"}
    assert jobs[1].options == {"side_by_side": True}

    (tmp_path / "jobs.toml").write_text('[defaults]\noutput_mode = "crop"\n\n'
                                        '[[job]]\nsource = "sources/anna.jpg"\ndriver = "clip.mp4"\n\n'
                                        '[[job]]\nsource = "sources/bea.jpg"\ndriver = "clip.mp4"\nsize = 96\n')
    out = tmp_path / "toml_out"
    assert main(["batch", "--jobs", str(tmp_path / "jobs.toml"), "--out-dir", str(out), "--size", "64",
                 "--weight-free", "--workers", "1", "-q"]) == 0
    capsys.readouterr()
    for name, side in (("clip_as_anna.mp4", 64), ("clip_as_bea.mp4", 96)):
        frames, info = read_video(out / name)
        assert (info["width"], info["height"]) == (side, side) and len(frames) == 3

    (tmp_path / "bad.csv").write_text("source,driver,colour\nsources/anna.jpg,clip.mp4,red\n")
    with pytest.raises(UsageError, match="unknown job setting 'colour'"):
        load_jobs_file(tmp_path / "bad.csv", tmp_path)
    (tmp_path / "dup.csv").write_text("source,driver,output\nsources/anna.jpg,clip.mp4,x.mp4\n"
                                      "sources/bea.jpg,clip.mp4,x.mp4\n")
    assert main(["batch", "--jobs", str(tmp_path / "dup.csv"), "--weight-free", "--dry-run"]) == 1
    err = capsys.readouterr().err  # the first job would run; the second is reported
    assert "dup.csv:3: " in err and "dup.csv:2 writes this output already" in err and "to render: 1" in err
    assert main(["batch", "--jobs", str(tmp_path / "dup.csv"), "--weight-free", "--dry-run", "--fail-fast"]) == 2
    assert main(["batch", "--sources", str(sources), "--out-dir", str(out)]) == 2


def _require_ray():
    try:
        import ray
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("ray is not installed: CI must run the Ray backend test (`make setup` installs it)")
        pytest.skip("ray is not installed (pip install 'retarget[ray]')")
    return ray


@pytest.mark.slow
def test_ray_backend_matches_local(media, tmp_path, monkeypatch, capsys):
    ray = _require_ray()
    sources, drivers = media
    local_out, ray_out = tmp_path / "local", tmp_path / "ray"
    monkeypatch.setenv("RETARGET_CACHE_DIR", str(tmp_path / "cache_local"))
    assert main(batch_args(sources, drivers, local_out, "--workers", "2", "-q")) == 0
    monkeypatch.setenv("RETARGET_CACHE_DIR", str(tmp_path / "cache_ray"))  # DensePose computed again on Ray
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert main(batch_args(sources, drivers, ray_out, "--backend", "ray", "--workers", "2", "-q")) == 0
    finally:
        ray.shutdown()
    capsys.readouterr()
    local, remote = report_of(local_out), report_of(ray_out)
    assert remote["backend"] == "ray" and local["backend"] == "local"
    same = ("name", "source", "driver", "origin", "status", "error", "frames", "missing_frames", "densepose_calls",
            "fingerprint")
    assert [{k: j[k] for k in same} for j in local["jobs"]] == [{k: j[k] for k in same} for j in remote["jobs"]]
    assert local["summary"]["densepose_calls"] == remote["summary"]["densepose_calls"] == sum(FRAMES.values())
    for job in local["jobs"]:
        a, info_a = read_video(local_out / job["name"])
        b, info_b = read_video(ray_out / job["name"])
        assert info_a == info_b and len(a) == len(b)
        # same pipeline, same inputs, deterministic encoder: the very same frames
        assert all(np.array_equal(x, y) for x, y in zip(a, b)), job["name"]
