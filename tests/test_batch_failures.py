"""`retarget batch` runs every job that can run: per-job failures (issue 24) and hostile rows, special files,
report paths, bounds, CSV rules, out-dir escapes and job OSErrors (issue 32). No DensePose weights are
installed in these tests (isolated RETARGET_HOME), so a message that wrongly blames the weights shows up."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
from contextlib import contextmanager
from pathlib import Path

import pytest

from retarget.batch import load_jobs_file
from retarget.cli import main
from retarget.errors import UsageError
from retarget.pipeline.bounds import BATCH_SIZE_BOUNDS, DENSEPOSE_SIZE_BOUNDS, SIZE_BOUNDS, check_bounds
from tests.conftest import EXAMPLE_IUV, EXAMPLE_PHOTO
from tests.media import faststart_copy, make_driver

WEIGHTS = "no DensePose weights"


@contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging the suite) if the block reads a device or FIFO forever."""
    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s (reading a special file?)")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def cut(path: Path, fraction: float, out: Path) -> Path:
    data = path.read_bytes()
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """anna.jpg, bea.jpg (with IUV sidecars), good.mp4 (+ good.iuv/), long.mp4 (no IUV, 12 frames)."""
    root = tmp_path_factory.mktemp("batch_failures")
    for name in ("anna", "bea"):
        shutil.copyfile(EXAMPLE_PHOTO, root / f"{name}.jpg")
        shutil.copyfile(EXAMPLE_IUV, root / f"{name}_IUV.png")
    make_driver(root / "good.mp4", n=3, width=96, height=80, audio=False)
    make_driver(root / "long.mp4", n=12, width=96, height=80, audio=False, sidecar=False)
    return root


def report_of(path: Path) -> dict[str, dict]:
    return {r["name"]: r for r in json.loads(path.read_text())["jobs"]}


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


