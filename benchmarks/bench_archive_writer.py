"""The archive's group writer vs xarray's ``Dataset.to_zarr``, on the same Datasets.

``dcmxr.stores.to_zarr`` writes each series group with
``dcmxr.stores.archive._write_dataset`` (metadata and small arrays made by
xarray in a zarr MemoryStore and written as plain files; Dask arrays stored
chunk by chunk into the arrays on disk). This times exactly that step against
``Dataset.to_zarr(local_dir, group=..., mode="w")`` (what the archive used
before), alternating in one process after a warm-up, medians of wall and CPU
time (all threads). The Datasets (series assembled, headers read) are built
once beforehand and are not timed.

    python benchmarks/bench_archive_writer.py [--repeat 5] [--corpus]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parents[1] / "shared" / "data"


def build(src: str) -> list:
    import dcmxr
    from dcmxr.stores import archive

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = dcmxr.scan(src, progress=False)
        out = []
        for entry in archive.series_groups(table):
            try:
                b = archive._build_series(entry, deid=None, chunk_bytes=16 * 2**20, workers=2)
            except Exception:  # noqa: BLE001 - series the archive reports as failed
                continue
            heads = archive._header_dataset(archive.read_series_headers(entry))
            gpath = next(iter(b["datasets"]))
            datasets = dict(b["datasets"])
            datasets[gpath] = archive._merge_heads(datasets[gpath], heads)
            out.append(datasets)
    return out


def write(built: list, dest: str, how: str) -> None:
    import dask
    import zarr

    from dcmxr.stores import archive

    shutil.rmtree(dest, True)
    zarr.open_group(dest, mode="w", zarr_format=3).attrs["dcmxr_archive"] = {"format": 1}
    comp = archive._compressors("blosc-lz4", None)
    with dask.config.set(scheduler="threads", num_workers=2), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for datasets in built:
            for p, ds in list(datasets.items())[::-1]:
                enc = archive._encoding(ds, comp, False)
                if how == "xarray":
                    ds.to_zarr(dest, group=p.strip("/"), mode="w", zarr_format=3, consolidated=False, encoding=enc)
                else:
                    archive._write_dataset(dest, p, ds, enc)


def bench(label: str, src: str, repeat: int) -> dict:
    built = build(src)
    with tempfile.TemporaryDirectory() as tmp:
        times = {"xarray": ([], []), "dcmxr": ([], [])}
        for how in times:  # warm-up
            write(built, os.path.join(tmp, how), how)
        for _ in range(repeat):
            for how in times:
                t, c = time.perf_counter(), time.process_time()
                write(built, os.path.join(tmp, how), how)
                times[how][0].append(time.perf_counter() - t)
                times[how][1].append(time.process_time() - c)
    w = {k: statistics.median(v[0]) for k, v in times.items()}
    c = {k: statistics.median(v[1]) for k, v in times.items()}
    return {"data": label, "groups": sum(len(d) for d in built), "xarray_wall_s": round(w["xarray"], 3),
            "dcmxr_wall_s": round(w["dcmxr"], 3), "speedup_wall": round(w["xarray"] / w["dcmxr"], 2),
            "xarray_cpu_s": round(c["xarray"], 3), "dcmxr_cpu_s": round(c["dcmxr"], 3),
            "speedup_cpu": round(c["xarray"] / c["dcmxr"], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--nz", type=int, default=300)
    ap.add_argument("--data-dir", default=str(HERE / "_data"))
    ap.add_argument("--corpus", action="store_true", help="also write all of ../shared/data")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    import data as bdata

    m = bdata.ensure_data(Path(args.data_dir), args.nz, 10, 300)
    print("load before:", os.getloadavg(), flush=True)
    rows = [bench(f"ct512x{args.nz} explicit", m["series"]["explicit"]["dir"], args.repeat)]
    print(rows[-1], flush=True)
    if args.corpus and CORPUS.exists():
        rows.append(bench("shared/data", str(CORPUS), args.repeat))
        print(rows[-1], flush=True)
    print("load after:", os.getloadavg())
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")


if __name__ == "__main__":
    main()
