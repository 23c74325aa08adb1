"""``--engine auto --precision auto`` (issue 30): the choice from a measured probe (fake timings here, so the
tests are fast and deterministic), its rule (a losing or barely-winning bf16 is not picked, an over-budget
candidate never), the cache per CPU and weights, the one explaining line, and explicit options winning."""

from __future__ import annotations

import json

import pytest
import torch

from retarget.engine import auto
from retarget.engine.auto import Choice, Measurement, decide


def _m(engine, precision, seconds=None, skipped=None, err=None):
    return Measurement(engine, precision, s_per_frame=seconds, err_mean=err, skipped=skipped)


def test_fastest_wins():
    assert decide([_m("torch", "fp32", 2.0), _m("openvino", "fp32", 1.0), _m("openvino", "bf16", 0.6, err=0.04)]) \
        == ("openvino", "bf16")


def test_a_cpu_where_bf16_loses_keeps_fp32():
    assert decide([_m("torch", "fp32", 2.0), _m("openvino", "fp32", 1.0), _m("openvino", "bf16", 1.4)]) \
        == ("openvino", "fp32")


def test_a_win_within_the_margin_keeps_the_more_exact_candidate():
    assert decide([_m("torch", "fp32", 1.0), _m("openvino", "fp32", 0.98), _m("openvino", "bf16", 0.97)]) \
        == ("torch", "fp32")


def test_skipped_candidates_are_never_chosen():
    measured = [_m("torch", "fp32", 2.0), _m("openvino", "fp32", 1.0),
                _m("openvino", "bf16", 0.1, skipped="error over the budget"),
                _m("openvino", "int8", skipped="not quantized yet")]
    assert decide(measured) == ("openvino", "fp32")
    assert decide([]) == ("torch", "fp32")


def _refiner(seed: int = 0):
    from retarget.models.refiner import Refiner

    torch.manual_seed(seed)
    return Refiner(ngf=4).eval()


class FakeProbe:
    """Records calls; returns fixed timings (bf16 fastest)."""

    def __init__(self, bf16_seconds=0.5):
        self.calls = []
        self.bf16_seconds = bf16_seconds

    def __call__(self, refiner, frames, batch, size, native_bf16, threads):
        self.calls.append((batch, size, native_bf16, threads, len(frames)))
        return [_m("torch", "fp32", 2.0), _m("openvino", "fp32", 1.0),
                Measurement("openvino", "bf16", self.bf16_seconds, 0.04, 0.5),
                _m("openvino", "int8", skipped="not quantized yet: --precision int8 once")]


def test_choice_is_probed_once_cached_and_explained(tmp_path, capsys):
    cache = tmp_path / "engine-choice.json"
    probe, refiner = FakeProbe(), _refiner()
    frames_asked = []

    def frames():
        frames_asked.append(1)
        return [()] * 6

    first = auto.choose(refiner, frames, 4, 256, probe=probe, cache_file=cache, threads=2)
    line = capsys.readouterr().err.strip()
    assert (first.engine, first.precision, first.cached) == ("openvino", "bf16", False)
    assert len(probe.calls) == 1 and probe.calls[0][:2] == (4, 256) and probe.calls[0][3] == 2
    assert len(line.splitlines()) == 1 and line.startswith("note: --engine auto: refiner on openvino bf16")
    for figure in ("torch fp32 2.000", "openvino fp32 1.000", "openvino bf16 0.500, error mean 0.04",
                   "openvino int8 not considered (not quantized yet"):
        assert figure in line
    stored = json.loads(cache.read_text())
    assert len(stored) == 1 and next(iter(stored.values()))["precision"] == "bf16"

    again = auto.choose(refiner, frames, 4, 256, probe=probe, cache_file=cache)
    assert len(probe.calls) == 1 and len(frames_asked) == 1  # from the cache: no probe, no frames
    assert (again.engine, again.precision, again.cached) == ("openvino", "bf16", True)
    assert again.measurements == first.measurements
    assert "cached probe" in capsys.readouterr().err

    auto.choose(refiner, frames, 4, 256, probe=probe, cache_file=cache, quiet=True)
    assert capsys.readouterr().err == ""


