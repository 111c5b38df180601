"""NIfTI export: dcmxr ``to_nifti`` vs nibabel, 512x512x300 int16.

Each measurement runs in a fresh subprocess. dcmxr writes a lazy DataArray
(``dask.array.from_array`` over an in-memory numpy array, with dcmxr x/y/z
coordinates) slab by slab; nibabel writes the same in-memory array with
``Nifti1Image(...).to_filename``. Reported: wall time of the write, the
ratio dcmxr / nibabel, and peak resident memory above the process's peak
once the input array exists (``ru_maxrss``), i.e. what the writer adds.
Both runs import nibabel before the clock starts (dcmxr imports it lazily
inside ``to_nifti``; a one-time cost of ~0.1 s per process otherwise).

A third row, ``dcmxr (numpy)``, writes a DataArray over the numpy array
itself (dcmxr's direct path, no Dask). Runs of the three writers are
interleaved (A B C A B C ...) so that load from other processes hits them
alike; the table reports the median of the repeats.

    python benchmarks/bench_nifti.py [--repeat 3] [--nz 300]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

SHAPE_YX = (512, 512)


def _child(mode: str, suffix: str, nz: int, out_dir: str) -> dict:
    import resource
    import time

    import numpy as np

    rng = np.random.default_rng(0)
    arr = rng.integers(-1024, 3000, size=(nz,) + SHAPE_YX, dtype=np.int16)
    path = os.path.join(out_dir, f"{mode}{suffix}")
    if mode.startswith("dcmxr"):
        import dask.array as dska
        import nibabel  # noqa: F401  (imported before timing, as in the nibabel run)
        import xarray as xr

        import dcmxr  # noqa: F401  (registers .dcm)
        from dcmxr.export.nifti import to_nifti

        da = xr.DataArray(
            dska.from_array(arr, chunks=(8,) + SHAPE_YX) if mode == "dcmxr" else arr,
            dims=("z", "y", "x"),
            coords={
                "z": ("z", 1.25 * np.arange(nz), {"units": "mm", "direction": [0.0, 0.0, 1.0]}),
                "y": ("y", 0.7 * np.arange(SHAPE_YX[0]) - 180, {"units": "mm", "direction": [0.0, 1.0, 0.0]}),
                "x": ("x", 0.7 * np.arange(SHAPE_YX[1]) - 180, {"units": "mm", "direction": [1.0, 0.0, 0.0]}),
            },
            attrs={"modality": "CT"},
        )
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        to_nifti(da, path, sidecar=False)
        dt = time.perf_counter() - t0
    else:
        import nibabel as nib

        aff = np.diag([-0.7, -0.7, 1.25, 1.0])
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        nib.Nifti1Image(arr.transpose(2, 1, 0), aff).to_filename(path)
        dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    size = os.path.getsize(path)
    os.remove(path)
    return {"seconds": dt, "peak_mb": peak / 1024, "added_mb": (peak - base) / 1024, "bytes": size}


def run(mode: str, suffix: str, nz: int, out_dir: str) -> dict:
    code = (f"import json,sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
            f"from bench_nifti import _child; print(json.dumps(_child({mode!r}, {suffix!r}, {nz}, {out_dir!r})))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


MODES = ("nibabel", "dcmxr", "dcmxr-numpy")
LABELS = {"nibabel": "nibabel (numpy)", "dcmxr": "dcmxr (lazy, 8-slice chunks)", "dcmxr-numpy": "dcmxr (numpy)"}


def main(argv=None) -> None:
    import statistics

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--nz", type=int, default=300)
    ap.add_argument("--out-dir", default=None,
                    help="where the files go (default: a temporary directory; /dev/shm takes disk "
                         "write-back, a large source of noise, out of the timings)")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(dir=args.out_dir) as out_dir:
        for suffix in (".nii", ".nii.gz"):
            runs: dict[str, list] = {m: [] for m in MODES}
            for _ in range(args.repeat):
                for mode in MODES:
                    runs[mode].append(run(mode, suffix, args.nz, out_dir))
            med = {m: {"seconds": statistics.median(r["seconds"] for r in rs),
                       "peak_mb": max(r["peak_mb"] for r in rs),
                       "added_mb": max(r["added_mb"] for r in rs),
                       "all": [r["seconds"] for r in rs]} for m, rs in runs.items()}
            rows.append((suffix, med))
    mb = args.nz * SHAPE_YX[0] * SHAPE_YX[1] * 2 / 2**20
    print(f"NIfTI export of a {SHAPE_YX[1]}x{SHAPE_YX[0]}x{args.nz} int16 volume ({mb:.0f} MiB), "
          f"median of {args.repeat} fresh processes per writer (interleaved)\n")
    print("| format | writer | median time (s) | dcmxr / nibabel | all runs (s) | peak RSS (MiB) | added over input (MiB) |")
    print("|---|---|---:|---:|---|---:|---:|")
    for suffix, med in rows:
        for mode in MODES:
            r = med[mode]
            ratio = r["seconds"] / med["nibabel"]["seconds"]
            runs_s = " ".join(f"{v:.3f}" for v in r["all"])
            print(f"| {suffix} | {LABELS[mode]} | {r['seconds']:.3f} | {ratio:.2f} | {runs_s} | {r['peak_mb']:.0f} | "
                  f"{r['added_mb']:.0f} |")


if __name__ == "__main__":
    main()
