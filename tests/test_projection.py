import math

import numpy as np
import pytest
import torch

from motive_index.config import ProjectionConfig
from motive_index.projection import FastfoodProjector, IdentityProjector, fwht, make_projector, unit


def _hadamard(n):
    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h / math.sqrt(n)


@pytest.mark.parametrize("n", [1, 2, 16, 32, 512, 2048])  # one radix-16 pass, mixed radices, several passes
def test_fwht_matches_dense_hadamard(n):
    x = torch.randn(3, n)
    assert torch.allclose(fwht(x), x @ _hadamard(n).T, atol=1e-5)
    assert torch.allclose(fwht(fwht(x)), x, atol=1e-5)  # orthonormal and symmetric: its own inverse


def test_fwht_rejects_non_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        fwht(torch.randn(12))


def test_seeded_and_deterministic():
    x = torch.randn(5000)
    a = FastfoodProjector(64, seed=1, block_size=1024).project(x)
    b = FastfoodProjector(64, seed=1, block_size=1024).project(x)
    c = FastfoodProjector(64, seed=2, block_size=1024).project(x)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_streamed_pieces_equal_whole_vector():
    p = FastfoodProjector(32, seed=0, block_size=256)
    x = torch.randn(1000)
    acc = p.accumulator()
    for piece in (x[:7], x[7:300], x[300:301], x[301:]):
        acc.feed(piece)
    assert torch.allclose(acc.result(), p.project(x), atol=1e-5)
    # As backward produces them: out of order, at their offsets, some spanning block boundaries.
    acc = p.accumulator()
    for lo, hi in ((700, 1000), (0, 7), (256, 700), (7, 256)):
        acc.feed_at(lo, x[lo:hi])
    assert torch.allclose(acc.result(), p.project(x), atol=1e-5)
    # Adding at the same place twice sums (several noise samples into one vector).
    acc = p.accumulator()
    acc.feed_at(0, x)
    acc.feed_at(0, x)
    assert torch.allclose(acc.result(), 2 * p.project(x), atol=1e-4)


def test_blocks_have_distinct_sign_windows_and_project_independently():
    # P x = Σ_b V_b x_b: two blocks carrying the same values must not add up coherently (that would need them
    # to share a sign pattern); their projections are nearly orthogonal, like two independent Gaussian draws.
    p = FastfoodProjector(256, seed=0, block_size=4096)
    x = torch.randn(4096)
    first = p.project(torch.cat([x, torch.zeros(4096)]))
    second = p.project(torch.cat([torch.zeros(4096), x]))
    cos = float(torch.dot(first, second) / (first.norm() * second.norm()))
    assert abs(cos) < 4 / math.sqrt(256), cos
    both = p.project(torch.cat([x, x]))
    assert torch.allclose(both, first + second, atol=1e-4)  # linear


@pytest.mark.parametrize("dim,block", [(256, 4096), (512, 2**20), (100, 128)])  # D' not a power of two too
def test_preserves_norms_and_inner_products_within_jl_error(dim, block):
    g = torch.Generator().manual_seed(0)
    n, pairs = 20000, 40
    p = FastfoodProjector(dim, seed=0, block_size=block)
    errs, ratios = [], []
    for _ in range(pairs):
        a = torch.randn(n, generator=g)
        b = 0.6 * a + 0.8 * torch.randn(n, generator=g)
        pa, pb = p.project(a), p.project(b)
        exact = float(torch.dot(a, b) / (a.norm() * b.norm()))
        approx = float(torch.dot(pa, pb) / (pa.norm() * pb.norm()))
        errs.append(approx - exact)
        ratios.append(float(pa.norm() / a.norm()))
    # JL: cosine error ~ (1 - c^2)/sqrt(D'); allow 4 standard errors on the mean and 5 on each pair.
    sd = (1 - 0.6 ** 2) / math.sqrt(dim)
    assert abs(np.mean(errs)) < 4 * sd / math.sqrt(pairs) + 0.01
    assert np.max(np.abs(errs)) < 5 * sd
    assert abs(np.mean(ratios) - 1) < 0.05


def test_projected_cosines_rank_like_exact_ones():
    g = torch.Generator().manual_seed(1)
    base = torch.randn(30000, generator=g)
    noise_levels = torch.linspace(0.1, 3.0, 20)
    xs = [base + s * torch.randn(30000, generator=g) for s in noise_levels]
    p = FastfoodProjector(512, seed=0, block_size=8192)
    pb = p.project(base)
    exact = [float(torch.dot(base, x) / (base.norm() * x.norm())) for x in xs]
    proj = [float(torch.dot(pb, p.project(x)) / (pb.norm() * p.project(x).norm())) for x in xs]
    rank = lambda v: np.argsort(np.argsort(v))
    spearman = np.corrcoef(rank(exact), rank(proj))[0, 1]
    assert spearman > 0.95, (exact, proj)


def test_identity_projector_is_exact():
    x = torch.randn(100)
    p = make_projector(ProjectionConfig(kind="identity", dim=100), 100)
    assert isinstance(p, IdentityProjector)
    assert torch.equal(p.project(x), x)
    with pytest.raises(ValueError, match="dim == number of parameters"):
        make_projector(ProjectionConfig(kind="identity", dim=50), 100)


def test_unit_refuses_zero_and_nan():
    assert torch.isclose(unit(torch.tensor([3.0, 4.0])).norm(), torch.tensor(1.0))
    with pytest.raises(FloatingPointError, match="zero"):
        unit(torch.zeros(4))
    with pytest.raises(FloatingPointError, match="finite"):
        unit(torch.tensor([1.0, float("nan")]))


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="block_size"):
        ProjectionConfig(block_size=1000)
    with pytest.raises(ValueError, match="dim"):
        ProjectionConfig(dim=0)
    with pytest.raises(ValueError, match="at most block_size"):
        ProjectionConfig(dim=512, block_size=256)
    ProjectionConfig(kind="identity", dim=10**6, block_size=256)  # identity: no fold, any dim
