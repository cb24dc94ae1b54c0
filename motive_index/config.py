"""Stage configurations: one frozen dataclass per stage, validated where it is built.

Each one serializes into the store's fingerprint with :meth:`to_dict`, so two vectors are comparable exactly
when every field that made them is equal.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


def _check(cond: bool, name: str, value: Any, want: str) -> None:
    if not cond:
        raise ValueError(f"{name}={value!r} is invalid: {want}")


class _Config:
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown fields {sorted(unknown)}; known: {sorted(names)}")
        return cls(**d)


@dataclass(frozen=True)
class VideoSpec(_Config):
    """The one shape every clip and query is standardized to before anything else.

    ``frames`` frames sampled at ``fps`` from a window centred in the clip, resized (shorter side) and
    centre-cropped to ``height`` x ``width``. A clip shorter than the window is resampled over its whole
    duration (its motion is slowed to fit) as long as it has at least ``min_source_frames`` decoded frames;
    with fewer it is refused as too short.
    """

    frames: int = 17
    fps: float = 8.0
    height: int = 64
    width: int = 64
    min_source_frames: int = 4

    def __post_init__(self):
        _check(isinstance(self.frames, int) and self.frames >= 2, "frames", self.frames, "an int >= 2")
        _check(self.fps > 0, "fps", self.fps, "a positive number")
        _check(isinstance(self.height, int) and self.height >= 16, "height", self.height, "an int >= 16")
        _check(isinstance(self.width, int) and self.width >= 16, "width", self.width, "an int >= 16")
        _check(isinstance(self.min_source_frames, int) and self.min_source_frames >= 2,
               "min_source_frames", self.min_source_frames, "an int >= 2 (motion needs two frames)")

    @property
    def duration(self) -> float:
        """Seconds of source video one standardized clip covers."""
        return self.frames / self.fps


MASK_KINDS = ("flow", "none")
FLOW_METHODS = ("dis", "farneback", "learned")
DIS_PRESETS = ("auto", "ultrafast", "fast", "medium")
MOTION_KINDS = ("object", "all")
CAMERA_MODELS = ("homography", "similarity")
NORMALIZATIONS = ("minmax", "percentile")
LEGACY_FLOW_STEPS = 1  # what an index's mask without a flow_steps key was made with
MAX_FLOW_STEPS = 16
CAMERA_FITS = ("flow", "tracks")
# what an index's mask without these keys (flow_steps, camera_fit, camera_gate, out_of_view) was made with
LEGACY = {"flow_steps": LEGACY_FLOW_STEPS, "camera_fit": "tracks", "camera_gate": 0.0, "out_of_view": False}


@dataclass(frozen=True)
class MaskConfig(_Config):
    """How the motion weight W is made. ``kind='none'`` is the unmasked baseline (W = 1).

    ``flow``: the dense flow estimator (``learned`` runs a user's exported model from ``flow_model``).
    ``dis_preset``: ``auto`` picks ``fast`` for frames under 128 px on the shorter side (DIS's ``medium`` patches
    are too coarse there: mask IoU 0.51 vs 0.64 on 64x64 pans, benchmarks/masks.py) and ``medium`` otherwise.
    ``motion``: ``object`` (default) subtracts the camera's global motion (``camera_model`` fitted with RANSAC)
    before the magnitude; ``all`` keeps it (the paper's mask). Chosen by measurement: mask IoU
    equal without camera motion and higher with it (benchmarks/masks.py), attribution a tie (top-10 same-motion
    share 0.292 +- 0.043 vs 0.303 +- 0.057 over 5 seeds, benchmarks/attribution_quality.py).
    ``normalize``: the paper's global ``minmax``, or ``percentile`` (min to the ``percentile``-th value,
    clipped), robust to a few outlier pixels.
    ``flow_steps``: flow between two standard frames runs through at most this many steps of source frames
    (every source frame while the interval spans no more; above, evenly spaced ones), composed; 1 is flow
    between the standard frames alone (indexes made before this setting existed; their fingerprints have no
    ``flow_steps`` key, and read back as 1). Chosen by measurement on textured pans (benchmarks/masks.py).
    ``camera_fit`` (``object`` motion): what the camera's motion is fitted to, ``flow`` (default: the dense flow
    over each standard interval, at textured points) or ``tracks`` (sparse Lucas–Kanade tracks per source pair,
    chained). ``camera_gate``: residual motion where the camera's warp explains what a pixel looks like (its
    photometric error, in gray levels, over this) counts proportionally less, on pairs where the camera moves; 0
    turns it off. Both chosen on textured pans (benchmarks/masks.py); indexes made before they existed have
    neither key and read back as ``tracks`` and 0. ``out_of_view`` (with the gate on): a pixel the camera's motion
    carries out of the frame in a pair has no next position to measure its own motion at (its flow is the
    estimator's guess, and the gate sees only the replicated border), so it weighs 0 in that pair; chosen on
    textured pans (benchmarks/masks.py); indexes made before it read back as off.
    ``static_px``: a clip whose 99.9th-percentile flow magnitude (px/frame, after compensation) is below this
    has no motion to weight: it gets a uniform weight and ``static: true``. With ``motion='object'`` the bar is
    at least ``camera_noise`` times the camera's mean speed (what compensation leaves of a pan is fit error), on
    the frame's interior: measured on synthetic pans, the residual is at most 0.10x the camera's speed at 64 and
    128 px (0.20x at 240x416) while real movers are at 0.17x and up.
    """

    kind: str = "flow"
    flow: str = "dis"
    dis_preset: str = "auto"
    flow_model: str = ""
    motion: str = "object"
    camera_model: str = "homography"
    normalize: str = "minmax"
    percentile: float = 99.0
    static_px: float = 0.05
    camera_noise: float = 0.15
    flow_steps: int = 4
    camera_fit: str = "flow"
    camera_gate: float = 8.0
    out_of_view: bool = True

    def __post_init__(self):
        _check(self.kind in MASK_KINDS, "mask", self.kind, f"one of {MASK_KINDS}")
        _check(self.flow in FLOW_METHODS, "flow", self.flow, f"one of {FLOW_METHODS}")
        _check(self.dis_preset in DIS_PRESETS, "dis_preset", self.dis_preset, f"one of {DIS_PRESETS}")
        _check(self.flow != "learned" or bool(self.flow_model), "flow_model", self.flow_model,
               "the path of an exported flow model (torch.export .pt2 or TorchScript .pt) when flow='learned'")
        _check(self.flow == "learned" or not self.flow_model, "flow_model", self.flow_model,
               "empty unless flow='learned' (it would do nothing)")
        _check(self.motion in MOTION_KINDS, "motion", self.motion, f"one of {MOTION_KINDS}")
        _check(self.camera_model in CAMERA_MODELS, "camera_model", self.camera_model, f"one of {CAMERA_MODELS}")
        _check(self.normalize in NORMALIZATIONS, "normalize", self.normalize, f"one of {NORMALIZATIONS}")
        _check(50.0 <= self.percentile <= 100.0, "percentile", self.percentile, "a number in [50, 100]")
        _check(self.static_px >= 0, "static_px", self.static_px, "a number >= 0 (pixels per frame)")
        _check(0 <= self.camera_noise < 1, "camera_noise", self.camera_noise, "a number in [0, 1)")
        _check(isinstance(self.flow_steps, int) and not isinstance(self.flow_steps, bool)
               and 1 <= self.flow_steps <= MAX_FLOW_STEPS, "flow_steps", self.flow_steps,
               f"an int in [1, {MAX_FLOW_STEPS}]")
        _check(self.camera_fit in CAMERA_FITS, "camera_fit", self.camera_fit, f"one of {CAMERA_FITS}")
        _check(isinstance(self.camera_gate, (int, float)) and not isinstance(self.camera_gate, bool)
               and 0 <= self.camera_gate <= 255, "camera_gate", self.camera_gate, "a number in [0, 255] (gray levels)")
        object.__setattr__(self, "camera_gate", float(self.camera_gate))  # 8 and 8.0: one fingerprint
        _check(isinstance(self.out_of_view, bool), "out_of_view", self.out_of_view, "true or false")

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        for key, old in LEGACY.items():
            if d[key] == old or self.kind == "none" or (key == "out_of_view" and not self.camera_gate):
                del d[key]  # the fingerprint of an index made before the setting existed (or it does nothing) stays
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        return super().from_dict({**LEGACY, **d})

    @property
    def source_steps(self) -> int:
        """The ``flow_steps`` decoding needs: 1 when no flow is computed."""
        return self.flow_steps if self.kind == "flow" else 1


LOSS_KINDS = ("mse", "td")
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class EstimatorConfig(_Config):
    """How one clip's gradient is estimated: which (timestep, noise) pairs, which parameters, what precision.

    ``timestep`` indexes the scheduler's ``num_train_timesteps`` (the paper: 751 of 1000); the flow-matching
    sigma is ``timestep / num_train_timesteps`` passed through the scheduler's shift. With ``samples`` = 1 (the
    paper's single-sample estimator) every clip and query shares that timestep and one noise draw seeded by
    ``noise_seed``. With ``samples`` = K > 1 the gradient is the mean over K shared pairs: timesteps at the
    centres of K equal strata of [0, 1000) (K = 10: 50, 150, ..., 950) and K noise draws from the same seeded
    stream (the first is the single-sample draw); ``timestep`` is then unused.
    ``params``: fnmatch patterns over the transformer's parameter names (e.g. ``blocks.*.attn1.*``); empty
    means every trainable parameter. ``precision``: ``bf16`` runs the forward pass under bf16 autocast
    (weights and gradients stay float32); vectors then differ slightly from ``fp32`` ones, so it is part of the
    fingerprint. ``loss``: ``mse`` (the paper's masked squared error) or ``td`` (the masked squared error of
    the residual's frame-to-frame differences, see ``loss.py``). ``mse`` stays the default because the
    planted-motion benchmark (benchmarks/quality.py, 5 seeds) does not separate them: motion-precision@10
    0.274 +- 0.033 vs 0.276 +- 0.038, appearance leak 0.174 +- 0.029 vs 0.156 +- 0.030 (chance 0.167).
    """

    timestep: int = 751
    noise_seed: int = 0
    loss: str = "mse"
    samples: int = 1
    params: tuple[str, ...] = ()
    precision: str = "fp32"

    def __post_init__(self):
        _check(isinstance(self.timestep, int) and 0 <= self.timestep < 1000, "timestep", self.timestep,
               "a training timestep index, an int in [0, 999]")
        _check(isinstance(self.noise_seed, int), "noise_seed", self.noise_seed, "an int")
        _check(self.loss in LOSS_KINDS, "loss", self.loss, f"one of {LOSS_KINDS}")
        _check(isinstance(self.samples, int) and 1 <= self.samples <= 1000, "samples", self.samples,
               "an int in [1, 1000]")
        params = (self.params,) if isinstance(self.params, str) else tuple(self.params)
        _check(all(isinstance(p, str) and p.strip() for p in params), "params", self.params,
               "parameter-name patterns (non-empty strings)")
        object.__setattr__(self, "params", tuple(p.strip() for p in params))
        _check(self.precision in PRECISIONS, "precision", self.precision, f"one of {PRECISIONS}")

    def timesteps(self) -> tuple[int, ...]:
        """The timestep of each shared (timestep, noise) pair."""
        if self.samples == 1:
            return (self.timestep,)
        return tuple(int((2 * k + 1) * 1000 // (2 * self.samples)) for k in range(self.samples))


PROJECTION_KINDS = ("fastfood", "identity")


@dataclass(frozen=True)
class ProjectionConfig(_Config):
    """Fastfood projection of the gradient to ``dim`` dimensions, block by block (``block_size`` a power of 2)."""

    kind: str = "fastfood"
    dim: int = 512
    seed: int = 0
    block_size: int = 2**20

    def __post_init__(self):
        _check(self.kind in PROJECTION_KINDS, "projection", self.kind, f"one of {PROJECTION_KINDS}")
        _check(isinstance(self.dim, int) and self.dim >= 1, "dim", self.dim, "a positive int")
        _check(isinstance(self.seed, int), "seed", self.seed, "an int")
        bs = self.block_size
        _check(isinstance(bs, int) and bs >= 2 and bs & (bs - 1) == 0, "block_size", bs, "a power of two >= 2")
        _check(self.kind != "fastfood" or self.dim <= bs, "dim", self.dim,
               f"at most block_size={bs} (the blocks are folded into block_size entries before projecting)")


FEATURE_CAMERAS = ("both", "compensated", "raw")


@dataclass(frozen=True)
class FeatureConfig(_Config):
    """The motion descriptor of the motion-similarity channel (``features.py``); its fingerprint.

    ``camera``: describe the flow with the camera's motion subtracted (``compensated``), the raw flow (``raw``)
    or both side by side (``both``, the default). ``segments`` equal time segments, each with a
    ``direction_bins`` direction histogram and a ``speed_bins`` speed histogram (log2 bins from ``min_px``);
    a pixel moves when its speed is at least ``min_px`` px/frame and ``relative`` times the clip's
    99.9th-percentile speed.
    """

    kind: str = "flowhist"
    camera: str = "both"
    segments: int = 4
    direction_bins: int = 8
    speed_bins: int = 6
    min_px: float = 0.05
    relative: float = 0.25

    def __post_init__(self):
        _check(self.kind == "flowhist", "features", self.kind, "'flowhist'")
        _check(self.camera in FEATURE_CAMERAS, "camera", self.camera, f"one of {FEATURE_CAMERAS}")
        for name in ("segments", "direction_bins", "speed_bins"):
            v = getattr(self, name)
            _check(isinstance(v, int) and 1 <= v <= 64, name, v, "an int in [1, 64]")
        _check(self.min_px > 0, "min_px", self.min_px, "a positive number of pixels per frame")
        _check(0 <= self.relative < 1, "relative", self.relative, "a number in [0, 1)")