def test_cache_is_per_weights_batch_and_cpu(tmp_path, monkeypatch):
    cache = tmp_path / "engine-choice.json"
    probe = FakeProbe()
    auto.choose(_refiner(0), lambda: [], 4, 256, probe=probe, cache_file=cache, quiet=True)
    auto.choose(_refiner(1), lambda: [], 4, 256, probe=probe, cache_file=cache, quiet=True)  # other weights
    auto.choose(_refiner(0), lambda: [], 1, 256, probe=probe, cache_file=cache, quiet=True)  # other batch
    assert len(probe.calls) == 3
    monkeypatch.setattr("retarget.engine.cpu.cpu_model", lambda: "another CPU, 2 cores, no native bf16")
    auto.choose(_refiner(0), lambda: [], 4, 256, probe=probe, cache_file=cache, quiet=True)
    assert len(probe.calls) == 4
    assert len(json.loads(cache.read_text())) == 4


def test_a_damaged_cache_is_probed_again(tmp_path):
    cache = tmp_path / "engine-choice.json"
    cache.write_text("{not json")
    probe = FakeProbe(bf16_seconds=1.5)  # bf16 loses on this "CPU"
    choice = auto.choose(_refiner(), lambda: [], 4, 256, probe=probe, cache_file=cache, quiet=True)
    assert len(probe.calls) == 1 and (choice.engine, choice.precision) == ("openvino", "fp32")
    assert json.loads(cache.read_text())


def test_a_cache_that_cannot_be_written_is_a_note(tmp_path, capsys):
    cache = tmp_path / "engine-choice.json"
    cache.mkdir()  # a folder where the file goes
    probe = FakeProbe()
    choice = auto.choose(_refiner(), lambda: [], 4, 256, probe=probe, cache_file=cache, quiet=True)
    assert choice.precision == "bf16" and cache.is_dir()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"note: could not store the engine choice in {cache}")
    auto.choose(_refiner(), lambda: [], 4, 256, probe=probe, cache_file=cache, quiet=True)
    assert len(probe.calls) == 2  # probed again


def test_choice_round_trips_through_json():
    choice = Choice("openvino", "int8", [_m("torch", "fp32", 1.0), _m("openvino", "int8", 0.4, err=1.2)], "cpu x")
    back = Choice.from_json(json.loads(json.dumps(choice.to_json())))
    assert (back.engine, back.precision, back.measurements, back.cpu, back.cached) == \
        ("openvino", "int8", choice.measurements, "cpu x", True)


@pytest.mark.parametrize("engine,precision,device,override,probes", [
    ("auto", "auto", "cpu", None, True),
    ("auto", "fp32", "cpu", None, False),       # an explicit precision wins
    ("torch", "auto", "cpu", None, False),      # an explicit engine wins
    ("openvino", "auto", "cpu", None, False),
    ("auto", "auto", "cuda", None, False),      # CUDA unchanged
    ("auto", "auto", "cpu", "torch", False),    # RETARGET_ENGINE (the test suite's setting)
])
def test_when_auto_probes(monkeypatch, engine, precision, device, override, probes):
    monkeypatch.setattr("retarget.engine.runtime.openvino_available", lambda: True)
    if override:
        monkeypatch.setenv("RETARGET_ENGINE", override)
    else:
        monkeypatch.delenv("RETARGET_ENGINE", raising=False)
    assert auto.wants_probe(engine, precision, device) is probes


def test_explicit_precision_never_probes_and_auto_without_probe_is_fp32(monkeypatch):
    from retarget.engine import auto_precision

    def boom(*args, **kwargs):
        raise AssertionError("probed")

    monkeypatch.setattr(auto, "choose", boom)
    monkeypatch.setenv("RETARGET_ENGINE", "torch")
    assert auto_precision(None, "auto", "cpu", "bf16", 4, 256) == ("auto", "bf16")
    assert auto_precision(None, "auto", "cpu", "auto", 4, 256) == ("auto", "fp32")


def test_wrap_models_uses_the_choice(monkeypatch):
    """The probed choice decides what wraps the refiner (here torch: the models come back unchanged)."""
    from retarget.engine import wrap_models
    from retarget.pipeline.pair import Models

    monkeypatch.delenv("RETARGET_ENGINE", raising=False)
    monkeypatch.setattr(auto, "wants_probe", lambda *a: True)
    monkeypatch.setattr(auto, "choose", lambda *a, **k: Choice("torch", "fp32"))
    models = Models(None, _refiner())
    assert wrap_models(models, "auto", "cpu", "auto", 4, 64) is models
    assert wrap_models(None, "auto", "cpu", "auto", 4, 64) is None  # weight-free: no refiner, no probe

    class Wrapped:  # a refiner already on OpenVINO (the live path and benchmarks wrap before render_video)
        torch_refiner = _refiner()

    monkeypatch.setattr(auto, "choose", lambda *a, **k: (_ for _ in ()).throw(AssertionError("probed")))
    already = Models(None, Wrapped())
    assert wrap_models(already, "auto", "cpu", "auto", 4, 64) is already
