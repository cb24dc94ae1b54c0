"""The motion-feature channel inside a real index: built beside the influence vectors, searched with FAISS,
returned beside the influence hits under its own label, removed with them."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from motive_index.api import FEATURES_DIR, MotiveIndex
from motive_index.cli import main
from motive_index.errors import MotiveIndexError
from motive_index.manifest import read_manifest
from motive_index.store import ClipStore


@pytest.fixture(scope="module")
def clips(dataset):
    return read_manifest(dataset)


def test_build_keeps_a_motion_channel_with_every_clip(built_index, clips):
    idx = MotiveIndex.open(built_index)
    assert idx.features_store is not None and set(idx.features_store.ids()) == {c.clip_id for c in clips}
    info = idx.info()["motion_channel"]
    assert info["size"] == len(clips) and info["fingerprint"]["channel"] == "motion-features"
    assert info["fingerprint"]["video"] == idx.store.fingerprint["video"]


def test_query_returns_similarity_hits_beside_influence_hits(built_index, clips):
    idx = MotiveIndex.open(built_index)
    probe = clips[0]
    res = idx.query(probe.path, prompt=probe.caption, k=5)
    assert [h.kind for h in res.hits] == ["influence"] * 5
    assert [h.kind for h in res.similar] == ["similarity"] * 5 and res.combined == []
    assert res.similar[0].clip_id == probe.clip_id and res.similar[0].score == pytest.approx(1.0, abs=1e-5)
    scores = [h.score for h in res.similar]
    assert scores == sorted(scores, reverse=True)
    # the similarity scores are descriptor cosines, not influence: they come from the other store
    _, fvecs = idx.features_store.vectors()
    assert fvecs.shape[1] == idx.features_store.dim != idx.store.dim
    d = res.to_dict()
    assert {h["kind"] for h in d["similar"]} == {"similarity"} and {h["kind"] for h in d["hits"]} == {"influence"}
    assert idx.query(probe.path, prompt=probe.caption, k=3, similar=0).similar == []


def test_combined_ranks_motion_candidates_by_their_influence(built_index, clips):
    idx = MotiveIndex.open(built_index)
    probe = clips[1]
    res = idx.query(probe.path, prompt=probe.caption, k=3, similar=9, combined=True)
    assert len(res.combined) == 3 and all(h.kind == "combined" for h in res.combined)
    candidates = {h.clip_id: h.score for h in res.similar}  # similar=9 = 3k: exactly the candidate pool
    vec, _ = idx.embed(probe.path, probe.caption)
    stored = idx.store.get_vectors(list(candidates))
    want = sorted(candidates, key=lambda c: -float(stored[c] @ vec))[:3]
    assert [h.clip_id for h in res.combined] == want
    for h in res.combined:
        assert h.score == pytest.approx(float(stored[h.clip_id] @ vec), abs=1e-5)
        assert h.similarity == pytest.approx(candidates[h.clip_id], abs=1e-6)
    # the influence hits themselves are untouched by the combined ranking
    plain = idx.query(probe.path, prompt=probe.caption, k=3, similar=0)
    assert [h.clip_id for h in plain.hits] == [h.clip_id for h in res.hits]


def test_remove_takes_a_clip_out_of_both_channels(tmp_path, dataset, model_dir, clips):
    idx, rep = MotiveIndex.build(clips[:6], model_dir, tmp_path / "idx", dim=32)
    assert rep.added == 6 and len(idx.features_store) == 6
    gone = clips[2]
    assert idx.remove([gone.clip_id], reason="licence withdrawn") == 1
    res = MotiveIndex.open(tmp_path / "idx").query(gone.path, prompt=gone.caption, k=6)
    assert gone.clip_id not in {h.clip_id for h in res.hits + res.similar}
    assert len(res.similar) == 5
    assert gone.clip_id not in ClipStore.open(tmp_path / "idx" / FEATURES_DIR).ids()
    again = MotiveIndex.open(tmp_path / "idx").add(clips[:6])
    assert again.added == 0 and gone.clip_id not in idx.features_store.ids()


def test_index_without_the_channel_and_adding_it_later(tmp_path, model_dir, clips):
    path = tmp_path / "plain"
    idx, _ = MotiveIndex.build(clips[:4], model_dir, path, dim=32, features=False)
    assert idx.features_store is None and not (path / FEATURES_DIR).exists()
    res = MotiveIndex.open(path).query(clips[0].path, prompt=clips[0].caption, k=2)
    assert res.similar == [] and len(res.hits) == 2
    with pytest.raises(MotiveIndexError, match="no motion-feature channel"):
        MotiveIndex.open(path).query(clips[0].path, k=2, combined=True)
    assert MotiveIndex.open(path).info()["motion_channel"] is None
    # building again with the channel computes only the descriptors of the clips already stored
    idx2, rep = MotiveIndex.build(clips[:4], model_dir, path, dim=32)
    assert rep.added == 0 and rep.skipped == 4 and len(idx2.features_store) == 4
    assert "fwd_bwd" not in rep.stage_seconds and rep.stage_seconds.get("store", 0) > 0


def test_cli_query_labels_both_lists_and_json_carries_them(built_index, clips):
    runner = CliRunner()
    probe = clips[3]
    out = runner.invoke(main, ["query", probe.path, "--index", str(built_index), "--prompt", probe.caption,
                               "-k", "3", "--combined"])
    assert out.exit_code == 0, out.output
    assert "influence: the training clips most influential" in out.output
    assert "motion similarity: clips that move like this; not influence" in out.output
    assert "combined: the 9 most motion-similar clips ordered by influence" in out.output
    js = runner.invoke(main, ["query", probe.path, "--index", str(built_index), "-k", "2", "--json"])
    d = json.loads(js.output)
    assert [h["kind"] for h in d["hits"]] == ["influence"] * 2
    assert [h["kind"] for h in d["similar"]] == ["similarity"] * 2
    assert d["combined"] == [] and np.isfinite([h["score"] for h in d["similar"]]).all()
    info = runner.invoke(main, ["info", "--index", str(built_index)])
    assert "motion channel: 12 clips" in info.output


def test_curate_keeps_the_top_fraction_by_majority_vote(built_index, dataset, clips, tmp_path):
    from motive_index.attribution import curate

    with pytest.raises(ValueError, match="keep="):
        curate(np.zeros((1, 3)), ["a", "b", "c"], keep=0)
    s = np.array([[0.9, 0.1, 0.5, 0.2], [0.8, 0.7, 0.1, 0.0], [0.7, 0.6, 0.0, 0.1]])
    assert curate(s, ["a", "b", "c", "d"], keep=0.5, percentile=50) == [("a", 3, pytest.approx(0.8)),
                                                                        ("b", 2, pytest.approx(0.4667, abs=1e-4))]
    idx = MotiveIndex.open(built_index)
    res = idx.curate(clips[:2], keep=0.25)
    assert len(res["kept"]) == 3 and res["queries"] == 2 and res["by"] == "influence"
    votes = [r["votes"] for r in res["kept"]]
    assert votes == sorted(votes, reverse=True) and votes[0] >= 1
    by_sim = idx.curate(clips[:2], keep=0.25, by="similarity")
    assert {r["clip_id"] for r in by_sim["kept"]} >= {clips[0].clip_id, clips[1].clip_id}  # each finds itself
    out = tmp_path / "kept.csv"
    r = CliRunner().invoke(main, ["curate", str(dataset), "--index", str(built_index), "--keep", "0.25", "--out",
                                  str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "kept 3 of 12 clips by influence" in r.output and len(read_manifest(out)) == 3


def test_similar_and_combined_hits_carry_the_computed_metadata(built_index, clips):
    idx = MotiveIndex.open(built_index)
    probe = clips[2]
    res = idx.query(probe.path, prompt=probe.caption, k=3, combined=True)
    for h in res.hits + res.similar + res.combined:
        assert "source_frames" in h.metadata["motive"], h.kind  # the influence store's row, for every list


def test_a_still_query_warns_and_matches_no_moving_clip_by_motion(built_index, tmp_path):
    from motive_index.video import write_video

    rng = np.random.default_rng(0)
    still = np.repeat(rng.integers(0, 255, (1, 64, 64, 3), dtype=np.uint8), 24, axis=0)
    path = tmp_path / "still.mp4"
    write_video(path, still, 16.0)
    r = CliRunner().invoke(main, ["query", str(path), "--index", str(built_index), "-k", "3"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("warning: the query shows no motion")
    res = MotiveIndex.open(built_index).query(str(path), k=3)
    assert res.query["static"] and res.query["warnings"]
    assert all(h.score > 0 for h in res.similar)  # the dataset's clips all move: no 0.0000 list in any order
