"""The tiny preset's trained VAE: shipped intact, reconstructs held-out clips, keeps their motion."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from motive_index.backbones import tiny_vae as tv
from motive_index.errors import ModelLoadError


@pytest.fixture(scope="module")
def vae():
    return tv.load_tiny_vae().eval()


def test_shipped_weights_are_the_trained_ones_recorded():
    rec = tv.training_record()
    weights = tv.TINY_VAE_DIR / "diffusion_pytorch_model.safetensors"
    assert rec["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert weights.stat().st_size < 4 * 2**20               # small enough to ship in the package
    assert rec["args"]["seed"] == 0 and rec["args"]["steps"] >= 100


def test_held_out_clips_reconstruct_and_keep_their_motion(vae):
    """A loose floor under what the shipped VAE measures (benchmarks/vae.py, 4 clips a set: shapes 25.7 dB, flow corr
    0.82; pans over the held-out photo 22.3 dB, 0.69; frozen 24.5 dB; on these 2 clips a set 24.7 / 0.83, 21.3 /
    0.66, 26.6), so a retrained or broken VAE that does worse fails here. The issue's PSNR target (28 dB) is not
    met by this VAE: see the README's "The tiny VAE"."""
    sets = tv.held_out_sets(2)
    scores = tv.score(vae, sets)
    floors = {"shapes": (23.0, 0.7), "pan (held-out photo)": (19.5, 0.5), "frozen": (24.0, None)}
    for name, (db, corr) in floors.items():
        assert scores[name]["psnr_db"] > db, (name, scores[name])
        if corr is not None:
            assert scores[name]["flow_corr"] > corr, (name, scores[name])
    moving = [m for n, s in scores.items() if n != "frozen" for m in s["latent_motion"]]
    assert min(moving) > max(scores["frozen"]["latent_motion"])   # moving clips told apart from frozen ones


def test_untrained_vae_does_not_reconstruct():
    """The measure can fail: the same layout with random weights is far below the bound."""
    clips = tv.held_out_sets(1)["shapes"]
    recon, _ = tv.reconstruct(tv.new_tiny_vae(0).eval(), clips)
    assert tv.psnr(clips[0], recon[0]) < 18.0 and tv.flow_correlation(clips[0], recon[0]) < 0.3


def test_measures():
    a = np.zeros((4, 8, 8, 3), np.uint8)
    assert tv.psnr(a, a) == math.inf
    assert tv.psnr(a, a + 1) == pytest.approx(20 * math.log10(255), abs=1e-9)
    clip = tv.vae_clip("pan", 5, frames=9)
    assert tv.flow_correlation(clip, clip) == pytest.approx(1.0)
    assert math.isnan(tv.flow_correlation(np.repeat(clip[:1], 9, 0), np.repeat(clip[:1], 9, 0)))
    z = np.random.default_rng(0).normal(size=(16, 5, 8, 8))
    frozen = np.concatenate([z[:, :2], np.repeat(z[:, 1:2], 3, axis=1)], axis=1)
    assert tv.latent_motion(frozen) == 0.0 < tv.latent_motion(z)


def test_missing_weights_say_how_to_rebuild(tmp_path):
    with pytest.raises(ModelLoadError, match="tools/train_tiny_vae.py"):
        tv.load_tiny_vae(tmp_path)


def test_training_script_continues_a_run_and_records_it(tmp_path):
    """``tools/train_tiny_vae.py --init``: two steps on from the shipped weights; the new folder loads, its weights
    moved, and train.json names the run it continued and holds the curve and held-out scores."""
    import subprocess
    import sys

    root = tv.TINY_VAE_DIR.parents[2]
    out = tmp_path / "vae"
    run = subprocess.run([sys.executable, "tools/train_tiny_vae.py", "--init", str(tv.TINY_VAE_DIR),
                          "--out", str(out), "--steps", "2", "--pool", "4", "--batch", "2", "--seed", "1"],
                         cwd=root, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    rec = tv.training_record(out)
    shipped = tv.training_record()
    assert rec["init"]["weights_sha256"] == shipped["weights_sha256"]
    assert rec["init"]["record"]["args"] == shipped["args"]
    assert [c["step"] for c in rec["curve"]] == [0, 1] and all(c["train_psnr_db"] > 10 for c in rec["curve"])
    assert set(rec["held_out"]) == set(shipped["held_out"])
    weights = out / "diffusion_pytorch_model.safetensors"
    assert rec["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    new, old = tv.load_tiny_vae(out), tv.load_tiny_vae()
    diffs = [float((a - b).detach().abs().max()) for a, b in zip(new.parameters(), old.parameters())]
    assert max(diffs) > 0 and max(diffs) < 0.01   # moved, by two small AdamW steps from the shipped weights
