"""Whole-slide reads: dcmxr.wsi vs wsidicom ``read_region`` (both 2 threads).

Tasks, each in a fresh subprocess per tool (peak RSS from ``ru_maxrss``; wall time and the
process's CPU time, all threads, both reported with wsidicom's / dcmxr's ratio):

* ``open``     open the slide (headers only), timed after the package import;
* ``import+open``  the package import plus the open (a fresh session's cost);
* ``regions``  200 random 512x512 regions at level 0 (same seed for both);
* ``full``     the whole level 0 as one array (dcmxr: a Dask compute, threads scheduler); in a
  fresh process Dask's first compute imports ``distributed`` when it is installed (about 0.4 s,
  once per process, whatever the data);
* ``full-warm``  the same after that one-time Dask set-up (``get_scheduler`` called once first);
* ``full-region``  the whole level 0 through ``read_region`` (dcmxr: no Dask, tiles decoded in a
  2-thread pool straight into one output buffer; wsidicom: the same call as ``full``);
* ``full-load``  the whole level 0 through ``da.dcm.load()`` (Dask, each chunk written into one
  preallocated array: no final concatenation);
* ``full-into``  the whole level 0 through ``dcmxr.wsi.load.load_level_into`` (what ``da.dcm.load()``
  calls for an untransformed level: the level's reader decodes every tile into its slot of one
  preallocated array, no Dask scheduler; wsidicom: the same call as ``full``).

Tools: ``dcmxr`` (WSI default ``jpeg_decoder="libjpeg-turbo"``: imagecodecs'
libjpeg-turbo with its own YCbCr->RGB, identical to Pillow's decode),
``dcmxr-pydicom`` (``jpeg_decoder="pydicom"``: pylibjpeg-libjpeg + pydicom's
conversion, pydicom's exact values; only with ``--pydicom``),
``dcmxr-before`` (the committed code, from ``--before DIR`` holding a copy of
the ``dcmxr`` package, e.g. ``git archive HEAD dcmxr | tar -x -C DIR``) and
``wsidicom``. wsidicom returns the dicom-wsi-sample tiles without any
YCbCr->RGB conversion (its header says RGB), dcmxr converts them (inside
libjpeg-turbo), as pydicom does.

Data: the real dicom-wsi-sample pyramid (level 0: 2220x2967, 500 px JPEG
tiles) and a larger synthetic single-level slide built from its real level-0
tiles (default 20000x20000; ``--size 40000`` for the issue's scale), written
once into a temporary folder.

``--inner N`` repeats the timed call N times inside each process and reports the median of
repeats 2..N: on this VM the first touch of a fresh 4.8 GB output costs 2-6 s of (host) page
faults that vary from run to run, the same for both tools, and hide the readers' own cost. (For
``regions`` the later repeats hit both tools' tile caches.)

    python benchmarks/bench_wsi.py [--size 20000] [--repeat 3] [--inner 3] [--pydicom] [--before DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SAMPLE = Path(os.environ.get("DCMXR_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / \
    "wsi" / "dicom-wsi-sample" / "cmu-1-small-region"
N_REGIONS, REGION = 200, 512


def make_big(out: Path, size: int) -> Path:
    """A TILED_FULL slide of ``size`` x ``size`` pixels cycling the sample's real level-0 tiles."""
    import pydicom
    from pydicom.encaps import encapsulate, generate_frames
    from pydicom.uid import generate_uid

    path = out / f"big-{size}.dcm"
    if path.exists():
        return path
    (src,) = SAMPLE.glob("level-0-frames-*.dcm")
    ds = pydicom.dcmread(src)
    tiles = list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    n = -(-size // ds.Columns) * -(-size // ds.Rows)
    ds.PixelData = encapsulate([tiles[i % len(tiles)] for i in range(n)])
    ds.NumberOfFrames = n
    ds.TotalPixelMatrixRows = ds.TotalPixelMatrixColumns = size
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.save_as(path, enforce_file_format=True)
    return path


def _timed(tool, task, slide, dw, width, height, xs, ys) -> int:
    import numpy as np

    checksum = 0
    if task == "regions":
        for x, y in zip(xs.tolist(), ys.tolist()):
            if tool.startswith("dcmxr"):
                arr = dw.read_region(slide, (x, y), 0, (REGION, REGION), threads=2).values
            else:
                arr = slide.read_region((x, y), 0, (REGION, REGION), threads=2, as_array=True)
            checksum += int(arr[::97, ::89].sum())
    elif task == "full-region":
        if tool.startswith("dcmxr"):
            arr = dw.read_region(slide, (0, 0), 0, (width, height), threads=2).values
        else:
            arr = slide.read_region((0, 0), 0, (width, height), threads=2, as_array=True)
        checksum = int(arr.shape[0])
    elif task == "full-load":
        if tool.startswith("dcmxr"):
            arr = slide["level_0"]["image"].dcm.load(scheduler="threads", num_workers=2).values
        else:
            arr = slide.read_region((0, 0), 0, (width, height), threads=2, as_array=True)
        checksum = int(arr.shape[0])
    elif task == "full-into":
        if tool.startswith("dcmxr"):
            from dcmxr.wsi.load import load_level_into

            data = slide["level_0"]["image"].data
            arr = np.empty(data.shape, data.dtype)
            if not load_level_into(data, arr, scheduler="threads", num_workers=2):
                raise RuntimeError("load_level_into refused the level array")
        else:
            arr = slide.read_region((0, 0), 0, (width, height), threads=2, as_array=True)
        checksum = int(arr.shape[0])
    elif task in ("full", "full-warm"):
        if tool.startswith("dcmxr"):
            arr = slide["level_0"]["image"].data.compute(scheduler="threads", num_workers=2)
        else:
            arr = slide.read_region((0, 0), 0, (width, height), threads=2, as_array=True)
        checksum = int(arr.shape[0])
    return checksum


def _child(tool: str, task: str, source: str) -> dict:
    import resource
    import time
    import warnings

    import numpy as np

    warnings.simplefilter("ignore")
    if tool.startswith("dcmxr"):
        if tool == "dcmxr-before":
            sys.path.insert(0, os.environ["DCMXR_BEFORE"])
        t_imp, c_imp = time.perf_counter(), time.process_time()
        import dcmxr.wsi as dw

        t_imp, c_imp = time.perf_counter() - t_imp, time.process_time() - c_imp
        kw = {"jpeg_decoder": "pydicom"} if tool == "dcmxr-pydicom" else {}
        t0, c_open = time.perf_counter(), time.process_time()
        slide = dw.open_slide(source, **kw)
        t_open, c_open = time.perf_counter() - t0, time.process_time() - c_open
        width, height = slide.attrs["level_dimensions"][0]
    else:
        t_imp, c_imp = time.perf_counter(), time.process_time()
        from wsidicom import WsiDicom

        t_imp, c_imp = time.perf_counter() - t_imp, time.process_time() - c_imp
        t0, c_open = time.perf_counter(), time.process_time()
        slide = WsiDicom.open(source)
        t_open, c_open = time.perf_counter() - t0, time.process_time() - c_open
        width, height = slide.levels[0].size.width, slide.levels[0].size.height
    if task == "full-warm" and tool.startswith("dcmxr"):
        import dask.base

        dask.base.get_scheduler(scheduler="threads")  # Dask's one-time import of distributed
    rng = np.random.default_rng(0)
    xs = rng.integers(0, width - REGION, N_REGIONS)
    ys = rng.integers(0, height - REGION, N_REGIONS)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    inner = int(os.environ.get("BENCH_INNER", "1")) if task not in ("open", "import+open") else 1
    walls, cpus = [], []
    for _ in range(inner):
        c0 = time.process_time()
        t0 = time.perf_counter()
        checksum = _timed(tool, task, slide, dw if tool.startswith("dcmxr") else None, width, height, xs, ys)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    # with --inner N the first pass (fresh pages, one-time set-up) is dropped: median of the rest
    wall = statistics.median(walls[1:] or walls)
    cpu = statistics.median(cpus[1:] or cpus)
    elapsed = wall if task not in ("open", "import+open") else t_open
    if task == "import+open":
        elapsed = t_imp + t_open
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": elapsed, "peak_mb": (peak - base) / 1024 if task not in ("open", "import+open") else peak / 1024,
            "cpu": {"open": c_open, "import+open": c_imp + c_open}.get(task, cpu),
            "checksum": checksum, "import": t_imp}


