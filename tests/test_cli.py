"""The CLI end to end through click's test runner, on real files, a real tiny model and a real index."""

import json
import shutil

import lancedb
import pytest
from click.testing import CliRunner

from motive_index.cli import EXIT_PARTIAL, main
from motive_index.manifest import read_manifest


@pytest.fixture()
def runner():
    return CliRunner()


def run(runner, *args):
    return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_synth_writes_clips_and_manifest(runner, tmp_path):
    r = run(runner, "synth", tmp_path / "s", "--clips", 7, "--seed", 5, "--quiet")
    assert r.exit_code == 0, r.output
    clips = read_manifest(tmp_path / "s" / "manifest.csv")
    assert len(clips) == 7 and all(c.path.endswith(".mp4") for c in clips)
    assert {"motion", "shape", "colour", "texture"} <= set(clips[0].metadata)


def test_finetune_saves_a_loadable_model(runner, dataset, tmp_path):
    out = tmp_path / "ft"
    r = run(runner, "finetune", dataset, "--model", "tiny", "--out", out, "--steps", 3, "--quiet")
    assert r.exit_code == 0, r.output
    assert "fine-tuned 3 steps" in r.output
    assert (out / "transformer" / "config.json").is_file() and (out / "motive_index.json").is_file()


def test_query_json_returns_the_training_clip_first_with_score_near_one(runner, built_index, dataset):
    clip = read_manifest(dataset)[4]
    r = run(runner, "query", clip.path, "--index", built_index, "--prompt", clip.caption, "-k", 5, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    hits = out["hits"]
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert hits[0]["clip_id"] == clip.clip_id and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert all(hits[i]["score"] >= hits[i + 1]["score"] for i in range(4))
    assert hits[0]["metadata"]["motion"] == clip.metadata["motion"]  # manifest columns kept as metadata
    assert {"decode", "flow", "vae", "fwd_bwd", "projection", "search", "total"} <= set(out["timings"])


def test_negative_query_returns_the_most_opposed_clips(runner, built_index, dataset):
    clip = read_manifest(dataset)[4]
    pos = json.loads(run(runner, "query", clip.path, "--index", built_index, "--prompt", clip.caption,
                         "-k", 12, "--json").output)["hits"]
    neg = json.loads(run(runner, "query", clip.path, "--index", built_index, "--prompt", clip.caption,
                         "-k", 3, "--negative", "--json").output)["hits"]
    assert [h["clip_id"] for h in neg] == [h["clip_id"] for h in pos[::-1][:3]]
    assert neg[0]["score"] <= neg[1]["score"] <= neg[2]["score"]


def test_info_reports_size_fingerprint_model_and_version(runner, built_index, model_dir):
    r = run(runner, "info", "--index", built_index, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["size"] == 12 and d["store_version"] >= 1 and d["model"] == str(model_dir.resolve())
    fp = d["fingerprint"]
    assert fp["projection"]["dim"] == 64 and fp["mask"]["kind"] == "flow" and fp["estimator"]["timestep"] == 751
    assert fp["model"]["family"] == "wan"
    assert d["search"]["kind"] == "flat" and d["search"]["recall_at_10"] == 1.0 and d["search"]["stale"] is False
    assert "clips 12" in run(runner, "info", "--index", built_index).output
    # the store is a plain LanceDB table: readable without this package
    df = lancedb.connect(built_index / "lancedb").open_table("clips").to_pandas()
    assert len(df) == 12 and len(df["vector"][0]) == 64


def test_build_records_bad_clips_goes_on_and_resumes(runner, dataset, model_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(dataset.parent, data)
    (data / "broken.mp4").write_bytes(b"\x00garbage" * 100)
    lines = (data / "manifest.csv").read_text().splitlines()
    keep = lines[:4]  # header + 3 clips
    keep.append("broken," + "broken.mp4," + ",".join(["a caption"] + [""] * (len(lines[0].split(",")) - 3)))
    (data / "manifest.csv").write_text("\n".join(keep) + "\n")
    index = tmp_path / "idx"
    r = run(runner, "build", data / "manifest.csv", "--model", model_dir, "--index", index, "--dim", 32,
            "--json", "--quiet")
    assert r.exit_code == EXIT_PARTIAL, r.output
    rep = json.loads(r.output)
    assert rep["added"] == 3 and rep["size"] == 3 and "broken.mp4" in rep["failed"]["broken"]
    # rerun: nothing stored twice, the finished clips skipped, the broken one tried again and reported again
    r = run(runner, "build", data / "manifest.csv", "--model", model_dir, "--index", index, "--dim", 32,
            "--json", "--quiet")
    rep = json.loads(r.output)
    assert (rep["added"], rep["skipped"], rep["size"]) == (0, 3, 3) and "broken" in rep["failed"]
    assert json.loads(run(runner, "info", "--index", index, "--json").output)["failed"] == 1


def test_build_with_other_settings_is_refused_naming_the_field(runner, dataset, model_dir, built_index):
    r = runner.invoke(main, ["build", str(dataset), "--model", str(model_dir), "--index", str(built_index),
                             "--dim", "32", "--quiet"])
    assert r.exit_code == 2
    assert "projection.dim" in r.output


def test_bad_manifest_is_refused_with_line_and_column(runner, model_dir, tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("clip_id,path\na,a.mp4\n,b.mp4\n")
    r = runner.invoke(main, ["build", str(m), "--model", str(model_dir), "--index", str(tmp_path / "i")])
    assert r.exit_code == 2
    assert "line 3" in r.output and "clip_id" in r.output
    m.write_text("clip_id,file\na,a.mp4\n")
    r = runner.invoke(main, ["build", str(m), "--model", str(model_dir), "--index", str(tmp_path / "i")])
    assert r.exit_code == 2 and "path" in r.output


def test_query_errors_have_clear_messages_and_exit_codes(runner, built_index, tmp_path):
    r = runner.invoke(main, ["query", str(tmp_path / "x.mp4"), "--index", str(tmp_path / "nowhere")])
    assert r.exit_code == 2 and "no motive-index" in r.output
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"junk")
    r = runner.invoke(main, ["query", str(bad), "--index", str(built_index)])
    assert r.exit_code == 3 and "bad.mp4" in r.output


def test_demo_runs_end_to_end_small(runner, tmp_path):
    r = run(runner, "demo", "--workdir", tmp_path / "demo", "--clips", 12, "--queries", 2, "--steps", 5, "-k", 5,
            "--quiet")
    assert r.exit_code == 0, r.output
    out = r.output
    assert "same motion?" in out and "chance" in out and "--mask flow" in out and "--mask none" in out
    selfcheck = [l for l in out.splitlines() if l.startswith("self-check")][0]
    assert "-> first hit clip_0000 (score 1.0000)" in selfcheck
    assert (tmp_path / "demo" / "index-flow" / "lancedb").is_dir()
    assert "generated generated.mp4 from" in out and (tmp_path / "demo" / "generated.mp4").is_file()


def test_query_with_a_model_whose_scheduler_changed_is_refused(runner, built_index, model_dir, dataset, tmp_path):
    changed = tmp_path / "m_shift"
    shutil.copytree(model_dir, changed)
    cfg = changed / "scheduler" / "scheduler_config.json"
    cfg.write_text(cfg.read_text().replace('"shift": 3.0', '"shift": 1.0'))
    clip = read_manifest(dataset)[0]
    r = runner.invoke(main, ["query", clip.path, "--index", str(built_index), "--model", str(changed)])
    assert r.exit_code == 2 and "model.configs" in r.output
    # the same model copied elsewhere is the same model
    same = tmp_path / "m_copy"
    shutil.copytree(model_dir, same)
    r = runner.invoke(main, ["query", clip.path, "--index", str(built_index), "--model", str(same), "-k", 1])
    assert r.exit_code == 0, r.output


def test_demo_refuses_a_folder_it_did_not_make(runner, tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    r = runner.invoke(main, ["demo", "--workdir", str(tmp_path), "--quiet"])
    assert r.exit_code != 0 and "not empty" in r.output
    assert (tmp_path / "mine.txt").read_text() == "precious"


def test_bad_options_are_usage_errors(runner, dataset, tmp_path):
    r = runner.invoke(main, ["build", str(dataset), "--model", "tiny", "--index", str(tmp_path / "i"),
                             "--device", "toaster"])
    assert r.exit_code == 2 and "device" in r.output
    r = runner.invoke(main, ["finetune", str(dataset), "--out", str(tmp_path / "o"), "--lr", "-1"])
    assert r.exit_code == 2 and "lr" in r.output


def test_mask_command_writes_npy_png_and_mp4(runner, dataset, tmp_path):
    import cv2
    import numpy as np

    from motive_index.video import decode_video

    clip = read_manifest(dataset)[0]
    r = run(runner, "mask", clip.path, "--out", tmp_path / "m.npy", "--model", "tiny", "--json")
    assert r.exit_code == 0, r.output
    w = np.load(tmp_path / "m.npy")
    assert w.dtype == np.float32 and w.shape == (17, 64, 64)  # the tiny model's standardized frames
    assert 0.0 <= w.min() and w.max() <= 1.0 and w.max() > 0.9
    assert json.loads(r.output)["shape"] == [17, 64, 64]
    r = run(runner, "mask", clip.path, "--out", tmp_path / "m.png", "--motion", "object")
    assert r.exit_code == 0, r.output
    img = cv2.imread(str(tmp_path / "m.png"))
    assert img is not None and img.shape[0] >= 192
    r = run(runner, "mask", clip.path, "--out", tmp_path / "m.mp4")
    assert r.exit_code == 0, r.output
    frames, _ = decode_video(tmp_path / "m.mp4")
    assert len(frames) == 17


def test_mask_command_uses_an_index_settings_and_refuses_bad_input(runner, built_index, dataset, tmp_path):
    import numpy as np

    clip = read_manifest(dataset)[1]
    r = run(runner, "mask", clip.path, "--out", tmp_path / "i.npy", "--index", built_index)
    assert r.exit_code == 0, r.output
    assert np.load(tmp_path / "i.npy").shape == (17, 64, 64)
    r = runner.invoke(main, ["mask", clip.path, "--out", str(tmp_path / "m.gif")])
    assert r.exit_code == 2 and ".npy" in r.output
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"junk")
    r = runner.invoke(main, ["mask", str(bad), "--out", str(tmp_path / "b.npy")])
    assert r.exit_code == 3 and "bad.mp4" in r.output


def test_motion_kind_is_part_of_the_fingerprint(runner, built_index, dataset, model_dir, tmp_path):
    clip = read_manifest(dataset)[0]
    fp = json.loads(run(runner, "info", "--index", built_index, "--json").output)["fingerprint"]
    stored = fp["mask"]["motion"]
    other = "object" if stored == "all" else "all"
    r = runner.invoke(main, ["query", clip.path, "--index", str(built_index), "--motion", other])
    assert r.exit_code == 2 and "mask.motion" in r.output
    r = runner.invoke(main, ["query", clip.path, "--index", str(built_index), "--motion", stored, "-k", 1])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["build", str(dataset), "--model", str(model_dir), "--index", str(built_index),
                             "--dim", "64", "--motion", other, "--quiet"])
    assert r.exit_code == 2 and "mask.motion" in r.output


def test_report_command_writes_the_page_and_the_sheet(runner, built_index, dataset, tmp_path):
    import cv2

    clip = read_manifest(dataset)[3]
    out, png = tmp_path / "r" / "report.html", tmp_path / "sheet.png"
    r = run(runner, "report", clip.path, "--index", built_index, "--out", out, "--png", png, "-k", 3,
            "--prompt", clip.caption, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["hits"] == 3 and d["opposed"] == 3 and d["similar"] == 3
    page = out.read_text()
    assert page.count("data:image/png;base64,") >= 4 and clip.clip_id in page and "http://" not in page
    img = cv2.imread(str(png))
    assert img is not None and img.shape[0] > 200 and img.std() > 10
    bad = run(runner, "report", clip.path, "--index", built_index, "--out", tmp_path / "r.txt")
    assert bad.exit_code == 2 and ".html" in bad.output


def test_serve_refuses_an_open_address_without_a_token(runner, built_index, monkeypatch):
    monkeypatch.delenv("MOTIVE_INDEX_TOKEN", raising=False)
    monkeypatch.delenv("MOTIVE_INDEX_CURATOR_TOKEN", raising=False)
    r = run(runner, "serve", "--index", built_index, "--host", "0.0.0.0")
    assert r.exit_code == 2 and "token" in r.output
    r = run(runner, "serve", "--index", built_index, "--token", "same", "--curator-token", "same")
    assert r.exit_code == 2 and "must differ" in r.output
