"""Projection of a (huge) gradient to a short vector: seeded, blocked, streamed Fastfood, and an exact projector.

Fastfood (Le, Sarlós & Smola 2013) stands in for a dense Gaussian matrix at O(n log n) cost. Over one block of
n = ``block_size`` entries:

    V_b = 1/sqrt(D') * S Hn G Π Hn B_b          (Hn = H / sqrt(n), the orthonormal Walsh–Hadamard matrix)

B_b: random ±1 diagonal, Π: random permutation, G: Gaussian diagonal, S: per-row scales s_i / ||G||_F * sqrt(n)
with s_i ~ chi(n), so every row of S Hn G Π Hn B_b looks like a row of iid N(0, 1) entries and
E||V_b x||² = ||x||². (This is DESIGN.md's 1/(ξ√D′) S H Π G H B with the Hadamard normalization folded in.)

A gradient of N parameters is cut into blocks of n entries (the last zero-padded) and projected as
P x = Σ_b V_b x_b: the same expectation as one transform over the whole vector, memory for one block only.
The blocks share S, G and Π and differ by their sign diagonals B_b, so by linearity

    P x = 1/sqrt(D') * S Hn G Π Hn (Σ_b B_b x_b)

and the cost per parameter is one multiply-add into an n-entry "fold" (streamed in any order, straight from
backward); the Fastfood itself runs once per clip on the fold. Any two blocks have independent sign patterns
(B_b is a window of one seeded sign pool at a distinct random offset, so E[B_b B_c] = 0 for b != c), which keeps
the estimate unbiased: E<Px, Py> = <x, y>, with an extra error from folding of order 1/sqrt(n) relative (0.001 at
the default n = 2^20, against 1/sqrt(D') = 0.044 for the projection itself at D' = 512).

Of the n rows of the transform, the D' kept are rows i·(n/a) (a = D' rounded up to a power of two): because
H_n = H_a ⊗ H_(n/a), those rows need only a sum over groups of n/a entries and one size-a transform instead of a
second size-n one. Every row of the transform has the same distribution, so which D' are kept does not matter.

The random elements are drawn on the CPU from seeded generators and then moved, so the vectors are the same on
CPU and GPU up to float rounding.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod

import torch

from .config import ProjectionConfig

SIGN_POOL = 2**22  # distinct block offsets into the sign pool: up to 2^22 blocks (4·10^12 parameters at 2^20)
_RADIX = 16        # the FWHT runs as matrix products with H_16: 4 levels of butterflies per pass over memory


@functools.lru_cache(maxsize=None)
def _hadamard(r: int, device: str) -> torch.Tensor:
    h = torch.ones(1, 1)
    while h.shape[0] < r:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h.to(device)


def fwht(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal fast Walsh–Hadamard transform over the last dim (a power of two). Returns a new tensor.

    H_n = H_16 ⊗ ... ⊗ H_16 (⊗ a smaller H_r), so it runs as one small matrix product per factor: about 3x
    fewer passes over memory than radix-2 butterflies, and the products run on BLAS (or cuBLAS)."""
    n = x.shape[-1]
    if n < 1 or n & (n - 1):
        raise ValueError(f"fwht: last dimension {n} is not a power of two")
    dev = str(x.device)
    y = x.reshape(-1, n).float()
    done = 1  # product of the factor sizes already applied, from the last axis inwards
    while done < n:
        r = min(_RADIX, n // done)
        h = _hadamard(r, dev)
        y = y.reshape(-1, r) @ h if done == 1 else torch.matmul(h, y.reshape(-1, r, done))
        done *= r
    return y.reshape(x.shape) * (1.0 / math.sqrt(n))


def _stream(seed: int, salt: int) -> torch.Generator:
    # One stream per (seed, purpose): a 64-bit mix so neighbouring seeds do not share draws.
    g = torch.Generator(device="cpu")
    g.manual_seed((seed * 0x9E3779B97F4A7C15 + salt * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) % 2**63)
    return g


class _Core:
    """S Hn G Π Hn for one (n, D', seed), and the sign pool the blocks' B_b are windows of."""

    def __init__(self, n: int, dim: int, seed: int):
        g = _stream(seed, 1)
        self.n, self.dim = n, dim
        self.a = 1 << max(0, (dim - 1).bit_length())                  # D' rounded up to a power of two (<= n)
        self.perm = torch.randperm(n, generator=g).int()               # Π (int32: the faster index_select)
        self.gauss = torch.randn(n, generator=g)                       # G
        if n > 64:  # s_i ~ chi(n) ≈ N(sqrt(n - 1/2), 1/2) for large n: cheap and accurate
            s = math.sqrt(n - 0.5) + torch.randn(dim, generator=g) * math.sqrt(0.5)
        else:
            s = torch.randn(dim, n, generator=g).norm(dim=-1)
        self.scale = s * math.sqrt(n) / self.gauss.norm() / math.sqrt(dim)  # S, with the 1/sqrt(D') folded in
        gs = _stream(seed, 2)
        self.signs = torch.randint(0, 2, (SIGN_POOL + n,), generator=gs).float() * 2 - 1  # the sign pool
        self.offsets = torch.randperm(SIGN_POOL, generator=gs).int()   # block b's window starts at offsets[b]
        self._on: dict[str, tuple[torch.Tensor, ...]] = {}

    def on(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        key = str(device)
        if key not in self._on:
            self._on[key] = tuple(t.to(device) for t in (self.perm, self.gauss, self.scale, self.signs))
        return self._on[key]

    def apply(self, fold: torch.Tensor) -> torch.Tensor:
        """The Fastfood transform of the fold: (n,) -> (D',)."""
        perm, gauss, scale, _ = self.on(fold.device)
        y = fwht(fold)                                                 # Hn x
        y = torch.index_select(y, 0, perm) * gauss                     # G Π Hn x
        c = y.view(self.a, self.n // self.a).sum(1)                    # rows i·(n/a) of H_n = H_a ⊗ H_(n/a)
        y = fwht(c) * math.sqrt(self.a / self.n)                       # ... of Hn
        return y[: self.dim] * scale


@functools.lru_cache(maxsize=4)
def _core(n: int, dim: int, seed: int) -> _Core:
    return _Core(n, dim, seed)


class Accumulator(ABC):
    """Receives a flat gradient in pieces and returns its projection.

    ``feed_at(offset, piece)`` adds a piece at its offset in the flat vector, in any order (adding twice at the
    same place sums, e.g. over several noise samples); ``feed(piece)`` appends after the previous piece."""

    _next = 0

    @abstractmethod
    def feed_at(self, offset: int, piece: torch.Tensor) -> None: ...

    def feed(self, piece: torch.Tensor) -> None:
        self.feed_at(self._next, piece)
        self._next += piece.numel()

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
    def __init__(self, core: _Core, device: torch.device):
        self.core = core
        self.device = torch.device(device)
        self.signs = core.on(self.device)[3]
        self.fold = torch.zeros(core.n, dtype=torch.float32, device=self.device)

    def feed_at(self, offset: int, piece: torch.Tensor) -> None:
        piece = piece.detach().reshape(-1)
        if piece.dtype != torch.float32 or piece.device != self.device:
            piece = piece.to(self.device, torch.float32)
        n, i, end = self.core.n, 0, piece.numel()
        while i < end:
            b, j = divmod(offset + i, n)
            if b >= SIGN_POOL:
                raise ValueError(f"vector longer than {SIGN_POOL} blocks of {n}; use a larger block_size")
            take = min(n - j, end - i)
            o = int(self.core.offsets[b])
            self.fold[j:j + take].addcmul_(piece[i:i + take], self.signs[o + j:o + j + take])  # += B_b x_b
            i += take

    def result(self) -> torch.Tensor:
        return self.core.apply(self.fold)


class FastfoodProjector(Projector):
    """Blocked, seeded Fastfood (see the module docstring). ``dim`` must not exceed ``block_size``."""

    def __init__(self, dim: int = 512, seed: int = 0, block_size: int = 2**20):
        cfg = ProjectionConfig(kind="fastfood", dim=dim, seed=seed, block_size=block_size)  # validates
        self.dim, self.seed, self.block_size = cfg.dim, cfg.seed, cfg.block_size

    def accumulator(self, device: torch.device | str = "cpu") -> Accumulator:
        return _FastfoodAccumulator(_core(self.block_size, self.dim, self.seed), torch.device(device))


class _IdentityAccumulator(Accumulator):
    def __init__(self, dim: int, device: torch.device):
        self.vec = torch.zeros(dim, dtype=torch.float32, device=device)

    def feed_at(self, offset: int, piece: torch.Tensor) -> None:
        piece = piece.detach().reshape(-1)
        if offset < 0 or offset + piece.numel() > self.vec.numel():
            raise ValueError(f"piece [{offset}, {offset + piece.numel()}) is outside the vector of "
                             f"{self.vec.numel()} entries")
        self.vec[offset:offset + piece.numel()] += piece.to(self.vec.device, torch.float32)

    def result(self) -> torch.Tensor:
        return self.vec.clone()


class IdentityProjector(Projector):
    """The exact 'projection': returns the flat vector itself. For tests and fidelity checks on tiny models."""

    def __init__(self, dim: int):
        self.dim = int(dim)

    def accumulator(self, device: torch.device | str = "cpu") -> Accumulator:
        return _IdentityAccumulator(self.dim, torch.device(device))


def make_projector(cfg: ProjectionConfig, num_params: int) -> Projector:
    if cfg.kind == "identity":
        if cfg.dim != num_params:
            raise ValueError(f"projection 'identity' needs dim == number of parameters ({num_params}), "
                             f"got dim={cfg.dim}")
        return IdentityProjector(num_params)
    return FastfoodProjector(cfg.dim, cfg.seed, cfg.block_size)


def unit(v: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """L2-normalize; raises if the vector is zero or not finite (so a bad gradient never becomes a vector).

    The norm is accumulated in float64: a float32 ``norm()`` of a million-entry vector is off by ~1e-5
    relative on CPU (found by benchmarks/peer_check.py), which an exact-gradient cosine would inherit."""
    norm = torch.linalg.vector_norm(v, dtype=torch.float64)
    if not torch.isfinite(norm):
        raise FloatingPointError("vector is not finite")
    if norm <= eps:
        raise FloatingPointError("vector is zero")
    return (v / norm).to(v.dtype)
