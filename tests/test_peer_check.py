"""Peer check (benchmarks/peer_check.py): the engine's exact per-clip gradients equal an independent torch.func
computation on the same fine-tuned tiny Wan and the same clips, and the check is able to fail.

The engine side is GradientEngine under the identity projection (hooks streaming each parameter's .grad into the
accumulator); the peer side is torch.func.grad over functional_call with the loss written out again. They share
only the prepared inputs, the scheduler's noising and the (timestep, noise) draws.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from peer_check import compare, peer_check, peer_gradients  # noqa: E402

from motive_index.backbones import load_backbone  # noqa: E402
from motive_index.gradients import GradientEngine  # noqa: E402
from motive_index.manifest import read_manifest  # noqa: E402

N_CLIPS = 4


@pytest.fixture(scope="module")
def backbone(model_dir):
    return load_backbone(model_dir)


@pytest.fixture(scope="module")
def prepared(backbone, dataset):
    eng = GradientEngine(backbone)  # the default flow mask
    # clips 0-3: four different motion classes (clip i has motion class i % 6)
    return [eng.prepare(c.path, c.caption, name=c.clip_id) for c in read_manifest(dataset)[:N_CLIPS]]


@pytest.fixture(scope="module")
def results(backbone, prepared):
    return {loss: peer_check(backbone, prepared, loss=loss) for loss in ("mse", "td")}


def _assert_agree(r: dict) -> None:
    assert r["draws_match"], "the peer's re-derived (timestep, noise) differ from the engine's"
    assert r["clips"] == N_CLIPS and r["pairs"] == N_CLIPS * (N_CLIPS - 1) // 2
    # the stored vectors, as the index uses them (their float32 norm is off by ~1e-5: see max_norm_dev)
    assert r["max_abs_unit_diff"] < 1e-4, r["max_abs_unit_diff"]
    assert r["max_abs_cos_diff"] < 1e-4, r["max_abs_cos_diff"]
    assert r["max_norm_dev"] < 1e-4, r["max_norm_dev"]
    # the directions (engine renormalized in float64): equal to float32 rounding of the gradients
    assert r["max_abs_unit_diff_renorm"] < 1e-6, r["max_abs_unit_diff_renorm"]
    assert r["max_abs_cos_diff_renorm"] < 1e-7, r["max_abs_cos_diff_renorm"]
    assert r["min_self_cosine"] > 1 - 1e-9, r["min_self_cosine"]
    assert r["spearman"] == pytest.approx(1.0)


@pytest.mark.parametrize("loss", ["mse", "td"])
def test_engine_and_torch_func_peer_agree(results, loss):
    r = results[loss]
    _assert_agree(r)
    assert r["loss"] == loss and r["timesteps"] == [751]
    assert r["num_params"] == r["engine"].shape[1] == r["peer"].shape[1] > 0
    cos = np.asarray(r["peer_cosines"])
    assert cos.min() < 0.99  # the clips' gradients are distinct, so the agreement above is not trivial


def test_the_two_losses_give_different_gradients(results):
    e_mse, e_td = results["mse"]["engine"].double(), results["td"]["engine"].double()
    assert float((e_mse * e_td).sum(1).max()) < 0.99


def test_vmap_peer_and_several_samples_agree_too(backbone, prepared):
    _assert_agree(peer_check(backbone, prepared, loss="td", use_vmap=True))
    r = peer_check(backbone, prepared[:2], loss="mse", samples=2, noise_seed=1)
    assert r["timesteps"] == [250, 750] and r["draws_match"]
    assert r["max_abs_unit_diff"] < 1e-4 and r["max_abs_unit_diff_renorm"] < 1e-6
    assert r["max_abs_cos_diff_renorm"] < 1e-7


def test_the_check_detects_disagreement(backbone, prepared, results):
    r = results["mse"]
    engine, peer = r["engine"], r["peer"]
    norms = peer.norm(dim=1)

    # one entry of one clip's peer gradient off by 1e-3 of that gradient's norm
    bad = peer.clone()
    bad[1, 12345] += 1e-3 * norms[1]
    c = compare(engine, bad)
    assert c["max_abs_unit_diff"] > 5e-4 > 1e-4

    # the flattening order wrong (parameters reversed): pairwise cosines cannot see it, the entries do
    names = [n for n, _ in backbone.transformer.named_parameters()]
    sizes = [p.numel() for _, p in backbone.transformer.named_parameters()]
    pieces = list(torch.split(peer, sizes, dim=1))
    c = compare(engine, torch.cat(pieces[::-1], dim=1))
    assert len(names) > 2 and c["max_abs_unit_diff"] > 1e-2
    assert c["max_abs_cos_diff"] < 1e-4

    # the peer at another timestep than the engine's (500 vs 751)
    other_t = peer_gradients(backbone, prepared, "mse", [500], list(GradientEngine(backbone).noises))
    c = compare(engine, other_t)
    assert c["max_abs_unit_diff"] > 1e-2 and c["min_self_cosine"] < 0.999
    assert c["max_abs_cos_diff"] > 1e-3

    # the peer with the other loss (td vs the engine's mse)
    c = compare(engine, results["td"]["peer"])
    assert c["max_abs_unit_diff"] > 1e-2 and c["min_self_cosine"] < 0.99 and c["max_abs_cos_diff"] > 1e-2
