"""Output formats (issue 24): --codec h264|ffv1|prores|png, --crf, PNG sequences (-o DIR/, -o name_%05d.png).

The lossless outputs are decoded and compared with the frames the pipeline produced (``on_frame``):
exact for FFV1 and PNG; H.264 ``--crf 0`` exact up to the RGB → yuv420p → RGB round trip, which the
test applies to the pipeline's frames itself.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from retarget.cli import main
from retarget.io.output import FOLDER_SIDECAR, PngSequenceWriter, has_encoder, output_spec
from retarget.io.video import VideoWriter, iter_frames, probe_video
from retarget.pipeline.job import VideoJob, run_video_job
from retarget.pipeline.video import VideoOptions
from tests.conftest import one_error_line
from tests.media import make_driver, sample_source


@pytest.fixture
def clip(tmp_path):
    photo, _ = sample_source(tmp_path)
    driver = tmp_path / "dance.mp4"
    iuvs = make_driver(driver, n=8)
    return photo, driver, iuvs


def odd_driver(driver: Path) -> Path:
    """``driver`` cropped to an odd size (159x119) as a lossless FFV1 .mkv (audio copied), with its IUV sidecar."""
    out = driver.with_name("odd.mkv")
    info = probe_video(driver)
    with VideoWriter(out, info.width - 1, info.height - 1, info.fps, info.time_base, audio_from=driver,
                     codec="ffv1") as writer:
        for frame in iter_frames(driver):
            writer.write(frame.rgb[:-1, :-1], frame.pts)
    folder = out.with_name("odd.iuv")
    folder.mkdir()
    for png in sorted(driver.with_name(driver.stem + ".iuv").iterdir()):
        cv2.imwrite(str(folder / png.name), cv2.imread(str(png), cv2.IMREAD_UNCHANGED)[:-1, :-1])
    return out


def render(photo: Path, driver: Path, output, **options) -> tuple[list[np.ndarray], object]:
    """Run a job; the frames the pipeline produced (before encoding) and the summary."""
    frames: list[np.ndarray] = []
    job = VideoJob(source=photo, driver=driver, output=output, size=64,
                   options=VideoOptions(quiet=True, **options))
    summary = run_video_job(job, None, on_frame=lambda i, rgb: frames.append(rgb.copy()))
    return frames, summary


def decode(path: Path) -> tuple[list[np.ndarray], list[float], bool]:
    """Frames (RGB), their times in seconds and whether there is audio."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoded = [(f.to_ndarray(format="rgb24"), float(f.time)) for f in container.decode(stream)]
        audio = bool(container.streams.audio)
    return [f for f, _ in decoded], [t for _, t in decoded], audio


def driver_times(driver: Path) -> list[float]:
    return [f.time for f in iter_frames(driver)]


def through_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """What a lossless yuv420p encode gives back: RGB → yuv420p → RGB (even size)."""
    rgb = np.ascontiguousarray(rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2])
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray(format="rgb24")


def test_ffv1_mkv_is_exactly_the_pipeline_frames_at_odd_size_with_timing_and_audio(clip):
    photo, driver, _ = clip
    odd = odd_driver(driver)
    frames, summary = render(photo, odd, None, codec="ffv1")
    assert summary.output == odd.with_name("odd_as_photo.mkv")  # without -o the extension follows the codec
    decoded, times, audio = decode(summary.output)
    assert len(decoded) == len(frames) == 8
    assert decoded[0].shape == (119, 159, 3)  # RGB stored as is: no crop to even sizes
    for ours, theirs in zip(frames, decoded):
        np.testing.assert_array_equal(theirs, ours)
    assert times == pytest.approx(driver_times(odd), abs=1e-3)  # Matroska keeps milliseconds
    assert audio


def test_h264_crf0_is_lossless_up_to_yuv420p_and_crf18_is_not(clip):
    photo, driver, _ = clip
    lossless, summary = render(photo, driver, driver.with_name("crf0.mp4"), crf=0)
    decoded, times, audio = decode(summary.output)
    assert len(decoded) == len(lossless) and audio
    diffs = [np.abs(d.astype(int) - through_yuv420p(f).astype(int)).max() for f, d in zip(lossless, decoded)]
    assert max(diffs) <= 1, diffs  # swscale's two conversions may round differently by one level
    assert times == pytest.approx(driver_times(driver), abs=1e-6)
    lossy, summary = render(photo, driver, driver.with_name("crf18.mp4"))  # the default
    decoded, _, _ = decode(summary.output)
    assert max(np.abs(d.astype(int) - through_yuv420p(f).astype(int)).max() for f, d in zip(lossy, decoded)) > 1


