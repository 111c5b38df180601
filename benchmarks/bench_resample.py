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

Times exclude making the in-memory input (reported separately) and Dask's
once-per-process start-up (``warm_dask``); all outputs are checked against
SimpleITK's. ``dcmxr store`` computes the same lazy result chunk by chunk
into a preallocated numpy array (``dask.array.store``, what a streaming
consumer such as ``to_nifti`` or ``to_zarr`` does, and what the accessor's
memory-lean ``da.dcm.load()`` does): ``.compute()`` of any
multi-chunk Dask array holds every chunk *and* the concatenated result at the
end (2x the output), which this row avoids. Usage::

    python benchmarks/bench_resample.py [--nz 300] [--repeat 5]

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


def cpu_s() -> float:
    """User + system CPU seconds of this process so far (all threads)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def checksum(out: np.ndarray) -> list:
    o = np.asarray(out, dtype=np.float64)
    c = tuple(s // 2 for s in o.shape)
    return [float(np.nansum(o)), float(o[c]), float(o[c[0], 10, 10]), list(o.shape)]


# --------------------------------------------------------------------- runners
def warm_dask() -> None:
    """Pay Dask's once-per-process start-up (its first compute imports ``distributed`` to look
    for a client, ~0.2 s) before the clock starts: a notebook pays it once per session, not per call."""
    import dask
    import dask.array as dska

    with dask.config.set(scheduler="threads", num_workers=2):
        dska.ones(4, chunks=2).sum().compute()


def run(which: str, nz: int, size: int) -> dict:
    res: dict = {"which": which}
    if which.startswith("dcmxr") or which == "input-only":
        warm_dask()
    base = peak_rss_mib()
    if which == "dcmxr-lazy":
        import dask

        from dcmxr.transform import resample

        da = make_da(lazy_input(nz, size), nz, size)
        base = peak_rss_mib()
        t, c0 = time.perf_counter(), cpu_s()
        with dask.config.set(scheduler="threads", num_workers=2):
            out = resample(da, "1 mm", method="linear").compute()
        res["time"] = time.perf_counter() - t
        res["cpu"] = cpu_s() - c0
        res["peak_mib"] = peak_rss_mib()
        res["check"] = checksum(out.values)
    elif which == "input-only":
        import dask

        base = peak_rss_mib()
        t, c0 = time.perf_counter(), cpu_s()
        with dask.config.set(scheduler="threads", num_workers=2):
            lazy_input(nz, size).compute()
        res["time"] = time.perf_counter() - t
        res["cpu"] = cpu_s() - c0
    else:
        vol = make_volume(nz, size)
        base = peak_rss_mib()
        if which == "dcmxr-mem":
            import dask
            import dask.array as dska

            from dcmxr.transform import resample

            da = make_da(dska.from_array(vol, chunks=(32, size, size)), nz, size)
            base = peak_rss_mib()
            t, c0 = time.perf_counter(), cpu_s()
            with dask.config.set(scheduler="threads", num_workers=2):
                out = resample(da, "1 mm", method="linear").compute()
            res["time"] = time.perf_counter() - t
            res["cpu"] = cpu_s() - c0
            res["peak_mib"] = peak_rss_mib()
            res["check"] = checksum(out.values)
        elif which == "dcmxr-store":
            import dask
            import dask.array as dska

            from dcmxr.transform import resample

            da = make_da(dska.from_array(vol, chunks=(32, size, size)), nz, size)
            base = peak_rss_mib()
            t, c0 = time.perf_counter(), cpu_s()
            r = resample(da, "1 mm", method="linear")
            out = np.empty(r.shape, r.dtype)  # the consumer's buffer (its pages count in the peak)
            with dask.config.set(scheduler="threads", num_workers=2):
                dska.store(r.data, out, lock=False)
            res["time"] = time.perf_counter() - t
            res["cpu"] = cpu_s() - c0
            res["peak_mib"] = peak_rss_mib()
            res["check"] = checksum(out)
        elif which == "sitk":
            import SimpleITK as sitk

            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(2)
            img = sitk.GetImageFromArray(vol)
            img.SetSpacing(SPACING)
            img.SetOrigin(ORIGIN)
            origin, spacing, sizes = output_grid(nz, size)
            base = peak_rss_mib()
            t, c0 = time.perf_counter(), cpu_s()
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
            res["cpu"] = cpu_s() - c0
            res["peak_mib"] = peak_rss_mib()
            res["check"] = checksum(out)
        elif which == "scipy":
            from scipy import ndimage

            origin, spacing, sizes = output_grid(nz, size)
            scale = np.array([NEW / s for s in SPACING])[::-1]  # z, y, x
            shift = ((np.array(origin) - np.array(ORIGIN)) / np.array(SPACING))[::-1]
            base = peak_rss_mib()
            t, c0 = time.perf_counter(), cpu_s()
            out = ndimage.affine_transform(vol, scale, offset=shift, output_shape=tuple(sizes[::-1]),
                                           order=1, mode="nearest", output=np.float32)
            res["time"] = time.perf_counter() - t
            res["cpu"] = cpu_s() - c0
            res["peak_mib"] = peak_rss_mib()
            res["check"] = checksum(out)
        else:
            raise ValueError(which)
    res.setdefault("peak_mib", peak_rss_mib())  # measured before the checksum's float64 copy
    res["base_mib"] = base
    return res


ORDER = ("input-only", "dcmxr-lazy", "dcmxr-mem", "dcmxr-store", "sitk", "scipy")
LABELS = {
    "dcmxr-lazy": ("dcmxr `resample(...).compute()`, lazy input (time includes generating the input)", 2),
    "dcmxr-mem": ("dcmxr `resample(...).compute()`, in-memory input", 2),
    "dcmxr-store": ("dcmxr `resample`, in-memory input, stored into one numpy buffer (what `da.dcm.load()` does)", 2),
    "sitk": ("SimpleITK `ResampleImageFilter`", 2),
    "scipy": ("scipy `ndimage.affine_transform` (diagonal)", 1),
    "input-only": ("(generating the lazy input alone, no resampling)", 2),
}


def main() -> None:
    import statistics

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nz", type=int, default=300)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run(args.child, args.nz, args.size)))
        return
    env = dict(os.environ, OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2", MKL_NUM_THREADS="2")
    runs: dict[str, list] = {k: [] for k in ORDER}
    for _ in range(args.repeat):  # interleaved, so load from other processes hits every contender alike
        for which in ORDER:
            p = subprocess.run([sys.executable, __file__, "--child", which, "--nz", str(args.nz),
                                "--size", str(args.size)], capture_output=True, text=True, env=env, check=True)
            runs[which].append(json.loads(p.stdout.strip().splitlines()[-1]))
    med = statistics.median
    rows = {k: {"time": med(r["time"] for r in rs), "cpu": med(r["cpu"] for r in rs),
                "peak": max(r["peak_mib"] for r in rs), "extra": max(r["peak_mib"] - r["base_mib"] for r in rs),
                "check": rs[0].get("check"), "all": [r["time"] for r in rs]} for k, rs in runs.items()}
    _, _, sizes = output_grid(args.nz, args.size)
    out_mib = int(np.prod(sizes)) * 4 / 2**20
    in_mib = args.nz * args.size**2 * 2 / 2**20
    ref = rows["sitk"]["check"]
    for k in ("dcmxr-lazy", "dcmxr-mem", "dcmxr-store", "scipy"):
        c = rows[k]["check"]
        assert c[3] == ref[3], (k, c, ref)
        assert abs(c[0] - ref[0]) <= 1e-4 * abs(ref[0]) and abs(c[1] - ref[1]) < 1e-2, (k, c, ref)
    t_sitk, c_sitk = rows["sitk"]["time"], rows["sitk"]["cpu"]
    print(f"Resample {args.size}x{args.size}x{args.nz} int16 CT ({in_mib:.0f} MiB; {SPACING[0]} x {SPACING[1]} x "
          f"{SPACING[2]} mm) to 1 mm isotropic float32 {sizes[0]}x{sizes[1]}x{sizes[2]} ({out_mib:.0f} MiB), "
          f"linear; median of {args.repeat} fresh processes per contender, interleaved; outputs checked equal "
          f"to SimpleITK's.\n")
    print("| contender | threads | wall (s), median | wall vs SimpleITK | CPU (s), median | CPU vs SimpleITK | "
          "all walls (s) | peak RSS (MiB) | (peak - baseline) / output |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k in ("dcmxr-mem", "dcmxr-store", "dcmxr-lazy", "sitk", "scipy", "input-only"):
        r = rows[k]
        label, th = LABELS[k]
        walls = " ".join(f"{v:.2f}" for v in r["all"])
        print(f"| {label} | {th} | {r['time']:.2f} | {r['time'] / t_sitk:.2f}x | {r['cpu']:.2f} | "
              f"{r['cpu'] / c_sitk:.2f}x | {walls} | {r['peak']:.0f} | {r['extra'] / out_mib:.2f} |")
    print("\nbaseline = peak RSS just before the timed call (after imports and, for in-memory contenders, "
          f"after making the {in_mib:.0f} MiB input); the lazy run's baseline is before any input exists. "
          "CPU = user + system seconds of the child during the timed call (all threads): robust to other "
          "load on the machine, unlike wall time.")


if __name__ == "__main__":
    main()
