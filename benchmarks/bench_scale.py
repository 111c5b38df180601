"""Scale: scan of many files, graph size and scheduler overhead, HTTP bytes moved, out-of-core memory.

Every section runs dcmxr and a peer on the same files in one run and reports ratios:

* ``scan``   -- N single-frame files (default 10,000; 100 series x 100 slices, 64x64 int16, headers
  from pydicom's CT_small.dcm) in one folder: ``dcmxr.scan`` (2 worker processes, and 1) vs a
  ``pydicom.dcmread(stop_before_pixels=True)`` loop vs SimpleITK's GDCM series scan
  (``GetGDCMSeriesIDs`` + ``GetGDCMSeriesFileNames`` of one series). Target: dcmxr >= 3x the pydicom loop.
* ``graph``  -- ``open_study`` of the scanned table with one chunk per file: pickled graph bytes per
  chunk, and scheduler overhead per chunk ((graph run - direct decode of every frame) / chunks) on the
  threaded scheduler and a 2-process LocalCluster.
* ``remote`` -- the files served by a Range-capable HTTP server on 127.0.0.1: bytes moved by scan
  per file, and by computing K frames vs the frame bytes asked (target < 1.1x), next to
  ``pydicom.dcmread`` over ``fsspec.open`` of the same files.
* ``dicomweb`` -- a real Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``, started in its own network
  namespace by ``dcmxr.testing.orthanc``) behind a byte-counting proxy, with series from ../shared/data
  (native CT, enhanced MR JPEG-LS, a Siemens MOSAIC in JPEG-LS, a 1024x1024 JPEG 2000 MR):
  ``dcmxr.dicomweb.open_series(...).values`` (metadata + CSA bulk data + frames in their stored syntax)
  vs dicomweb-client ``retrieve_series`` (as stored, ``transfer-syntax=*``) + ``pydicom`` ``pixel_array`` per
  instance (whole instances;
  the MOSAIC left packed). Medians of wall and CPU time of this process, bytes through the proxy.
  Plus a study of 7 MOSAIC series: ``dcmxr.dicomweb.open_study`` + compute of every node vs
  ``retrieve_study`` + ``pixel_array``, next to ``dcmxr.open_study`` of the same files (assembly cost).
* ``ooc``    -- a CT cohort (default 40 series of 512x512x300, ~6.3 GB stored, 12 GB as float32)
  written once and reused: per-series HU histogram and mean inside a threshold mask with
  ``open_study`` + xarray, peak RSS of the whole process tree (sampled with psutil) on the threaded
  scheduler and a LocalCluster of 2 worker processes. Target: < 2 GB.

    python benchmarks/bench_scale.py                  # everything, full size
    python benchmarks/bench_scale.py --quick          # scaled down (1,000 files, 4 x 60 slices)
    python benchmarks/bench_scale.py --only scan,graph --files 10000
    python benchmarks/bench_scale.py --only dicomweb

Generated data lives under ``--data-dir`` (default ``benchmarks/_data/scale``) and is reused.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


# --------------------------------------------------------------------------- data
def _template():
    import pydicom
    from pydicom.data import get_testdata_file

    return pydicom.dcmread(get_testdata_file("CT_small.dcm"))


def _write_slices(args) -> int:
    folder, series_index, n_slices, size, prefix, seed, study_uid = args
    import copy

    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    tmpl = _template()
    rng = np.random.default_rng(seed)
    series_uid = generate_uid()
    for z in range(n_slices):
        ds = copy.deepcopy(tmpl)
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = series_index + 1
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = z + 1
        ds.ImagePositionPatient = [-100.0, -100.0, float(z) * 1.25]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = float(z) * 1.25
        ds.Rows = ds.Columns = size
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        for kw in ("SmallestImagePixelValue", "LargestImagePixelValue"):
            if kw in ds:
                del ds[kw]
        yy, xx = np.mgrid[0:size, 0:size]
        body = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (0.4 * size) ** 2
        arr = np.where(body, 1064, 24) + rng.normal(0, 15, (size, size))
        ds.PixelData = np.clip(arr, 0, 4095).astype("<u2").tobytes()
        ds.save_as(os.path.join(folder, f"{prefix}{series_index:03d}_{z:04d}.dcm"), enforce_file_format=True)
    return n_slices


def make_tree(folder: Path, n_series: int, n_slices: int, size: int, label: str) -> Path:
    """Write (once) ``n_series`` series of ``n_slices`` files; return the folder."""
    from concurrent.futures import ProcessPoolExecutor

    from pydicom.uid import generate_uid

    stamp = folder / "manifest.json"
    want = {"series": n_series, "slices": n_slices, "size": size, "version": 1}
    if stamp.exists() and json.loads(stamp.read_text()) == want:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    study = generate_uid()
    jobs = [(str(folder), s, n_slices, size, "", s, study) for s in range(n_series)]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        total = sum(pool.map(_write_slices, jobs))
    stamp.write_text(json.dumps(want))
    print(f"  wrote {total} files ({label}) in {time.perf_counter() - t0:.0f} s under {folder}", flush=True)
    return folder


def _files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.glob("*.dcm"))


# --------------------------------------------------------------------------- scan
def bench_scan(folder: Path) -> dict:
    import warnings

    import dcmxr

    files = _files(folder)
    out = {"files": len(files)}
    # warm the page cache for everyone alike
    for f in files:
        with open(f, "rb") as fh:
            fh.read(1)
    for label, procs in (("dcmxr (2 processes)", 2), ("dcmxr (1 process)", 1)):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = dcmxr.scan(str(folder), processes=procs, progress=False)
        out[label] = time.perf_counter() - t0
        assert len(table) == len(files), (len(table), len(files))
    import pydicom

    t0 = time.perf_counter()
    keep = []
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        keep.append((ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.get("ImagePositionPatient")))
    out["pydicom loop"] = time.perf_counter() - t0
    try:
        import SimpleITK as sitk

        t0 = time.perf_counter()
        ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
        names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), ids[0])
        out["SimpleITK GDCM (ids + 1 series)"] = time.perf_counter() - t0
        assert len(ids) >= 1 and len(names) >= 1
    except ImportError:
        out["SimpleITK GDCM (ids + 1 series)"] = None
    return out


# --------------------------------------------------------------------------- graph
def bench_graph(folder: Path, cluster: bool) -> dict:
    import warnings

    import dask

    import dcmxr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = dcmxr.scan(str(folder), processes=2, progress=False)
        t0 = time.perf_counter()
        tree = dcmxr.open_study(table, chunks=1)
        t_open = time.perf_counter() - t0
    arrays = [node.ds["image"] for node in tree.subtree if "image" in node.ds]
    n_chunks = sum(a.data.npartitions for a in arrays)
    graphs = [dict(a.data.__dask_graph__()) for a in arrays]
    graph_bytes = sum(len(pickle.dumps(g, protocol=5)) for g in graphs)
    out = {"series": len(arrays), "chunks": n_chunks, "open_study s": t_open,
           "pickled graph bytes/chunk": graph_bytes / n_chunks}
    # direct: read and decode every frame (the chunks' work) with no scheduler at all
    from dcmxr.backend.build import framerefs
    from dcmxr.decode.codecs import decode_frames

    refs = framerefs(table)
    t0 = time.perf_counter()
    for ref in refs:
        decode_frames([ref])
    t_direct = time.perf_counter() - t0
    out["direct decode s"] = t_direct
    sums = [a.data.sum() for a in arrays]
    t0 = time.perf_counter()
    dask.compute(*sums, scheduler="threads", num_workers=2)
    t_threads = time.perf_counter() - t0
    out["threaded s"] = t_threads
    out["threaded overhead ms/chunk"] = 1e3 * (t_threads - t_direct / 2) / n_chunks
    if cluster:
        import logging

        from distributed import Client, LocalCluster

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                              silence_logs=logging.ERROR) as lc, Client(lc) as client:
                dask.compute(*[a.data[:1].sum() for a in arrays[:2]], scheduler=client)  # warm up
                t0 = time.perf_counter()
                dask.compute(*sums, scheduler=client)
                t_dist = time.perf_counter() - t0
        out["LocalCluster s"] = t_dist
        out["LocalCluster overhead ms/chunk"] = 1e3 * (t_dist - t_direct / 2) / n_chunks
    return out


# --------------------------------------------------------------------------- remote
def bench_remote(folder: Path, n_files: int, n_frames: int) -> dict:
    import warnings

    import fsspec
    import pydicom

    import dcmxr
    from dcmxr.testing.rangeserver import RangeServer

    files = _files(folder)[:n_files]
    with tempfile.TemporaryDirectory() as tmp:
        www = Path(tmp) / "www"
        www.mkdir()
        for f in files:
            shutil.copy(f, www / Path(f).name)
        file_bytes = sum(os.path.getsize(f) for f in files)
        with RangeServer(www) as srv:
            urls = [f"{srv.url}/{Path(f).name}" for f in files]
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                table = dcmxr.scan(urls, progress=False)
            t_scan = time.perf_counter() - t0
            scan_bytes, scan_reqs = srv.bytes_sent(), len(srv.requests())
            first = table["series_instance_uid"].iloc[0]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                da = dcmxr.open_series(table, series=first, chunks=1)
            srv.reset()
            k = min(n_frames, da.sizes["z"])
            t0 = time.perf_counter()
            da.isel(z=slice(0, k)).values
            t_frames = time.perf_counter() - t0
            frame_bytes = k * int(da.sizes["y"]) * int(da.sizes["x"]) * 2
            moved = srv.bytes_sent()
            srv.reset()
            fs = fsspec.filesystem("http")
            t0 = time.perf_counter()
            for u in urls[:k]:
                with fs.open(u, "rb") as fh:
                    pydicom.dcmread(fh).pixel_array
            t_peer = time.perf_counter() - t0
            peer_moved = srv.bytes_sent()
    return {
        "files": len(files), "file bytes": file_bytes,
        "scan bytes/file": scan_bytes / len(files), "scan requests/file": scan_reqs / len(files),
        "scan s": t_scan, "frames asked": k, "frame bytes asked": frame_bytes,
        "dcmxr bytes moved": moved, "dcmxr moved/asked": moved / frame_bytes, "dcmxr frames s": t_frames,
        "pydicom+fsspec bytes moved": peer_moved, "pydicom moved/asked": peer_moved / frame_bytes,
        "pydicom+fsspec s": t_peer,
    }


# --------------------------------------------------------------------------- DICOMweb
DICOMWEB_SERIES = {
    "CT 3 x 512^2 (implicit LE)": [("ct", "dcmqi", "ct-3slice")],
    "enhanced MR 10 x 64^2 (JPEG-LS)": [("transfer_syntax", "pydicom-data", "emri_small_jpeg_ls_lossless.dcm")],
    "MOSAIC 384^2 -> 35 x 64^2 (JPEG-LS)": [("transfer_syntax", "dcm_qa_ts", "In", "7.dcm")],
    "MR 1024^2 (JPEG 2000)": [("transfer_syntax", "pydicom-data", "MR2_J2KR.dcm")],
}


def _median_run(fn, repeat: int) -> tuple[float, float, object]:
    walls, cpus, out = [], [], None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return float(np.median(walls)), float(np.median(cpus)), out


def bench_dicomweb(repeat: int = 5) -> dict:
    import warnings

    import pydicom
    from dicomweb_client.api import DICOMwebClient
    from pydicom.uid import generate_uid

    from dcmxr import dicomweb
    from dcmxr.testing.faultproxy import FaultProxy
    from dcmxr.testing.orthanc import Orthanc, skip_reason

    reason = skip_reason()
    if reason:
        return {"skipped": reason}
    data = Path(os.environ.get("DCMXR_TEST_DATA", HERE.parent.parent / "shared" / "data"))
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp, Orthanc(Path(tmp) / "orthanc") as server, \
            FaultProxy(server.dicomweb_url) as proxy:
        client = DICOMwebClient(proxy.url)
        for label, parts in DICOMWEB_SERIES.items():
            files = []
            for p in parts:
                path = data.joinpath(*p)
                files.extend(sorted(path.iterdir()) if path.is_dir() else [path])
            datasets = [pydicom.dcmread(f) for f in files]
            series = generate_uid(entropy_srcs=["bench", label])
            for j, ds in enumerate(datasets):  # own UIDs: test files share them
                ds.SeriesInstanceUID = series
                ds.SOPInstanceUID = generate_uid(entropy_srcs=["bench", label, str(j)])
                ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            DICOMwebClient(server.dicomweb_url).store_instances(datasets)
            study = datasets[0].StudyInstanceUID

            def ours():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return dicomweb.open_series(proxy.url, study, series).values

            def peer():
                instances = client.retrieve_series(study, series, media_types=(("application/dicom", "*"),))
                return [ds.pixel_array for ds in instances]

            ours()  # warm: imports, codecs, connection
            peer()
            proxy.reset()
            ours()
            ours_bytes = proxy.bytes_sent()
            proxy.reset()
            peer()
            peer_bytes = proxy.bytes_sent()
            w_ours, c_ours, arr = _median_run(ours, repeat)
            w_peer, c_peer, _ = _median_run(peer, repeat)
            out[label] = {
                "pixel bytes": int(np.asarray(arr).nbytes), "dcmxr bytes moved": ours_bytes,
                "peer bytes moved": peer_bytes, "dcmxr wall s": w_ours, "peer wall s": w_peer,
                "dcmxr CPU s": c_ours, "peer CPU s": c_peer, "wall ratio peer/dcmxr": w_peer / w_ours,
                "CPU ratio peer/dcmxr": c_peer / c_ours if c_ours else float("nan"),
            }
        out[DICOMWEB_STUDY_LABEL] = _bench_dicomweb_study(server, proxy, client, data, repeat)
    return out


DICOMWEB_STUDY = ("mr", "dcm_qa", "In", "Orientation", "ax")
DICOMWEB_STUDY_LABEL = "study: 7 MOSAIC series x 2 (open_study)"


def _bench_dicomweb_study(server, proxy, client, data: Path, repeat: int) -> dict:
    """``dcmxr.dicomweb.open_study`` + compute of every node vs dicomweb-client ``retrieve_study`` + pixel_array."""
    import warnings

    import dask
    import pydicom
    from dicomweb_client.api import DICOMwebClient
    from pydicom.uid import generate_uid

    import dcmxr
    from dcmxr import dicomweb

    files = sorted(f for f in data.joinpath(*DICOMWEB_STUDY).rglob("*") if f.is_file())
    datasets = [pydicom.dcmread(f) for f in files]
    study = generate_uid(entropy_srcs=["bench", "study"])  # a study of its own on the server
    for ds in datasets:
        ds.StudyInstanceUID = study
    DICOMwebClient(server.dicomweb_url).store_instances(datasets)

    def ours():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = dicomweb.open_study(proxy.url, study)
            return dask.compute(*[n.ds["image"].data for n in tree.subtree if "image" in n.ds])

    def peer():
        instances = client.retrieve_study(study, media_types=(("application/dicom", "*"),))
        return [ds.pixel_array for ds in instances]

    ours()
    peer()
    proxy.reset()
    arrays = ours()
    ours_bytes = proxy.bytes_sent()
    ours_requests = len(proxy.requests())
    proxy.reset()
    peer()
    peer_bytes = proxy.bytes_sent()
    def local():  # the same study from the files: what assembly alone costs (MOSAIC unpacking ...)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = dcmxr.open_study([str(f) for f in files])
            return dask.compute(*[n.ds["image"].data for n in tree.subtree if "image" in n.ds])

    local()
    w_ours, c_ours, _ = _median_run(ours, repeat)
    w_peer, c_peer, _ = _median_run(peer, repeat)
    w_local, c_local, _ = _median_run(local, repeat)
    return {
        "dcmxr from local files wall s": w_local, "dcmxr from local files CPU s": c_local,
        "pixel bytes": int(sum(np.asarray(a).nbytes for a in arrays)), "dcmxr bytes moved": ours_bytes,
        "dcmxr requests": ours_requests, "peer bytes moved": peer_bytes, "dcmxr wall s": w_ours,
        "peer wall s": w_peer, "dcmxr CPU s": c_ours, "peer CPU s": c_peer,
        "wall ratio peer/dcmxr": w_peer / w_ours, "CPU ratio peer/dcmxr": c_peer / c_ours if c_ours else float("nan"),
    }


# --------------------------------------------------------------------------- out of core
def _ooc_child(folder: str, scheduler: str) -> None:
    import logging
    import warnings

    import dask
    import dask.array as dska

    import dcmxr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = dcmxr.open_study(folder)
    arrays = [node.ds["image"] for node in tree.subtree if "image" in node.ds]
    work = []
    for a in arrays:
        hist, _ = dska.histogram(a.data, bins=64, range=(-1024, 3072))
        masked_mean = a.where(a > -500).mean()
        work.extend([hist, masked_mean.data])
    t0 = time.perf_counter()
    if scheduler == "threads":
        results = dask.compute(*work, scheduler="threads", num_workers=2)
    else:
        from distributed import Client, LocalCluster

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="900MB",
                              dashboard_address=None, silence_logs=logging.ERROR) as lc, Client(lc) as client:
                results = dask.compute(*work, scheduler=client)
    seconds = time.perf_counter() - t0
    decoded = sum(a.size * a.dtype.itemsize for a in arrays)
    counts = int(sum(np.asarray(r).sum() for r in results[0::2]))
    print(json.dumps({"seconds": seconds, "decoded bytes": decoded, "voxels counted": counts,
                      "series": len(arrays)}))


def _tree_rss(proc) -> int:
    import psutil

    total = 0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def bench_ooc(folder: Path) -> dict:
    import psutil

    out = {}
    for scheduler in ("threads", "LocalCluster"):
        child = subprocess.Popen([sys.executable, __file__, "--ooc-child", str(folder), scheduler],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        proc = psutil.Process(child.pid)
        peak = [0]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], _tree_rss(proc))
                time.sleep(0.05)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        stdout, stderr = child.communicate(timeout=3600)
        done.set()
        th.join()
        if child.returncode != 0:
            raise RuntimeError(stderr[-3000:])
        res = json.loads(stdout.strip().splitlines()[-1])
        res["peak tree RSS GB"] = peak[0] / 1e9
        out[scheduler] = res
    return out


# --------------------------------------------------------------------------- main
def _print(title: str, d: dict) -> None:
    print(f"\n## {title}")
    for k, v in d.items():
        if isinstance(v, dict):
            print(f"  {k}:")
            for k2, v2 in v.items():
                print(f"    {k2:32s} {v2:.4g}" if isinstance(v2, float) else f"    {k2:32s} {v2}")
        else:
            print(f"  {k:34s} {v:.4g}" if isinstance(v, float) else f"  {k:34s} {v}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1,000 files and a 4 x 60 slice cohort")
    p.add_argument("--only", default="scan,graph,remote,dicomweb,ooc")
    p.add_argument("--files", type=int, default=None, help="files for scan/graph (default 10,000)")
    p.add_argument("--cohort", default=None, help="SERIESxSLICES for ooc (default 40x300)")
    p.add_argument("--data-dir", type=Path, default=HERE / "_data" / "scale")
    p.add_argument("--no-cluster", action="store_true")
    p.add_argument("--ooc-child", nargs=2, metavar=("FOLDER", "SCHEDULER"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.ooc_child:
        _ooc_child(*args.ooc_child)
        return 0
    only = set(args.only.split(","))
    n_files = args.files or (1000 if args.quick else 10_000)
    n_series = 100 if n_files >= 1000 else 10
    results: dict = {}
    if only & {"scan", "graph", "remote"}:
        many = make_tree(args.data_dir / f"many_{n_files}", n_series, n_files // n_series, 64, "scan tree")
    if "scan" in only:
        r = bench_scan(many)
        for k in ("2", "1"):
            t = r[f"dcmxr ({k} process{'es' if k == '2' else ''})"]
            r[f"ratio pydicom/dcmxr({k})"] = r["pydicom loop"] / t
            if r.get("SimpleITK GDCM (ids + 1 series)"):
                r[f"ratio SimpleITK/dcmxr({k})"] = r["SimpleITK GDCM (ids + 1 series)"] / t
            r[f"target >= 3x pydicom ({k})"] = "PASS" if r[f"ratio pydicom/dcmxr({k})"] >= 3 else "FAIL"
        results["scan"] = r
        _print(f"scan of {n_files} files", r)
    if "graph" in only:
        results["graph"] = bench_graph(many, cluster=not args.no_cluster)
        _print(f"graph of {n_files} files, one chunk per file", results["graph"])
    if "remote" in only:
        r = bench_remote(many, n_files=min(200, n_files), n_frames=50)
        r["target < 1.1x"] = "PASS" if r["dcmxr moved/asked"] < 1.1 else "FAIL"
        results["remote"] = r
        _print("HTTP byte ranges (127.0.0.1)", r)
    if "dicomweb" in only:
        results["dicomweb"] = bench_dicomweb()
        _print("DICOMweb (Orthanc on loopback, medians of 5)", results["dicomweb"])
    if "ooc" in only:
        cohort = args.cohort or ("4x60" if args.quick else "40x300")
        ns, nz = (int(v) for v in cohort.split("x"))
        folder = make_tree(args.data_dir / f"cohort_{ns}x{nz}", ns, nz, 512, "CT cohort")
        r = bench_ooc(folder)
        for k in ("threads", "LocalCluster"):
            r[k]["target < 2 GB"] = "PASS" if r[k]["peak tree RSS GB"] < 2 else "FAIL"
        results["ooc"] = r
        _print(f"out of core: {cohort} CT cohort", r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