@pytest.mark.skipif(not has_encoder("prores"), reason="this PyAV build has no prores_ks encoder")
def test_prores_mov_keeps_size_timing_and_audio(clip):
    photo, driver, _ = clip
    odd = odd_driver(driver)
    frames, summary = render(photo, odd, None, codec="prores")
    assert summary.output.suffix == ".mov"
    decoded, times, audio = decode(summary.output)
    assert len(decoded) == len(frames) and decoded[0].shape == (119, 159, 3) and audio
    assert times == pytest.approx(driver_times(odd), abs=1e-6)
    error = np.mean([np.abs(d.astype(int) - f.astype(int)).mean() for f, d in zip(frames, decoded)])
    assert error < 1.0  # ProRes 4444 is near-lossless on these frames


@pytest.mark.parametrize("form", ["folder/", "pattern"])
def test_png_sequence_is_exactly_the_frames_with_the_drivers_count_and_timing(clip, capsys, form):
    photo, driver, _ = clip
    out = str(driver.parent / "seq") + "/" if form == "folder/" else str(driver.parent / "shot_%04d.png")
    assert main(["video", "--source", str(photo), "--driver", str(driver), "--size", "64", "--weight-free",
                 "-o", out]) == 0
    captured = capsys.readouterr()
    assert "note:" in captured.err and "no audio" in captured.err  # the driver's audio is not lost silently
    folder = driver.parent / "seq" if form == "folder/" else driver.parent
    pattern = "frame_%05d.png" if form == "folder/" else "shot_%04d.png"
    sidecar = folder / (FOLDER_SIDECAR if form == "folder/" else "shot.json")
    assert captured.out.strip() == (str(folder) if form == "folder/" else out)
    meta = json.loads(sidecar.read_text())
    count = sum(1 for _ in iter_frames(driver))
    assert meta["frame_count"] == count == probe_video(driver).frame_count == 8
    names = sorted(p.name for p in folder.glob("*.png") if p.name != "photo_IUV.png" and p.name[:5] in "frameshot_")
    assert names == [pattern % i for i in range(count)]
    assert [f["file"] for f in meta["frames"]] == names
    assert [f["time"] for f in meta["frames"]] == pytest.approx(driver_times(driver), abs=1e-6)
    assert meta["time_base"] == str(probe_video(driver).time_base) and Fraction(meta["fps"]) == 10
    assert "aac" in meta["audio"] and meta["driver"] == str(driver)
    assert not [p for p in driver.parent.iterdir() if ".part" in p.name]


def test_png_sequence_frames_equal_pipeline_frames_exactly_also_with_skip(clip):
    photo, driver, _ = clip
    frames, summary = render(photo, driver, str(driver.parent / "all") + "/", background="#204080")
    files = sorted((driver.parent / "all").glob("frame_*.png"))
    assert len(files) == len(frames) == 8
    for ours, path in zip(frames, files):
        np.testing.assert_array_equal(cv2.imread(str(path))[..., ::-1], ours)
    # --on-missing skip: only the frames produced, numbered consecutively, each with its driver time
    make_driver(driver, n=8, missing=(2, 3))
    frames, summary = render(photo, driver, str(driver.parent / "skip") + "/", on_missing="skip",
                             background="#204080")
    meta = json.loads((driver.parent / "skip" / FOLDER_SIDECAR).read_text())
    assert summary.frames == len(frames) == meta["frame_count"] == 6
    assert [f["file"] for f in meta["frames"]] == [f"frame_{i:05d}.png" for i in range(6)]
    times = driver_times(driver)
    assert [f["time"] for f in meta["frames"]] == pytest.approx(times[:2] + times[4:], abs=1e-6)


