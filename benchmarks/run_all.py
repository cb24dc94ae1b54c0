"""Every trust table in one command: planted-motion quality, fidelity of each shortcut, the exact-gradient peer
check, approximate-index recall, and curation in small.

    python benchmarks/run_all.py [--quick] [--only quality,fidelity,peer_check,search,curation,memorization]
                                 [--out DIR]

Runs each script below in turn (a fresh process each, so one's memory never weighs on the next), prints its
tables as it finishes, then the seconds each took. ``--quick`` passes ``--quick`` to each (small smoke runs:
a few minutes in all, for CI; their numbers are too few to read anything into). ``--out DIR`` also keeps each
script's full output and JSON there. Exit code 1 if any part failed (the others still run).

Parts (each script's docstring says exactly what it measures):

- ``quality``: benchmarks/quality.py. Motion-precision@10 and appearance-leak@10 of every scoring kind (influence
  mse / td, flow mask / none, the mask-swap control, the motion-feature channel, the combined ranking) on
  planted motion, with length bias; 5 seeds.
- ``fidelity``: benchmarks/fidelity.py. Projected vs exact gradient cosines by dimension (Spearman), single
  sample vs a 10-timestep reference (top-10 overlap, Spearman).
- ``peer_check``: benchmarks/peer_check.py. The engine's exact gradients against torch.func, both losses.
- ``search``: benchmarks/search.py on 200 k clustered 512-d vectors. The approximate (IVF) index's recall@10
  against exact search, and its latency.
- ``curation``: benchmarks/curation.py. Fine-tuning on the top 10% by vote vs a random 10% vs everything,
  judged by the motion of what each model generates.
- ``memorization``: benchmarks/memorization.py. A few clips memorized, videos generated from their captions and
  queried: is the source the first hit (top-1 / top-5 for influence with and without the mask, motion
  similarity)?
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

PARTS = {  # name: (script, full args, quick args)
    "quality": ("quality.py", [], ["--quick"]),
    "fidelity": ("fidelity.py", [], ["--quick"]),
    "peer_check": ("peer_check.py", [], ["--quick"]),
    "search": ("search.py", ["--n", "200000", "--data", "clustered", "--clusters", "500", "--queries", "100",
                             "--batch", "500", "--store-sample", "5000"],
               ["--n", "20000", "--data", "clustered", "--clusters", "100", "--queries", "50", "--batch", "200",
                "--store-sample", "2000"]),
    "curation": ("curation.py", [], ["--quick"]),
    "memorization": ("memorization.py", [], ["--quick"]),
}
JSON_PARTS = ("quality", "fidelity")  # the scripts that take --json


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke runs of every part (CI)")
    ap.add_argument("--only", default=",".join(PARTS), help="comma-separated parts to run")
    ap.add_argument("--out", type=Path, default=None, help="keep each part's output (and JSON) in this folder")
    args = ap.parse_args(argv)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        ap.error(f"--only: unknown parts {unknown}; choose from {list(PARTS)}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    seconds, failed = {}, []
    t_all = time.perf_counter()
    for name in parts:
        script, full, quick = PARTS[name]
        cmd = [sys.executable, str(HERE / script), *(quick if args.quick else full)]
        if args.out and name in JSON_PARTS:
            cmd += ["--json", str(args.out / f"{name}.json")]
        print(f"\n## {name}: {' '.join(Path(c).name if i == 1 else c for i, c in enumerate(cmd[1:], 1))}\n",
              flush=True)
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds[name] = time.perf_counter() - t
        print(proc.stdout, flush=True)
        if args.out:
            (args.out / f"{name}.txt").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
        if proc.returncode != 0:
            failed.append(name)
            print(f"**{name} FAILED (exit {proc.returncode})**\n```\n{proc.stderr[-4000:]}\n```", flush=True)
    total = time.perf_counter() - t_all
    print("\n## seconds per part\n")
    print("| part | seconds |\n|---|---:|")
    for name, s in seconds.items():
        print(f"| {name}{' (FAILED)' if name in failed else ''} | {s:.0f} |")
    print(f"| total | {total:.0f} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
