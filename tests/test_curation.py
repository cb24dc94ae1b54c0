"""generate.sample_latents (the Euler sampler) and a smoke run of benchmarks/curation.py --quick."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.fixture(scope="module")
def tiny():
    from motive_index.backbones import build_tiny

    return build_tiny(seed=0)


def test_sigma_schedule_runs_from_one_to_zero(tiny):
    from motive_index.generate import sigma_schedule

    sig = sigma_schedule(tiny, 8)
    assert sig.shape == (9,)
    assert sig[0].item() == pytest.approx(1.0) and sig[-1].item() == 0.0
    assert bool((sig[1:] < sig[:-1]).all())
    with pytest.raises(ValueError):
        sigma_schedule(tiny, 0)


def test_sample_latents_shape_and_seeds(tiny):
    from motive_index.generate import sample_latents, sample_many

    z = sample_latents(tiny, "a red striped square on a gray background", steps=3, seed=1)
    assert tuple(z.shape) == tiny.latent_shape() and z.dtype == torch.float32
    assert bool(torch.isfinite(z).all())
    again = sample_latents(tiny, "a red striped square on a gray background", steps=3, seed=1)
    assert torch.equal(z, again)
    other = sample_latents(tiny, "a red striped square on a gray background", steps=3, seed=2)
    assert (z - other).abs().max().item() > 1e-3
    batch = sample_many(tiny, ["a red striped square on a gray background"] * 2, [1, 2], steps=3)
    assert tuple(batch.shape) == (2, *tiny.latent_shape())
    assert torch.allclose(batch[0], z, atol=1e-4) and torch.allclose(batch[1], other, atol=1e-4)


def test_sample_latents_refuses_other_families():
    from motive_index.backbones import build_tiny
    from motive_index.generate import sample_latents

    cog = build_tiny(seed=0, family="cogvideox")
    with pytest.raises(NotImplementedError, match="cogvideox"):
        sample_latents(cog, "a caption", steps=2)


def test_curation_benchmark_quick(tmp_path, capsys):
    import curation

    threads = torch.get_num_threads()
    out = curation.main(["--quick", "--json", str(tmp_path / "c.json")])
    assert torch.get_num_threads() == threads  # the benchmark gives the thread setting back
    text = capsys.readouterr().out
    assert (tmp_path / "c.json").is_file()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip().strip("|").split("|")[1:]]
            for line in text.splitlines() if line.startswith("| ")}
    for arm in curation.ARMS + curation.REFERENCE + ("chance",):
        assert arm in rows, f"row {arm!r} missing from:\n{text}"
    for arm in curation.ARMS:
        for cell in rows[arm]:
            mean = float(cell.split("±")[0])
            assert math.isfinite(mean)
    run = out["runs"][0]
    for target, per_arm in run["targets"].items():
        for arm in curation.ARMS:
            r = per_arm[arm]
            assert 0 <= r["kept_share"] <= 1 and 0 <= r["says_target"] <= 1 and r["flow_px"] >= 0
            assert -1 <= r["similarity"] <= 1
            assert len(r["kept"]) == (run["train"] if arm == "all" else run["kept"])
    assert 0 <= run["classifier_accuracy"] <= 1
    # the instrument sees motion: real target clips move, the same clips frozen read (almost) no flow
    real, frozen = run["targets"]["rotate"][curation.REFERENCE[1]], run["targets"]["rotate"][curation.REFERENCE[2]]
    assert real["flow_px"] > 0.02 and frozen["flow_px"] < 0.005
    assert run["decode_check"]["psnr_db"] > 24