def test_png_sequence_is_all_or_nothing_and_overwrite_replaces_the_whole_sequence(clip, monkeypatch):
    photo, driver, _ = clip
    folder = driver.parent / "out"
    folder.mkdir()
    keep = folder / "notes.txt"  # not ours: never touched
    keep.write_text("mine")
    stale = folder / "take_00099.png"  # an older, longer take of the same sequence
    stale.write_bytes(b"old")
    pattern = str(folder / "take_%05d.png")
    real = PngSequenceWriter.write

    def failing(self, rgb, pts=None):
        if self.frames_written == 3:
            raise OSError(28, "No space left on device")
        real(self, rgb, pts)

    monkeypatch.setattr(PngSequenceWriter, "write", failing)
    with pytest.raises(OSError, match="No space left"):
        run_video_job(VideoJob(source=photo, driver=driver, output=pattern, size=64, overwrite=True,
                               options=VideoOptions(quiet=True)), None)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "take_00099.png"]  # nothing written, no temp
    monkeypatch.setattr(PngSequenceWriter, "write", real)
    args = ["video", "--source", str(photo), "--driver", str(driver), "--size", "64", "--weight-free", "-o", pattern]
    assert main(args) == 2  # take_00099.png exists: not replaced without --overwrite
    assert main([*args, "--overwrite"]) == 0
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["notes.txt", "take.json"] + [f"take_{i:05d}.png" for i in range(8)]
    assert keep.read_text() == "mine"


def test_png_sequence_never_writes_over_an_input(clip, capsys):
    photo, driver, _ = clip
    iuv_folder = driver.with_name("dance.iuv")
    code = main(["video", "--source", str(photo), "--driver", str(driver), "--size", "64", "--weight-free",
                 "-o", str(iuv_folder) + "/", "--overwrite"])
    assert code == 2 and "input" in one_error_line(capsys)


@pytest.mark.parametrize(("args", "needle"), [
    (["--crf", "99"], "--crf must be 0..51"),
    (["--crf", "-1"], "--crf must be 0..51"),
    (["--codec", "av1"], "--codec 'av1'"),
    (["--codec", "prores", "-o", "{d}/x.mp4"], ".mp4 cannot hold --codec prores; use .mov"),
    (["--codec", "ffv1", "-o", "{d}/x.mov"], ".mov cannot hold --codec ffv1; use .mkv"),
    (["-o", "{d}/x.avi"], "unknown output type '.avi'"),
    (["--codec", "png", "-o", "{d}/x.mp4"], "--codec png writes a PNG sequence"),
    (["--codec", "ffv1", "-o", "{d}/seq/"], "PNG sequence; --codec ffv1 needs a video file"),
    (["--crf", "0", "-o", "{d}/seq/"], "--crf applies to --codec h264 only"),
    (["--codec", "ffv1", "--crf", "0"], "--crf applies to --codec h264 only (FFV1 is always lossless)"),
    (["-o", "{d}/a_%d_%d.png"], "one %d field"),
    (["-o", "{d}/a_%05d.jpg"], "one %d field"),
])
def test_bad_output_options_are_one_line_exit_2_before_any_work(clip, capsys, args, needle):
    photo, driver, _ = clip
    args = [a.replace("{d}", str(driver.parent)) for a in args]
    before = sorted(driver.parent.iterdir())
    assert main(["video", "--source", str(photo), "--driver", str(driver), "--size", "64", "--weight-free",
                 *args]) == 2
    assert needle in one_error_line(capsys)
    assert sorted(driver.parent.iterdir()) == before


def test_missing_encoder_is_a_clear_error(monkeypatch):
    from retarget.errors import UsageError
    from retarget.io import output

    monkeypatch.setattr(output, "has_encoder", lambda codec: codec == "h264")
    with pytest.raises(UsageError, match="no prores_ks encoder"):
        output_spec("x.mov", "prores")


