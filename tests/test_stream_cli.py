"""``retarget stream``: live input to live output (retarget/cli/stream.py, retarget/pipeline/live_stream.py,
retarget/io/stream_io.py). Not to be confused with tests/test_stream.py (the bounded-queue helper).

Every test is bounded in time (subprocess timeouts, PyAV read timeouts); network tests use 127.0.0.1 only.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from retarget.cli.app import main
from tests.conftest import REPO, one_error_line
from tests.media import make_driver, sample_source

PY = sys.executable


def _env(home: Path, **extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), RETARGET_HOME=str(home), RETARGET_CACHE_DIR=str(home / "cache"),
               RETARGET_ENGINE="torch")
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.fixture
def clip(tmp_path):
    """A 12-frame 160x120 10 fps driver with its IUV sidecar, and the example photo (+ IUV)."""
    driver = tmp_path / "driver.mp4"
    make_driver(driver, n=12, audio=False)
    photo, _ = sample_source(tmp_path)
    return {"driver": driver, "iuv": tmp_path / "driver.iuv", "photo": photo, "dir": tmp_path}


def _y4m_bytes(path: Path, fps: int = 10) -> bytes:
    """The clip as YUV4MPEG2 (what `ffmpeg -i clip -f yuv4mpegpipe -` sends)."""
    buffer = io.BytesIO()
    with av.open(str(path)) as source, av.open(buffer, "w", format="yuv4mpegpipe") as out:
        stream = None
        for i, frame in enumerate(source.decode(video=0)):
            if stream is None:
                stream = out.add_stream("rawvideo", rate=fps)
                stream.width, stream.height, stream.pix_fmt = frame.width, frame.height, "yuv420p"
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def _decode(data_or_path) -> tuple[list, object]:
    """``([(pts, width, height)], stream facts)`` of a video given as bytes or a path."""
    target = io.BytesIO(data_or_path) if isinstance(data_or_path, bytes) else str(data_or_path)
    with av.open(target) as container:
        stream = container.streams.video[0]
        frames = [(f.pts, f.width, f.height) for f in container.decode(stream)]
        return frames, {"rate": stream.average_rate, "format": container.format.name}


def _stream_args(clip, *extra) -> list[str]:
    return ["stream", "--source", str(clip["photo"]), "--input-iuv", str(clip["iuv"]), *extra]


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_stdin_to_stdout_y4m_keeps_frame_count_size_and_timestamps(clip, tmp_path):
    data = _y4m_bytes(clip["driver"])
    stats = tmp_path / "stats.jsonl"
    run = subprocess.run([PY, "-m", "retarget", *_stream_args(clip, "--input", "-", "--output", "-", "--drop", "none",
                                                           "--stats", str(stats))],
                         input=data, capture_output=True, timeout=180, env=_env(tmp_path / "home"))
    assert run.returncode == 0, run.stderr.decode()
    got, facts = _decode(run.stdout)
    sent, sent_facts = _decode(data)
    assert facts["format"] == "yuv4mpegpipe"
    assert len(got) == len(sent) == 12
    assert [g[1:] for g in got] == [s[1:] for s in sent] == [(160, 120)] * 12
    assert [g[0] for g in got] == [s[0] for s in sent]
    assert facts["rate"] == sent_facts["rate"] == 10
    lines = [json.loads(line) for line in stats.read_text().splitlines()]
    assert [r["index"] for r in lines] == list(range(12)) and not any(r["dropped"] for r in lines)
    assert all(r["latency_ms"] >= 0 for r in lines)
    summary = [line for line in run.stderr.decode().splitlines() if line.startswith("stream:")]
    assert len(summary) == 1 and "in=12 out=12 dropped=0" in summary[0] and "latency_p95_ms=" in summary[0]


def test_the_person_is_replaced_frame_by_frame(clip, tmp_path):
    """The output is the retargeted clip, not the input copied: the source person (a dark top on a
    tinted photo) appears where the driver person is, the background stays."""
    from tests.media import tinted_source

    photo = tinted_source(tmp_path)
    out = tmp_path / "out.y4m"
    code = main(["stream", "--source", str(photo), "--input-iuv", str(clip["iuv"]), "--input", str(clip["driver"]),
                 "--output", str(out), "-q"])
    assert code == 0
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24").astype(np.float32) for f in container.decode(video=0)]
    with av.open(str(clip["driver"])) as container:
        driver = [f.to_ndarray(format="rgb24").astype(np.float32) for f in container.decode(video=0)]
    assert len(frames) == 12
    from densepose_adapter.precomputed import PrecomputedIUV

    sidecar = PrecomputedIUV(clip["iuv"])
    for i in (3, 8):
        person = sidecar.get(i).iuv[..., 0] > 0
        blue = frames[i][..., 2] - frames[i][..., 0]  # the tinted source is blue, the driver person is not
        assert blue[person].mean() > (driver[i][..., 2] - driver[i][..., 0])[person].mean() + 20
        assert np.abs(frames[i][~person] - driver[i][~person]).mean() < 12  # scene kept around the person


def test_udp_loopback_round_trip(clip, tmp_path):
    """The test sends the clip as MPEG-TS over udp://127.0.0.1, `retarget stream` reads it and sends its
    output to a second port, the test reads that back. Senders repeat the clip until frames come back
    (UDP packets sent before a receiver listens are lost), everything is bounded by timeouts."""
    port_in, port_out = _free_udp_port(), _free_udp_port()
    received: list = []
    errors: list = []
    done = threading.Event()

    def receive():
        try:
            with av.open(f"udp://127.0.0.1:{port_out}", format="mpegts", timeout=(60, 5),
                         options={"fifo_size": "1000000", "overrun_nonfatal": "1"}) as container:
                for frame in container.decode(video=0):
                    received.append((frame.pts, frame.width, frame.height))
                    if len(received) >= 8:
                        break
        except av.ExitError:
            pass  # read timeout: the sender is gone
        except Exception as exc:  # noqa: BLE001 - reported by the assertions below
            errors.append(exc)
        finally:
            done.set()

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    proc = subprocess.Popen([PY, "-m", "retarget", *_stream_args(clip, "--input", f"udp://127.0.0.1:{port_in}",
                                                                 "--output", f"udp://127.0.0.1:{port_out}",
                                                                 "--timeout", "20", "--on-missing", "background")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(tmp_path / "home"))
    with av.open(str(clip["driver"])) as source:
        frames = [f.to_ndarray(format="rgb24") for f in source.decode(video=0)]
    deadline = time.monotonic() + 90
    try:
        with av.open(f"udp://127.0.0.1:{port_in}?pkt_size=1316", "w", format="mpegts") as out:
            stream = out.add_stream("libx264", rate=10)
            stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
            stream.options = {"tune": "zerolatency", "preset": "ultrafast", "g": "5"}
            pts = 0
            while not done.is_set() and time.monotonic() < deadline and proc.poll() is None:
                for rgb in frames:
                    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                    frame.pts, frame.time_base = pts, Fraction(1, 10)
                    pts += 1
                    for packet in stream.encode(frame):
                        out.mux(packet)
                    time.sleep(0.05)
        receiver.join(30)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert not errors, errors
    assert len(received) >= 8, err.decode()
    assert {r[1:] for r in received} == {(160, 120)}
    assert all(b[0] > a[0] for a, b in zip(received, received[1:]))  # timestamps kept in order
    assert proc.returncode == 0, err.decode()


@pytest.mark.parametrize("suffix, sig", [(".ts", signal.SIGINT), (".mp4", signal.SIGINT), (".mp4", signal.SIGTERM)],
                         ids=["ts-sigint", "mp4-sigint", "mp4-sigterm"])
def test_sigint_stops_cleanly_and_the_output_decodes(clip, tmp_path, suffix, sig):
    driver = tmp_path / "long.mp4"
    make_driver(driver, n=60, fps=20, audio=False)
    out = tmp_path / f"out{suffix}"
    stats = tmp_path / "stats.jsonl"
    proc = subprocess.Popen([PY, "-m", "retarget", "stream", "--source", str(clip["photo"]), "--input-iuv",
                             str(tmp_path / "long.iuv"), "--input", str(driver), "--realtime", "--output", str(out),
                             "--stats", str(stats)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(tmp_path / "home"))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not (out.exists() and out.stat().st_size):
            time.sleep(0.05)
        time.sleep(0.6)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    err = err.decode()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "(interrupted)" in err
    frames, _ = _decode(out)
    assert 1 <= len(frames) < 60
    assert all(f[1:] == (160, 120) for f in frames)
    records = [json.loads(line) for line in stats.read_text().splitlines()]
    assert sum(not r["dropped"] and r["output_s"] is not None for r in records) == len(frames)


def _wait_until_reading_stdin(pid: int, limit: float = 120.0) -> None:
    """Until a thread of ``pid`` blocks in ``read(0, ...)`` (Linux ``/proc/PID/task/*/syscall``; elsewhere a
    fixed 10 s): a signal sent earlier could reach the process before its handlers are set."""
    tasks = Path(f"/proc/{pid}/task")
    if not tasks.is_dir():
        time.sleep(10)
        return
    read_calls = {"0", "63"}  # x86-64, arm64
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for task in list(tasks.iterdir()) if tasks.is_dir() else []:
            try:
                fields = (task / "syscall").read_text().split()
            except OSError:
                continue
            if len(fields) > 1 and fields[0] in read_calls and int(fields[1], 16) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("the stream never started reading its input")


@pytest.mark.parametrize("kind, sig", [("silent-tcp", signal.SIGINT), ("silent-pipe", signal.SIGTERM)])
def test_a_signal_while_the_input_opens_ends_the_wait_at_once(clip, tmp_path, kind, sig):
    """Opening blocks inside FFmpeg, where Python's signal handlers do not run: a silent sender held Ctrl-C off
    until --timeout ran out (a silent pipe: for ever, then a fatal abort over stdin's lock at exit)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    out = tmp_path / "never.ts"
    args = [PY, "-m", "retarget", *_stream_args(clip, "--output", str(out), "--timeout", "60")]
    stdin = None
    if kind == "silent-tcp":
        args += ["--input", f"tcp://127.0.0.1:{server.getsockname()[1]}"]
    else:
        read_end, write_end = os.pipe()  # a sender that never writes (its end stays open)
        stdin = read_end
        args += ["--input", "-"]
    proc = subprocess.Popen(args, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env(tmp_path / "home"))
    try:
        if kind == "silent-tcp":
            server.settimeout(60)
            conn, _ = server.accept()  # connected: FFmpeg now waits for data that never comes
        else:
            _wait_until_reading_stdin(proc.pid)  # past start-up (its signal handlers set): the input is opening
        time.sleep(1.0)
        start = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        server.close()
        if kind == "silent-pipe":
            os.close(read_end)
            os.close(write_end)
    err = err.decode()
    assert proc.returncode == 130, err
    assert elapsed < 5, elapsed
    assert "Traceback" not in err and "Fatal" not in err
    assert [line for line in err.splitlines() if line.startswith("error")] == [
        "error: interrupted; nothing half-written was kept (a rerun resumes from the DensePose cache)"]
    assert not out.exists() and not list(tmp_path.glob("*never*"))


def test_late_frames_are_dropped_and_latency_stays_bounded(clip, tmp_path, monkeypatch, capsys):
    """An artificially slow refiner (150 ms a frame) behind a 20 fps realtime input: with --drop late
    (the default for --realtime) the oldest waiting frames go, latency stays near one frame's work
    (with --drop none it would grow to seconds over the clip)."""
    driver = tmp_path / "fast.mp4"
    make_driver(driver, n=30, fps=20, audio=False)
    monkeypatch.setenv("RETARGET_STREAM_TEST_DELAY_MS", "150")
    stats = tmp_path / "stats.jsonl"
    code = main(["stream", "--source", str(clip["photo"]), "--input-iuv", str(tmp_path / "fast.iuv"), "--input",
                 str(driver), "--realtime", "--output", str(tmp_path / "out.ts"), "--stats", str(stats)])
    err = capsys.readouterr().err
    assert code == 0, err
    records = [json.loads(line) for line in stats.read_text().splitlines()]
    dropped = sum(r["dropped"] for r in records)
    shown = [r for r in records if not r["dropped"]]
    assert len(records) == 30 and dropped >= 5
    summary = [line for line in err.splitlines() if line.startswith("stream:")][0]
    assert f"dropped={dropped}" in summary and f"out={len(shown)}" in summary
    latencies = [r["latency_ms"] for r in shown]
    # bounded by about two frames' work (the frame rendered and the one waiting), whatever the machine's
    # load: the gaps between outputs measure a frame's work. With --drop none it grows over the clip. The
    # first frame out also carries the pipeline's warm-up (first calls of every kernel), which no drop policy
    # can shorten: it is left out.
    work = float(np.median(np.diff([r["output_s"] for r in shown]))) * 1000
    assert work >= 150 and max(latencies[1:]) < 3 * work + 200, (work, latencies)
    frames, _ = _decode(tmp_path / "out.ts")
    assert len(frames) == len(shown)


def test_drop_none_renders_every_frame_of_a_realtime_file(clip, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RETARGET_STREAM_TEST_DELAY_MS", "50")
    code = main(_stream_args(clip, "--input", str(clip["driver"]), "--realtime", "--drop", "none", "--output",
                             str(tmp_path / "out.mkv")))
    err = capsys.readouterr().err
    assert code == 0, err
    assert "in=12 out=12 dropped=0" in err
    assert len(_decode(tmp_path / "out.mkv")[0]) == 12


def _assert_nothing_written(folder: Path, name: str) -> None:
    assert not (folder / name).exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(f".{Path(name).stem}.")]


@pytest.mark.parametrize("kind", ["refused", "silent-udp", "camera", "empty-pipe", "garbage-pipe", "missing-file"])
def test_bad_inputs_fail_with_one_line_and_write_nothing(clip, tmp_path, monkeypatch, capsys, kind):
    port = _free_udp_port()
    spec = {"refused": f"rtsp://127.0.0.1:{port}/live", "silent-udp": f"udp://127.0.0.1:{port}",
            "camera": "/dev/video97", "empty-pipe": "-", "garbage-pipe": "-",
            "missing-file": str(tmp_path / "nope.mp4")}[kind]
    if kind.endswith("pipe"):
        data = b"" if kind == "empty-pipe" else bytes(np.random.default_rng(0).integers(0, 256, 4000, np.uint8))
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    start = time.monotonic()
    code = main(_stream_args(clip, "--input", spec, "--output", str(tmp_path / "out.ts"), "--timeout", "1",
                             "--stats", str(tmp_path / "stats.jsonl")))
    assert code == 1
    line = one_error_line(capsys)
    assert spec in line
    assert time.monotonic() - start < 60
    _assert_nothing_written(tmp_path, "out.ts")
    _assert_nothing_written(tmp_path, "stats.jsonl")
    expected = {"refused": "cannot open the stream", "silent-udp": "within 1 s", "camera": "no such camera",
                "empty-pipe": "pipe closed", "garbage-pipe": "not a video stream", "missing-file": "not found"}[kind]
    assert expected in line


def test_without_densepose_weights_or_input_iuv_the_error_names_the_fetch_command(clip, tmp_path, capsys):
    code = main(["stream", "--source", str(clip["photo"]), "--input", str(clip["driver"]), "--output",
                 str(tmp_path / "out.ts")])
    assert code == 1
    line = one_error_line(capsys)
    assert "retarget weights fetch" in line and "--input-iuv" in line
    _assert_nothing_written(tmp_path, "out.ts")


@pytest.mark.parametrize("args, fragment", [
    (["--drop", "sometimes"], "--drop"),
    (["--output", "out.avi"], "unknown output type"),
    (["--queue", "0"], "--queue"),
    (["--background", "plaid"], "--background"),
    (["--crf", "52"], "--crf must be 0..51"),
    (["--crf", "-1"], "--crf must be 0..51"),
    (["--crf", "10", "--output", "out.y4m"], "--crf applies to H.264 outputs"),
    (["--timeout", "nan"], "--timeout must be from more than 0"),  # a NaN wait never ended
    (["--timeout", "inf"], "--timeout must be from more than 0"),
    (["--timeout", "0"], "--timeout must be from more than 0"),
    (["--output", "same.ts", "--stats", "./same.ts"], "the same file as --output"),  # stats replaced the video
])
def test_bad_options_are_usage_errors(clip, tmp_path, monkeypatch, capsys, args, fragment):
    monkeypatch.chdir(tmp_path)
    base = _stream_args(clip, "--input", str(clip["driver"]))
    if "--output" not in args:
        base += ["--output", "x.ts"]
    assert main(base + args) == 2
    assert fragment in one_error_line(capsys)


def test_an_existing_output_needs_overwrite(clip, tmp_path, capsys):
    out = tmp_path / "out.ts"
    out.write_bytes(b"keep me")
    assert main(_stream_args(clip, "--input", str(clip["driver"]), "--output", str(out))) == 2
    assert "--overwrite" in one_error_line(capsys)
    assert out.read_bytes() == b"keep me"


def test_vcam_without_pyvirtualcam_is_a_clear_error(clip, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pyvirtualcam", None)  # not installed
    assert main(_stream_args(clip, "--input", str(clip["driver"]), "--output", "vcam")) == 2
    assert "retarget[vcam]" in one_error_line(capsys)


def test_crf_sets_the_h264_quality_of_a_stream_output(clip, tmp_path, capsys):
    sizes = {}
    for crf in ("0", "45"):
        out = tmp_path / f"crf{crf}.ts"
        assert main(_stream_args(clip, "--input", str(clip["driver"]), "--output", str(out), "--crf", crf)) == 0
        frames, _ = _decode(out)
        assert len(frames) == 12
        sizes[crf] = out.stat().st_size
    assert sizes["0"] > 1.8 * sizes["45"], sizes  # mostly MPEG-TS overhead at 160x120


def test_an_input_iuv_folder_numbered_from_an_offset_and_one_with_frames_missing_are_told(clip, tmp_path, capsys):
    """A folder numbered 263.. with exactly the file's frames streams what the same folder from 0 streams (with a
    note); a folder covering only some frames says how many frames it had no IUV for, instead of silently
    showing no person there."""
    import shutil

    def stream(folder, name):
        code = main(["stream", "--source", str(clip["photo"]), "--input-iuv", str(folder), "--input",
                     str(clip["driver"]), "--output", str(tmp_path / name)])
        err = capsys.readouterr().err
        assert code == 0, err
        with av.open(str(tmp_path / name)) as container:
            return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)], err

    files = sorted(clip["iuv"].glob("*.png"))
    for folder, numbers in (("offset", range(263, 275)), ("some", range(0, 5))):
        (tmp_path / folder).mkdir()
        for file, number in zip(files, numbers):
            shutil.copyfile(file, tmp_path / folder / f"{number:07d}_IUV.png")
    reference, err = stream(clip["iuv"], "zero.y4m")
    assert "note: " not in err.replace("note: coordinate", "")
    shifted, err = stream(tmp_path / "offset", "offset.y4m")
    assert "IUV frames 263..274 read as the input's frames 0..11" in err
    assert len(shifted) == len(reference) == 12
    for a, b in zip(shifted, reference):
        np.testing.assert_array_equal(a, b)
    _, err = stream(tmp_path / "some", "some.y4m")
    assert "no IUV for 7 of the 12 input frames it was read for (its frames: 0..4)" in err
