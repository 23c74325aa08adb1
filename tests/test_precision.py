"""`--precision bf16` runs bf16 only on CPUs with native bf16; elsewhere one warning line and fp32."""

from __future__ import annotations

import numpy as np
import pytest

from retarget.pipeline import Models, precision
from retarget.pipeline.job import VideoJob, run_video_job
from retarget.pipeline.video import VideoOptions
from tests.assets import coordinpaint_dir
from tests.media import make_driver, sample_source


def test_native_bf16_flags():
    assert precision.has_native_bf16({"avx512f", "avx512_bf16"})
    assert precision.has_native_bf16({"avx2", "amx_bf16", "amx_tile"})
    assert not precision.has_native_bf16({"avx512f", "avx512_vnni", "avx512bw"})  # Cascade Lake: emulated
    assert not precision.has_native_bf16(set())


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\n")
    assert precision.cpu_flags(info) == {"fpu", "avx2", "avx512_bf16"}
    assert precision.cpu_flags(tmp_path / "none") == set()


def test_cpu_description_names_the_model_and_the_extensions_that_decide_speed(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Xeon Test 1234\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n")
    text = precision.cpu_description(info)
    assert text.startswith("CPU Xeon Test 1234, ") and "avx2 avx512f avx512_vnni;" in text and "bf16" not in text
    info.write_text("processor\t: 0\nmodel name\t: Old\nflags\t\t: fpu sse\n")
    assert "none of avx2" in precision.cpu_description(info)


def test_effective_precision_falls_back_only_for_bf16_on_cpus_without_it():
    assert precision.effective_precision("bf16", "cpu", native_bf16=True) == ("bf16", None)
    chosen, warning = precision.effective_precision("bf16", "cpu", native_bf16=False)
    assert chosen == "fp32" and warning.startswith("warning: --precision bf16") and "\n" not in warning
    assert "AVX512-BF16" in warning and "running fp32" in warning
    assert precision.effective_precision("bf16", "cuda:0", native_bf16=False) == ("bf16", None)
    assert precision.effective_precision("fp32", "cpu", native_bf16=False) == ("fp32", None)


def _render(tmp_path, monkeypatch, native: bool, capsys) -> tuple[np.ndarray, str]:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setitem(precision._warned, "bf16", False)
    photo, _ = sample_source(tmp_path)
    driver = tmp_path / f"d{native}.mp4"
    make_driver(driver, n=3, width=96, height=80, audio=False)
    frames: list[np.ndarray] = []
    models = Models.from_checkpoint_dir(coordinpaint_dir())
    for name in ("fp32", "bf16"):
        job = VideoJob(source=photo, driver=driver, output=tmp_path / f"{name}{native}.mp4", size=64,
                       options=VideoOptions(precision=name, background="#204080", quiet=True))
        run_video_job(job, models, on_frame=lambda i, rgb: frames.append(rgb.astype(int)))
    half = len(frames) // 2
    return np.abs(np.stack(frames[:half]) - np.stack(frames[half:])), capsys.readouterr().err


def test_bf16_without_native_support_warns_once_and_runs_fp32(tmp_path, monkeypatch, capsys):
    diff, err = _render(tmp_path, monkeypatch, native=False, capsys=capsys)
    assert diff.max() == 0  # exactly the fp32 result
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "running fp32" in warnings[0]


def test_bf16_with_native_support_runs_bf16(tmp_path, monkeypatch, capsys):
    diff, err = _render(tmp_path, monkeypatch, native=True, capsys=capsys)
    assert 0 < diff.max() <= 12 and diff.mean() < 0.5  # really bf16, and close to fp32
    assert "warning:" not in err


@pytest.mark.parametrize("native", [False, True], ids=["no-native-bf16", "native-bf16"])
def test_bf16_without_weights_runs_the_weight_free_path_in_fp32_and_says_so(tmp_path, monkeypatch, capsys, native):
    """The weight-free path has no network to run at bf16; autocast reached its blends and failed ("expected dtype
    float ... got BFloat16"), on every CPU."""
    from retarget.cli import main

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    photo, _ = sample_source(tmp_path)
    driver = tmp_path / "d.mp4"
    make_driver(driver, n=3, width=96, height=80, audio=False)
    outs = {}
    for name in ("fp32", "bf16"):
        frames: list[np.ndarray] = []
        job = VideoJob(source=photo, driver=driver, output=tmp_path / f"{name}.mp4", size=64,
                       options=VideoOptions(precision=name, quiet=True))
        run_video_job(job, None, on_frame=lambda i, rgb: frames.append(rgb.copy()))
        outs[name] = np.stack(frames)
    assert np.array_equal(outs["fp32"], outs["bf16"])
    assert main(["video", "--source", str(photo), "--driver", str(driver), "--size", "64", "--weight-free",
                 "--precision", "bf16", "-o", str(tmp_path / "cli.mp4")]) == 0
    assert "the weight-free path runs in fp32" in capsys.readouterr().err
