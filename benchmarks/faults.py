"""Fault suite: kill -9 every kind of writer at random moments, race writers and removals, corrupt the derived
files, and check what a user then finds against the ground truth.

    python benchmarks/faults.py [--trials N] [--quick] [--seed S] [--json] [--only NAME[,NAME]]

Everything runs against real processes: the `motive-index` CLI is started as ``python -m motive_index.cli`` in
its own process group and killed with SIGKILL (``kill -9``), at a moment drawn uniformly from ``[0, D]`` where
``D`` is the duration of the same command run to completion in this run's setup (add, remove, purge: that very
command, measured; build of the small manifest: the measured build of ``base_few`` plus the small add's own
per-clip work, as its report times it), updated to the median of it and every trial's process that ended before
its kill (a shared machine's load drifts: a window measured under load is too long later). After each fault the index is recovered the way a user would (rerun the
command, or just open it and search) and checked against the ground truth: the manifest, and the vectors of a
complete index built once in this run. Setup, once per run, in a temp dir: a tiny Wan model
(``build_tiny(seed=0)``) saved to disk, synthetic clips (``generate_dataset``, 17-24 frames), ``base_few`` (a
``build`` of the first few clips), ``base_small`` (``base_few`` + ``add`` of the small manifest) and
``base_full`` (``base_small`` + ``add`` of every clip), all with the motion channel (dim 32); each trial copies
the one it needs. The columns "killed mid-run" / "left it half-done" say how many kills found the process still
running, and how many left a visible partial write (some clips of the build stored, or tombstones written with
rows still stored): kills are uniform in time, and much of a process's life is imports and model loading.

Faults (``--only`` names) and what is checked:

- ``build-kill``: kill a ``build`` of the small manifest; rerun it. Every clip stored exactly once in both
  channels, the rerun's report adds up and adds exactly the clips the killed build had not stored, vectors equal
  the reference, every clip its own top hit in both channels. Recovery: the rerun's wall time.
- ``add-kill``: the same for ``add`` of the small manifest onto ``base_few``.
- ``remove-kill``: kill ``remove --manifest`` of 20-40 stored clips. Then, in this process, search every clip's
  own vector in both channels (k = all): resurrected = a clip with a tombstone that a search returns; after
  that first open + search (it repairs when the lock is free) no tombstoned clip may have rows, and the two
  channels must hold the same clips. Rerun the remove (exit 0), check again. Recovery: the rerun's wall time.
- ``purge-kill``: remove some clips, kill ``purge``. The index opens, every other clip is stored once and is its
  own top hit, no removed clip is returned; rerun purge (exit 0). Recovery: the rerun's wall time.
- ``remove-vs-add``: ``add`` of the small manifest onto ``base_few`` while this process removes every clip of
  it, one thread per clip started at random moments (``MotiveIndex.remove``, waiting for the lock), and
  searches in a loop. Resurrected = a clip whose remove returned and that is still stored or returned by a
  search in either channel, or a tombstoned clip returned by a search during the race. Recovery: the longest
  a remove took to return (it waits for the add's lock).
- ``writers-2add`` / ``writers-3add``: 2 / 3 ``add`` of the small manifest onto ``base_few`` at once;
  ``writers-2build``: 2 ``build`` of it into an empty folder at once. Every clip stored once; the ``added``
  of all reports sum to the new clips (none computed twice); each report adds up; every writer but the first
  printed "waiting for the write lock, held by pid P" with P another writer. Time: until the last one is done.
- ``faiss-corrupt``: one kind per trial, applied to both channels' ``faiss.index`` / ``faiss.json``: truncated,
  random bytes over part, index deleted, json deleted, json garbage, json of wrong type, json count off by
  one, json from an older version, both files from an older version, both empty. ``MotiveIndex.open`` +
  search (both channels, several vectors and k) must give the intact index's hits; the files are rewritten.
  Recovery: the first search's wall time.
- ``settings-corrupt``: one kind per trial of ``settings.json``: garbage, missing, truncated, wrong type (a
  list), empty, a field of the wrong type (``{"model": 123}``). ``query VIDEO --index IDX`` must exit 2
  naming settings.json (no traceback); with ``--model DIR`` it must answer (the video's own clip first).
  Recovery: the ``--model`` query's wall time.

Columns: lost (a clip not removed that is missing from a channel), duplicated (extra rows of a clip),
resurrected (see above) must all be 0; "other failures" counts every other check that failed (each is listed
under the table). Exit code 1 if lost, duplicated or resurrected is not 0 anywhere (other failures are reported,
not fatal); 2 on bad options.

Default trials per fault (full run: 24 clips, small manifest 8, base_few 3): build-kill 3, add-kill 3,
remove-kill 5, purge-kill 5, remove-vs-add 2, writers-2add 1, writers-3add 1, writers-2build 1, faiss-corrupt
10 (every kind once), settings-corrupt 6 (every kind once). ``--trials N`` sets every fault's count; ``--quick``
runs 1 trial of each (2 of faiss-corrupt) on 4 clips (small manifest 4, base_few 1; remove-kill removes 2).
Every CLI process pays ~10-15 s of imports and model loading on a 2-core CPU, so the time goes mostly to
process starts: on the shared 2-core dev machine the full run took 6.7 minutes lightly loaded and 11.2 minutes
under colleagues' load, --quick 4.4-6.7 minutes (it starts 16 model-loading processes; 3 minutes is not
reachable there with every fault run against real processes).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DIM = 32
PROC_TIMEOUT = 600  # seconds any one CLI process may take before it counts as hung
WAIT_RE = re.compile(r"waiting for the write lock, held by pid (\d+)")
TIE = 1e-5  # two scores this close are a tie (another clip may equal a clip's own top score)

FULL = {"clips": 24, "small": 8, "few": 3}
QUICK = {"clips": 4, "small": 4, "few": 1}  # quick: base_full is base_small

# name: (default trials, quick trials)
TRIALS = {
    "build-kill": (3, 1), "add-kill": (3, 1), "remove-kill": (5, 1), "purge-kill": (5, 1),
    "remove-vs-add": (2, 1), "writers-2add": (1, 1), "writers-3add": (1, 1), "writers-2build": (1, 1),
    "faiss-corrupt": (10, 2), "settings-corrupt": (6, 1),
}

CHECKED = {
    "build-kill": "rerun build: each clip once in both channels, report adds up and adds only what the killed "
                  "build had not stored, vectors = reference, each clip its own top hit (both channels)",
    "add-kill": "rerun add: as build-kill",
    "remove-kill": "search both channels after the kill: no tombstoned clip returned; after that open+search no "
                   "tombstoned rows, channels equal; rerun remove exits 0; the rest intact",
    "purge-kill": "index opens; kept clips once each and their own top hit; no removed clip returned; rerun "
                  "purge exits 0",
    "remove-vs-add": "removes (threads) at random moments during an add: a returned remove's clip is not stored "
                     "and not found in either channel; no tombstoned clip returned by searches during the race",
    "writers-2add": "each clip once; sum of added = new clips; reports add up; the waiter names the holder "
                    "(time: until the last writer is done)",
    "writers-3add": "as writers-2add, 3 writers",
    "writers-2build": "as writers-2add, 2 builds into an empty folder",
    "faiss-corrupt": "open+search (both channels, several vectors and k) = the intact index's hits; files "
                     "rewritten",
    "settings-corrupt": "query exits 2 naming settings.json, no traceback; with --model it answers (own clip "
                        "first)",
}

FAISS_KINDS = ["truncated", "random bytes", "index deleted", "json garbage", "json from older version",
               "both empty", "json deleted", "json wrong type", "json count off by one", "older pair"]
SETTINGS_KINDS = ["garbage", "missing", "truncated", "wrong type (list)", "empty", "field of wrong type"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- processes ------------------------------------------------------------------------------------------------


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "motive_index.cli", *[str(a) for a in args]]


class Proc:
    """One CLI process in its own process group (so kill -9 reaches all of it), output to files."""

    def __init__(self, args: list[str], workdir: Path, name: str):
        workdir.mkdir(parents=True, exist_ok=True)
        self.out_path, self.err_path = workdir / f"{name}.out", workdir / f"{name}.err"
        self._out, self._err = open(self.out_path, "w"), open(self.err_path, "w")
        self.t0 = time.perf_counter()
        self.p = subprocess.Popen(args, stdout=self._out, stderr=self._err, stdin=subprocess.DEVNULL,
                                  start_new_session=True, cwd=ROOT)
        self.pid = self.p.pid
        self.killed = False
        self.hung = False
        self.seconds: float | None = None

    def kill(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.killed = True

    def wait(self, timeout: float = PROC_TIMEOUT) -> int:
        try:
            rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            rc = self.p.wait()
            self.hung = True
        if self.seconds is None:
            self.seconds = time.perf_counter() - self.t0
        self._out.close()
        self._err.close()
        return rc

    def kill_at(self, t: float) -> bool:
        """SIGKILL at ``t`` seconds after start unless it ended before; True if it was killed."""
        try:
            self.p.wait(timeout=max(0.0, t - (time.perf_counter() - self.t0)))
        except subprocess.TimeoutExpired:
            self.kill()
        self.wait()
        return self.killed

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")


def run(args: list[str], workdir: Path, name: str) -> tuple[int, float, Proc]:
    p = Proc(args, workdir, name)
    rc = p.wait()
    return rc, p.seconds, p


def report_of(p: Proc) -> dict | None:
    try:
        return json.loads(p.stdout)
    except ValueError:
        return None


def tail(text: str, n: int = 300) -> str:
    text = " ".join(text.strip().split())
    return text[-n:]


# ---- manifests and indexes ------------------------------------------------------------------------------------


def write_sub_manifest(manifest: Path, ids: list[str], name: str) -> Path:
    """A manifest of the rows of ``ids`` beside ``manifest`` (relative paths stay valid)."""
    with open(manifest, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    col = header.index("clip_id")
    want = set(ids)
    out = manifest.parent / f"{name}.csv"
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(r for r in body if r and r[col] in want)
    return out


def census(index_dir: Path) -> tuple[list[str], list[str], set[str]]:
    """(influence ids, motion ids, tombstoned ids) straight from the LanceDB tables (no repair, no FAISS)."""
    from motive_index.store import ClipStore

    store = ClipStore.open(index_dir)
    motion = ClipStore.open(index_dir / "motion", tombstones=store.tombstones)
    return store.ids(), motion.ids(), set(store.removed())


def dups(ids: list[str]) -> int:
    return len(ids) - len(set(ids))


class Trial:
    """What one trial found."""

    def __init__(self):
        self.lost: set[str] = set()
        self.duplicated = 0
        self.resurrected: set[str] = set()
        self.other: list[str] = []
        self.recovery: float | None = None
        self.killed: bool | None = None
        self.partial = False  # the kill left a write half-done (some clips stored, or a removal half-done)

    def fail(self, msg: str) -> None:
        self.other.append(msg)


class Env:
    """The run's shared setup (built lazily: ``--only`` builds only what its faults need)."""

    def __init__(self, tmp: Path, sizes: dict, seed: int):
        self.tmp, self.sizes, self.seed = tmp, sizes, seed
        self.timings: dict[str, float] = {}
        self._cache: dict = {}
        self.full_runs: dict[str, list[float]] = {}
        self.n_trial = 0

    def _once(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def trial_dir(self, name: str) -> Path:
        self.n_trial += 1
        d = self.tmp / "trials" / f"{self.n_trial:03d}-{name}"
        d.mkdir(parents=True)
        return d

    # -- data and model
    @property
    def model(self) -> Path:
        def make():
            from motive_index.backbones import build_tiny

            t = time.perf_counter()
            path = build_tiny(seed=0).save_pretrained(self.tmp / "model")
            self.timings["save model"] = time.perf_counter() - t
            return Path(path)
        return self._once("model", make)

    @property
    def manifest(self) -> Path:
        def make():
            from motive_index.synthetic import generate_dataset

            t = time.perf_counter()
            m = generate_dataset(self.tmp / "data", self.sizes["clips"], seed=self.seed, frames_range=(17, 24))
            self.timings["synth"] = time.perf_counter() - t
            return Path(m)
        return self._once("manifest", make)

    @property
    def ids(self) -> list[str]:
        def make():
            from motive_index.manifest import read_manifest

            return [c.clip_id for c in read_manifest(self.manifest)]
        return self._once("ids", make)

    @property
    def clips(self) -> dict:
        def make():
            from motive_index.manifest import read_manifest

            return {c.clip_id: c for c in read_manifest(self.manifest)}
        return self._once("clips", make)

    @property
    def small_ids(self) -> list[str]:
        return self.ids[:self.sizes["small"]]

    @property
    def few_ids(self) -> list[str]:
        return self.ids[:self.sizes["few"]]

    @property
    def small(self) -> Path:
        return self._once("small", lambda: write_sub_manifest(self.manifest, self.small_ids, "small"))

    @property
    def few(self) -> Path:
        return self._once("few", lambda: write_sub_manifest(self.manifest, self.few_ids, "few"))

    # -- the two base indexes
    @property
    def base_few(self) -> Path:
        def make():
            d = self.tmp / "base_few"
            log(f"setup: build of {len(self.few_ids)} clips (base_few)")
            rc, sec, p = run(cli("build", self.few, "--model", self.model, "--index", d, "--dim", DIM, "--quiet",
                                 "--json"), self.tmp / "setup", "build_few")
            if rc != 0:
                raise RuntimeError(f"setup build failed (exit {rc}): {tail(p.stderr, 2000)}")
            self.timings["build few"] = sec
            return d
        return self._once("base_few", make)

    @property
    def base_small(self) -> Path:
        """base_few + ``add`` of the small manifest: the exact command add-kill kills (its duration: D_add)."""
        def make():
            d = self.tmp / "base_small"
            shutil.copytree(self.base_few, d)
            log(f"setup: add of {len(self.small_ids) - len(self.few_ids)} clips (base_small)")
            rc, sec, p = run(cli("add", self.small, "--index", d, "--quiet", "--json"), self.tmp / "setup",
                             "add_small")
            rep = report_of(p)
            if rc != 0 or rep is None:
                raise RuntimeError(f"setup add failed (exit {rc}): {tail(p.stderr, 2000)}")
            self.timings["add small"] = sec
            # the clips' own work (decode, flow, model, store...), as the report times it; the rest of the
            # process's wall time is its fixed cost (start, imports, model load)
            self.work_per_clip = sum(rep["stage_seconds"].values()) / max(1, rep["added"])
            return d
        return self._once("base_small", make)

    @property
    def base_full(self) -> Path:
        def make():
            if len(self.ids) == len(self.small_ids):
                return self.base_small
            d = self.tmp / "base_full"
            shutil.copytree(self.base_small, d)
            log(f"setup: add of {len(self.ids) - len(self.small_ids)} clips (base_full)")
            rc, sec, p = run(cli("add", self.manifest, "--index", d, "--quiet", "--json"), self.tmp / "setup",
                             "add_full")
            if rc != 0:
                raise RuntimeError(f"setup add failed (exit {rc}): {tail(p.stderr, 2000)}")
            self.timings["add rest"] = sec
            inf, mot, _ = census(d)
            if sorted(inf) != sorted(self.ids) or sorted(mot) != sorted(self.ids):
                raise RuntimeError(f"setup: base_full holds {len(inf)} / {len(mot)} clips, expected {len(self.ids)}")
            return d
        return self._once("base_full", make)

    @property
    def reference(self) -> tuple[dict, dict]:
        """Every clip's stored influence vector and motion descriptor (from base_full)."""
        def make():
            from motive_index.store import ClipStore

            return (ClipStore.open(self.base_full).get_vectors(self.ids),
                    ClipStore.open(self.base_full / "motion").get_vectors(self.ids))
        return self._once("reference", make)

    def observed(self, command: str, seconds: float) -> None:
        """A kill-fault's process that ended before its kill: a measured full run of that command. The kill
        window is the median of these and the setup's measurement (the machine's load drifts during a run)."""
        self.full_runs.setdefault(command, []).append(seconds)

    def window(self, command: str, setup_estimate: float) -> float:
        return statistics.median([setup_estimate, *self.full_runs.get(command, [])])

    @property
    def d_add(self) -> float:
        """The setup's add of the small manifest onto base_few (measured), and every full run since."""
        _ = self.base_small
        return self.window("add", self.timings["add small"])

    @property
    def fixed(self) -> float:
        """A build/add process's fixed cost (start, imports, model load): the add's wall time less its clips'
        work. The embedding loop starts about this long after the process."""
        _ = self.base_small
        return max(0.5, self.timings["add small"] - self.work_per_clip * (len(self.small_ids) - len(self.few_ids)))

    @property
    def d_build(self) -> float:
        """A build of the small manifest = the build of base_few + the small add's clip work."""
        _ = self.base_small
        return self.window("build", self.timings["build few"] + self.timings["add small"] - self.fixed)

    def copy_full(self, trial: Path) -> Path:
        d = trial / "index"
        shutil.copytree(self.base_full, d)
        return d

    def copy_few(self, trial: Path) -> Path:
        d = trial / "index"
        shutil.copytree(self.base_few, d)
        return d


# ---- checks ---------------------------------------------------------------------------------------------------


def motion_rank(idx, desc, k):
    from motive_index.attribution import rank

    return rank(idx._ensure_index("motion"), idx.features_store, desc, k=k, kind="similarity", rows_from=idx.store)


def search_both(idx, env: Env, cid: str, k: int):
    vecs, descs = env.reference
    return idx.search(vecs[cid], k=k), motion_rank(idx, descs[cid], k)


def own_top(hits, cid: str) -> bool:
    """``cid`` is first, or ties the first."""
    own = [h for h in hits if h.clip_id == cid]
    return bool(hits) and (hits[0].clip_id == cid or (own and hits[0].score - own[0].score <= TIE))


def check_census(tr: Trial, env: Env, index_dir: Path, expected: set[str], removed: set[str] = frozenset(),
                 when: str = "", maybe: set[str] = frozenset()) -> tuple[list[str], list[str], set[str]] | None:
    """Lost / duplicated / stray rows of an index from its tables; returns the census (None if unreadable).

    ``expected``: must be stored once in both channels; ``removed``: must have a tombstone; ``maybe``: may be
    stored or not (a removal in flight)."""
    try:
        inf, mot, tomb = census(index_dir)
    except Exception as e:  # noqa: BLE001 - an index that cannot be read is a finding, not a crash
        tr.fail(f"{when}: store unreadable ({type(e).__name__}: {tail(str(e), 200)})")
        tr.lost |= expected
        return None
    tr.lost |= {c for c in expected if c not in set(inf) or c not in set(mot)}
    tr.duplicated += dups(inf) + dups(mot)
    stray = (set(inf) | set(mot)) - expected - set(removed) - set(maybe)
    if stray:
        tr.fail(f"{when}: {len(stray)} clip(s) stored that no manifest holds: {sorted(stray)[:5]}")
    missing_tomb = set(removed) - tomb
    if missing_tomb:
        tr.fail(f"{when}: {len(missing_tomb)} removed clip(s) have no tombstone")
    return inf, mot, tomb


def check_vectors(tr: Trial, env: Env, index_dir: Path, ids: set[str], when: str) -> None:
    from motive_index.store import ClipStore

    vecs, descs = env.reference
    for name, store, ref in (("influence", ClipStore.open(index_dir), vecs),
                             ("motion", ClipStore.open(index_dir / "motion"), descs)):
        got = store.get_vectors(sorted(ids))
        bad = [c for c, v in got.items() if not np.allclose(v, ref[c], atol=1e-4)]
        if bad:
            tr.fail(f"{when}: {len(bad)} {name} vector(s) differ from the reference build: {bad[:3]}")


def check_searches(tr: Trial, env: Env, index_dir: Path, kept: set[str], removed: set[str], when: str,
                   own_top_check: bool = True) -> None:
    """Open the index here; every kept clip its own top hit in both channels; no removed clip ever returned."""
    from motive_index.api import MotiveIndex

    try:
        idx = MotiveIndex.open(index_dir)
    except Exception as e:  # noqa: BLE001
        tr.fail(f"{when}: MotiveIndex.open failed: {type(e).__name__}: {tail(str(e), 200)}")
        return
    n = len(env.ids)
    tomb = set(idx.store.removed())
    for cid in sorted(kept | removed):
        try:
            inf, mot = search_both(idx, env, cid, n)
        except Exception as e:  # noqa: BLE001
            tr.fail(f"{when}: search for {cid} failed: {type(e).__name__}: {tail(str(e), 200)}")
            continue
        returned = {h.clip_id for h in inf} | {h.clip_id for h in mot}
        tr.resurrected |= returned & (removed | tomb)
        if own_top_check and cid in kept:
            for channel, hits in (("influence", inf), ("motion", mot)):
                if not own_top(hits, cid):
                    tr.fail(f"{when}: {cid} is not its own top hit in the {channel} channel "
                            f"(top: {[h.clip_id for h in hits[:3]]})")
    want = len(kept)
    if own_top_check and kept:
        got = len(idx.search(env.reference[0][sorted(kept)[0]], k=n))
        if got != want:
            tr.fail(f"{when}: a search for k={n} returned {got} hits, {want} clips are kept")


# ---- faults ---------------------------------------------------------------------------------------------------


def _kill_then_rerun(env: Env, rng: random.Random, name: str, make_index, args_of, expected: list[str],
                     d: float) -> Trial:
    tr = Trial()
    trial = env.trial_dir(name)
    index = make_index(trial)
    t_kill = rng.uniform(0, d)
    p = Proc(args_of(index), trial, "killed")
    tr.killed = p.kill_at(t_kill)
    log(f"  {name}: kill at {t_kill:.1f}s of {d:.1f}s: {'killed' if tr.killed else f'had ended (exit {p.p.returncode})'}")
    if not tr.killed and p.p.returncode == 0:
        env.observed(name.split("-")[0], p.seconds)
    stored_inf: set[str] = set()
    try:
        from motive_index.store import ClipStore

        if ClipStore.exists(index):
            inf, mot, _ = census(index)
            stored_inf = set(inf)
            base = len(env.few_ids) if name == "add-kill" else 0
            tr.partial = base < len(set(inf) | set(mot)) < len(expected)
            if dups(inf) + dups(mot):
                tr.fail(f"after the kill: {dups(inf) + dups(mot)} duplicate row(s) (before the rerun repaired)")
    except Exception as e:  # noqa: BLE001 - a store killed mid-creation may not open; the rerun must cope
        log(f"  {name}: store not readable after the kill ({type(e).__name__}); the rerun must cope")
    rc, sec, rp = run([*args_of(index), "--json"], trial, "rerun")
    tr.recovery = sec
    if rc != 0:
        tr.fail(f"rerun exited {rc}: {tail(rp.stderr)}")
    rep = report_of(rp)
    n = len(expected)
    if rep is None:
        tr.fail(f"rerun printed no JSON report: {tail(rp.stdout)}")
    else:
        if rep["added"] + rep["skipped"] + rep["removed"] + len(rep["failed"]) != n:
            tr.fail(f"rerun report does not add up to {n}: {rep}")
        want = len(set(expected) - stored_inf)
        if rep["added"] != want:
            tr.fail(f"rerun added {rep['added']}, but {want} clips were not stored after the kill")
    exp = set(expected)
    if check_census(tr, env, index, exp, when="after the rerun") is not None:
        check_vectors(tr, env, index, exp, "after the rerun")
        check_searches(tr, env, index, exp, set(), "after the rerun")
    return tr


def fault_build_kill(env: Env, rng: random.Random) -> Trial:
    return _kill_then_rerun(
        env, rng, "build-kill", lambda trial: trial / "index",
        lambda index: cli("build", env.small, "--model", env.model, "--index", index, "--dim", DIM, "--quiet"),
        env.small_ids, env.d_build)


def fault_add_kill(env: Env, rng: random.Random) -> Trial:
    return _kill_then_rerun(env, rng, "add-kill", env.copy_few,
                            lambda index: cli("add", env.small, "--index", index, "--quiet"), env.small_ids, env.d_add)


def _n_remove(env: Env, rng: random.Random) -> int:
    n = len(env.ids)
    if n >= 24:
        return rng.randint(20, min(40, n - 4))
    return max(1, n // 2)


def _timed_remove(env: Env) -> float:
    def make():
        trial = env.tmp / "setup" / "remove"
        index = env.copy_full(trial)
        m = write_sub_manifest(env.manifest, env.ids[:_n_remove(env, random.Random(0))], "rm_setup")
        rc, sec, p = run(cli("remove", "--manifest", m, "--index", index), trial, "remove")
        if rc != 0:
            raise RuntimeError(f"setup remove failed (exit {rc}): {tail(p.stderr, 2000)}")
        env.timings["remove"] = sec
        rc, sec, p = run(cli("purge", "--index", index), trial, "purge")
        if rc != 0:
            raise RuntimeError(f"setup purge failed (exit {rc}): {tail(p.stderr, 2000)}")
        env.timings["purge"] = sec
        return True
    env._once("timed remove", make)
    return env.timings["remove"]


def fault_remove_kill(env: Env, rng: random.Random) -> Trial:
    from motive_index.api import MotiveIndex

    d = env.window("remove", _timed_remove(env))
    tr = Trial()
    trial = env.trial_dir("remove-kill")
    index = env.copy_full(trial)
    gone = rng.sample(env.ids, _n_remove(env, rng))
    m = write_sub_manifest(env.manifest, gone, f"rm_{trial.name}")
    t_kill = rng.uniform(0, d)
    p = Proc(cli("remove", "--manifest", m, "--index", index), trial, "killed")
    tr.killed = p.kill_at(t_kill)
    if not tr.killed and p.p.returncode == 0:
        env.observed("remove", p.seconds)
    log(f"  remove-kill: {len(gone)} ids, kill at {t_kill:.2f}s of {d:.2f}s: "
        f"{'killed' if tr.killed else f'had ended (exit {p.p.returncode})'}")
    all_ids, gone_set = set(env.ids), set(gone)
    c = check_census(tr, env, index, all_ids - gone_set, when="after the kill", maybe=gone_set)
    if c is None:
        return tr
    inf, mot, tomb = c
    if tomb - gone_set:
        tr.fail(f"after the kill: tombstones for clips never removed: {sorted(tomb - gone_set)[:5]}")
    # a clip deleted from a channel without its tombstone is lost (the tombstone must come first)
    tr.lost |= {cid for cid in gone_set - tomb if cid not in set(inf) or cid not in set(mot)}
    tr.partial = bool(tomb) and bool((set(inf) | set(mot)) & tomb)
    log(f"  remove-kill: after the kill {len(tomb)} tombstones, rows of {len(set(inf) & tomb)} / "
        f"{len(set(mot) & tomb)} tombstoned clips still stored")
    # first open + search: every clip's own vector, both channels, k = all
    idx = MotiveIndex.open(index)
    n = len(env.ids)
    for cid in env.ids:
        hits_inf, hits_mot = search_both(idx, env, cid, n)
        tr.resurrected |= ({h.clip_id for h in hits_inf} | {h.clip_id for h in hits_mot}) & tomb
    inf2, mot2, tomb2 = census(index)
    left = (set(inf2) | set(mot2)) & tomb2
    if left:
        tr.fail(f"after the first open+search: {len(left)} tombstoned clip(s) still have rows")
    if set(inf2) != set(mot2):
        tr.fail(f"after the first open+search: the channels differ (influence only "
                f"{sorted(set(inf2) - set(mot2))[:3]}, motion only {sorted(set(mot2) - set(inf2))[:3]})")
    rc, sec, rp = run(cli("remove", "--manifest", m, "--index", index), trial, "rerun")
    tr.recovery = sec
    if rc != 0:
        tr.fail(f"rerun of remove exited {rc}: {tail(rp.stderr)}")
    check_census(tr, env, index, all_ids - gone_set, gone_set, when="after the rerun")
    check_searches(tr, env, index, all_ids - gone_set, gone_set, "after the rerun")
    return tr


def fault_purge_kill(env: Env, rng: random.Random) -> Trial:
    from motive_index.api import MotiveIndex

    _timed_remove(env)
    d = env.window("purge", env.timings["purge"])
    tr = Trial()
    trial = env.trial_dir("purge-kill")
    index = env.copy_full(trial)
    gone = set(rng.sample(env.ids, max(1, len(env.ids) // 4)))
    MotiveIndex.open(index).remove(sorted(gone), reason="fault suite")
    t_kill = rng.uniform(0, d)
    p = Proc(cli("purge", "--index", index), trial, "killed")
    tr.killed = p.kill_at(t_kill)
    if not tr.killed and p.p.returncode == 0:
        env.observed("purge", p.seconds)
    log(f"  purge-kill: kill at {t_kill:.2f}s of {d:.2f}s: "
        f"{'killed' if tr.killed else f'had ended (exit {p.p.returncode})'}")
    kept = set(env.ids) - gone
    if check_census(tr, env, index, kept, gone, when="after the kill") is not None:
        check_vectors(tr, env, index, kept, "after the kill")
        check_searches(tr, env, index, kept, gone, "after the kill")
    rc, sec, rp = run(cli("purge", "--index", index), trial, "rerun")
    tr.recovery = sec
    if rc != 0:
        tr.fail(f"rerun of purge exited {rc}: {tail(rp.stderr)}")
    if check_census(tr, env, index, kept, gone, when="after the rerun") is not None:
        check_searches(tr, env, index, kept, gone, "after the rerun", own_top_check=False)
    return tr


def fault_remove_vs_add(env: Env, rng: random.Random) -> Trial:
    from motive_index.api import MotiveIndex

    tr = Trial()
    trial = env.trial_dir("remove-vs-add")
    index = env.copy_few(trial)
    d = env.d_add
    targets = list(env.small_ids)
    rng.shuffle(targets)
    # from about when the add's embedding loop starts to a little after it ends
    starts = sorted(rng.uniform(0.8 * env.fixed, 1.1 * d) for _ in targets)
    idx = MotiveIndex.open(index)
    returned: dict[str, float] = {}
    errors: dict[str, str] = {}
    lock = threading.Lock()

    def remove(cid):
        t0 = time.perf_counter()
        try:
            idx.remove([cid], reason="fault suite")
        except Exception as e:  # noqa: BLE001
            with lock:
                errors[cid] = f"{type(e).__name__}: {e}"
        else:
            with lock:
                returned[cid] = time.perf_counter() - t0  # how long this remove took (waiting for the lock)

    add = Proc(cli("add", env.small, "--index", index, "--quiet", "--json"), trial, "add")
    threads = []
    n = len(env.ids)
    vecs, descs = env.reference
    searches = 0
    pending = list(zip(starts, targets))
    while add.p.poll() is None or pending:
        now = time.perf_counter() - add.t0
        while pending and pending[0][0] <= now:
            _, cid = pending.pop(0)
            t = threading.Thread(target=remove, args=(cid,), daemon=True)
            t.start()
            threads.append(t)
        # a search in each channel for a random clip: no tombstoned clip may come back, even mid-race
        cid = rng.choice(targets)
        tomb = set(idx.store.removed())
        try:
            got = {h.clip_id for h in idx.search(vecs[cid], k=n)} | {h.clip_id for h in motion_rank(idx, descs[cid], n)}
            tr.resurrected |= got & tomb
            searches += 1
        except Exception as e:  # noqa: BLE001
            tr.fail(f"search during the race failed: {type(e).__name__}: {tail(str(e), 200)}")
        time.sleep(0.05)
        if now > PROC_TIMEOUT:
            add.kill()
            tr.fail("add did not end")
            break
    rc = add.wait()
    for t in threads:
        t.join(PROC_TIMEOUT)
    if any(t.is_alive() for t in threads):
        tr.fail(f"{sum(t.is_alive() for t in threads)} remove(s) never returned")
    if rc != 0:
        tr.fail(f"add exited {rc}: {tail(add.stderr)}")
    rep = report_of(add)
    if rep is not None and rep["added"] + rep["skipped"] + rep["removed"] + len(rep["failed"]) != len(targets):
        tr.fail(f"add report does not add up to {len(targets)}: {rep}")
    for cid, why in errors.items():
        tr.fail(f"remove {cid} raised {tail(why, 200)}")
    tr.recovery = max(returned.values()) if returned else None
    log(f"  remove-vs-add: {len(returned)} of {len(targets)} removes returned, {searches} searches during the race, "
        f"add: {rep and {k: rep[k] for k in ('added', 'skipped', 'removed')}}")
    done = set(returned)
    try:
        inf, mot, tomb = census(index)
    except Exception as e:  # noqa: BLE001
        tr.fail(f"store unreadable after the race: {type(e).__name__}: {tail(str(e), 200)}")
        return tr
    tr.resurrected |= done & (set(inf) | set(mot))
    tr.duplicated += dups(inf) + dups(mot)
    kept = set(env.few_ids) - set(targets)  # nothing: every clip of the manifest was removed
    tr.lost |= {c for c in kept if c not in set(inf) or c not in set(mot)}
    if done - tomb:
        tr.fail(f"{len(done - tomb)} returned remove(s) left no tombstone")
    check_searches(tr, env, index, kept, done, "after the race", own_top_check=False)
    return tr


def _writers(env: Env, rng: random.Random, name: str, n_proc: int, build: bool) -> Trial:
    tr = Trial()
    trial = env.trial_dir(name)
    if build:
        index = trial / "index"
        args = cli("build", env.small, "--model", env.model, "--index", index, "--dim", DIM, "--quiet", "--json")
        new = len(env.small_ids)
    else:
        index = env.copy_few(trial)
        args = cli("add", env.small, "--index", index, "--quiet", "--json")
        new = len(env.small_ids) - len(env.few_ids)
    t0 = time.perf_counter()
    procs = [Proc(args, trial, f"writer{i}") for i in range(n_proc)]
    rcs = [p.wait() for p in procs]
    tr.recovery = time.perf_counter() - t0
    pids = {p.pid for p in procs}
    reports = []
    waited = 0
    for p, rc in zip(procs, rcs):
        if rc != 0:
            tr.fail(f"writer pid {p.pid} exited {rc}: {tail(p.stderr)}")
        rep = report_of(p)
        if rep is None:
            tr.fail(f"writer pid {p.pid} printed no JSON report")
            continue
        reports.append(rep)
        if rep["added"] + rep["skipped"] + rep["removed"] + len(rep["failed"]) != len(env.small_ids):
            tr.fail(f"writer pid {p.pid}: report does not add up to {len(env.small_ids)}: {rep}")
        m = WAIT_RE.search(p.stderr)
        if m:
            waited += 1
            if int(m.group(1)) not in pids - {p.pid}:
                tr.fail(f"writer pid {p.pid} names pid {m.group(1)} as the holder, not another writer")
    added = [r["added"] for r in reports]
    if sum(added) != new:
        tr.fail(f"the writers added {added} (sum {sum(added)}), {new} clips were new: "
                + ("some computed twice" if sum(added) > new else "some never added"))
    if waited != n_proc - 1:
        tr.fail(f"{waited} of {n_proc} writers printed 'waiting for the write lock', expected {n_proc - 1}")
    log(f"  {name}: added {added}, {waited} waited, {tr.recovery:.1f}s")
    exp = set(env.small_ids)
    if check_census(tr, env, index, exp, when="after the writers") is not None:
        check_vectors(tr, env, index, exp, "after the writers")
        check_searches(tr, env, index, exp, set(), "after the writers")
    return tr


def fault_writers_2add(env, rng):
    return _writers(env, rng, "writers-2add", 2, build=False)


def fault_writers_3add(env, rng):
    return _writers(env, rng, "writers-3add", 3, build=False)


def fault_writers_2build(env, rng):
    return _writers(env, rng, "writers-2build", 2, build=True)


def _corrupt_faiss(kind: str, channel_dir: Path, older_dir: Path, rng: random.Random) -> None:
    idx_f, meta_f = channel_dir / "faiss.index", channel_dir / "faiss.json"
    data = idx_f.read_bytes()
    if kind == "truncated":
        idx_f.write_bytes(data[:rng.randrange(0, len(data))])
    elif kind == "random bytes":
        a = rng.randrange(0, len(data))
        b = rng.randrange(a + 1, len(data) + 1)
        idx_f.write_bytes(data[:a] + rng.randbytes(b - a) + data[b:])
    elif kind == "index deleted":
        idx_f.unlink()
    elif kind == "json deleted":
        meta_f.unlink()
    elif kind == "json garbage":
        meta_f.write_bytes(rng.randbytes(rng.randrange(1, 4096)))
    elif kind == "json wrong type":
        meta_f.write_text(rng.choice(["[]", "null", "42", '"faiss"']))
    elif kind == "json count off by one":
        meta = json.loads(meta_f.read_text())
        meta["count"] += rng.choice([-1, 1])
        meta_f.write_text(json.dumps(meta))
    elif kind == "json from older version":
        shutil.copyfile(older_dir / "faiss.json", meta_f)
    elif kind == "older pair":
        shutil.copyfile(older_dir / "faiss.index", idx_f)
        shutil.copyfile(older_dir / "faiss.json", meta_f)
    elif kind == "both empty":
        idx_f.write_bytes(b"")
        meta_f.write_bytes(b"")
    else:
        raise ValueError(kind)


def _hits(hits) -> list[tuple[str, float]]:
    return [(h.clip_id, round(h.score, 5)) for h in hits]


def fault_faiss_corrupt(env: Env, rng: random.Random, trial_no: int) -> Trial:
    from motive_index.api import MotiveIndex
    from motive_index.index import VectorIndex

    kind = FAISS_KINDS[trial_no % len(FAISS_KINDS)]
    tr = Trial()
    trial = env.trial_dir("faiss-corrupt")
    intact = env.copy_full(trial)
    index = trial / "corrupt"
    shutil.copytree(intact, index)
    vecs, descs = env.reference
    n = len(env.ids)
    queries = rng.sample(env.ids, min(4, n))
    ks = [1, rng.randint(2, n), n]
    qv = np.random.default_rng(rng.randrange(2**32)).standard_normal(DIM).astype(np.float32)
    qv /= np.linalg.norm(qv)
    probes = [("influence", vecs[c], c) for c in queries] + [("influence", qv, "random")] + \
             [("motion", descs[c], c) for c in queries]

    def answers(idx):
        """Every probe's hits, and the wall time of the first search in each channel (summed)."""
        out, first = [], {}
        for channel, v, _ in probes:
            for k in ks:
                t = time.perf_counter()
                hits = idx.search(v, k=k) if channel == "influence" else motion_rank(idx, v, k)
                first.setdefault(channel, time.perf_counter() - t)
                out.append(_hits(hits))
        return out, sum(first.values())

    ref, _ = answers(MotiveIndex.open(intact))
    older = env.base_few
    for channel_dir, older_dir in ((index, older), (index / "motion", older / "motion")):
        _corrupt_faiss(kind, channel_dir, older_dir, rng)
    try:
        idx = MotiveIndex.open(index)
        got, first = answers(idx)
        tr.recovery = first
    except Exception as e:  # noqa: BLE001
        tr.fail(f"{kind}: open or search failed: {type(e).__name__}: {tail(str(e), 200)}")
        log(f"  faiss-corrupt ({kind}): FAILED {type(e).__name__}")
        return tr
    bad = [(probes[i // len(ks)][0], probes[i // len(ks)][2], ks[i % len(ks)]) for i, (a, b) in
           enumerate(zip(ref, got)) if [c for c, _ in a] != [c for c, _ in b] or
           not np.allclose([s for _, s in a], [s for _, s in b], atol=1e-4)]
    if bad:
        tr.fail(f"{kind}: {len(bad)} of {len(ref)} searches differ from the intact index's: {bad[:3]}")
    for channel_dir in (index, index / "motion"):
        try:
            VectorIndex.load(channel_dir)
        except Exception as e:  # noqa: BLE001
            tr.fail(f"{kind}: {channel_dir.name} FAISS files not rewritten after the search "
                    f"({type(e).__name__}: {tail(str(e), 120)})")
    again, _ = answers(MotiveIndex.open(index))
    if [[c for c, _ in a] for a in again] != [[c for c, _ in a] for a in ref]:
        tr.fail(f"{kind}: a second open answers differently")
    log(f"  faiss-corrupt ({kind}): first search {first * 1000:.0f} ms, {len(bad)} differing")
    return tr


def _corrupt_settings(kind: str, path: Path, rng: random.Random) -> None:
    text = path.read_text()
    if kind == "garbage":
        path.write_bytes(rng.randbytes(rng.randrange(1, 512)))
    elif kind == "missing":
        path.unlink()
    elif kind == "truncated":
        path.write_text(text[:rng.randrange(1, len(text) - 1)])
    elif kind == "wrong type (list)":
        path.write_text(json.dumps([json.loads(text)]))
    elif kind == "empty":
        path.write_text("")
    elif kind == "field of wrong type":
        path.write_text(json.dumps({**json.loads(text), "model": 123}))
    else:
        raise ValueError(kind)


def fault_settings_corrupt(env: Env, rng: random.Random, trial_no: int) -> Trial:
    kind = SETTINGS_KINDS[trial_no % len(SETTINGS_KINDS)]
    tr = Trial()
    trial = env.trial_dir("settings-corrupt")
    index = env.copy_full(trial)
    _corrupt_settings(kind, index / "settings.json", rng)
    clip = env.clips[rng.choice(env.ids)]
    q = ["query", clip.path, "--index", index, "--prompt", clip.caption, "-k", 3, "--json"]
    rc, sec, p = run(cli(*q), trial, "no_model")
    err = p.stderr
    if rc != 2:
        tr.fail(f"{kind}: query without --model exited {rc}, not 2: {tail(err, 200)}")
    if "Traceback" in err:
        tr.fail(f"{kind}: query without --model printed a traceback")
    if "settings.json" not in err:
        tr.fail(f"{kind}: the message does not name settings.json: {tail(err, 200)}")
    rc2, sec2, p2 = run(cli(*q, "--model", env.model), trial, "with_model")
    tr.recovery = sec2
    if rc2 != 0:
        tr.fail(f"{kind}: query with --model exited {rc2}: {tail(p2.stderr, 200)}")
    else:
        rep = report_of(p2)
        top = rep["hits"][0]["clip_id"] if rep and rep.get("hits") else None
        if top != clip.clip_id:
            tr.fail(f"{kind}: query with --model answered {top!r} first, not {clip.clip_id!r}")
    log(f"  settings-corrupt ({kind}): without --model exit {rc}, with --model exit {rc2} ({sec2:.1f}s)")
    return tr


FAULTS = {
    "build-kill": fault_build_kill, "add-kill": fault_add_kill, "remove-kill": fault_remove_kill,
    "purge-kill": fault_purge_kill, "remove-vs-add": fault_remove_vs_add, "writers-2add": fault_writers_2add,
    "writers-3add": fault_writers_3add, "writers-2build": fault_writers_2build,
    "faiss-corrupt": fault_faiss_corrupt, "settings-corrupt": fault_settings_corrupt,
}
NUMBERED = {"faiss-corrupt", "settings-corrupt"}  # trial i uses kind i (mod the number of kinds)


# ---- the run --------------------------------------------------------------------------------------------------


def run_fault(env: Env, name: str, trials: int, seed: int) -> dict:
    rng = random.Random(f"{seed}:{name}")
    res = {"fault": name, "trials": 0, "killed": 0, "partial": 0, "lost": 0, "duplicated": 0, "resurrected": 0,
           "other_failures": 0, "other": [], "recovery_s": [], "checked": CHECKED[name]}
    for i in range(trials):
        log(f"{name}: trial {i + 1}/{trials}")
        t = time.perf_counter()
        try:
            tr = FAULTS[name](env, rng, i) if name in NUMBERED else FAULTS[name](env, rng)
        except Exception as e:  # noqa: BLE001 - the harness reports, it does not stop
            tr = Trial()
            tr.fail(f"trial {i + 1} crashed: {type(e).__name__}: {tail(str(e), 300)}")
            log(traceback.format_exc())
        res["trials"] += 1
        res["killed"] += bool(tr.killed)
        res["partial"] += bool(tr.partial)
        res["lost"] += len(tr.lost)
        res["duplicated"] += tr.duplicated
        res["resurrected"] += len(tr.resurrected)
        res["other_failures"] += len(tr.other)
        res["other"] += [f"trial {i + 1}: {m}" for m in tr.other]
        if tr.lost:
            res["other"].append(f"trial {i + 1}: lost {sorted(tr.lost)[:8]}")
        if tr.resurrected:
            res["other"].append(f"trial {i + 1}: resurrected {sorted(tr.resurrected)[:8]}")
        if tr.recovery is not None:
            res["recovery_s"].append(round(tr.recovery, 3))
        log(f"{name}: trial {i + 1} done in {time.perf_counter() - t:.1f}s: lost {len(tr.lost)}, duplicated "
            f"{tr.duplicated}, resurrected {len(tr.resurrected)}, other {len(tr.other)}")
    rec = res["recovery_s"]
    res["recovery_median_s"] = round(statistics.median(rec), 3) if rec else None
    res["recovery_max_s"] = round(max(rec), 3) if rec else None
    return res


def table(results: list[dict]) -> str:
    lines = ["| fault | trials | clips lost | duplicated | resurrected | other failures | recovery time "
             "(median / max s) | what was checked |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        rec = "-" if r["recovery_median_s"] is None else f"{r['recovery_median_s']:.2f} / {r['recovery_max_s']:.2f}"
        trials = f"{r['trials']}"
        if r["fault"].endswith("-kill"):
            trials += f" ({r['killed']} killed mid-run"
            trials += f", {r['partial']} left it half-done)" if r["fault"] != "purge-kill" else ")"
        lines.append(f"| {r['fault']} | {trials} | {r['lost']} | {r['duplicated']} | {r['resurrected']} | "
                     f"{r['other_failures']} | {rec} | {r['checked']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=None, help="trials per fault (default: per fault, see above)")
    ap.add_argument("--quick", action="store_true", help="1 trial of each (2 of faiss-corrupt), 4 clips")
    ap.add_argument("--seed", type=int, default=0, help="seed of the data and of every random kill time / kind")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    ap.add_argument("--only", default="", help="comma-separated fault names: " + ", ".join(FAULTS))
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (its path is printed on stderr)")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(FAULTS)
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        ap.error(f"unknown fault(s) {unknown}; choose from {', '.join(FAULTS)}")
    if args.trials is not None and args.trials < 1:
        ap.error("--trials must be at least 1")
    logging.getLogger("motive_index").addHandler(logging.NullHandler())  # library warnings: not on our stderr
    logging.getLogger("motive_index").propagate = False

    sizes = QUICK if args.quick else FULL
    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="motive-faults-"))
    log(f"working in {tmp}")
    env = Env(tmp, sizes, args.seed)
    results = []
    try:
        for name in names:
            trials = args.trials or TRIALS[name][1 if args.quick else 0]
            results.append(run_fault(env, name, trials, args.seed))
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.perf_counter() - t_start
    bad = sum(r["lost"] + r["duplicated"] + r["resurrected"] for r in results)
    setup = {k: round(v, 2) for k, v in env.timings.items()}
    derived = {}
    if "add small" in env.timings:
        derived = {"fixed_s": round(env.fixed, 2), "per_clip_s": round(env.work_per_clip, 2),
                   "build_small_s": round(env.d_build, 2), "add_small_s": round(env.d_add, 2)}
    if args.json:
        print(json.dumps({"machine": machine(), "seed": args.seed, "quick": args.quick, "sizes": sizes,
                          "setup_s": setup, "derived_durations": derived, "faults": results,
                          "ok": bad == 0, "seconds": round(seconds, 1)}, indent=2))
    else:
        print(f"\nmachine: {machine()}")
        print(f"seed {args.seed}; {sizes['clips']} clips (small manifest {sizes['small']}, base_few {sizes['few']}), "
              f"dim {DIM}; setup runs (s): " + ", ".join(f"{k} {v:.1f}" for k, v in setup.items())
              + (f"; final kill windows: build {derived['build_small_s']:.1f}s, add {derived['add_small_s']:.1f}s "
                 f"(process fixed cost {derived['fixed_s']:.1f}s, {derived['per_clip_s']:.2f}s per clip)"
                 if derived else "") + f"; total {seconds:.0f}s\n")
        print(table(results))
        others = [(r["fault"], m) for r in results for m in r["other"]]
        if others:
            print("\nFindings:")
            for fault, m in others:
                print(f"- {fault}, {m}")
        print(f"\n{'OK' if bad == 0 else 'FAILED'}: {bad} clip(s) lost, duplicated or resurrected in all")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
