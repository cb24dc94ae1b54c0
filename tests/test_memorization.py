"""Source recovery on a tiny case: a fine-tuned tiny model memorizes two clips, generates from their captions, and
the generated videos (real mp4s, read like any query) are attributed back to their sources; the mask of each
generated video shows its source's motion. The full experiment is benchmarks/memorization.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.fixture(scope="module")
def run():
    from memorization import run_seed

    return run_seed(0, background=6, memorized=2, repeat=8, steps=800, samples=1, sample_steps=20, k=5,
                    log=lambda m: None)


def test_memorized_source_comes_back_first(run):
    assert run["n_train"] == 8
    assert run["ranks"]["influence (no mask)"] == [1, 1]
    # with the flow mask it is found too, but not always first (measured: ranks 3 and 1; 0.42 top-1 in the
    # benchmark): the generated clip's mask is not its source's
    assert all(r is not None for r in run["ranks"]["influence (flow mask)"])
    # the caption alone (another motion's clip with the memorized caption) does not bring the source first
    assert 1 not in run["caption_alone"]["influence (no mask)"]


def test_generated_video_is_memorized_and_its_motion_seen(run):
    # closer to its source than the source is to any other training clip: it was memorized
    assert min(run["psnr_to_source"]) > max(run["psnr_source_nearest"])
    # the generated mp4, read as a query is, moves and its flow mask sees it (not a still clip's uniform weight)
    assert run["mask_static"] == [False, False] and min(run["max_flow_px"]) > 0.5


def test_summary_counts_misses_as_beyond_k():
    from memorization import summarize

    s = summarize([1, 3, None, 1], k=10)
    assert s == {"n": 4, "top1": 0.5, "top5": 0.75, "mean_rank": pytest.approx((1 + 3 + 11 + 1) / 4)}
