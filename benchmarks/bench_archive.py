"""Zarr archives: dcmxr ``to_zarr`` vs dcm2niix, archive size, read-back speed, virtual references.

For the 512x512x300 CT series in each transfer syntax (``benchmarks/data.py``)
and, with ``--corpus``, for all of ../shared/data, each measurement runs in a
fresh subprocess (wall time and peak RSS via ``ru_maxrss``):

* convert: ``dcmxr.stores.to_zarr(dir, out.zarr)`` vs ``dcm2niix -z n`` (NIfTI,
  uncompressed) on the same files: throughput in MB/s of decoded pixels
  (rows x cols x frames x 2 bytes), ratio dcmxr / dcm2niix (target: >= 1);
* size: archive bytes / source DICOM bytes, per transfer syntax;
* read back: ``xr.open_datatree(archive)`` image ``.values`` vs
  ``open_series(dir).values`` (target: archive >= 3x faster for compressed sources);
* virtual: ``virtual(dir)`` build time per file vs ``scan(dir)`` time per file.

    python benchmarks/bench_archive.py [--syntaxes explicit,rle,...] [--corpus]
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


def _child(task: str, src: str, out: str) -> dict:
    import resource
    import time
    import warnings

    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    info: dict = {}
    if task == "dcmxr_convert":
        from dcmxr.stores import to_zarr

        rep = to_zarr(src, out, progress=False, overwrite=True)
        info = {"failed": len(rep.failed), "written": len(rep.written)}
    elif task == "dcm2niix":
        os.makedirs(out, exist_ok=True)
        r = subprocess.run(["dcm2niix", "-z", "n", "-b", "y", "-o", out, src], capture_output=True, text=True)
        info = {"rc": r.returncode}
    elif task == "read_archive":
        import numpy as np
        import xarray as xr

        tree = xr.open_datatree(out, engine="zarr", consolidated=True)
        n = 0
        for node in tree.subtree:
            if "image" in node.ds:
                n += int(np.asarray(node.ds["image"].values).size)
        info = {"voxels": n}
    elif task == "read_dicom":
        import dcmxr

        info = {"voxels": int(dcmxr.open_series(src).values.size)}
    elif task == "virtual":
        from dcmxr.stores import virtual

        doc = virtual(src)
        info = {"refs": len(doc["refs"])}
    elif task == "scan":
        import dcmxr

        info = {"rows": len(dcmxr.scan(src, progress=False))}
    dt = time.perf_counter() - t0
    return {"seconds": dt, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **info}


def run(task: str, src: str, out: str) -> dict:
    cmd = [sys.executable, __file__, "--child", task, src, out]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{task} failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def bench_dir(label: str, src: str, pixel_mb: float, src_bytes: int, nfiles: int, tmp: str, read: bool) -> dict:
    z = os.path.join(tmp, f"{label}.zarr")
    n = os.path.join(tmp, f"{label}_nii")
    shutil.rmtree(z, True)
    shutil.rmtree(n, True)
    conv = run("dcmxr_convert", src, z)
    niix = run("dcm2niix", src, n)
    row = {"data": label, "files": nfiles, "pixel_MB": round(pixel_mb, 1),
           "dcmxr_MBps": round(pixel_mb / conv["seconds"], 1), "dcm2niix_MBps": round(pixel_mb / niix["seconds"], 1),
           "convert_ratio": round(niix["seconds"] / conv["seconds"], 2),
           "dcmxr_rss_MB": round(conv["peak_rss_mb"]), "dcm2niix_rss_MB": round(niix["peak_rss_mb"]),
           "archive/source": round(_du(z) / src_bytes, 3), "failed_series": conv.get("failed")}
    if read:
        ra = run("read_archive", src, z)
        rd = run("read_dicom", src, z)
        row["read_speedup"] = round(rd["seconds"] / ra["seconds"], 2)
    v = run("virtual", src, "")
    s = run("scan", src, "")
    row["virtual_ms_per_file"] = round(1000 * v["seconds"] / nfiles, 2)
    row["scan_ms_per_file"] = round(1000 * s["seconds"] / nfiles, 2)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs=3, metavar=("TASK", "SRC", "OUT"))
    ap.add_argument("--syntaxes", default="explicit,rle,jpegls,jpegll,j2k")
    ap.add_argument("--nz", type=int, default=300)
    ap.add_argument("--data-dir", default=str(HERE / "_data"))
    ap.add_argument("--corpus", action="store_true", help="also convert all of ../shared/data")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(*args.child)))
        return
    sys.path.insert(0, str(HERE))
    import data as bdata

    m = bdata.ensure_data(Path(args.data_dir), args.nz, 10, 300)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.syntaxes.split(","):
            s = m["series"][key]
            pixel_mb = m["size"] ** 2 * args.nz * 2 / 1e6
            rows.append(bench_dir(f"ct512x{args.nz} {key}", s["dir"], pixel_mb, s["bytes"], s["files"], tmp, True))
            print(json.dumps(rows[-1]), flush=True)
        if args.corpus and CORPUS.exists():
            import dcmxr

            t = dcmxr.scan(str(CORPUS), progress=False)
            px = float((t["rows"] * t["columns"] * t["samples_per_pixel"].fillna(1) * 2).sum()) / 1e6
            files = set(t["path"]) | {r["path"] for r in t.attrs["non_image"]}
            size = sum(os.path.getsize(f) for f in files)
            rows.append(bench_dir("shared/data", str(CORPUS), px, size, len(files), tmp, False))
            print(json.dumps(rows[-1]), flush=True)
    print()
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")


if __name__ == "__main__":
    main()