def test_audio_the_container_cannot_hold_is_dropped_with_a_note(tmp_path, capsys):
    """A Matroska driver with TTA audio (lossless, which .mov cannot hold) written to .mov: the video is
    written without audio, and a note says so."""
    name = "tta"
    try:
        av.codec.Codec(name, "w")
    except Exception:  # noqa: BLE001
        pytest.skip("no TTA encoder in this PyAV build")
    driver = tmp_path / "v.mkv"
    with av.open(str(driver), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "bgr0"
        audio = container.add_stream(name, rate=16000)
        audio.layout = "mono"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 10)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        samples = av.AudioFrame.from_ndarray(np.zeros((1, 4800), np.int16), format="s16", layout="mono")
        samples.sample_rate, samples.pts = 16000, 0
        for packet in [*audio.encode(samples), *audio.encode(None)]:
            container.mux(packet)
    from retarget.io.output import open_output

    info = probe_video(driver)
    with open_output(tmp_path / "o.mov", 64, 48, info.fps, info.time_base, audio_from=driver) as writer:
        for frame in iter_frames(driver):
            writer.write(frame.rgb, frame.pts)
    assert f"audio ({name}) cannot be stored in .mov" in capsys.readouterr().err
    decoded, _, has_audio = decode(tmp_path / "o.mov")
    assert len(decoded) == 3 and not has_audio


def test_batch_codec_settings_name_outputs_and_rerun_skips_sequences(clip, tmp_path):
    photo, driver, _ = clip
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(f"source,driver,output,codec,crf\n{photo},{driver},,ffv1,\n{photo},{driver},seq/,,\n"
                    f"{photo},{driver},lossless.mp4,,0\n")
    out = tmp_path / "out"
    args = ["batch", "--jobs", str(jobs), "--out-dir", str(out), "--weight-free", "--size", "64", "--workers", "1",
            "-q"]
    assert main(args) == 0
    report = json.loads((out / "batch_report.json").read_text())
    records = {Path(r["output"]).name: r for r in report["jobs"]}
    assert set(records) == {"dance_as_photo.mkv", "seq", "lossless.mp4"}
    assert all(r["status"] == "ok" and r["frames"] == 8 and r["output_sha256"] for r in records.values())
    assert len(list((out / "seq").glob("frame_*.png"))) == 8  # relative outputs are under --out-dir
    assert main(args) == 0  # again: every job verified finished, PNG sequence included
    report = json.loads((out / "batch_report.json").read_text())
    assert {r["status"] for r in report["jobs"]} == {"skipped"}


@pytest.mark.parametrize(("extra", "needle"), [
    (["--crf", "52"], "--crf must be 0..51"),
    (["--codec", "prores", "--crf", "3"], "--crf applies to --codec h264 only"),
])
def test_batch_bad_output_options_exit_2(clip, tmp_path, capsys, extra, needle):
    photo, driver, _ = clip
    assert main(["batch", "--sources", str(photo), "--drivers", str(driver), "--out-dir", str(tmp_path / "o"),
                 "--weight-free", "-q", *extra]) == 2
    assert needle in one_error_line(capsys)


def test_batch_jobs_file_output_that_cannot_hold_the_codec_fails_that_job(clip, tmp_path, capsys):
    """A jobs-file row is one job: its bad output fails it (reported, exit 1); --fail-fast refuses up front (2)."""
    photo, driver, _ = clip
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(f'[[job]]\nsource = "{photo}"\ndriver = "{driver}"\noutput = "x.mp4"\ncodec = "prores"\n')
    assert main(["batch", "--jobs", str(jobs), "--weight-free", "-q"]) == 1
    report = json.loads((tmp_path / "batch_report.json").read_text())
    assert ".mp4 cannot hold --codec prores" in report["jobs"][0]["error"]
    capsys.readouterr()
    assert main(["batch", "--jobs", str(jobs), "--weight-free", "-q", "--fail-fast"]) == 2
    assert ".mp4 cannot hold --codec prores" in one_error_line(capsys)