def run(tool: str, task: str, source: str, before: str | None = None, inner: int = 1) -> dict:
    env = dict(os.environ, DCMXR_BEFORE=before or "", BENCH_INNER=str(inner))
    out = subprocess.run([sys.executable, __file__, "--child", tool, task, source],
                         capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pydicom", action="store_true", help="also time jpeg_decoder='pydicom'")
    ap.add_argument("--before", help="folder holding an older copy of the dcmxr package to compare")
    ap.add_argument("--workdir", help="keep the synthetic slide here (default: a temporary folder)")
    ap.add_argument("--tasks", default="open,import+open,regions,full,full-load,full-region")
    ap.add_argument("--inner", type=int, default=1,
                    help="repeat each timed task N times in its process and keep the median of repeats 2..N "
                         "(drops first-touch page faults of fresh memory, which dominate and vary on a VM)")
    ap.add_argument("--child", nargs=3)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(*args.child)))
        return
    tools = ["dcmxr"] + ["dcmxr-pydicom"] * args.pydicom + ["dcmxr-before"] * bool(args.before) + ["wsidicom"]
    with tempfile.TemporaryDirectory() as tmp:
        big = make_big(Path(args.workdir or tmp), args.size)
        datasets = [("sample 2220x2967", str(SAMPLE)), (f"synthetic {args.size}x{args.size}", str(big))]
        print(f"| data | task | tool | seconds (median of {args.repeat}) | wsidicom / tool | CPU s | wsidicom CPU / tool "
              f"| peak MB |")
        print("|---|---|---|---|---|---|---|---|")
        for label, source in datasets:
            for task in args.tasks.split(","):
                res = {t: [] for t in tools}
                for _ in range(args.repeat):
                    for t in tools:  # interleaved so background load hits all alike
                        res[t].append(run(t, task, source, args.before, args.inner))
                ref = statistics.median(r["seconds"] for r in res["wsidicom"])
                ref_cpu = statistics.median(r["cpu"] for r in res["wsidicom"])
                for t in tools:
                    sec = statistics.median(r["seconds"] for r in res[t])
                    cpu = statistics.median(r["cpu"] for r in res[t])
                    peak = max(r["peak_mb"] for r in res[t])
                    print(f"| {label} | {task} | {t} | {sec:.3f} | {ref / sec:.2f}x | {cpu:.3f} | "
                          f"{ref_cpu / max(cpu, 1e-9):.2f}x | {peak:.0f} |", flush=True)
        os.system("uptime")


if __name__ == "__main__":
    main()
