"""manifest.py: CSV, Parquet and JSONL manifests, aliases, metadata and every error with its line and column."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from motive_index.errors import ManifestError
from motive_index.manifest import read_manifest, write_manifest


def write(path, text: str):
    path.write_text(text)
    return path


def jsonl(path, *records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def error(path, line=None, column=None, match=None) -> ManifestError:
    with pytest.raises(ManifestError) as e:
        read_manifest(path)
    assert e.value.line == line and e.value.column == column, str(e.value)
    assert str(path) in str(e.value)
    if match:
        assert match in str(e.value), str(e.value)
    return e.value


def test_csv(tmp_path):
    (tmp_path / "sub").mkdir()
    m = write(tmp_path / "sub" / "m.csv",
              "clip_id,path,caption,start_sec,end_sec,score,votes,ok,note\n"
              "007,videos/a.mp4,a red square,1.5,3,0.25,3,True,hello\n"
              f"b,{tmp_path / 'abs.mp4'},,,,,4,False,\n")
    a, b = read_manifest(m)
    assert a.clip_id == "007" and b.clip_id == "b"  # clip_id stays text
    assert a.path == str(tmp_path / "sub" / "videos" / "a.mp4") and b.path == str(tmp_path / "abs.mp4")
    assert (a.caption, a.start_sec, a.end_sec) == ("a red square", 1.5, 3.0)
    assert (b.caption, b.start_sec, b.end_sec) == ("", None, None)
    assert a.metadata == {"score": 0.25, "votes": 3, "ok": True, "note": "hello"}
    assert b.metadata == {"score": None, "votes": 4, "ok": False, "note": None}
    assert type(a.metadata["votes"]) is int and type(a.metadata["ok"]) is bool


def test_relative_paths_do_not_depend_on_cwd(tmp_path, monkeypatch):
    m = write(tmp_path / "m.csv", "clip_id,path\na,../v/a.mp4\n")
    monkeypatch.chdir("/")
    assert read_manifest(m)[0].path == os.path.abspath(tmp_path / ".." / "v" / "a.mp4")


def test_jsonl_aliases_and_metadata(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text(json.dumps({"clip_id": 7, "video_path": "a.mp4", "text": "a cat", "tags": ["x", "y"],
                             "n": 2, "w": None}) + "\n\n" +
                 json.dumps({"clip_id": "b", "video_path": "file:///data/b%20c.mp4", "text": "a dog"}) + "\n")
    a, b = read_manifest(m)
    assert (a.clip_id, a.path, a.caption) == ("7", str(tmp_path / "a.mp4"), "a cat")
    assert a.metadata == {"tags": ["x", "y"], "n": 2, "w": None} and b.metadata == {}
    assert b.path == "/data/b c.mp4"
    m2 = jsonl(tmp_path / "m.ndjson", {"clip_id": "a", "url": "a.mp4"})
    assert read_manifest(m2)[0].path == str(tmp_path / "a.mp4")


def test_parquet(tmp_path):
    m = tmp_path / "m.parquet"
    pd.DataFrame({"clip_id": [1, 2], "url": ["a.mp4", "b.mp4"], "caption": ["x", "y"],
                  "start_sec": [0.0, None], "score": [0.5, float("nan")], "k": [3, 4]}).to_parquet(m)
    a, b = read_manifest(m)
    assert (a.clip_id, b.clip_id) == ("1", "2") and a.path == str(tmp_path / "a.mp4")
    assert (a.start_sec, b.start_sec) == (0.0, None)
    assert a.metadata == {"score": 0.5, "k": 3} and b.metadata == {"score": None, "k": 4}
    assert type(a.metadata["k"]) is int and type(a.metadata["score"]) is float


def test_path_wins_over_aliases_which_are_kept(tmp_path):
    m = write(tmp_path / "m.csv", "clip_id,url,path,text,caption\na,http://x/a.mp4,a.mp4,alt,main\n")
    (a,) = read_manifest(m)
    assert a.path == str(tmp_path / "a.mp4") and a.caption == "main"
    assert a.metadata == {"url": "http://x/a.mp4", "text": "alt"}


def test_kind_and_file_errors(tmp_path):
    e = error(write(tmp_path / "m.txt", "clip_id,path\n"))
    assert ".csv" in str(e) and ".parquet" in str(e) and ".jsonl" in str(e)
    error(tmp_path / "missing.csv", match="file not found")
    error(write(tmp_path / "zero.csv", ""), match="empty")
    error(write(tmp_path / "header.csv", "clip_id,path\n"), match="no rows")
    error(write(tmp_path / "blank.jsonl", "\n\n"), match="no rows")
    error(write(tmp_path / "bad.parquet", "not parquet"), match="Parquet")


def test_missing_columns(tmp_path):
    e = error(write(tmp_path / "a.csv", "id,path\n1,a.mp4\n"), column="clip_id")
    assert "['id', 'path']" in str(e)
    e = error(write(tmp_path / "b.csv", "clip_id,file\n1,a.mp4\n"), column="path")
    assert "video_path" in str(e) and "url" in str(e) and "['clip_id', 'file']" in str(e)
    error(jsonl(tmp_path / "c.jsonl", {"clip_id": "a"}), column="path")


def test_row_errors_csv(tmp_path):
    head = "clip_id,path,start_sec,end_sec\n"
    error(write(tmp_path / "1.csv", head + "a,a.mp4,,\n,b.mp4,,\n"), 3, "clip_id", "empty clip_id")
    error(write(tmp_path / "2.csv", head + "a,,,\n"), 2, "path", "empty path")
    error(write(tmp_path / "3.csv", "clip_id,video_path\na,a.mp4\nb, \n"), 3, "video_path")
    e = error(write(tmp_path / "4.csv", head + "a,a.mp4,,\nb,b.mp4,,\na,c.mp4,,\n"), 4, "clip_id")
    assert "line 2" in str(e) and "line 4" in str(e)
    error(write(tmp_path / "5.csv", head + "a,a.mp4,soon,\n"), 2, "start_sec", "not a number")
    error(write(tmp_path / "6.csv", head + "a,a.mp4,,-2\n"), 2, "end_sec", ">= 0")
    error(write(tmp_path / "7.csv", head + "a,a.mp4,3,3\n"), 2, "end_sec", "greater than start_sec")
    error(write(tmp_path / "8.csv", head + "a,a.mp4,nan,\n"), 2, "start_sec")
    assert [c.clip_id for c in read_manifest(write(tmp_path / "na.csv", "clip_id,path\nNA,a.mp4\nnull,b.mp4\n"))] \
        == ["NA", "null"]
    error(write(tmp_path / "10.csv", head + "a,a.mp4,,\nb,b.mp4,1,2,3\n"), 3, None, "5 fields but the header has 4")
    error(write(tmp_path / "9.csv", "clip_id,url\na,https://example.com/a.mp4\n"), 2, "url",
          "remote URLs are not fetched")


def test_csv_line_numbers_survive_blank_lines_and_multiline_fields(tmp_path):
    m = write(tmp_path / "m.csv", 'clip_id,path,caption\na,a.mp4,"two\nlines"\n\nb,b.mp4,x\n,c.mp4,y\n')
    error(m, 6, "clip_id")
    m = write(tmp_path / "ok.csv", 'clip_id,path,caption\na,a.mp4,"two\nlines"\n\nb,b.mp4,x\n')
    assert [c.caption for c in read_manifest(m)] == ["two\nlines", "x"]


def test_row_errors_jsonl(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text('{"clip_id": "a", "path": "a.mp4"}\n\n{"clip_id": "b", "path": \n')
    error(m, 3, None, "malformed JSON")
    m.write_text('{"clip_id": "a", "path": "a.mp4"}\n["b", "b.mp4"]\n')
    error(m, 2, None, "JSON object")
    error(jsonl(m, {"clip_id": "a", "path": "a.mp4"}, {"clip_id": "a", "path": "b.mp4"}), 2, "clip_id", "duplicate")
    error(jsonl(m, {"clip_id": "a", "path": "a.mp4", "start_sec": True}), 1, "start_sec")
    error(jsonl(m, {"clip_id": "a", "path": "a.mp4", "start_sec": 5, "end_sec": 2}), 1, "end_sec")
    error(jsonl(m, {"clip_id": "", "path": "a.mp4"}), 1, "clip_id")


def test_row_errors_parquet(tmp_path):
    m = tmp_path / "m.parquet"
    pd.DataFrame({"clip_id": ["a", None], "path": ["a.mp4", "b.mp4"]}).to_parquet(m)
    error(m, 2, "clip_id", "row 2")
    pd.DataFrame({"clip_id": ["a", "b"], "path": ["a.mp4", "b.mp4"], "end_sec": [1.0, -1.0]}).to_parquet(m)
    error(m, 2, "end_sec", "row 2")


def test_write_manifest_round_trip(tmp_path):
    rows = [{"clip_id": "001", "path": "a.mp4", "caption": "x", "n": 1},
            {"clip_id": "002", "path": "b.mp4", "extra": None, "n": 2}]
    m = write_manifest(tmp_path / "out" / "m.csv", rows)
    a, b = read_manifest(m)
    assert (a.clip_id, b.clip_id) == ("001", "002") and b.path == str(tmp_path / "out" / "b.mp4")
    assert a.metadata == {"n": 1, "extra": None} and b.metadata == {"n": 2, "extra": None}
    with pytest.raises(ValueError, match="no rows"):
        write_manifest(tmp_path / "e.csv", [])


def test_non_utf8_manifest_is_refused_with_its_line(tmp_path):
    m = tmp_path / "latin1.csv"
    m.write_bytes(b"clip_id,path,caption\na,a.mp4,fine\nb,b.mp4,caf\xe9\n")
    with pytest.raises(ManifestError, match="UTF-8") as e:
        read_manifest(m)
    assert e.value.line == 3
