"""One benchmark case, run in a fresh interpreter so peak RSS is the case's own.

Usage (run.py does this): ``python benchmarks/cases.py CASE '{"json": "params"}'``.
Prints one JSON line: import seconds, per-repeat seconds (in-process, after
imports), the RSS high-water mark after imports and at the end (bytes), and
case-specific extras.
"""

from __future__ import annotations

import glob
import json
import os
import resource
import sys
import time

import numpy as np

T_START = time.perf_counter()


def maxrss() -> int:
    """Peak resident set size of this process so far, in bytes (Linux: KiB units)."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb * (1 if sys.platform == "darwin" else 1024)


def children_maxrss() -> int:
    kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return kb * (1 if sys.platform == "darwin" else 1024)


def files_of(d: str) -> list[str]:
    return sorted(glob.glob(os.path.join(d, "*.dcm")))


def repeat(fn, n: int, cap_s: float):
    """Run ``fn`` up to ``n`` times (at least once; stop early past ``cap_s``)."""
    times, extra = [], {"cpu_s": []}
    total = 0.0
    for _ in range(n):
        c0 = time.process_time()
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        times.append(dt)
        extra["cpu_s"].append(time.process_time() - c0)
        if isinstance(out, dict):
            for k, v in out.items():
                extra.setdefault(k, []).append(v)
        del out
        total += dt
        if total > cap_s:
            break
    return times, extra


# --------------------------------------------------------------------------- dcmxr
def _warm_up(dcmxr, p):
    """Decode the first slice once, untimed: loads the codec modules and Dask's thread pool
    (one-time, per-process costs that the import line reports for the other tools)."""
    dcmxr.open_series(p["dir"], threads=p["threads"]).isel(z=0).values


def case_dcmxr_load(p):
    """open_series + da.dcm.load() (chunks stored into one preallocated array); open and compute times."""
    import dask
    import dcmxr

    t_imp = time.perf_counter() - T_START
    _warm_up(dcmxr, p)
    base = maxrss()
    sched = p["scheduler"]  # "sync" or "threads"
    cfg = {"scheduler": "synchronous"} if sched == "sync" else {"scheduler": "threads", "num_workers": p["workers"]}
    info = {}

    def run():
        c0, t0 = time.process_time(), time.perf_counter()
        da = dcmxr.open_series(p["dir"], threads=p["threads"])
        c1, t1 = time.process_time(), time.perf_counter()
        with dask.config.set(**cfg):
            arr = da.dcm.load().values
        c2, t2 = time.process_time(), time.perf_counter()
        info.update(nbytes=int(arr.nbytes), dtype=str(arr.dtype), shape=list(arr.shape),
                    chunks=[list(c) for c in da.chunks[:1]], checksum=int(arr[::7, ::5, ::3].astype(np.int64).sum()))
        # CPU per phase (in --json): compute CPU well above its wall time means the threads ran
        # in parallel; CPU close to wall on 2 threads means one of them waited (GIL, load, balance)
        return {"open_s": t1 - t0, "compute_s": t2 - t1, "open_cpu_s": c1 - c0, "compute_cpu_s": c2 - c1}

    times, extra = repeat(run, p["repeat"], p["cap"])
    return {"import_s": t_imp, "times": times, **extra, "rss_base": base, "rss_peak": maxrss(), **info}


def case_dcmxr_slice(p):
    """open_series, then compute one slice (z = middle)."""
    import dcmxr

    t_imp = time.perf_counter() - T_START
    _warm_up(dcmxr, p)
    base = maxrss()

    def run():
        t0 = time.perf_counter()
        da = dcmxr.open_series(p["dir"], threads=p["threads"])
        t1 = time.perf_counter()
        sl = da.isel(z=da.sizes["z"] // 2).values
        t2 = time.perf_counter()
        assert sl.ndim == 2
        return {"open_s": t1 - t0, "compute_s": t2 - t1}

    times, extra = repeat(run, p["repeat"], p["cap"])
    return {"import_s": t_imp, "times": times, **extra, "rss_base": base, "rss_peak": maxrss()}


def case_dcmxr_open_tree(p):
    """scan the tree, then build one lazy DataArray per series (no pixels)."""
    import dcmxr

    t_imp = time.perf_counter() - T_START
    base = maxrss()
    info = {}

    def run():
        t0 = time.perf_counter()
        table = dcmxr.scan(p["dir"])
        t1 = time.perf_counter()
        uids = sorted(table["series_instance_uid"].unique())
        arrays = [dcmxr.open_series(table, series=u) for u in uids]
        t2 = time.perf_counter()
        info.update(files=int(table["path"].nunique()), series=len(arrays), frames=int(sum(a.sizes["z"] for a in arrays)))
        return {"scan_s": t1 - t0, "graph_s": t2 - t1}

    times, extra = repeat(run, p["repeat"], p["cap"])
    return {"import_s": t_imp, "times": times, **extra, "rss_base": base, "rss_peak": maxrss(), **info}


# --------------------------------------------------------------------------- peers
def case_pydicom_headers(p):
    """pydicom dcmread(stop_before_pixels=True) over every file of the tree."""
    import pydicom

    t_imp = time.perf_counter() - T_START
    base = maxrss()

    def run():
        paths = [os.path.join(r, f) for r, _, fs in os.walk(p["dir"]) for f in fs]
        dss = [pydicom.dcmread(f, stop_before_pixels=True) for f in paths]
        return {"files": len(dss)}

    times, extra = repeat(run, p["repeat"], p["cap"])
    return {"import_s": t_imp, "times": times, "cpu_s": extra["cpu_s"], "rss_base": base, "rss_peak": maxrss(), "files": extra["files"][0]}


def case_pydicom_loop(p):
    """dcmread every file, sort by position along the normal, stack pixel_array, rescale to int16 HU."""
    import pydicom

    t_imp = time.perf_counter() - T_START
    base = maxrss()
    info = {}

    def run():
        dss = [pydicom.dcmread(f) for f in files_of(p["dir"])]
        iop = np.array(dss[0].ImageOrientationPatient, float)
        normal = np.cross(iop[:3], iop[3:])
        dss.sort(key=lambda d: float(np.dot(normal, np.array(d.ImagePositionPatient, float))))
        vol = np.stack([d.pixel_array for d in dss]).astype(np.int16)
        vol += np.int16(int(dss[0].RescaleIntercept))  # slope 1, integer intercept in this data
        info.update(nbytes=int(vol.nbytes), checksum=int(vol[::7, ::5, ::3].astype(np.int64).sum()))
        return None

    times, extra = repeat(run, p["repeat"], p["cap"])
    return {"import_s": t_imp, "times": times, "cpu_s": extra["cpu_s"], "rss_base": base, "rss_peak": maxrss(), **info}


def case_sitk(p):
    """SimpleITK ImageSeriesReader (GDCM), then a zero-copy NumPy view."""
    import SimpleITK as sitk

    t_imp = time.perf_counter() - T_START
    base = maxrss()
    info = {}

    def run():
        reader = sitk.ImageSeriesReader()
        names = reader.GetGDCMSeriesFileNames(p["dir"])
        reader.SetFileNames(names)
        img = reader.Execute()
        vol = sitk.GetArrayViewFromImage(img)
        info.update(nbytes=int(vol.nbytes), dtype=str(vol.dtype),
                    checksum=int(np.asarray(vol)[::7, ::5, ::3].astype(np.int64).sum()),
                    sitk_threads=sitk.ProcessObject.GetGlobalDefaultNumberOfThreads())
        return None

    times, extra = repeat(run, p["repeat"], p["cap"])
    return {"import_s": t_imp, "times": times, "cpu_s": extra["cpu_s"], "rss_base": base, "rss_peak": maxrss(), **info}


def case_highdicom(p):
    """highdicom.get_volume_from_series over dcmread datasets (int16, modality LUT applied)."""
    import highdicom as hd
    import pydicom

    t_imp = time.perf_counter() - T_START
    base = maxrss()
    info = {}

    def run():
        dss = [pydicom.dcmread(f) for f in files_of(p["dir"])]
        vol = hd.get_volume_from_series(dss, dtype=np.int16)
        arr = vol.array
        info.update(nbytes=int(arr.nbytes), shape=list(arr.shape))
        return None

    times, extra = repeat(run, p["repeat"], p["cap"])
    return {"import_s": t_imp, "times": times, "cpu_s": extra["cpu_s"], "rss_base": base, "rss_peak": maxrss(), **info}


def case_dcm2niix(p):
    """dcm2niix to an uncompressed .nii in a temp dir, then nibabel loads the array."""
    import shutil
    import subprocess
    import tempfile

    import nibabel as nib

    t_imp = time.perf_counter() - T_START
    base = maxrss()
    exe = shutil.which("dcm2niix") or os.path.join(os.path.dirname(sys.executable), "dcm2niix")
    info = {}

    def run():
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            subprocess.run([exe, "-z", "n", "-b", "n", "-f", "vol", "-o", tmp, p["dir"]], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            t1 = time.perf_counter()
            out = sorted(glob.glob(os.path.join(tmp, "*.nii")))
            img = nib.load(out[0])
            arr = np.asanyarray(img.dataobj.get_unscaled())  # int16 stored values, memory-mapped
            slope, inter = img.dataobj.slope, img.dataobj.inter
            if slope == 1 and float(inter).is_integer():  # int16 HU like dcmxr (nibabel's default is float64)
                arr = arr.astype(np.int16)
                arr += np.int16(int(inter))
            else:
                arr = arr * slope + inter
            info.update(nbytes=int(arr.nbytes), dtype=str(arr.dtype), shape=list(arr.shape))
            return {"convert_s": t1 - t0, "nibabel_s": time.perf_counter() - t1}

    times, extra = repeat(run, p["repeat"], p["cap"])
    return {"import_s": t_imp, "times": times, **extra, "rss_base": base,
            "rss_peak": max(maxrss(), children_maxrss()), "rss_child_peak": children_maxrss(), **info}


# --------------------------------------------------------------------------- floors
def _pixel_ranges(paths, frame_bytes):
    """(path, offset) of each file's Pixel Data value, found from its element header (Explicit VR LE, OW)."""
    tag = b"\xe0\x7f\x10\x00OW\x00\x00" + frame_bytes.to_bytes(4, "little")
    out = []
    for f in paths:
        with open(f, "rb") as fh:
            head = fh.read()
        i = head.rfind(tag)
        if i < 0:
            raise RuntimeError(f"{f}: no native Pixel Data element of {frame_bytes} bytes")
        out.append((f, i + len(tag)))
    return out


