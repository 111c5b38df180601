"""Thread scaling of a full load, every configuration in one process, interleaved.

    python benchmarks/bench_load_threads.py [jpegll|rle|jpegls|j2k|explicit] [--repeat 9]

Uses the 512 x 512 x 300 series that ``benchmarks/run.py`` generated under ``benchmarks/_data``
(run it once first). Each repeat opens the series anew (as ``run.py``'s ``dcmxr_load`` case
does) and times the compute only, for: ``da.dcm.load()`` on 1 thread; the default config
(``threads=1``, Dask threads x2); ``threads=2`` + synchronous; and the per-chunk Dask path
(``da.values`` under Dask threads x2: chunks dealt whole to the workers). The configurations
alternate within each repeat, so load from other work hits them alike; the table shows the
minimum and the median wall time, the median CPU time, and speed-ups over 1 thread (min / min).
On a busy machine only the minima mean anything: check ``uptime``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import dask

import dcmxr

HERE = Path(__file__).resolve().parent
CONFIGS = {
    "dcm.load(), 1 thread (sync)": ({"scheduler": "synchronous"}, 1, "load"),
    "dcm.load(), default (threads=1, dask x2)": ({"scheduler": "threads", "num_workers": 2}, 1, "load"),
    "dcm.load(), threads=2 + sync": ({"scheduler": "synchronous"}, 2, "load"),
    ".values, dask x2 (chunks dealt whole)": ({"scheduler": "threads", "num_workers": 2}, 1, "values"),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("syntax", nargs="?", default="jpegll")
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--data-dir", default=str(HERE / "_data" / "ct512x300_tree10x300"))
    args = ap.parse_args(argv)
    d = Path(args.data_dir) / args.syntax
    if not d.is_dir():
        raise SystemExit(f"{d} not found: run `python benchmarks/run.py --only {args.syntax}` once first")
    dcmxr.open_series(str(d)).isel(z=0).values  # codec modules, Dask's pool
    wall: dict[str, list[float]] = {k: [] for k in CONFIGS}
    cpu: dict[str, list[float]] = {k: [] for k in CONFIGS}
    load_before = os.getloadavg()
    for _ in range(args.repeat):
        for name, (cfg, threads, how) in CONFIGS.items():
            da = dcmxr.open_series(str(d), threads=threads)
            c0, t0 = time.process_time(), time.perf_counter()
            with dask.config.set(**cfg):
                arr = da.dcm.load().values if how == "load" else da.values
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
            del arr, da
    base = min(wall[next(iter(CONFIGS))])
    print(f"{args.syntax}: {args.repeat} interleaved repeats; load average before "
          f"{load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}")
    print("| configuration | min s | median s | CPU s (median) | speed-up (min) |\n|---|---:|---:|---:|---:|")
    for name in CONFIGS:
        print(f"| {name} | {min(wall[name]):.3f} | {statistics.median(wall[name]):.3f} | "
              f"{statistics.median(cpu[name]):.3f} | {base / min(wall[name]):.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
