"""`motive-index generate`: a clip sampled with the model's own flow-matching sampler, written as a real mp4 at
the model's standard shape, deterministic in its seed, and readable by the build's own decode-and-mask step."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from motive_index.backbones import read_spec
from motive_index.cli import main
from motive_index.config import MaskConfig
from motive_index.gradients import ClipReader
from motive_index.video import decode_video


def _generate(model_dir, out, seed: int):
    res = CliRunner().invoke(main, ["generate", "--model", str(model_dir), "--prompt", "a red square moving right",
                                    "--out", str(out), "--steps", "2", "--seed", str(seed), "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_generate_writes_an_mp4_at_the_models_shape_deterministic_in_its_seed(tmp_path, model_dir):
    spec = read_spec(model_dir)
    doc = _generate(model_dir, tmp_path / "a.mp4", seed=3)
    assert (doc["frames"], doc["height"], doc["width"]) == (spec.frames, spec.height, spec.width)
    frames, fps = decode_video(tmp_path / "a.mp4")
    assert frames.shape == (spec.frames, spec.height, spec.width, 3) and abs(fps - spec.fps) < 1e-6
    assert frames.std() > 1.0  # a picture, not a blank
    _generate(model_dir, tmp_path / "b.mp4", seed=3)
    _generate(model_dir, tmp_path / "c.mp4", seed=4)
    np.testing.assert_array_equal(decode_video(tmp_path / "b.mp4")[0], frames)
    assert not np.array_equal(decode_video(tmp_path / "c.mp4")[0], frames)
    # the build's own reading step takes it (a generated video is queried the same way)
    read = ClipReader(spec, MaskConfig()).read(str(tmp_path / "a.mp4"))
    assert read.video.frames.shape == frames.shape and read.mask.weight.shape == frames.shape[:3]


def test_generate_refuses_another_container(tmp_path):
    res = CliRunner().invoke(main, ["generate", "--model", "tiny", "--prompt", "x", "--out", str(tmp_path / "a.avi")])
    assert res.exit_code == 2 and ".mp4" in res.output
