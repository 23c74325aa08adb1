"""The bundled example stays usable: `make demo`'s command on examples/ renders every frame."""

from __future__ import annotations

from pathlib import Path

from retarget.cli import main
from tests.media import read_video

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_bundled_example_renders_without_weights(tmp_path, capsys):
    out = tmp_path / "demo.mp4"
    code = main(["video", "--source", str(EXAMPLES / "source.jpg"), "--driver", str(EXAMPLES / "driver.mp4"),
                 "-o", str(out), "--quiet"])
    assert code == 0 and capsys.readouterr().out.strip() == str(out)
    frames, info = read_video(out)
    driver_frames, driver_info = read_video(EXAMPLES / "driver.mp4")
    assert len(frames) == len(driver_frames) == len(list((EXAMPLES / "driver.iuv").glob("*_IUV.png")))
    assert info["audio"] and (info["width"], info["height"]) == (driver_info["width"], driver_info["height"])
    assert sum(p.stat().st_size for p in EXAMPLES.rglob("*") if p.is_file()) < 2 * 2**20  # stays small