# -- issue 24: a corrupt driver fails its jobs only, and a rerun skips the finished -------------------
@pytest.mark.parametrize("damage", ["truncated-index-first", "truncated-no-index", "cut-in-first-frame", "garbage"])
def test_two_photos_two_drivers_one_corrupt_driver_without_iuv(media, tmp_path, capsys, damage):
    sources, drivers, out = tmp_path / "sources", tmp_path / "drivers", tmp_path / "out"
    sources.mkdir()
    drivers.mkdir()
    for name in ("anna.jpg", "anna_IUV.png", "bea.jpg", "bea_IUV.png"):
        shutil.copyfile(media / name, sources / name)
    shutil.copyfile(media / "good.mp4", drivers / "good.mp4")
    shutil.copytree(media / "good.iuv", drivers / "good.iuv")
    if damage == "truncated-index-first":
        cut(faststart_copy(media / "long.mp4", tmp_path / "fast.mp4"), 0.8, drivers / "broken.mp4")
        reason = "the file is truncated"
    elif damage == "cut-in-first-frame":
        cut(faststart_copy(media / "long.mp4", tmp_path / "fast.mp4"), 0.6, drivers / "broken.mp4")
        reason = "cannot decode the first video frame"
    elif damage == "truncated-no-index":
        cut(media / "long.mp4", 0.6, drivers / "broken.mp4")
        reason = "not a readable video"
    else:
        (drivers / "broken.mp4").write_bytes(os.urandom(5000))
        reason = "not a readable video"
    args = ["batch", "--sources", str(sources), "--drivers", str(drivers), "--out-dir", str(out), "--size", "64",
            "--weight-free", "--workers", "1"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert error_lines(err) == [f"error: 2 of 4 jobs failed (see {out / 'batch_report.json'})"]
    assert "cannot run: 2 → reported as failed" in err and "Traceback" not in err
    jobs = report_of(out / "batch_report.json")
    for source in ("anna", "bea"):
        assert jobs[f"good_as_{source}.mp4"]["status"] == "ok" and (out / f"good_as_{source}.mp4").is_file()
        bad = jobs[f"broken_as_{source}.mp4"]
        assert bad["status"] == "failed" and reason in bad["error"] and "broken.mp4" in bad["error"]
        assert WEIGHTS not in bad["error"] and "\n" not in bad["error"]
        assert not (out / f"broken_as_{source}.mp4").exists()
    summary = json.loads((out / "batch_report.json").read_text())["summary"]
    assert (summary["ok"], summary["failed"], summary["pending"]) == (2, 2, 0)

    assert main(args) == 1  # the rerun skips the finished jobs and reports the bad ones again
    err = capsys.readouterr().err
    assert "outputs already finished (verified by the report): 2 → skipped" in err
    jobs = report_of(out / "batch_report.json")
    assert [jobs[f"good_as_{s}.mp4"]["status"] for s in ("anna", "bea")] == ["skipped", "skipped"]
    assert [jobs[f"broken_as_{s}.mp4"]["status"] for s in ("anna", "bea")] == ["failed", "failed"]

    assert main([*args, "--fail-fast"]) == 1  # today's up-front refusal, when asked for
    err = capsys.readouterr().err
    assert len(error_lines(err)) == 1 and "--fail-fast" in error_lines(err)[0] and reason in err


def test_missing_weights_fail_only_the_jobs_that_need_densepose(media, tmp_path, capsys):
    """The driver without IUV needs the DensePose model: its jobs fail with that reason, the others run."""
    out = tmp_path / "out"
    args = ["batch", "--sources", str(media / "anna.jpg"), "--drivers", str(media / "good.mp4"),
            "--drivers", str(media / "long.mp4"), "--out-dir", str(out), "--size", "64", "--weight-free"]
    assert main(args) == 1
    jobs = report_of(out / "batch_report.json")
    assert jobs["good_as_anna.mp4"]["status"] == "ok"
    assert jobs["long_as_anna.mp4"]["status"] == "failed" and WEIGHTS in jobs["long_as_anna.mp4"]["error"]
    capsys.readouterr()
    assert main([*args, "--fail-fast"]) == 1
    assert WEIGHTS in error_lines(capsys.readouterr().err)[0]


# -- issue 32: one bad row never stops a batch (20 rows, 18 bad) --------------------------------------------
def _hostile_inputs(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    loop = folder / "loop.mp4"
    os.symlink(loop, loop)
    fifo = folder / "pipe.mp4"
    os.mkfifo(fifo)
    (folder / "afolder.mp4").mkdir()
    (folder / "notes.mp4").write_text("not a video")
    (folder / "blocker").write_text("a file where a folder is expected")
    return {"loop": loop, "fifo": fifo, "folder": folder / "afolder.mp4", "text": folder / "notes.mp4",
            "blocker": folder / "blocker"}


def test_each_bad_row_fails_alone_with_its_own_reason(media, tmp_path, capsys):
    bad = _hostile_inputs(tmp_path / "bad")
    anna, good = media / "anna.jpg", media / "good.mp4"
    rows = [  # (source, driver, output, expected words in the reason)
        (anna, good, "ok1.mp4", None),
        (tmp_path / "anna_typo.jpg", good, "typo.mp4", "file not found"),
        (anna, tmp_path / "typo.mp4", "typo2.mp4", "file not found"),
        ("/dev/null", good, "devnull.mp4", "character device"),
        (anna, "/dev/zero", "zero.mp4", "character device"),
        (anna, "/dev/urandom", "urandom.mp4", "character device"),
        (anna, bad["fifo"], "fifo.mp4", "FIFO"),
        (anna, bad["folder"], "folder.mp4", "is a folder"),
        (anna, bad["loop"], "loop.mp4", "symlink loop"),
        (anna, bad["text"], "text.mp4", "not a readable video"),
        (good, good, "swapped.mp4", "not an image file"),
        (anna, good, "blocker/under_a_file.mp4", "a folder in the output path is a file"),
        (anna, good, "../escape.mp4", "outside --out-dir"),
        (anna, good, "/tmp/elsewhere/abs.mp4", "outside --out-dir"),
        (anna, good, "ok1.mp4", "writes this output already"),
        (anna, good, "selfloop.mp4", "symbolic link loop"),
        (anna, good, str(anna), "outside --out-dir"),
        (anna, good, "named.avi", "unknown output type"),
        ("", good, "nosource.mp4", "missing source"),
    ]
    out = tmp_path / "out"
    out.mkdir()
    (out / "blocker").write_text("a file where a folder is expected")
    os.symlink(out / "selfloop.mp4", out / "selfloop.mp4")
    text = "source,driver,output\n" + "".join(f'"{s}","{d}","{o}"\n' for s, d, o, _ in rows)
    text += f"{anna},{good},ok2.mp4,unexpected extra cell\n"
    rows.append((anna, good, "ok2.mp4", "cells but the header has 3 columns"))
    jobs_file = tmp_path / "jobs.csv"
    jobs_file.write_text(text)
    args = ["batch", "--jobs", str(jobs_file), "--out-dir", str(out), "--size", "64", "--weight-free",
            "--workers", "1"]
    with deadline(120):  # /dev/zero, /dev/urandom and the FIFO are never read
        assert main([*args, "--dry-run"]) == 1
        err = capsys.readouterr().err
        assert error_lines(err) == [f"error: {len(rows) - 1} of {len(rows)} jobs cannot run (listed in the plan "
                                    "above)"]
        assert not (out / "batch_report.json").exists()
        assert main(args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(error_lines(err)) == 1
    records = json.loads((out / "batch_report.json").read_text())["jobs"]
    assert len(records) == len(rows)
    for record, (source, driver, output, words) in zip(records, rows):
        if words is None:
            assert record["status"] == "ok", record
            continue
        assert record["status"] == "failed" and words in record["error"], (words, record["error"])
        assert WEIGHTS not in record["error"] and "\n" not in record["error"]
    assert (out / "ok1.mp4").is_file() and not (tmp_path / "escape.mp4").exists()
    assert not Path("/tmp/elsewhere").exists()
    assert [p.name for p in out.iterdir() if p.suffix == ".mp4" and p.is_file()] == ["ok1.mp4"]
    assert anna.read_bytes() == EXAMPLE_PHOTO.read_bytes()


def test_symlinked_subfolder_cannot_lead_outputs_out_of_out_dir(media, tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    os.symlink(elsewhere, out / "link")
    (tmp_path / "jobs.csv").write_text(f"source,driver,output\n{media / 'anna.jpg'},{media / 'good.mp4'},"
                                       "link/x.mp4\n")
    job, = load_jobs_file(tmp_path / "jobs.csv", out)
    assert "outside --out-dir" in job.error and job.error.startswith("jobs.csv:2: ")


def test_special_files_given_as_sources_or_drivers_are_failed_jobs_not_reads(media, tmp_path, capsys):
    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    with deadline(60):
        assert main(["batch", "--sources", str(media / "anna.jpg"), "--drivers", str(fifo), "--drivers",
                     "/dev/zero", "--out-dir", str(out), "--weight-free", "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "clip.mp4: is a FIFO (named pipe), not a regular file" in err
    assert "/dev/zero: is a character device, not a regular file" in err and WEIGHTS not in err


def test_special_sidecars_and_textures_are_never_read(media, tmp_path, capsys):
    fifo = tmp_path / "tex.png"
    os.mkfifo(fifo)
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(f'[[job]]\nsource = "{media / "anna.jpg"}"\ndriver = "{media / "good.mp4"}"\n'
                    f'texture = "{fifo}"\n\n'
                    f'[[job]]\nsource = "{media / "anna.jpg"}"\ndriver = "{media / "good.mp4"}"\n'
                    'driver_iuv = "/dev/zero"\noutput = "b.mp4"\n\n'
                    f'[[job]]\nsource = "{media / "anna.jpg"}"\ndriver = "{media / "good.mp4"}"\n'
                    'source_iuv = "/dev/urandom"\noutput = "c.mp4"\n')
    with deadline(60):
        assert main(["batch", "--jobs", str(jobs), "--weight-free", "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "cannot run: 3" in err and "tex.png: is a FIFO" in err
    assert "/dev/zero: is a character device" in err and "/dev/urandom: is a character device" in err


# -- the report (and every output) never names an input, and is a regular file or new ---------------------
@pytest.mark.parametrize("target", ["photo", "sidecar", "driver", "iuv-folder-file", "jobs-file", "dev-null",
                                    "folder", "fifo"])
def test_report_never_replaces_an_input_or_a_special_file(media, tmp_path, capsys, target):
    inputs = tmp_path / "inputs"
    shutil.copytree(media, inputs)
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(f"source,driver\n{inputs / 'anna.jpg'},{inputs / 'good.mp4'}\n")
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    report = {"photo": inputs / "anna.jpg", "sidecar": inputs / "anna_IUV.png", "driver": inputs / "good.mp4",
              "iuv-folder-file": inputs / "good.iuv" / "frame_00000_IUV.png", "jobs-file": jobs,
              "dev-null": Path("/dev/null"), "folder": inputs, "fifo": fifo}[target]
    before = {p: p.read_bytes() for p in inputs.rglob("*") if p.is_file()} | {jobs: jobs.read_bytes()}
    for extra in ([], ["--dry-run"], ["--overwrite"], ["--rerun"]):
        with deadline(60):
            code = main(["batch", "--jobs", str(jobs), "--out-dir", str(tmp_path / "out"), "--report", str(report),
                         "--size", "64", "--weight-free", *extra])
        assert code == 2, (target, extra)
        line, = error_lines(capsys.readouterr().err)
        assert "--report" in line and str(report) in line
    assert {p: p.read_bytes() for p in before} == before
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert not (tmp_path / "out").exists()


def test_a_job_output_that_names_any_input_fails_that_job_only(media, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    shutil.copytree(media, inputs)
    for name in ("anna.jpg", "good.mp4"):
        shutil.copyfile(inputs / name, inputs / f"x_{name}")
    shutil.copytree(inputs / "good.iuv", inputs / "x_good.iuv")
    shutil.copyfile(inputs / "anna_IUV.png", inputs / "x_anna_IUV.png")
    # --out-dir is the inputs' folder, so these outputs lie inside it; each names another job's input
    jobs = inputs / "jobs.csv"
    jobs.write_text("source,driver,output\n"
                    "anna.jpg,good.mp4,x_good.mp4\n"        # another row's driver
                    "x_anna.jpg,x_good.mp4,ok.mp4\n"
                    "bea.jpg,good.mp4,good.iuv/frame_00000_IUV.mov\n"  # inside an IUV folder
                    "bea.jpg,good.mp4,batch_report.json.mp4\n")
    before = {p: p.read_bytes() for p in inputs.rglob("*") if p.is_file()}
    assert main(["batch", "--jobs", str(jobs), "--size", "64", "--weight-free", "--workers", "1", "--overwrite"]) == 1
    capsys.readouterr()
    records = report_of(inputs / "batch_report.json")
    assert records["x_good.mp4"]["status"] == "failed" and "overwrite an input" in records["x_good.mp4"]["error"]
    assert records["frame_00000_IUV.mov"]["status"] == "failed"
    assert records["ok.mp4"]["status"] == "ok", records["ok.mp4"]
    assert records["batch_report.json.mp4"]["status"] == "ok"
    assert all(p.read_bytes() == data for p, data in before.items())


# -- CSV: the csv module's rules, no comments; formats say what they accept -----------------------------
def test_csv_rules_hash_rows_are_jobs_and_quoted_newlines_are_kept(media, tmp_path):
    odd = tmp_path / "#anna.jpg"
    shutil.copyfile(media / "anna.jpg", odd)
    newline = tmp_path / "two\nlines.jpg"
    shutil.copyfile(media / "anna.jpg", newline)
    good = media / "good.mp4"
    (tmp_path / "jobs.csv").write_bytes((
        "source,driver,output\r\n"
        f"#anna.jpg,{good},hash.mp4\r\n"
        "\r\n"
        ",,\r\n"
        f'"two\nlines.jpg","{good}","with, comma.mp4"\r\n').encode())
    jobs = load_jobs_file(tmp_path / "jobs.csv", tmp_path / "out")
    assert [j.source for j in jobs] == [odd, newline]  # no row silently dropped, the newline kept
    assert [j.output.name for j in jobs] == ["hash.mp4", "with, comma.mp4"]
    assert [j.origin for j in jobs] == ["jobs.csv:2", "jobs.csv:5"] and all(j.error is None for j in jobs)


def test_tsv_is_tab_separated_and_txt_comma_separated(media, tmp_path):
    anna, good = media / "anna.jpg", media / "good.mp4"
    (tmp_path / "jobs.tsv").write_text(f"source\tdriver\toutput\tsize\n{anna}\t{good}\ta, b.mp4\t96\n")
    job, = load_jobs_file(tmp_path / "jobs.tsv", tmp_path)
    assert job.output == tmp_path / "a, b.mp4" and job.options == {"size": 96}
    (tmp_path / "jobs.txt").write_text(f"source,driver\n{anna},{good}\n")
    job, = load_jobs_file(tmp_path / "jobs.txt", tmp_path)
    assert job.driver == good
    (tmp_path / "jobs.tsv").write_text(f"source,driver\n{anna},{good}\n")  # commas in a .tsv: said so
    with pytest.raises(Exception, match="tab-separated, as .tsv files are"):
        load_jobs_file(tmp_path / "jobs.tsv", tmp_path)
    (tmp_path / "jobs.json").write_text("{}")
    with pytest.raises(UsageError, match=r"\.csv \(comma-separated\), \.txt \(comma-separated\), \.tsv "
                                         r"\(tab-separated\) or|\.toml \(TOML\)"):
        load_jobs_file(tmp_path / "jobs.json", tmp_path)


@pytest.mark.parametrize("path, words", [("/dev/zero", "character device"), ("folder", "is a folder"),
                                         ("fifo", "FIFO"), ("missing.csv", "jobs file not found")])
def test_a_jobs_file_that_is_not_a_regular_file_is_refused_unread(tmp_path, capsys, path, words):
    if path == "folder":
        path = str(tmp_path)
    elif path == "fifo":
        os.mkfifo(tmp_path / "jobs.csv")
        path = str(tmp_path / "jobs.csv")
    elif path == "missing.csv":
        path = str(tmp_path / path)
    with deadline(30):
        assert main(["batch", "--jobs", path, "--out-dir", str(tmp_path / "o"), "--weight-free"]) == 1
    line, = error_lines(capsys.readouterr().err)
    assert words in line


# -- numeric bounds: one place, command line (exit 2, also --dry-run) and jobs files (per job) -------------
@pytest.mark.parametrize("option, value", [("--size", "100000"), ("--size", "66"), ("--size", "32"),
                                           ("--batch-size", "0"), ("--batch-size", "100000"),
                                           ("--densepose-size", "8"), ("--densepose-size", "100000")])
def test_numeric_options_out_of_bounds_are_usage_errors(media, tmp_path, capsys, option, value):
    for extra in ([], ["--dry-run"]):
        assert main(["batch", "--sources", str(media / "anna.jpg"), "--drivers", str(media / "good.mp4"),
                     "--out-dir", str(tmp_path / "out"), "--weight-free", option, value, *extra]) == 2
        line, = error_lines(capsys.readouterr().err)
        assert f"{option} must be " in line and value in line
    assert not (tmp_path / "out").exists()


def test_jobs_file_values_out_of_bounds_fail_their_job(media, tmp_path, capsys):
    anna, good = media / "anna.jpg", media / "good.mp4"
    (tmp_path / "jobs.csv").write_text("source,driver,output,size,batch_size,densepose_size\n"
                                       f"{anna},{good},a.mp4,100000,,\n{anna},{good},b.mp4,,0,\n"
                                       f"{anna},{good},c.mp4,,,5\n{anna},{good},d.mp4,64,2,64\n")
    assert main(["batch", "--jobs", str(tmp_path / "jobs.csv"), "--weight-free", "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "jobs.csv:2: size must be a multiple of 4 from 64 to 2048, got 100000" in err
    assert "jobs.csv:3: batch_size must be from 1 to 256, got 0" in err
    assert "jobs.csv:4: densepose_size must be from 32 to 4096, got 5" in err
    assert "cannot run: 3" in err and "to render: 1" in err


def test_check_bounds_is_the_one_definition():
    assert SIZE_BOUNDS == (64, 2048) and BATCH_SIZE_BOUNDS == (1, 256) and DENSEPOSE_SIZE_BOUNDS == (32, 4096)
    assert check_bounds("size", 256) == 256 and check_bounds("densepose_size", 800) == 800
    for name, value in (("size", 2052), ("size", 62), ("size", True), ("batch_size", 257), ("batch_size", 0),
                        ("densepose_size", 4097), ("size", "256")):
        with pytest.raises(UsageError, match=f"^--{name.replace('_', '-')} must be"):
            check_bounds(name, value)
        with pytest.raises(UsageError, match=f"^jobs.csv:3: {name} must be"):
            check_bounds(name, value, option=f"jobs.csv:3: {name}")


# -- a job's OSError is one line, never a traceback -------------------------------------------------------
@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "no space left on device"),
                                         (errno.EACCES, "permission denied"), (errno.EROFS, "read-only")])
def test_a_jobs_oserror_is_one_line(media, tmp_path, capsys, monkeypatch, code, words):
    import retarget.pipeline.job as job_module

    out = tmp_path / "out"

    def full_disk(job, *args, **kwargs):
        raise OSError(code, os.strerror(code), str(job.output_path()))

    monkeypatch.setattr(job_module, "run_video_job", full_disk)
    assert main(["batch", "--sources", str(media / "anna.jpg"), "--drivers", str(media / "good.mp4"), "--out-dir",
                 str(out), "--size", "64", "--weight-free", "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "OSError" not in err
    record, = report_of(out / "batch_report.json").values()
    assert record["error"] == f"{out / 'good_as_anna.mp4'}: {words}" + record["error"].split(words, 1)[1]
    assert f"FAILED  good_as_anna.mp4: {record['error']}" in err


# -- workers die with their parent; the report (and the workers' journal) lets a rerun always complete ----
def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_bind_to_parent_kills_the_child_when_the_parent_is_killed(tmp_path):
    """A process bound with bind_to_parent (as pool workers are) dies with a parent killed by SIGKILL."""
    import subprocess
    import sys
    import time

    repo = Path(__file__).resolve().parents[1]
    code = ("import os, subprocess, sys, time\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import os, time; from retarget.batch.worker import "
            "bind_to_parent; bind_to_parent(%d); print(os.getpid(), flush=True); time.sleep(60)' % os.getpid()],"
            " stdout=sys.stdout)\n"
            "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(repo)})
    child = int(parent.stdout.readline())
    assert _alive(child)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    for _ in range(50):
        if not _alive(child):
            break
        time.sleep(0.1)
    assert not _alive(child)


def _batch_media(root: Path) -> tuple[Path, Path]:
    sources = root / "sources"
    sources.mkdir()
    for name in ("anna", "bea"):
        shutil.copyfile(EXAMPLE_PHOTO, sources / f"{name}.jpg")
        shutil.copyfile(EXAMPLE_IUV, sources / f"{name}_IUV.png")
    make_driver(root / "clip.mp4", n=3, width=96, height=80, audio=False)
    return sources, root / "clip.mp4"


def test_a_rerun_completes_after_the_main_process_died_mid_job(tmp_path, capsys):
    """Whatever state a killed batch left (job handed out and maybe finished, or finished and only in the
    workers' journal), the rerun neither refuses an output the batch made nor redoes a journaled one."""
    from retarget.batch.report import journal_path

    sources, clip = _batch_media(tmp_path)
    out = tmp_path / "out"
    args = ["batch", "--sources", str(sources), "--drivers", str(clip), "--out-dir", str(out), "--size", "64",
            "--weight-free", "--workers", "1", "-q"]
    assert main(args) == 0
    report = out / "batch_report.json"
    data = json.loads(report.read_text())
    anna, bea = data["jobs"]
    finished = dict(bea)
    # the parent died: after handing anna's job to a worker that then wrote the output (report: running), and
    # after bea's worker journaled its job but before the parent recorded it (report: pending)
    anna.update(status="running", output_sha256=None, frames=None)
    bea.update(status="pending", output_sha256=None, frames=None)
    report.write_text(json.dumps(data))
    journal_path(report).write_text(json.dumps(finished) + "\n" + '{"output": "cut by a cra')
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")}
    assert main(args) == 0
    capsys.readouterr()
    records = report_of(report)
    assert records["clip_as_anna.mp4"]["status"] == "ok"  # replaced (the batch's own), not refused
    assert records["clip_as_bea.mp4"]["status"] == "skipped"  # the journal vouched for it
    assert (out / "clip_as_bea.mp4").stat().st_mtime_ns == mtimes["clip_as_bea.mp4"]
    assert not journal_path(report).exists()  # folded into the report


def _kill_batch_mid_run(tmp_path: Path, how: int) -> None:
    import subprocess
    import sys
    import time

    sources, _ = _batch_media(tmp_path)
    clip = tmp_path / "long.mp4"
    make_driver(clip, n=80, width=96, height=80, audio=False)
    out = tmp_path / "out"
    repo = Path(__file__).resolve().parents[1]
    args = [sys.executable, "-m", "retarget", "batch", "--sources", str(sources), "--drivers", str(clip),
            "--out-dir", str(out), "--size", "64", "--weight-free", "--workers", "2", "--threads", "1", "-q"]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    main_process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    report = out / "batch_report.json"
    workers: list[int] = []
    deadline_at = time.monotonic() + 120
    while time.monotonic() < deadline_at:  # until both workers run a job
        time.sleep(0.2)
        try:
            statuses = [r["status"] for r in json.loads(report.read_text())["jobs"]]
        except (OSError, ValueError):
            continue
        workers = [p for p in _children(main_process.pid) if _alive(p)]
        if statuses.count("running") == 2 and len(workers) >= 2:
            break
    assert main_process.poll() is None, main_process.communicate()
    time.sleep(1.0)
    os.kill(main_process.pid, how)
    main_process.communicate(timeout=60)
    for _ in range(100):
        if not any(_alive(p) for p in workers):
            break
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers), "a worker outlived the batch"
    rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    statuses = {r["status"] for r in json.loads(report.read_text())["jobs"]}
    assert statuses <= {"ok", "skipped"}


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=["kill-9", "term", "int"])
def test_workers_die_with_the_main_process_and_the_rerun_completes(tmp_path, how):
    _kill_batch_mid_run(tmp_path, how)


@pytest.mark.slow
def test_ctrl_c_to_the_process_group_with_an_idle_and_a_busy_worker_is_one_line(tmp_path):
    """Ctrl-C in a terminal reaches every process of the group: the batch says one line and exits 130; an idle
    worker printed a traceback from the pool's queue read, and the workers' tqdm semaphores were reported
    leaked by the resource tracker."""
    import subprocess
    import sys
    import time

    sources = tmp_path / "sources"
    sources.mkdir()
    shutil.copyfile(EXAMPLE_PHOTO, sources / "anna.jpg")
    shutil.copyfile(EXAMPLE_IUV, sources / "anna_IUV.png")
    drivers = tmp_path / "drivers"
    drivers.mkdir()
    make_driver(drivers / "a_short.mp4", n=3, width=96, height=80, audio=False)
    make_driver(drivers / "b_long.mp4", n=400, width=96, height=80, audio=False)
    out = tmp_path / "out"
    repo = Path(__file__).resolve().parents[1]
    args = [sys.executable, "-m", "retarget", "batch", "--sources", str(sources), "--drivers", str(drivers),
            "--out-dir", str(out), "--size", "64", "--weight-free", "--workers", "2", "--threads", "1", "-q"]
    proc = subprocess.Popen(args, env={**os.environ, "PYTHONPATH": str(repo)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    report = out / "batch_report.json"
    deadline_at, statuses = time.monotonic() + 180, []
    while time.monotonic() < deadline_at and proc.poll() is None:  # one job done (its worker idle), one running
        time.sleep(0.2)
        try:
            statuses = sorted(r["status"] for r in json.loads(report.read_text())["jobs"])
        except (OSError, ValueError):
            continue
        if statuses == ["ok", "running"]:
            break
    assert statuses == ["ok", "running"], proc.communicate()
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "leaked" not in err, err
    assert [line for line in err.splitlines() if line.startswith("error")] == [
        "error: interrupted; nothing half-written was kept (a rerun resumes from the DensePose cache)"], err
    assert not list(out.glob("*.tmp*")) and not (out / "b_long_as_anna.mp4").exists()
