"""Benchmark: what making every fetch result durable as it completes (appended to its state shard, fsync'd per commit)
costs, measured as our crawler's throughput against the same crawler at a baseline git commit, in one run.

    python benchmarks/crawl_journal.py --n 3000 --baseline e4c2d27     # the commit before (shards every 10 s / 256 rows)

Both sides run their own `--crawl-worker` of benchmarks/crawl_vs_img2dataset.py as their own subprocess (the baseline from a
`git archive` of that commit in a temporary folder) against one loopback server process serving N generated JPEGs,
alternating, so load on the shared machine hits both alike. It prints each run and the ratio current / baseline of
the best and median images/s (end to end and from first request to last result) and of client CPU; below 1.0 the
per-result fsync costs throughput.

Results (benchmarks/results/crawl_journal.txt), shared 2-core box at load average 9-12, 3,000 JPEGs, two runs of 5
each: median steady-state ratio 1.16 and 0.86, end to end 1.14 and 0.85; client CPU ratio 1.06 and 1.00. Over all 10
runs the median steady state is 321 img/s against 283 (ratio 1.13) and the mean client CPU 5.54 s against 5.70: no
regression beyond the box's noise. A first version that wrote a separate journal and then compacted it into parquet
shards wrote every body twice: medians 0.85 (steady state) / 0.89 (end to end), CPU ratio 0.94; hence the shard is the
journal.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from crawl_vs_img2dataset import REPO, children_cpu, line, make_images, serve  # noqa: E402


def export_commit(ref: str, dest: Path) -> Path:
    """The tree of `ref` in `dest` (git archive: no checkout, no worktree touched)."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def run_tree(tree: Path, urls: Path, work: Path, concurrency: int) -> dict:
    """One crawl of `urls` by the crawler in `tree` (its own worker script and packages), timed like run_ours."""
    state = work / "journal-bench-state"
    shutil.rmtree(state, ignore_errors=True)
    script = tree / "benchmarks" / "crawl_vs_img2dataset.py"
    cmd = [sys.executable, str(script), "--crawl-worker", str(urls), str(state), str(concurrency)]
    start, cpu = time.perf_counter(), children_cpu()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tree)})
    wall, cpu = time.perf_counter() - start, children_cpu() - cpu
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "wall_s": wall, "cpu_s": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3000, help="number of JPEGs served")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each side, alternating")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--baseline", default="e4c2d27", help="git commit to compare against (before the journal)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "emocurate-crawl-bench")
    args = ap.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    images = make_images(args.n, args.work / f"images-{args.n}")
    baseline = export_commit(args.baseline, Path(tempfile.mkdtemp(prefix="crawl-baseline-")))
    print(f"{args.n} JPEGs, {sum(p.stat().st_size for p in images) / 1e6:.0f} MB; cpus {os.cpu_count()}; load average "
          f"{os.getloadavg()[0]:.1f}; concurrency {args.concurrency}; baseline {args.baseline}")
    port_queue: mp.Queue = mp.get_context("fork").Queue()
    server = mp.get_context("fork").Process(target=serve, args=(str(images[0].parent), port_queue), daemon=True)
    server.start()
    current, base = [], []
    try:
        port = port_queue.get(timeout=60)
        urls = args.work / "urls.txt"
        urls.write_text("".join(f"http://127.0.0.1:{port}/img/{p.name}\n" for p in images))
        for rep in range(args.repeats):
            base.append(run_tree(baseline, urls, args.work, args.concurrency))
            print(line(f"[{rep}] baseline {args.baseline}", base[-1]), flush=True)
            current.append(run_tree(REPO, urls, args.work, args.concurrency))
            print(line(f"[{rep}] current", current[-1]), flush=True)
    finally:
        server.terminate()

    def best(runs: list[dict], key: str) -> float:
        return max(r["ok"] / r[key] for r in runs)

    def median(runs: list[dict], key: str) -> float:
        return statistics.median(r["ok"] / r[key] for r in runs)

    def cpu(runs: list[dict]) -> float:
        return statistics.mean(r["cpu_s"] for r in runs)

    print(f"load average after: {os.getloadavg()[0]:.1f}")
    for name, agg in (("best", best), ("median", median)):
        print(f"{name} images/s ratio current/baseline: steady state (first request to last result) "
              f"{agg(current, 'inner_s') / agg(base, 'inner_s'):.2f}, end to end {agg(current, 'wall_s') / agg(base, 'wall_s'):.2f}")
    print(f"client CPU s per run, mean (least moved by other load): current {cpu(current):.2f}, baseline {cpu(base):.2f}; "
          f"ratio baseline/current {cpu(base) / cpu(current):.2f}")

if __name__ == "__main__":
    main()