def case_floor_read(p):
    """Raw read of the pixel byte ranges straight into one preallocated array (pread per file)."""
    t_imp = time.perf_counter() - T_START
    size = p["size"]
    paths = files_of(p["dir"])
    ranges = _pixel_ranges(paths, size * size * 2)
    base = maxrss()

    def run():
        vol = np.empty((len(ranges), size, size), np.uint16)
        for i, (f, off) in enumerate(ranges):
            fd = os.open(f, os.O_RDONLY)
            try:
                n = os.preadv(fd, [memoryview(vol[i]).cast("B")], off)
            finally:
                os.close(fd)
            assert n == vol[i].nbytes
        return None

    times, extra = repeat(run, p["repeat"], p["cap"])
    return {"import_s": t_imp, "times": times, "cpu_s": extra["cpu_s"], "rss_base": base, "rss_peak": maxrss()}


def case_floor_files(p):
    """Read every file of the series whole into memory (list the folder, open, read; no parsing)."""
    t_imp = time.perf_counter() - T_START
    base = maxrss()
    info = {}

    def run():
        blobs = []
        for f in files_of(p["dir"]):
            with open(f, "rb") as fh:
                blobs.append(fh.read())
        info.update(files=len(blobs), nbytes=sum(len(b) for b in blobs))
        return None

    times, extra = repeat(run, p["repeat"], p["cap"])
    return {"import_s": t_imp, "times": times, "cpu_s": extra["cpu_s"], "rss_base": base, "rss_peak": maxrss(), **info}


