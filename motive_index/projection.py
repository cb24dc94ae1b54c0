"""Projection of a (huge) gradient to a short vector: seeded, blocked Fastfood, and an exact projector.

Fastfood (Le, Sarlós & Smola 2013) stands in for a dense Gaussian matrix at O(n log n) cost:

    P x = 1/sqrt(D') * S Hn G Π Hn B x          (Hn = H / sqrt(n), the orthonormal Walsh–Hadamard matrix)

B: random ±1 diagonal, Hn: Walsh–Hadamard, Π: random permutation, G: Gaussian diagonal, S: per-row scales
s_i / ||G||_F * sqrt(n) with s_i ~ chi(n), so every row of S Hn G Π Hn B looks like a row of iid N(0, 1) entries
and E||P x||² = ||x||². (This is DESIGN.md's 1/(ξ√D′) S H Π G H B with the Hadamard normalization folded in.)

A gradient of N parameters is cut into fixed blocks of ``block_size`` = n entries (the last zero-padded); block
b gets its own independent transform (seeded by (seed, b)) and the block outputs are summed. That has the same
expectation as one transform over the whole vector, needs memory for one block only, and lets a gradient be
fed in pieces as backward produces it. The random elements are drawn on the CPU from a seeded generator, so the
vectors are the same on CPU and GPU up to float rounding.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch

from .config import ProjectionConfig


def fwht(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal fast Walsh–Hadamard transform over the last dim (a power of two). Returns a new tensor."""
    n = x.shape[-1]
    if n & (n - 1):
        raise ValueError(f"fwht: last dimension {n} is not a power of two")
    y = x.reshape(-1, n)
    h = 1
    while h < n:
        y = y.view(-1, n // (2 * h), 2, h)  # (rows, pairs of half-blocks, 2, h)
        a, b = y[:, :, 0, :], y[:, :, 1, :]
        y = torch.stack((a + b, a - b), dim=2)
        h *= 2
    return y.reshape(x.shape) * (1.0 / math.sqrt(n))


class _FastfoodBlock:
    """The random elements of one block's transform: ``reps`` stacked n x n Fastfood matrices, D' rows kept."""

    def __init__(self, n: int, dim: int, seed: int, block: int, device: torch.device):
        reps = -(-dim // n)  # ceil: more than one stacked transform when D' > n
        g = torch.Generator(device="cpu")
        # One stream per (seed, block): a 64-bit mix so neighbouring seeds/blocks do not share draws.
        g.manual_seed((seed * 0x9E3779B97F4A7C15 + block * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) % 2**63)
        self.b = (torch.randint(0, 2, (reps, n), generator=g) * 2 - 1).float()       # (reps, n) ±1
        self.perm = torch.stack([torch.randperm(n, generator=g) for _ in range(reps)])  # (reps, n)
        self.gauss = torch.randn(reps, n, generator=g)                                 # (reps, n)
        chi = torch.randn(reps, n, n if n <= 64 else 1, generator=g)                   # for s_i ~ chi(n)
        if n > 64:  # chi(n) ≈ N(sqrt(n - 1/2), 1/2) for large n: cheap and accurate
            s = math.sqrt(n - 0.5) + chi[..., 0] * math.sqrt(0.5)
        else:
            s = chi.norm(dim=-1)
        scale = s * math.sqrt(n) / self.gauss.norm(dim=-1, keepdim=True)                # (reps, n)
        self.scale = scale.reshape(-1)[:dim].contiguous()
        self.dim = dim
        self.to(device)

    def to(self, device: torch.device) -> "_FastfoodBlock":
        self.b, self.perm, self.gauss, self.scale = (t.to(device) for t in (self.b, self.perm, self.gauss, self.scale))
        return self

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """x: (n,) float32 -> (dim,) unscaled by 1/sqrt(D')."""
        y = fwht(self.b * x)                            # (reps, n)   Hn B x
        y = torch.gather(y, 1, self.perm) * self.gauss  # (reps, n)   G Π Hn B x
        y = fwht(y).reshape(-1)[: self.dim]             # (dim,)      Hn G Π Hn B x, first D' rows
        return y * self.scale


class Accumulator(ABC):
    """Receives a flat gradient in pieces (in a fixed order) and returns its projection."""

    @abstractmethod
    def feed(self, piece: torch.Tensor) -> None: ...

    @abstractmethod
    def result(self) -> torch.Tensor: ...


class Projector(ABC):
    """Maps a flat vector (fed in pieces) to ``dim`` dims. Small ABC: Fastfood, and exact for tests."""

    dim: int

    @abstractmethod
    def accumulator(self, device: torch.device | str = "cpu") -> Accumulator: ...

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Project a whole flat vector at once (float32, on x's device)."""
        acc = self.accumulator(x.device)
        acc.feed(x.reshape(-1))
        return acc.result()


class _FastfoodAccumulator(Accumulator):
    def __init__(self, proj: "FastfoodProjector", device: torch.device):
        self.proj = proj
        self.device = torch.device(device)
        self.buf = torch.zeros(proj.block_size, dtype=torch.float32, device=self.device)
        self.fill = 0
        self.block = 0
        self.out = torch.zeros(proj.dim, dtype=torch.float32, device=self.device)

    def _flush(self) -> None:
        if self.fill == 0:
            return
        if self.fill < self.buf.numel():
            self.buf[self.fill:].zero_()
        self.out += self.proj._block(self.block, self.device).apply(self.buf)
        self.block += 1
        self.fill = 0

    def feed(self, piece: torch.Tensor) -> None:
        piece = piece.detach().reshape(-1).to(self.device, torch.float32)
        n = self.buf.numel()
        i = 0
        while i < piece.numel():
            take = min(n - self.fill, piece.numel() - i)
            self.buf[self.fill:self.fill + take] = piece[i:i + take]
            self.fill += take
            i += take
            if self.fill == n:
                self._flush()

    def result(self) -> torch.Tensor:
        self._flush()
        return self.out / math.sqrt(self.proj.dim)


class FastfoodProjector(Projector):
    """Blocked, seeded Fastfood. Block transforms are cached up to ``cache_bytes`` and regenerated past that."""

    def __init__(self, dim: int = 512, seed: int = 0, block_size: int = 2**20, cache_bytes: int = 256 * 2**20):
        cfg = ProjectionConfig(kind="fastfood", dim=dim, seed=seed, block_size=block_size)  # validates
        self.dim, self.seed, self.block_size = cfg.dim, cfg.seed, cfg.block_size
        self._cache: dict[tuple[int, str], _FastfoodBlock] = {}
        reps = -(-dim // block_size)
        per_block = reps * block_size * (4 + 8 + 4) + dim * 4
        self._max_cached = max(1, cache_bytes // per_block)

    def _block(self, b: int, device: torch.device) -> _FastfoodBlock:
        key = (b, str(device))
        blk = self._cache.get(key)
        if blk is None:
            blk = _FastfoodBlock(self.block_size, self.dim, self.seed, b, device)
            if len(self._cache) < self._max_cached:
                self._cache[key] = blk
        return blk

    def accumulator(self, device: torch.device | str = "cpu") -> Accumulator:
        return _FastfoodAccumulator(self, torch.device(device))


class _IdentityAccumulator(Accumulator):
    def __init__(self, device):
        self.parts: list[torch.Tensor] = []
        self.device = device

    def feed(self, piece: torch.Tensor) -> None:
        self.parts.append(piece.detach().reshape(-1).to(self.device, torch.float32).clone())

    def result(self) -> torch.Tensor:
        return torch.cat(self.parts) if self.parts else torch.zeros(0)


class IdentityProjector(Projector):
    """The exact 'projection': returns the flat vector itself. For tests and fidelity checks on tiny models."""

    def __init__(self, dim: int):
        self.dim = int(dim)

    def accumulator(self, device: torch.device | str = "cpu") -> Accumulator:
        return _IdentityAccumulator(torch.device(device))


def make_projector(cfg: ProjectionConfig, num_params: int) -> Projector:
    if cfg.kind == "identity":
        if cfg.dim != num_params:
            raise ValueError(f"projection 'identity' needs dim == number of parameters ({num_params}), "
                             f"got dim={cfg.dim}")
        return IdentityProjector(num_params)
    return FastfoodProjector(cfg.dim, cfg.seed, cfg.block_size)


def unit(v: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """L2-normalize; raises if the vector is zero or not finite (so a bad gradient never becomes a vector)."""
    norm = v.norm()
    if not torch.isfinite(norm):
        raise FloatingPointError("vector is not finite")
    if norm <= eps:
        raise FloatingPointError("vector is zero")
    return v / norm