def test_crf0_torch_and_openvino_engines_agree_within_one_level(clip, tmp_path, monkeypatch):
    """`retarget video --crf 0` with the tiny official-format checkpoints: torch and OpenVINO (compiled f32
    through compile_cpu) give decoded frames within 1 grey level of each other."""
    pytest.importorskip("openvino")
    from densepose_adapter import openvino_cache
    from tests.assets import coordinpaint_dir

    hints, compile_cpu = [], openvino_cache.compile_cpu
    monkeypatch.setattr(openvino_cache, "compile_cpu",
                        lambda model, precision_hint, *args, **kw: hints.append(precision_hint)
                        or compile_cpu(model, precision_hint, *args, **kw))
    photo, driver, _ = clip
    outputs = {}
    for engine in ("torch", "openvino"):
        out = tmp_path / f"{engine}.mp4"
        assert main(["video", "--source", str(photo), "--driver", str(driver), "--size", "64", "--checkpoint-dir",
                     str(coordinpaint_dir()), "--precision", "fp32", "--engine", engine, "--crf", "0",
                     "-o", str(out), "-q"]) == 0
        outputs[engine] = np.stack(decode(out)[0]).astype(np.int16)
    assert hints and set(hints) == {"f32"}  # only the openvino run compiled, at f32
    assert outputs["torch"].shape == outputs["openvino"].shape == (8, 120, 160, 3)
    diff = np.abs(outputs["torch"] - outputs["openvino"])
    assert diff.max() <= 1, (diff.max(), (diff > 0).mean())
    assert outputs["torch"].std() > 5


def test_keep_partial_png_sequence_goes_to_a_partial_folder(tmp_path, capsys):
    """A driver corrupt at frame 6 with --keep-partial: the 6 frames before it in ``seq.partial/``, exit 1."""
    from tests import badmedia

    frames, iuvs = badmedia.person_frames(10, 96, 96)
    path = badmedia.write_video(tmp_path / "coded.mov", frames, codec="png", fmt="mov", pix_fmt="rgb24")
    with av.open(str(path)) as container:
        entry = container.streams.video[0].index_entries[6]
    data = bytearray(path.read_bytes())
    start = entry.pos + entry.size // 3
    data[start:start + 40] = bytes(b ^ 0xFF for b in data[start:start + 40])
    driver = tmp_path / "damaged.mov"
    driver.write_bytes(bytes(data))
    np.savez(tmp_path / "damaged.iuv.npz", iuv=iuvs)
    source, _ = badmedia.write_source(tmp_path / "src")
    assert main(["video", "--source", str(source), "--driver", str(driver), "-o", str(tmp_path / "seq") + "/",
                 "--weight-free", "-q", "--keep-partial"]) == 1
    assert "kept the 6 frames" in one_error_line(capsys)
    assert not (tmp_path / "seq").exists()
    meta = json.loads((tmp_path / "seq.partial" / FOLDER_SIDECAR).read_text())
    assert meta["frame_count"] == 6 == len(list((tmp_path / "seq.partial").glob("frame_*.png")))


@pytest.mark.parametrize(("named", "codec", "shown", "sidecar", "first", "partial_first"), [
    ("out/", None, "out", "out/frames.json", "out/frame_00000.png", "out.partial/frame_00000.png"),
    ("out", "png", "out", "out/frames.json", "out/frame_00000.png", "out.partial/frame_00000.png"),
    ("d/name_%05d.png", None, "d/name_%05d.png", "d/name.json", "d/name_00000.png", "d/name.partial_00000.png"),
    ("d/%04d.png", "png", "d/%04d.png", "d/frames.json", "d/0000.png", "d/partial_0000.png"),
    ("d/clip.mkv", "ffv1", "d/clip.mkv", None, None, "d/clip.partial.mkv"),
])
def test_output_spec_names(named, codec, shown, sidecar, first, partial_first):
    spec = output_spec(named, codec)
    assert str(spec.display) == shown
    assert (str(spec.sidecar) if spec.sidecar else None) == sidecar
    if spec.is_sequence:
        assert str(spec.path / spec.file_name(0)) == first
        partial = spec.partial()
        assert str(partial.path / partial.file_name(0)) == partial_first
        assert spec.matches(Path(first).name) and not spec.matches("other.png")
    else:
        assert str(spec.partial().path) == partial_first and spec.codec == codec


def test_an_odd_sized_driver_to_h264_says_its_frames_lose_a_row_and_column(clip, capsys):
    photo, driver, _ = clip
    odd = odd_driver(driver)
    out = odd.with_name("odd_h264.mp4")
    assert main(["video", "--source", str(photo), "--driver", str(odd), "--size", "64", "--weight-free",
                 "-o", str(out)]) == 0
    assert ("stored at 158x118: H.264 needs even sides, so the 159x119 frames lose their last odd column / row"
            in capsys.readouterr().err)
    assert decode(out)[0][0].shape == (118, 158, 3)