def case_floor_codec(p):
    """imagecodecs alone on the same frames, fragments pre-read in memory; N threads."""
    from concurrent.futures import ThreadPoolExecutor

    import imagecodecs as ic
    import pydicom
    from pydicom.encaps import generate_frames

    t_imp = time.perf_counter() - T_START
    frames = []
    for f in files_of(p["dir"]):
        ds = pydicom.dcmread(f)
        frames.append(next(generate_frames(ds.PixelData, number_of_frames=1)))
    fn = {
        "rle": lambda b: ic.dicomrle_decode(b, "<u2"),
        "jpegls": ic.jpegls_decode,
        "jpegll": ic.jpeg8_decode,  # libjpeg-turbo 3 lossless: dcmxr's first choice for .4.70
        "j2k": ic.jpeg2k_decode,
    }[p["key"]]
    base = maxrss()
    threads = p["threads"]

    def run():
        if threads == 1:
            out = [fn(b) for b in frames]
        else:
            with ThreadPoolExecutor(threads) as pool:
                out = list(pool.map(fn, frames))
        assert len(out) == len(frames)
        return None

    times, extra = repeat(run, p["repeat"], p["cap"])
    return {"import_s": t_imp, "times": times, "cpu_s": extra["cpu_s"], "rss_base": base, "rss_peak": maxrss(),
            "compressed_bytes": sum(len(b) for b in frames)}


def case_profile_dcmxr(p):
    """cProfile (CPU-time clock) of one dcmxr full load after a warm-up load -> top functions."""
    import cProfile
    import io
    import pstats

    import dask
    import dcmxr

    def load():
        da = dcmxr.open_series(p["dir"], threads=p["threads"])
        with dask.config.set(scheduler="synchronous"):
            return da.values if not p.get("slice") else da.isel(z=da.sizes["z"] // 2).values

    load()  # warm-up: lazy imports, codec discovery
    pr = cProfile.Profile(time.process_time)
    pr.enable()
    load()
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats(p.get("sort", "tottime")).print_stats(p.get("top", 18))
    return {"profile": s.getvalue()}


def case_profile_open(p):
    """cProfile (CPU-time clock) of scan + one graph per series, after a warm-up."""
    import cProfile
    import io
    import pstats

    import dcmxr

    def run():
        table = dcmxr.scan(p["dir"])
        return [dcmxr.open_series(table, series=u) for u in sorted(table["series_instance_uid"].unique())]

    run()
    pr = cProfile.Profile(time.process_time)
    pr.enable()
    run()
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats(p.get("sort", "tottime")).print_stats(p.get("top", 18))
    return {"profile": s.getvalue()}


if __name__ == "__main__":
    name, params = sys.argv[1], json.loads(sys.argv[2])
    result = globals()[f"case_{name}"](params)
    print("RESULT " + json.dumps(result))
