import pytest
import torch

from motive_index.config import EstimatorConfig
from motive_index.loss import motion_weighted_loss, temporal_difference_loss, weighted_loss


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_td_loss_ignores_an_error_that_is_the_same_in_every_frame():
    target = _rand(4, 5, 6, 6)
    static_error = _rand(4, 1, 6, 6, seed=1).expand(4, 5, 6, 6)  # appearance wrong the same way in every frame
    w = torch.rand(5, 6, 6, generator=torch.Generator().manual_seed(2))
    assert float(temporal_difference_loss(target + static_error, target, w)) == pytest.approx(0.0, abs=1e-10)
    assert float(motion_weighted_loss(target + static_error, target, w)) > 0.1


def test_td_loss_matches_its_formula_with_pair_weights():
    pred, target = _rand(2, 3, 2, 2), _rand(2, 3, 2, 2, seed=1)
    w = torch.tensor([0.0, 1.0, 0.5]).view(3, 1, 1).expand(3, 2, 2)
    r = pred - target
    want = (0.5 * (r[:, 1] - r[:, 0]) ** 2 + 0.75 * (r[:, 2] - r[:, 1]) ** 2).sum() / (2 * 2 * 2 * 2)
    assert float(temporal_difference_loss(pred, target, w)) == pytest.approx(float(want), rel=1e-6)
    assert float(weighted_loss("td", pred, target, w)) == pytest.approx(float(want), rel=1e-6)


def test_losses_refuse_bad_shapes_and_kinds():
    with pytest.raises(ValueError, match="latent frames"):
        temporal_difference_loss(_rand(2, 1, 2, 2), _rand(2, 1, 2, 2), torch.ones(1, 2, 2))
    with pytest.raises(ValueError, match="shapes do not match"):
        weighted_loss("mse", _rand(2, 3, 2, 2), _rand(2, 3, 2, 2), torch.ones(2, 2, 2))
    with pytest.raises(ValueError, match="loss="):
        weighted_loss("l1", _rand(2, 3, 2, 2), _rand(2, 3, 2, 2), torch.ones(3, 2, 2))
    with pytest.raises(ValueError, match="loss='l1' is invalid"):
        EstimatorConfig(loss="l1")


def test_loss_kind_changes_the_vector_and_the_fingerprint(model_dir, dataset):
    from motive_index.backbones import load_backbone
    from motive_index.gradients import GradientEngine
    from motive_index.manifest import read_manifest

    bb = load_backbone(model_dir)
    c = read_manifest(dataset)[0]
    mse, td = GradientEngine(bb), GradientEngine(bb, estimator=EstimatorConfig(loss="td"))
    assert td.fingerprint()["estimator"]["loss"] == "td" and mse.fingerprint()["estimator"]["loss"] == "mse"
    a, _ = mse.embed(c.path, c.caption)
    b, _ = td.embed(c.path, c.caption)
    assert abs(float(a @ b)) < 0.99
