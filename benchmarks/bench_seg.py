"""A 100-segment SEG of a 512x512x300 CT series: dcmxr vs plain highdicom, write and read.

Source: a synthetic 512 x 512 x 300 CT series (``dcmxr.testing.synthetic.write_series``,
single-frame files, generated once under ``benchmarks/_data/seg_source``).
Labels: 100 non-overlapping balls (a 5 x 5 x 4 grid of centres, radius 30
voxels), value k = segment k, 0 = background: about 25 segments per slice,
the layout of whole-body organ segmentations.

Contenders, each in a fresh subprocess:

* ``write dcmxr (lazy)``: the label volume is a lazy Dask array that makes
  each 32-slice chunk on demand; ``to_seg(labels, ct, {k: ...}, path=...)``
  (``ct`` from ``dcmxr.open_series``; the headers come from the scan). With
  ``path=`` this is the streaming writer (``dcmxr.export.seg_stream``).
* ``write dcmxr (in memory)``: the same with the label volume as a numpy
  array (time to make it excluded).
* ``write highdicom``: the same label volume in memory (time to make it
  excluded), the 300 source headers read with pydicom (timed), then
  ``highdicom.seg.Segmentation(...)`` and ``save_as``.
* ``read dcmxr``: ``dcmxr.open_seg(path)`` -> ``("segment", z, y, x)`` bool
  (lazy), then the voxel count computed chunk by chunk.
* ``read highdicom``: ``segread(path).get_volume()`` -> the same voxels, counted.

Memory: the child's peak RSS (``ru_maxrss``), and that peak minus the resident
size after imports and, for the writers, minus the resident size after a
warm-up (each writer first writes a 2-slice SEG through its own code, so lazy
imports and highdicom's IOD tables are loaded) -- the memory the 300-slice
write itself needs, compared with the label volume (uint8, 75 MiB).
Times are wall and CPU (``process_time``, all threads) of the step.

Both writers get the same segment descriptions and BINARY type; the outputs
are checked to hold the same frames and voxels. Usage::

    python benchmarks/bench_seg.py [--nz 300] [--segments 100] [--repeat 3]

prints a markdown table with the ratios dcmxr / highdicom (fastest of ``--repeat``
runs each; peak RSS of that run). Import costs are excluded for every
contender (highdicom, xarray and dask are imported before the clock starts).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIZE = 512


def centres(nz: int, n: int) -> np.ndarray:
    """(n, 3) z, y, x ball centres on a grid (5 x 5 in-plane, n/25 along z)."""
    per_z = max(1, n // 25)
    zs = (np.arange(per_z) + 0.5) * nz / per_z
    yx = (np.arange(5) + 0.5) * SIZE / 5
    pts = np.array([(z, y, x) for z in zs for y in yx for x in yx])[:n]
    return pts


def label_block(z0: int, z1: int, nz: int, n: int, radius: float = 30.0) -> np.ndarray:
    """Labels of slices z0..z1 (uint8)."""
    out = np.zeros((z1 - z0, SIZE, SIZE), np.uint8)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    for k, (cz, cy, cx) in enumerate(centres(nz, n), start=1):
        for z in range(max(z0, int(cz - radius)), min(z1, int(cz + radius) + 1)):
            r2 = radius**2 - (z - cz) ** 2
            if r2 <= 0:
                continue
            sel = (yy - cy) ** 2 + (xx - cx) ** 2 < r2
            out[z - z0][sel] = k
    return out


def ensure_source(nz: int) -> Path:
    from dcmxr.testing.synthetic import write_series

    d = HERE / "_data" / f"seg_source_{SIZE}x{nz}"
    if not (d / "done").exists():
        d.mkdir(parents=True, exist_ok=True)
        write_series(d, shape=(nz, SIZE, SIZE), spacing=(1.25, 0.7, 0.7), pixel_fn=None, shuffle_names=False)
        (d / "done").write_text("ok")
    return d


def _segments(n: int) -> dict:
    return {k: {"label": f"organ {k}", "category": ("91723000", "SCT", "Anatomical Structure"),
                "type": ("10200004", "SCT", "Liver")} for k in range(1, n + 1)}


def _highdicom_write(files: list, lab: np.ndarray, n: int, out: str) -> None:
    import highdicom as hd
    import pydicom

    dss = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    dss.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    descs = [hd.seg.SegmentDescription(
        segment_number=k, segment_label=f"organ {k}",
        segmented_property_category=hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure"),
        segmented_property_type=hd.sr.CodedConcept("10200004", "SCT", "Liver"),
        algorithm_type="MANUAL") for k in range(1, n + 1)]
    seg = hd.seg.Segmentation(dss, lab, "BINARY", descs, hd.UID(), 300, hd.UID(), 1, "bench", "bench", "0", "0")
    seg.save_as(out, enforce_file_format=True)


def _rss() -> float:
    """Peak resident set size so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current() -> float:
    """Resident set size now (MiB), after a garbage collection."""
    import gc

    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(which: str, nz: int, n: int, out: str) -> dict:
    import warnings

    warnings.simplefilter("ignore")
    src = ensure_source(nz)
    import dask.array  # noqa: F401  (import costs excluded for every contender)
    import highdicom  # noqa: F401
    import xarray as xr

    xr.DataArray(np.zeros(2)) + 1  # xarray imports its duck-array modules on first use
    import dcmxr
    import dcmxr.backend.derived
    from dcmxr.export.seg import to_seg

    base = _current()  # after imports, before any work
    warm = base
    made = 0.0
    files = sorted(src.glob("*.dcm"))
    if which.startswith("write_dcmxr"):
        ct = dcmxr.open_series(src)
        coords = {k: ct.coords[k] for k in ("z", "y", "x")}
        # warm-up: a 2-slice SEG through the same code (lazy imports, highdicom's IOD tables)
        small = xr.DataArray(label_block(0, 2, nz, n) * 0 + 1, dims=("z", "y", "x"),
                             coords={k: v.isel(z=slice(0, 2)) if k == "z" else v for k, v in coords.items()},
                             attrs=dict(ct.attrs))
        to_seg(small.chunk({"z": 1}), ct, {1: "liver"}, path=out + ".warm")
        os.unlink(out + ".warm")
        warm = _current()
    elif which == "write_highdicom":
        _highdicom_write(files[:2], np.ones((2, SIZE, SIZE), np.uint8), 1, out + ".warm")
        os.unlink(out + ".warm")
        warm = _current()
    c0, t0 = time.process_time(), time.perf_counter()
    if which == "write_dcmxr_memory":
        t1 = time.perf_counter()
        arr = label_block(0, nz, nz, n)
        made = time.perf_counter() - t1
        lab = xr.DataArray(arr, dims=("z", "y", "x"), coords=coords, attrs=dict(ct.attrs))
        t0, c0 = time.perf_counter(), time.process_time()
        to_seg(lab, ct, _segments(n), path=out)
    elif which == "write_dcmxr":
        import dask
        import dask.array as dska

        chunks = [(a, min(a + 32, nz)) for a in range(0, nz, 32)]
        blocks = [dska.from_delayed(dask.delayed(label_block)(a, b, nz, n), shape=(b - a, SIZE, SIZE),
                                    dtype=np.uint8) for a, b in chunks]
        lab = xr.DataArray(dska.concatenate(blocks), dims=("z", "y", "x"), coords=coords, attrs=dict(ct.attrs))
        t0, c0 = time.perf_counter(), time.process_time()
        to_seg(lab, ct, _segments(n), path=out)
    elif which == "write_highdicom":
        t1 = time.perf_counter()
        lab = label_block(0, nz, nz, n)
        made = time.perf_counter() - t1
        t0, c0 = time.perf_counter(), time.process_time()
        _highdicom_write(files, lab, n, out)
    elif which == "read_dcmxr":
        da = dcmxr.backend.derived.open_seg(out)
        result = {"voxels": int(da.sum()), "shape": list(da.shape)}
    elif which == "read_highdicom":
        import highdicom as hd

        vol = hd.seg.segread(out).get_volume()
        result = {"voxels": int(vol.array.sum()), "shape": list(vol.array.shape)}
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    res = {"which": which, "seconds": dt, "cpu_s": cpu, "made_s": made, "peak_mb": _rss(), "base_mb": base,
           "warm_mb": warm}
    if which.startswith("read"):
        res.update(result)
    else:
        import pydicom

        ds = pydicom.dcmread(out, stop_before_pixels=True)
        res["frames"] = int(ds.NumberOfFrames)
        res["file_mb"] = os.path.getsize(out) / 2**20
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nz", type=int, default=300)
    ap.add_argument("--segments", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3, help="runs per contender; the fastest is reported")
    ap.add_argument("--child")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.nz, args.segments, args.out)))
        return
    ensure_source(args.nz)
    tmp = HERE / "_data"
    paths = {"dcmxr": str(tmp / "bench_seg_dcmxr.dcm"), "highdicom": str(tmp / "bench_seg_hd.dcm")}
    res = {}
    for which, out in (("write_dcmxr", paths["dcmxr"]), ("write_dcmxr_memory", paths["dcmxr"] + ".mem"),
                       ("write_highdicom", paths["highdicom"]),
                       ("read_dcmxr", paths["highdicom"]), ("read_highdicom", paths["highdicom"])):
        runs = []
        for _ in range(args.repeat):  # interleaved machines are noisy: keep the fastest run
            p = subprocess.run([sys.executable, __file__, "--child", which, "--nz", str(args.nz),
                                "--segments", str(args.segments), "--out", out],
                               capture_output=True, text=True, check=True)
            runs.append(json.loads(p.stdout.strip().splitlines()[-1]))
        res[which] = min(runs, key=lambda r: r["seconds"])
    assert res["write_dcmxr"]["frames"] == res["write_highdicom"]["frames"], res
    assert res["read_dcmxr"]["voxels"] == res["read_highdicom"]["voxels"], res
    mask_mb = args.nz * SIZE * SIZE / 2**20  # the uint8 label volume
    print(f"{args.segments}-segment SEG of {SIZE}x{SIZE}x{args.nz}: {res['write_dcmxr']['frames']} frames, "
          f"label volume {mask_mb:.0f} MiB\n")
    print("| step | dcmxr s (CPU s) | highdicom s (CPU s) | ratio wall (CPU) | dcmxr peak MiB: total / above "
          "imports / above warm-up | highdicom peak MiB: same | dcmxr above warm-up / label volume |")
    print("|---|---|---|---|---|---|---|")
    for step, mine in (("write, lazy labels (making them included)", "write_dcmxr"),
                       ("write, labels in memory", "write_dcmxr_memory"), ("read", "read_dcmxr")):
        a, b = res[mine], res[mine.split("_")[0] + "_highdicom"]
        mem = [f"{r['peak_mb']:.0f} / {r['peak_mb'] - r['base_mb']:.0f} / {r['peak_mb'] - r['warm_mb']:.0f}"
               for r in (a, b)]
        print(f"| {step} | {a['seconds']:.2f} ({a['cpu_s']:.2f}) | {b['seconds']:.2f} ({b['cpu_s']:.2f}) | "
              f"{a['seconds'] / b['seconds']:.2f} ({a['cpu_s'] / b['cpu_s']:.2f}) | {mem[0]} | {mem[1]} | "
              f"{(a['peak_mb'] - a['warm_mb']) / mask_mb:.2f} |")
    hd_made = res["write_highdicom"]["seconds"] + res["write_highdicom"]["made_s"]
    print(f"\nLazy row against highdicom *with* making the labels ({hd_made:.2f} s wall): "
          f"{res['write_dcmxr']['seconds'] / hd_made:.2f}.")
    print(f"\nMaking the label volume in memory takes {res['write_highdicom']['made_s']:.2f} s "
          "(excluded from the in-memory rows, included in the lazy row; the in-memory label volume "
          "itself counts in the 'above imports' memory of the in-memory rows and highdicom's).")
    print("Read: dcmxr's open_seg is lazy; both contenders compute the voxel count of every segment "
          "(dcmxr chunk by chunk via dask, highdicom from get_volume()'s array).")
    print(f"Load: {os.getloadavg()}")


if __name__ == "__main__":
    main()
