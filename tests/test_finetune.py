import pytest
import torch

from motive_index.backbones import build_tiny
from motive_index.finetune import finetune
from motive_index.manifest import read_manifest
from motive_index.types import Clip


def test_finetune_lowers_the_loss_changes_weights_and_skips_bad_clips(dataset, tmp_path):
    clips = read_manifest(dataset)[:6]
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    clips.append(Clip(clip_id="broken", path=str(bad)))
    bb = build_tiny(seed=0)
    before = bb.identity()["weights"]
    w0 = next(bb.transformer.parameters()).detach().clone()
    seen = []
    rep = finetune(bb, clips, steps=40, lr=2e-3, batch_size=6, seed=0, progress=lambda i, n, s: seen.append(s))
    assert rep.clips_used == 6 and "broken" in rep.clips_failed
    assert "bad.mp4" in rep.clips_failed["broken"]
    assert rep.last_loss < rep.first_loss
    assert not torch.equal(w0, next(bb.transformer.parameters()))
    assert bb.identity()["weights"] != before  # the identity follows the weights
    assert not bb.transformer.training
    assert any(s.startswith("train loss") for s in seen)


def test_finetune_refuses_bad_arguments(dataset):
    bb = build_tiny(seed=0)
    with pytest.raises(ValueError, match="steps"):
        finetune(bb, read_manifest(dataset), steps=0)
