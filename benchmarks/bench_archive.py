"""Zarr archives: dcmxr ``to_zarr`` vs dcm2niix, archive size, read-back speed, virtual references.

For the 512x512x300 CT series in each transfer syntax (``benchmarks/data.py``)
and, with ``--corpus``, for all of ../shared/data. Every measurement runs in a
child process, timed after its imports (import time reported apart, the
benchmark convention; dcmxr's child also converts one small file first so that
the modules ``to_zarr`` imports lazily are loaded), repeated ``--repeat`` times with the median kept; wall
*and* CPU time (all threads; for dcm2niix the child's rusage) are reported, as
wall times are noisy on a shared 2-core machine.

* convert: ``dcmxr.stores.to_zarr(dir, out.zarr)`` (default codec) vs
  ``dcm2niix -z n`` (uncompressed NIfTI + sidecar) on the same files, runs
  alternating: throughput in MB/s of decoded pixels (rows x cols x frames x
  2 bytes), ratio dcm2niix time / dcmxr time (target: >= 1);
* size: archive bytes and archive / source DICOM bytes, per transfer syntax;
* read back: ``xr.open_datatree(archive)`` + every image's ``.values`` vs
  ``open_series(dir).values``, alternating in one process after one warm-up
  run of each, ratio of medians (target: archive >= 3x faster for compressed
  sources);
* virtual: ``virtual(dir)`` build time per file vs ``scan(dir)`` time per file.

    python benchmarks/bench_archive.py [--syntaxes explicit,rle,...] [--corpus] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parents[1] / "shared" / "data"


def _du(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def _timed(fn, repeat: int) -> dict:
    import time

    import numpy as np

    walls, cpus, out = [], [], None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return {"wall": float(np.median(walls)), "cpu": float(np.median(cpus)), "result": out}


def _child(task: str, src: str, out: str, repeat: int) -> dict:
    import resource
    import time
    import warnings

    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    import numpy as np
    import xarray as xr

    import dcmxr
    from dcmxr.stores import to_zarr, virtual

    imports = time.perf_counter() - t0
    info: dict = {"imports_s": imports}
    if task == "dcmxr_convert":  # load the modules to_zarr imports lazily (zarr codecs, pydicom, dask ...)
        import tempfile

        from pydicom.data import get_testdata_file

        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as warm:
            to_zarr(get_testdata_file("CT_small.dcm"), os.path.join(warm, "w.zarr"), progress=False)
        info["warmup_s"] = time.perf_counter() - t0
    if task == "dcmxr_convert":
        def conv():
            shutil.rmtree(out, True)
            rep = to_zarr(src, out, progress=False)
            return {"failed": len(rep.failed), "written": len(rep.written)}
        r = _timed(conv, 1)
        info.update(r.pop("result"))
        info.update(r)
    elif task == "dcm2niix":
        shutil.rmtree(out, True)
        os.makedirs(out)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        p = subprocess.run(["dcm2niix", "-z", "n", "-b", "y", "-o", out, src], capture_output=True, text=True)
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        info.update(wall=wall, cpu=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
                    rc=p.returncode)
    elif task == "read":
        def archive():
            tree = xr.open_datatree(out, engine="zarr", consolidated=True)
            return sum(int(np.asarray(node.ds["image"].values).size) for node in tree.subtree if "image" in node.ds)

        def source():
            return int(dcmxr.open_series(src).values.size)
        walls = {"archive": [], "source": []}
        cpus = {"archive": [], "source": []}
        n = {"archive": archive(), "source": source()}  # warm-up (codec imports, thread pools, page cache)
        for _ in range(repeat):  # alternate, so both see the same machine load
            for name, fn in (("archive", archive), ("source", source)):
                r = _timed(fn, 1)
                walls[name].append(r["wall"])
                cpus[name].append(r["cpu"])
                n[name] = r["result"]
        assert n["archive"] == n["source"], n
        for name in walls:
            info[f"{name}_wall"] = float(np.median(walls[name]))
            info[f"{name}_cpu"] = float(np.median(cpus[name]))
    elif task == "virtual":
        r = _timed(lambda: len(virtual(src)["refs"]), repeat)
        s = _timed(lambda: len(dcmxr.scan(src, progress=False)), repeat)
        info.update(virtual_wall=r["wall"], virtual_cpu=r["cpu"], scan_wall=s["wall"], scan_cpu=s["cpu"])
    info["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return info


def run(task: str, src: str, out: str, repeat: int = 1) -> dict:
    cmd = [sys.executable, __file__, "--child", task, src, out, "--repeat", str(repeat)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{task} failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _median(rows: list[dict], key: str) -> float:
    import statistics

    return statistics.median(r[key] for r in rows)


def bench_dir(label: str, src: str, pixel_mb: float, src_bytes: int, nfiles: int, tmp: str, read: bool,
              repeat: int) -> dict:
    z = os.path.join(tmp, f"{label.replace(' ', '_').replace('/', '_')}.zarr")
    n = os.path.join(tmp, "nii")
    conv, niix = [], []
    for _ in range(repeat):  # alternate the two tools
        conv.append(run("dcmxr_convert", src, z))
        niix.append(run("dcm2niix", src, n))
    cw, cc, nw, nc = (_median(conv, "wall"), _median(conv, "cpu"), _median(niix, "wall"), _median(niix, "cpu"))
    row = {"data": label, "files": nfiles, "pixel_MB": round(pixel_mb, 1),
           "dcmxr_MBps": round(pixel_mb / cw, 1), "dcm2niix_MBps": round(pixel_mb / nw, 1),
           "convert_ratio": round(nw / cw, 2), "convert_ratio_cpu": round(nc / cc, 2),
           "dcmxr_imports_s": round(_median(conv, "imports_s") + _median(conv, "warmup_s"), 2),
           "dcmxr_rss_MB": round(max(c["peak_rss_mb"] for c in conv)),
           "archive_MB": round(_du(z) / 1e6, 1), "source_MB": round(src_bytes / 1e6, 1),
           "archive/source": round(_du(z) / src_bytes, 3), "failed_series": conv[-1].get("failed")}
    if read:
        r = run("read", src, z, max(5, repeat))
        row["read_archive_s"] = round(r["archive_wall"], 3)
        row["read_source_s"] = round(r["source_wall"], 3)
        row["read_speedup"] = round(r["source_wall"] / r["archive_wall"], 2)
        row["read_speedup_cpu"] = round(r["source_cpu"] / r["archive_cpu"], 2)
    v = run("virtual", src, "", repeat)
    row["virtual_ms_per_file"] = round(1000 * v["virtual_wall"] / nfiles, 2)
    row["scan_ms_per_file"] = round(1000 * v["scan_wall"] / nfiles, 2)
    row["virtual/scan"] = round(v["virtual_wall"] / v["scan_wall"], 2)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs=3, metavar=("TASK", "SRC", "OUT"))
    ap.add_argument("--syntaxes", default="explicit,rle,jpegls,jpegll,j2k")
    ap.add_argument("--nz", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--data-dir", default=str(HERE / "_data"))
    ap.add_argument("--corpus", action="store_true", help="also convert all of ../shared/data")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(*args.child, args.repeat)))
        return
    sys.path.insert(0, str(HERE))
    import data as bdata

    m = bdata.ensure_data(Path(args.data_dir), args.nz, 10, 300)
    rows = []
    print("load before:", os.getloadavg(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for key in [k for k in args.syntaxes.split(",") if k]:
            s = m["series"][key]
            pixel_mb = m["size"] ** 2 * args.nz * 2 / 1e6
            rows.append(bench_dir(f"ct512x{args.nz} {key}", s["dir"], pixel_mb, s["bytes"], s["files"], tmp, True,
                                  args.repeat))
            print(json.dumps(rows[-1]), flush=True)
        if args.corpus and CORPUS.exists():
            import warnings

            import dcmxr

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t = dcmxr.scan(str(CORPUS), progress=False)
            px = float((t["rows"] * t["columns"] * t["samples_per_pixel"].fillna(1) * 2).sum()) / 1e6
            files = set(t["path"]) | {r["path"] for r in t.attrs["non_image"]}
            size = sum(os.path.getsize(f) for f in files)
            rows.append(bench_dir("shared/data", str(CORPUS), px, size, len(files), tmp, False, args.repeat))
            print(json.dumps(rows[-1]), flush=True)
    print("load after:", os.getloadavg())
    print()
    cols = list(dict.fromkeys(c for r in rows for c in r))
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")


if __name__ == "__main__":
    main()
