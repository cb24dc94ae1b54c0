"""summary.json: `info` answered without opening LanceDB while the tables are unchanged, and never when not."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from motive_index.api import MotiveIndex
from motive_index.manifest import read_manifest
from motive_index.summary import SUMMARY_FILE, cached_info, fast_info, table_versions


def test_fast_info_equals_info_and_goes_stale_with_any_write(tmp_path, built_index, dataset):
    index_dir = tmp_path / "index"
    shutil.copytree(built_index, index_dir)
    (index_dir / SUMMARY_FILE).unlink(missing_ok=True)
    assert fast_info(index_dir) is None  # no summary yet: the caller opens the store
    idx = MotiveIndex.open(index_dir)
    assert table_versions(index_dir)["clips"] == idx.store.version
    assert table_versions(index_dir)["motion/clips"] == idx.features_store.version
    full = idx.info()
    fast = fast_info(index_dir)
    assert fast == json.loads(json.dumps(full, default=str))

    # a write through the API leaves a new summary: it still answers, with the write in it
    clips = read_manifest(dataset)
    idx.remove([clips[0].clip_id])
    fast = fast_info(index_dir)
    assert fast is not None and fast["removed"] == full["removed"] + 1 and fast["size"] == full["size"] - 1
    assert fast == json.loads(json.dumps(MotiveIndex.open(index_dir).info(), default=str))

    # a write that leaves no summary (another tool writing the table): the summary is refused, never trusted
    v = idx.store.get_vectors([clips[1].clip_id])[clips[1].clip_id]
    idx.store.add([{"clip_id": "sneaked-in", "path": "", "caption": "", "metadata": {}, "vector": v}])
    assert cached_info(index_dir) is None and fast_info(index_dir) is None
    # a corrupt summary reads as none
    (index_dir / SUMMARY_FILE).write_text("{not json")
    assert fast_info(index_dir) is None
    assert MotiveIndex.open(index_dir).info()["size"] == full["size"]  # and info rewrites it
    assert fast_info(index_dir)["size"] == full["size"]
    # a corrupt settings.json is not answered around: the full info reports it
    settings = index_dir / "settings.json"
    good = settings.read_text()
    settings.write_text("{not json")
    assert fast_info(index_dir) is None
    settings.write_text(good)
    assert fast_info(index_dir)["size"] == full["size"]


def test_cli_info_from_the_summary_imports_no_lancedb(tmp_path, built_index):
    index_dir = tmp_path / "index"
    shutil.copytree(built_index, index_dir)
    MotiveIndex.open(index_dir).info()
    code = ("import sys, json; from click.testing import CliRunner; from motive_index.cli import main; "
            f"r = CliRunner().invoke(main, ['info', '--index', {str(index_dir)!r}, '--json']); "
            "assert r.exit_code == 0, r.output; d = json.loads(r.output); "
            "print(json.dumps({'size': d['size'], 'lancedb': 'lancedb' in sys.modules, 'torch': 'torch' in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    d = json.loads(out.stdout.strip().splitlines()[-1])
    assert d == {"size": 12, "lancedb": False, "torch": False}
