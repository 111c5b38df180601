"""Resample a 512x512x300 CT volume to 1 mm isotropic: dcmxr vs SimpleITK vs scipy.ndimage.

Input: a CT-like int16 volume (the body phantom of ``benchmarks/data.py``,
HU), 0.7 x 0.7 mm pixels, 1.25 mm slices, axial LPS geometry. Output: 1 mm
isotropic, float32, linear interpolation, the same field of view
(358 x 358 x 375 voxels, 183 MiB).

Each contender runs in a fresh subprocess (peak RSS is the child's own
``ru_maxrss``) on the same grid:

* ``dcmxr lazy``: the input is a lazy dask array that generates the phantom
  chunk by chunk (32 slices per chunk, as a DICOM read would), so the time
  includes making the input; ``dcmxr.transform.resample(da, "1 mm",
  method="linear").compute()`` with 2 threads.
* ``dcmxr in-memory``: the same on a numpy array wrapped in dask (2 threads).
* ``SimpleITK``: ``ResampleImageFilter`` (linear, float32 output) on the
  in-memory image, 2 threads.
* ``scipy``: ``scipy.ndimage.affine_transform`` (order 1, diagonal matrix:
  its fastest, zoom-like path) on the in-memory array, 1 thread (it holds
  the GIL).

Times exclude making the in-memory input (reported separately); all outputs
are checked against SimpleITK's. Usage::

    python benchmarks/bench_resample.py [--nz 300] [--repeat 3]

prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SPACING = (0.7, 0.7, 1.25)  # x, y, z (mm)
ORIGIN = (-179.0, -179.0, -200.0)
NEW = 1.0


def make_slice(z: int, nz: int, size: int) -> np.ndarray:
    sys.path.insert(0, HERE)
    from data import phantom

    return phantom(z, nz, size, np.random.default_rng(z)).astype(np.int16) - 1024


def make_volume(nz: int, size: int) -> np.ndarray:
    return np.stack([make_slice(z, nz, size) for z in range(nz)])


def make_da(data, nz: int, size: int):
    import xarray as xr

    coords = {}
    for k, (ax, n) in enumerate(zip("xyz", (size, size, nz))):
        d = [0.0, 0.0, 0.0]
        d[k] = 1.0
        coords[ax] = xr.Variable(ax, ORIGIN[k] + SPACING[k] * np.arange(n), {"units": "mm", "direction": d})
    return xr.DataArray(data, dims=("z", "y", "x"), coords=coords, attrs={"modality": "CT", "units": "HU"})


def lazy_input(nz: int, size: int, chunk: int = 32):
    import dask.array as dska

    chunks = ((tuple(min(chunk, nz - i) for i in range(0, nz, chunk))), (size,), (size,))

    def gen(block_info=None):
        (z0, z1), _, _ = block_info[None]["array-location"]
        return np.stack([make_slice(z, nz, size) for z in range(z0, z1)])

    return dska.map_blocks(gen, chunks=chunks, dtype=np.int16, meta=np.empty((0, 0, 0), np.int16))


def output_grid(nz: int, size: int):
    """(origin, spacing, size) of the 1 mm grid covering the same field of view (dcmxr's rule)."""
    n_in = (size, size, nz)
    sizes = [max(1, int(round(n * s / NEW))) for n, s in zip(n_in, SPACING)]
    origin = [o - s / 2 + NEW / 2 for o, s in zip(ORIGIN, SPACING)]
    return origin, [NEW] * 3, sizes


def peak_rss_mib() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 if sys.platform != "darwin" else r / 2**20


def checksum(out: np.ndarray) -> list:
    o = np.asarray(out, dtype=np.float64)
    c = tuple(s // 2 for s in o.shape)
    return [float(np.nansum(o)), float(o[c]), float(o[c[0], 10, 10]), list(o.shape)]


# --------------------------------------------------------------------- runners
def run(which: str, nz: int, size: int) -> dict:
    res: dict = {"which": which}
    base = peak_rss_mib()
    if which == "dcmxr-lazy":
        import dask

        from dcmxr.transform import resample

        da = make_da(lazy_input(nz, size), nz, size)
        base = peak_rss_mib()
        t = time.perf_counter()
        with dask.config.set(scheduler="threads", num_workers=2):
            out = resample(da, "1 mm", method="linear").compute()
        res["time"] = time.perf_counter() - t
        res["peak_mib"] = peak_rss_mib()
        res["check"] = checksum(out.values)
    elif which == "input-only":
        import dask

        base = peak_rss_mib()
        t = time.perf_counter()
        with dask.config.set(scheduler="threads", num_workers=2):
            lazy_input(nz, size).compute()
        res["time"] = time.perf_counter() - t
    else:
        vol = make_volume(nz, size)
        base = peak_rss_mib()
        if which == "dcmxr-mem":
            import dask
            import dask.array as dska

            from dcmxr.transform import resample

            da = make_da(dska.from_array(vol, chunks=(32, size, size)), nz, size)
            base = peak_rss_mib()
            t = time.perf_counter()
            with dask.config.set(scheduler="threads", num_workers=2):
                out = resample(da, "1 mm", method="linear").compute()
            res["time"] = time.perf_counter() - t
            res["peak_mib"] = peak_rss_mib()
            res["check"] = checksum(out.values)
        elif which == "sitk":
            import SimpleITK as sitk

            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(2)
            img = sitk.GetImageFromArray(vol)
            img.SetSpacing(SPACING)
            img.SetOrigin(ORIGIN)
            origin, spacing, sizes = output_grid(nz, size)
            base = peak_rss_mib()
            t = time.perf_counter()
            f = sitk.ResampleImageFilter()
            f.SetOutputOrigin(origin)
            f.SetOutputSpacing(spacing)
            f.SetSize(sizes)
            f.SetOutputDirection(img.GetDirection())
            f.SetInterpolator(sitk.sitkLinear)
            f.SetOutputPixelType(sitk.sitkFloat32)
            f.SetDefaultPixelValue(float("nan"))
            out_img = f.Execute(img)
            out = sitk.GetArrayViewFromImage(out_img)  # no copy; out_img stays alive
            res["time"] = time.perf_counter() - t
            res["peak_mib"] = peak_rss_mib()
            res["check"] = checksum(out)
        elif which == "scipy":
            from scipy import ndimage

            origin, spacing, sizes = output_grid(nz, size)
            scale = np.array([NEW / s for s in SPACING])[::-1]  # z, y, x
            shift = ((np.array(origin) - np.array(ORIGIN)) / np.array(SPACING))[::-1]
            base = peak_rss_mib()
            t = time.perf_counter()
            out = ndimage.affine_transform(vol, scale, offset=shift, output_shape=tuple(sizes[::-1]),
                                           order=1, mode="nearest", output=np.float32)
            res["time"] = time.perf_counter() - t
            res["peak_mib"] = peak_rss_mib()
            res["check"] = checksum(out)
        else:
            raise ValueError(which)
    res.setdefault("peak_mib", peak_rss_mib())  # measured before the checksum's float64 copy
    res["base_mib"] = base
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nz", type=int, default=300)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run(args.child, args.nz, args.size)))
        return
    env = dict(os.environ, OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2", MKL_NUM_THREADS="2")
    rows = {}
    for which in ("input-only", "dcmxr-lazy", "dcmxr-mem", "sitk", "scipy"):
        runs = []
        for _ in range(args.repeat):
            p = subprocess.run([sys.executable, __file__, "--child", which, "--nz", str(args.nz),
                                "--size", str(args.size)], capture_output=True, text=True, env=env, check=True)
            runs.append(json.loads(p.stdout.strip().splitlines()[-1]))
        rows[which] = {"time": min(r["time"] for r in runs), "peak": max(r["peak_mib"] for r in runs),
                       "base": min(r["base_mib"] for r in runs), "check": runs[0].get("check")}
    _, _, sizes = output_grid(args.nz, args.size)
    out_mib = int(np.prod(sizes)) * 4 / 2**20
    in_mib = args.nz * args.size**2 * 2 / 2**20
    ref = rows["sitk"]["check"]
    for k in ("dcmxr-lazy", "dcmxr-mem", "scipy"):
        c = rows[k]["check"]
        assert c[3] == ref[3], (k, c, ref)
        assert abs(c[0] - ref[0]) <= 1e-4 * abs(ref[0]) and abs(c[1] - ref[1]) < 1e-2, (k, c, ref)
    t_sitk = rows["sitk"]["time"]
    print(f"Resample {args.size}x{args.size}x{args.nz} int16 CT ({in_mib:.0f} MiB; {SPACING[0]} x {SPACING[1]} x "
          f"{SPACING[2]} mm) to 1 mm isotropic float32 {sizes[0]}x{sizes[1]}x{sizes[2]} ({out_mib:.0f} MiB), "
          f"linear; best of {args.repeat}, fresh process each; outputs checked equal to SimpleITK's.\n")
    print("| contender | threads | time (s) | vs SimpleITK | peak RSS (MiB) | peak - baseline (MiB) | (peak - baseline) / output |")
    print("|---|---|---|---|---|---|---|")
    labels = {
        "dcmxr-lazy": ("dcmxr `resample`, lazy input (time includes generating the input)", 2),
        "dcmxr-mem": ("dcmxr `resample`, in-memory input", 2),
        "sitk": ("SimpleITK `ResampleImageFilter`", 2),
        "scipy": ("scipy `ndimage.affine_transform` (diagonal)", 1),
        "input-only": ("(generating the lazy input alone, no resampling)", 2),
    }
    for k in ("dcmxr-lazy", "dcmxr-mem", "sitk", "scipy", "input-only"):
        r = rows[k]
        label, th = labels[k]
        extra = r["peak"] - r["base"]
        print(f"| {label} | {th} | {r['time']:.2f} | {r['time'] / t_sitk:.2f}x | {r['peak']:.0f} | {extra:.0f} | "
              f"{extra / out_mib:.2f} |")
    print("\nbaseline = peak RSS just before the timed call (after imports and, for in-memory contenders, "
          f"after making the {in_mib:.0f} MiB input); the lazy run's baseline is before any input exists.")


if __name__ == "__main__":
    main()
