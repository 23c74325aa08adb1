"""``retarget ui`` (issue 27): the page runs the job of ``retarget video`` (same job, same frames), follows its
stages, stops on Cancel, keeps to its limits; served over HTTP for ``gradio_client`` (the ``/retarget``
endpoint) and for a real browser (headless system Chromium driven by Playwright: the one-click example
renders and its video plays); stops cleanly on SIGINT/SIGTERM, removing its files.

Tests needing Gradio, gradio_client, Playwright or Chromium skip when one is missing, and fail under CI.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import typer

from retarget.cli import main
from retarget.cli.app import app
from retarget.errors import InputError, UsageError
from retarget.pipeline.video import RENDER_LABEL
from retarget.ui import GRADIO_MISSING
from retarget.ui.jobs import (
    SOURCE_PREPARE_LABEL,
    Cancelled,
    Limits,
    Settings,
    make_job,
    people_preview,
    public_message,
    run_job,
    stage_frames,
    unpack_driver_iuv,
)
from tests.conftest import REPO, in_ci, one_error_line
from tests.media import make_driver, make_group_driver, read_video, sample_source

SMALL = Settings(size=64, weight_free=True)  # tiny and weight-free: fast


def _need(module: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        if in_ci():
            pytest.fail(f"{module} is not installed: `make setup` installs it (extras ui and dev)")
        pytest.skip(f"{module} is not installed (pip install 'retarget[ui]'; playwright: the dev extra)")


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    if in_ci():
        pytest.fail("chromium is not installed: .ci/run installs it for this test")
    pytest.skip("chromium is not installed (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _zip(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as out:
        for png in sorted(folder.glob("*_IUV.png")):
            out.write(png, f"nested/{png.name}")
    return archive


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """photo.jpg + photo_IUV.png; clip.mp4 (8 frames, 160x120) + clip.iuv/ and the same as clip_IUV.zip."""
    root = tmp_path_factory.mktemp("ui_media")
    photo, photo_iuv = sample_source(root)
    driver = root / "clip.mp4"
    make_driver(driver, n=8)
    archive = _zip(root / "clip.iuv", root / "clip_IUV.zip")
    return {"photo": photo, "photo_iuv": photo_iuv, "driver": driver, "driver_iuv": archive, "root": root}


def _cli_frames(media, out: Path, *options: str) -> list[np.ndarray]:
    code = main(["video", "--source", str(media["photo"]), "--driver", str(media["driver"]), "-o", str(out),
                 "--weight-free", "-q", *options])
    assert code == 0
    return read_video(out)[0]


# -- the same job as `retarget video` -------------------------------------------------------------------------
def test_page_defaults_are_those_of_retarget_video():
    params = {p.name: p.default for p in typer.main.get_command(app).commands["video"].params}
    for name, value in dataclasses.asdict(Settings()).items():
        assert params[name] == value, f"{name}: the page's default {value!r}, `retarget video`'s {params[name]!r}"


def test_page_builds_the_job_retarget_video_builds(media, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr("retarget.pipeline.job.run_video_job", lambda job, models, **kw: seen.append(job) or 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "video", "--source", str(media["photo"]), "--driver", str(media["driver"]), "-o",
              str(tmp_path / "cli.mp4"), "--weight-free", "--size", "96", "--person", "left", "--side-by-side"])
    cli = seen[0]
    page = make_job(media["photo"], media["driver"], media["photo_iuv"], media["driver_iuv"],
                    Settings(size=96, person="left", side_by_side=True, weight_free=True), tmp_path / "run")
    files = {"source", "driver", "output", "source_iuv", "driver_iuv"}
    assert {k: v for k, v in vars(page).items() if k not in files | {"options"}} == \
        {k: v for k, v in vars(cli).items() if k not in files | {"options"}}
    differ = {"command", "quiet"}  # what messages name and whether bars are drawn
    assert {k: v for k, v in vars(page.options).items() if k not in differ} == \
        {k: v for k, v in vars(cli.options).items() if k not in differ}
    assert page.options.command == "ui" and page.source.parent == page.driver.parent == tmp_path / "run"


def test_page_renders_the_frames_retarget_video_renders(media, tmp_path):
    expected = _cli_frames(media, tmp_path / "cli.mp4", "--size", "64", "--background", "source")
    stages = []
    job = make_job(media["photo"], media["driver"], media["photo_iuv"], media["driver_iuv"],
                   dataclasses.replace(SMALL, background="source"), tmp_path / "run")
    result = run_job(job, None, progress=lambda stage, done, total: stages.append((stage, done, total)))
    got = read_video(result.output)[0]
    assert len(got) == len(expected) == 8
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))
    # progress follows the real stages, each to its end; the texture is written
    names = [s for s, _, _ in stages]
    assert names[0] == SOURCE_PREPARE_LABEL and "1/2 read IUV + track person" in names and RENDER_LABEL in names
    assert (RENDER_LABEL, 8, 8) in stages and ("1/2 read IUV + track person", 8, 8) in stages
    assert result.texture is not None and result.texture.is_file()


def test_cancel_stops_the_job_between_frames_and_keeps_nothing(media, tmp_path):
    cancel = threading.Event()
    rendered = []

    def progress(stage, done, total):
        if stage == RENDER_LABEL:
            rendered.append(done)
            if done == 2:
                cancel.set()

    job = make_job(media["photo"], media["driver"], media["photo_iuv"], media["driver_iuv"], SMALL, tmp_path / "run")
    with pytest.raises(Cancelled):
        run_job(job, None, progress=progress, cancel=cancel)
    assert max(rendered) == 2  # stopped at the next frame, not at the end
    assert not job.output.exists() and not list(job.output.parent.glob("*result*"))
    assert public_message(Cancelled()) == "cancelled; nothing was kept"


# -- limits and uploads ---------------------------------------------------------------------------------------
def test_upload_and_duration_limits_say_which_option_raises_them(media, tmp_path):
    with pytest.raises(InputError, match=r"source photo is 0.0144 MB; this page accepts uploads up to 0.001 MB .*"
                                         r"--max-upload-mb"):
        make_job(media["photo"], media["driver"], None, None, SMALL, tmp_path / "a", limits=Limits(max_upload_mb=0.001))
    with pytest.raises(InputError, match=r"the driving video is 0.8 s long; this page renders up to 0.5 s .*"
                                         r"--max-seconds"):
        make_job(media["photo"], media["driver"], None, None, SMALL, tmp_path / "b", limits=Limits(max_seconds=0.5))


def test_uploads_are_checked(media, tmp_path):
    with pytest.raises(InputError, match="give a source photo"):
        make_job(None, media["driver"], None, None, SMALL, tmp_path / "a")
    with pytest.raises(InputError, match="give a driving video"):
        make_job(media["photo"], None, None, None, SMALL, tmp_path / "b")
    with pytest.raises(InputError, match=r"driving video 'photo_IUV.png': expected one of \.mp4"):
        make_job(media["photo"], media["photo_iuv"], None, None, SMALL, tmp_path / "c")
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as out:
        out.writestr("readme.txt", "no IUV here")
    (tmp_path / "d").mkdir()
    with pytest.raises(InputError, match=r"the zip holds no \*_IUV.png"):
        unpack_driver_iuv(bad, tmp_path / "d", Limits())
    not_zip = tmp_path / "fake.zip"
    not_zip.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a usable zip"):
        unpack_driver_iuv(not_zip, tmp_path / "d", Limits())


def test_driver_iuv_zip_is_unpacked_flat_without_its_folders(media, tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as out:
        out.write(media["root"] / "clip.iuv" / "frame_00000_IUV.png", "../../escape/frame_00000_IUV.png")
    (tmp_path / "run").mkdir()
    folder = unpack_driver_iuv(evil, tmp_path / "run", Limits())
    assert [p.name for p in folder.iterdir()] == ["frame_00000_IUV.png"]
    assert not (tmp_path / "escape").exists()


def test_a_bad_setting_gets_the_option_message(media, tmp_path):
    job = make_job(media["photo"], media["driver"], media["photo_iuv"], media["driver_iuv"],
                   dataclasses.replace(SMALL, background="purple"), tmp_path / "run")
    with pytest.raises(UsageError, match="--background 'purple': expected scene, source or #RRGGBB"):
        run_job(job, None)


def test_missing_densepose_weights_name_the_uploads_and_the_weights_command(media, tmp_path):
    job = make_job(media["photo"], media["driver"], None, None, SMALL, tmp_path / "run")
    with pytest.raises(Exception) as info:
        run_job(job, None)
    text = public_message(info.value, tmp_path / "run")
    assert text.startswith("source.jpg (the source photo) and driver.mp4 (the driving video) need DensePose"), text
    assert "`retarget weights fetch densepose-r50-fpn-s1x`" in text and "upload its IUV" in text
    assert "--" not in text  # no command-line option on a web page


# -- people, texture, stage frames ----------------------------------------------------------------------------
def test_people_picture_numbers_the_people_from_the_left(tmp_path):
    driver = tmp_path / "group.mp4"
    make_group_driver(driver, sidecar="npz")
    image, caption, numbers = people_preview(driver, driver.with_name("group.iuv.npz"),
                                             Settings(person="left"), tmp_path / "people")
    assert numbers == ["1", "2"] and image.shape == (120, 200, 3)
    assert caption.startswith("frame 0: 2 people, numbered from the left") and "person 1 (yellow)" in caption
    assert (image[..., 0] > 240).sum() > 0  # the chosen box is drawn in yellow


def test_stage_frames_of_a_finished_render(media, tmp_path):
    job = make_job(media["photo"], media["driver"], media["photo_iuv"], media["driver_iuv"], SMALL, tmp_path / "run")
    result = run_job(job, None)
    found = stage_frames(result, 3, tmp_path / "frames", None)
    assert [entry.index for entry in found.frames] == [3]
    assert found.index_html.is_file() and all(p.is_file() for p in found.files)


# -- the command ----------------------------------------------------------------------------------------------
def test_without_gradio_one_line_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio raises ImportError
    assert main(["ui"]) == 2
    assert one_error_line(capsys) == f"error: {GRADIO_MISSING}"
    assert "pip install 'retarget[ui]'" in GRADIO_MISSING


# -- served: gradio_client over HTTP ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served():
    _need("gradio")
    from retarget.ui.app import UiConfig, start

    running = start(UiConfig(port=free_port(), defaults=Settings(size=64)))
    yield running
    running.close()
    assert not running.server.root.exists()  # uploads and outputs are gone


def test_app_in_process_has_the_named_endpoint_and_queue(served):
    demo = served.demo
    named = [fn for fn in demo.fns.values() if fn.api_name == "retarget"]
    assert len(named) == 1 and named[0].concurrency_limit == 1
    assert served.url.startswith("http://127.0.0.1:")


def test_client_renders_through_the_retarget_endpoint_as_the_cli_does(served, media, tmp_path):
    client_module = _need("gradio_client")
    client = client_module.Client(served.url, verbose=False, download_files=str(tmp_path / "downloads"))
    handle = client_module.handle_file
    start = time.monotonic()
    out = client.predict(handle(str(media["photo"])), handle(str(media["driver"])), handle(str(media["photo_iuv"])),
                         handle(str(media["driver_iuv"])), weight_free=True, size=64, side_by_side=True,
                         api_name="/retarget")
    assert time.monotonic() - start < 120
    path = Path(out["video"] if isinstance(out, dict) else out)
    expected = _cli_frames(media, tmp_path / "cli.mp4", "--size", "64", "--side-by-side")
    got = read_video(path)[0]
    assert len(got) == len(expected) and all(np.array_equal(a, b) for a, b in zip(got, expected))
    # an error reaches the client as the page's one-line message
    with pytest.raises(Exception, match=r"--person 3: frame 0, the driver.s first frame with people, has 1 person"):
        client.predict(handle(str(media["photo"])), handle(str(media["driver"])), handle(str(media["photo_iuv"])),
                       handle(str(media["driver_iuv"])), weight_free=True, size=64, person="3", api_name="/retarget")


def test_the_api_example_of_docs_ui_md_runs(served, monkeypatch, capsys):
    _need("gradio_client")
    text = (REPO / "docs" / "ui.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert 'api_name="/retarget"' in code and "http://127.0.0.1:7860/" in code
    code = code.replace("http://127.0.0.1:7860/", served.url)
    code = code.replace('"driver_IUV.zip"', repr(served.server.example()[3]))
    code = code.replace("side_by_side=True,", "side_by_side=True, size=64,")  # tiny: fast
    monkeypatch.chdir(REPO)
    exec(compile(code, "docs/ui.md", "exec"), {})
    video = Path(capsys.readouterr().out.strip().splitlines()[-1])
    frames, info = read_video(video)
    assert len(frames) == 60 and (info["width"], info["height"]) == (960, 360)  # driver | result


@contextlib.contextmanager
def _example_started(served):
    """A headless system Chromium on the served page, with the one-click example just clicked: the page."""
    _need("playwright")
    browser_path = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(served.url)
            page.click("#run_example")
            yield page
        finally:
            browser.close()


def test_browser_runs_the_one_click_example_and_the_video_plays(served):
    with _example_started(served) as page:
        page.wait_for_function("() => { const v = document.querySelector('#result video'); return v && v.src; }",
                               timeout=150_000)
        state = page.eval_on_selector("#result video", """async v => {
            v.muted = true;
            await v.play();
            const start = v.currentTime;
            await new Promise(r => setTimeout(r, 1200));
            return {ready: v.readyState, start: start, now: v.currentTime, error: v.error && v.error.code,
                    duration: v.duration}; }""")
        assert state["error"] is None and state["ready"] >= 2, state
        assert state["now"] > state["start"] and state["duration"] == pytest.approx(3.0, abs=0.1), state
        page.wait_for_selector("#status strong", timeout=30_000)
        assert re.match(r"60 frames in", page.inner_text("#status"))
        assert page.eval_on_selector("#texture img", "img => img.naturalWidth") > 0


def test_cancel_button_stops_the_running_job(served, monkeypatch):
    import retarget.ui.app as page_module

    real = page_module.run_job

    def slowed(job, models, progress=None, cancel=None):  # 60 frames take a few seconds: time to press Cancel
        def report(stage, done, total):
            time.sleep(0.05)
            progress(stage, done, total)

        return real(job, models, progress=report, cancel=cancel)

    monkeypatch.setattr(page_module, "run_job", slowed)
    before = set(served.server.sessions)
    with _example_started(served) as page:
        page.wait_for_selector("text=/2\\/2 render/", timeout=120_000)  # the progress bar's stage
        page.click("#cancel")
        page.wait_for_selector("#status >> text=Cancelled", timeout=10_000)
        (session,) = [served.server.sessions[k] for k in set(served.server.sessions) - before]
        deadline = time.monotonic() + 20
        while served.server.render_lock.locked() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not served.server.render_lock.locked()  # the job has stopped, long before its end
        assert session.cancel.is_set() and session.last is None
        run = session.folder / "run-1"
        assert (run / "texture.png").is_file() and not list(run.glob("*result*"))  # no video kept
        assert page.eval_on_selector("#result", "e => e.querySelector('video') === null")


# -- a clean stop ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)],
                         ids=["SIGTERM", "SIGINT"])  # one handler for both: Ctrl-C in the slow run
def test_signal_stops_the_server_and_removes_its_files(sig, tmp_path):
    _need("gradio")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "retarget", "ui", "--port", str(port)], cwd=tmp_path, env=env,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 90
        while "serving" not in line and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stderr.readline()
        found = re.search(r"serving (\S+) \(uploads and outputs in (\S+),", line)
        assert found, line
        assert found.group(1).startswith(f"http://127.0.0.1:{port}")
        root = Path(found.group(2))
        assert root.is_dir()
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0
        assert not root.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_stopping_the_server_stops_a_running_render_and_removes_everything(media, monkeypatch):
    """What Ctrl-C/SIGTERM do after the signal (serve() then closes the page this way)."""
    client_module = _need("gradio_client")
    import retarget.ui.app as page_module
    from retarget.ui.app import UiConfig, start

    real, reached = page_module.run_job, []

    def slowed(job, models, progress=None, cancel=None):
        def report(stage, done, total):
            reached.append((stage, done))
            time.sleep(0.2)
            progress(stage, done, total)

        return real(job, models, progress=report, cancel=cancel)

    monkeypatch.setattr(page_module, "run_job", slowed)
    running = start(UiConfig(port=free_port(), defaults=SMALL))
    try:
        client = client_module.Client(running.url, verbose=False)
        handle = client_module.handle_file
        client.submit(handle(str(media["photo"])), handle(str(media["driver"])), handle(str(media["photo_iuv"])),
                      handle(str(media["driver_iuv"])), api_name="/retarget")
        deadline = time.monotonic() + 60
        while not any(stage == RENDER_LABEL for stage, _ in reached) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(stage == RENDER_LABEL for stage, _ in reached)
    finally:
        start_close = time.monotonic()
        running.close()
    assert time.monotonic() - start_close < 20
    assert max(done for stage, done in reached if stage == RENDER_LABEL) < 8  # stopped before its end
    assert not running.server.root.exists()


def test_port_in_use_is_one_error_line(capsys):
    _need("gradio")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["ui", "--port", str(port)]) == 1
    line = one_error_line(capsys)
    assert line.startswith(f"error: cannot serve on 127.0.0.1:{port}") and "--port N" in line
