"""The build on Ray (a local Ray cluster started in the test, CPU only): the same vectors as the local build,
and a model worker killed mid-build does not cost a clip or store one twice."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import numpy as np
import pytest
import ray  # the ray extra is part of the test install: missing, this fails (never skips)

from motive_index.api import MotiveIndex
from motive_index.manifest import read_manifest
from motive_index.types import Clip


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _model_worker_pids() -> list[int]:
    """Processes of the Ray actors running the model's half (their title names the _Embed class)."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split(None, 1)[0]) for line in out.splitlines()
            if "ray::" in line and "_Embed" in line and "grep" not in line]


def test_ray_build_equals_the_local_build_and_survives_a_killed_worker(ray_cluster, dataset, model_dir, built_index,
                                                                        tmp_path):
    clips = read_manifest(dataset)
    local = MotiveIndex.open(built_index)

    # a model worker is killed (SIGKILL) once the first clips are stored: Ray restarts it and retries its clip
    index_dir = tmp_path / "ray-index"
    killed: list[int] = []

    def kill_one_worker():
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            pids = _model_worker_pids()
            done = 0
            try:
                done = len(MotiveIndex.open(index_dir).store) if (index_dir / "lancedb").is_dir() else 0
            except Exception:  # noqa: BLE001 - the store is being created
                pass
            if pids and done >= 3:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
                return
            time.sleep(0.2)

    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 100)
    killer = threading.Thread(target=kill_one_worker, daemon=True)
    killer.start()
    idx, report = MotiveIndex.build(clips + [Clip("junk", str(junk))], model_dir, index_dir, dim=64,
                                    executor="ray", workers=1)
    killer.join(timeout=5)
    assert killed, "no model worker was found to kill"
    assert report.added == len(clips) and report.skipped == 0
    assert list(report.failed) == ["junk"] and "junk.mp4" in report.failed["junk"]  # recorded with its reason
    assert [f["clip_id"] for f in idx.store.failures()] == ["junk"]
    assert len(idx.store) == len(clips) and len(set(idx.store.ids())) == len(clips)  # none lost, none twice
    assert len(idx.features_store) == len(clips)

    ids = [c.clip_id for c in clips]
    got, want = idx.store.get_vectors(ids), local.store.get_vectors(ids)
    assert max(float(np.abs(got[c] - want[c]).max()) for c in ids) <= 1e-5
    gd, wd = idx.features_store.get_vectors(ids), local.features_store.get_vectors(ids)
    assert max(float(np.abs(gd[c] - wd[c]).max()) for c in ids) <= 1e-5

    # resumable and idempotent: nothing left to do; a removed clip is never stored again
    idx.remove([ids[0]])
    again = idx.add(dataset, executor="ray")
    assert again.added == 0 and again.removed == 1 and again.skipped == len(clips) - 1
    hits = idx.query(clips[1].path, prompt=clips[1].caption, k=3).hits
    assert hits[0].clip_id == ids[1] and ids[0] not in {h.clip_id for h in hits}


def test_ray_options_are_checked(dataset, model_dir, tmp_path):
    with pytest.raises(ValueError, match="executor"):
        MotiveIndex.build(dataset, model_dir, tmp_path / "x", executor="spark")


def test_cli_engine_options(dataset, tmp_path):
    from click.testing import CliRunner

    from motive_index.cli import main

    r = CliRunner().invoke(main, ["build", str(dataset), "--model", "tiny", "--index", str(tmp_path / "i"),
                                  "--workers", "2"])
    assert r.exit_code == 2 and "--engine ray" in r.output
