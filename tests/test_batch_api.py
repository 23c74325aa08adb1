"""`retarget.batch.run_batch`: the Python API behind `retarget batch` (plan, dry run, run, result)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from retarget.batch import BatchResult, run_batch
from retarget.errors import InputError, UsageError
from tests.conftest import EXAMPLE_IUV, EXAMPLE_PHOTO
from tests.media import make_driver


@pytest.fixture
def inputs(tmp_path):
    """One source and two 3-frame drivers, all with precomputed IUV (no DensePose model needed)."""
    sources, drivers = tmp_path / "sources", tmp_path / "drivers"
    sources.mkdir()
    drivers.mkdir()
    shutil.copyfile(EXAMPLE_PHOTO, sources / "anna.jpg")
    shutil.copyfile(EXAMPLE_IUV, sources / "anna_IUV.png")
    for name in ("walk", "jump"):
        make_driver(drivers / f"{name}.mp4", n=3, width=96, height=80, audio=False)
    return sources, drivers


def test_a_dry_run_plans_without_writing(inputs, tmp_path):
    sources, drivers = inputs
    lines = []
    result = run_batch(sources=[str(sources)], drivers=[str(drivers)], out_dir=tmp_path / "out", weight_free=True,
                       dry_run=True, settings={"size": 64}, echo=lines.append)
    assert isinstance(result, BatchResult) and result.dry_run and result.records == []
    assert sorted(p.job.name for p in result.plan.to_run) == ["jump_as_anna.mp4", "walk_as_anna.mp4"]
    assert all(p.task.settings["size"] == 64 and p.task.settings["background"] == "scene" for p in result.plan.jobs)
    assert result.workers == 1 or result.workers == 2
    assert len(lines) == 1 and lines[0].startswith("plan: 2 jobs")
    assert not (tmp_path / "out").exists()


def test_a_run_returns_the_report_records(inputs, tmp_path):
    sources, drivers = inputs
    out = tmp_path / "out"
    result = run_batch(sources=[str(sources)], drivers=[str(drivers / "walk.mp4")], out_dir=out, weight_free=True,
                       workers=1, settings={"size": 64, "background": "#204080"}, quiet=True)
    assert [r["status"] for r in result.records] == ["ok"] and result.failed == []
    assert result.failure_message() is None and result.report == out / "batch_report.json"
    assert json.loads(result.report.read_text())["jobs"][0]["frames"] == 3
    assert (out / "walk_as_anna.mp4").is_file()
    assert "ok" in result.summary_table()
    again = run_batch(sources=[str(sources)], drivers=[str(drivers / "walk.mp4")], out_dir=out, weight_free=True,
                      workers=1, settings={"size": 64, "background": "#204080"}, quiet=True)
    assert [r["status"] for r in again.records] == ["skipped"]  # verified by the report


def test_failed_jobs_are_reported_not_raised(inputs, tmp_path):
    sources, drivers = inputs
    bad = drivers / "broken.mp4"
    bad.write_bytes(b"not a video")
    shutil.copytree(drivers / "walk.iuv", drivers / "broken.iuv")  # precomputed IUV: fails in the worker
    result = run_batch(sources=[str(sources)], drivers=[str(bad)], out_dir=tmp_path / "out", weight_free=True,
                       workers=1, settings={"size": 64}, quiet=True)
    assert [r["status"] for r in result.records] == ["failed"]
    assert result.failure_message() == f"1 of 1 job failed (see {result.report})"


@pytest.mark.parametrize("kwargs, message", [
    (dict(backend="dask"), "--backend 'dask': expected local or ray"),
    (dict(address="auto"), "--address is for --backend ray"),
    (dict(workers=0), "--workers must be at least 1"),
    (dict(jobs_file=Path("jobs.csv")), "not both"),
    (dict(drivers=None), "give --jobs FILE, or both --sources and --drivers"),
    (dict(out_dir=None), "--sources/--drivers need --out-dir"),
    (dict(settings={"sise": 64}), "unknown job settings: sise"),
])
def test_bad_arguments_fail_before_any_work(inputs, tmp_path, kwargs, message):
    sources, drivers = inputs
    values = dict(sources=[str(sources)], drivers=[str(drivers)], out_dir=tmp_path / "out", weight_free=True)
    values.update(kwargs)
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_batch(**values)
    assert not (tmp_path / "out").exists()


def test_an_out_dir_that_is_a_file_is_an_input_error(inputs, tmp_path):
    sources, drivers = inputs
    (tmp_path / "out").write_text("x")
    with pytest.raises(InputError, match="--out-dir is not a folder"):
        run_batch(sources=[str(sources)], drivers=[str(drivers)], out_dir=tmp_path / "out", weight_free=True)


def test_sources_and_drivers_sharing_a_name_get_distinct_outputs(inputs, tmp_path):
    """Two folders' photo.jpg (or clip.mp4) each get an output of their own (before: the second job of each
    pair failed as writing the first one's output), named by the folders that tell them apart."""
    from retarget.batch.jobs import distinct_names

    sources, drivers = inputs
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copyfile(EXAMPLE_PHOTO, tmp_path / folder / "anna.jpg")
        shutil.copyfile(EXAMPLE_IUV, tmp_path / folder / "anna_IUV.png")
    result = run_batch(sources=[str(tmp_path / "a"), str(tmp_path / "b")], drivers=[str(drivers / "walk.mp4")],
                       out_dir=tmp_path / "out", weight_free=True, dry_run=True, settings={"size": 64, "codec": "ffv1"},
                       echo=lambda line: None)
    assert sorted(p.job.name for p in result.plan.to_run) == ["walk_as_a-anna.mkv", "walk_as_b-anna.mkv"]
    x, y, z = Path("/d/x/same/p.jpg"), Path("/d/y/same/p.jpg"), Path("/d/y/other.jpg")
    assert distinct_names([x, y, z]) == {x: "x-same-p", y: "y-same-p", z: "other"}
    assert distinct_names([Path("p.jpg"), Path("q/p.jpg")]) == {Path("p.jpg"): "p", Path("q/p.jpg"): "q-p"}


def test_the_plan_line_of_a_jobs_file_does_not_claim_every_pair(inputs, tmp_path):
    sources, drivers = inputs
    shutil.copyfile(EXAMPLE_PHOTO, sources / "bea.jpg")
    shutil.copyfile(EXAMPLE_IUV, sources / "bea_IUV.png")
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("source,driver\n"
                    f"{sources / 'anna.jpg'},{drivers / 'walk.mp4'}\n"
                    f"{sources / 'bea.jpg'},{drivers / 'walk.mp4'}\n"
                    f"{sources / 'bea.jpg'},{drivers / 'jump.mp4'}\n")
    lines = []
    run_batch(jobs, out_dir=tmp_path / "out", weight_free=True, dry_run=True, echo=lines.append)
    assert lines[0].startswith("plan: 3 jobs (2 sources and 2 drivers)"), lines
