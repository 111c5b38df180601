"""Benchmark data: a 512x512xN CT series in five transfer syntaxes and a scan tree.

Every file starts from pydicom's bundled ``CT_small.dcm`` header (kept as is,
apart from what must change: fresh UIDs, position, instance number, size,
pixel module). Pixel data is a smooth body phantom (air, soft tissue, lungs,
a spine, a bone ring) that changes slowly along z, plus Gaussian noise of
about 15 HU, so lossless codecs see realistic CT entropy (ratio ~2.5:1).

Stored values are 12-bit unsigned in 16-bit words with RescaleIntercept
-1024 (the common scanner layout): the real-world array is int16 HU.

Files are generated once under ``--data-dir`` (default ``benchmarks/_data``,
git-ignored) and reused; ``manifest.json`` there records what was made.
"""

from __future__ import annotations

import copy
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

SYNTAXES = {
    # name: (transfer syntax UID, short label)
    "explicit": ("1.2.840.10008.1.2.1", "uncompressed (Explicit VR LE)"),
    "rle": ("1.2.840.10008.1.2.5", "RLE lossless"),
    "jpegls": ("1.2.840.10008.1.2.4.80", "JPEG-LS lossless"),
    "jpegll": ("1.2.840.10008.1.2.4.70", "JPEG lossless SV1 (process 14)"),
    "j2k": ("1.2.840.10008.1.2.4.90", "JPEG 2000 lossless"),
}

FORMAT_VERSION = 3  # bump when the generated content changes


def template():
    import pydicom
    from pydicom.data import get_testdata_file

    return pydicom.dcmread(get_testdata_file("CT_small.dcm"))


def phantom(z: int, nz: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Stored values (uint16, 12 bits used) of slice ``z`` of ``nz``."""
    t = z / max(nz - 1, 1)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    yy = (yy - size / 2) / (size / 2)
    xx = (xx - size / 2) / (size / 2)
    hu = np.full((size, size), -1000.0, np.float32)  # air
    a, b = 0.80 + 0.08 * np.sin(np.pi * t), 0.60 + 0.05 * np.cos(np.pi * t)
    body = (xx / a) ** 2 + (yy / b) ** 2
    hu[body < 1] = 40.0  # soft tissue
    hu[(body < 1) & (body > 0.85)] = -100.0  # fat layer
    for cx in (-0.35, 0.35):  # lungs, growing then shrinking along z
        r = 0.18 + 0.1 * np.sin(np.pi * t)
        lung = ((xx - cx) / r) ** 2 + ((yy + 0.05) / (1.6 * r)) ** 2
        hu[lung < 1] = -850.0
    spine = ((xx) / 0.08) ** 2 + ((yy - 0.4) / 0.08) ** 2
    hu[spine < 1] = 700.0
    ring = np.abs(np.sqrt(xx**2 / 0.6 + yy**2 / 0.4) - 1.0) < 0.02
    hu[ring & (body < 1)] = 1200.0  # ribs
    # smooth the edges a little (CT partial volume), then noise
    hu = (hu + np.roll(hu, 1, 0) + np.roll(hu, 1, 1) + np.roll(hu, -1, 0) + np.roll(hu, -1, 1)) / 5
    hu += rng.normal(0.0, 15.0, hu.shape).astype(np.float32)
    hu[body >= 1.05] = -1000.0 + rng.normal(0.0, 3.0, hu[body >= 1.05].shape)
    return np.clip(np.rint(hu + 1024), 0, 4095).astype(np.uint16)


def _encode(arr: np.ndarray, key: str) -> list[bytes]:
    import imagecodecs as ic

    if key == "jpegls":
        return [bytes(ic.jpegls_encode(arr, level=0))]
    if key == "jpegll":  # libjpeg-turbo lossless: SOF3, predictor (selection value) 1
        return [bytes(ic.jpeg8_encode(arr, lossless=True, predictor=1, bitspersample=12))]
    if key == "j2k":
        return [bytes(ic.jpeg2k_encode(arr, level=0, codecformat="J2K", reversible=True, bitspersample=12))]
    raise ValueError(key)


def _make_ct_slice(args) -> None:
    (out_dir, key, z, nz, size, series_uid, study_uid, for_uid, series_number, pixels, seed) = args
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import generate_uid

    ds = _TEMPLATE_CACHE.get("ds")
    if ds is None:
        ds = _TEMPLATE_CACHE["ds"] = template()
    ds = copy.deepcopy(ds)
    rng = np.random.default_rng(seed + z)
    if pixels is None:
        arr = phantom(z, nz, size, rng)
    else:
        arr = pixels
    sop = generate_uid()
    ds.SOPInstanceUID = sop
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = for_uid
    ds.SeriesNumber = series_number
    ds.InstanceNumber = z + 1
    ds.Rows = ds.Columns = size
    fov = 350.0
    ds.PixelSpacing = [fov / size, fov / size]
    ds.SliceThickness = 1.0
    ds.SpacingBetweenSlices = 1.0
    x0 = y0 = -fov / 2 + fov / size / 2
    ds.ImagePositionPatient = [x0, y0, -150.0 + 1.0 * z]
    ds.SliceLocation = -150.0 + 1.0 * z
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    for kw in ("SmallestImagePixelValue", "LargestImagePixelValue"):
        if kw in ds:
            del ds[kw]
    uid, _ = SYNTAXES[key]
    ds.file_meta.TransferSyntaxUID = uid
    if key == "explicit":
        ds.PixelData = arr.tobytes()
        ds["PixelData"].VR = "OW"
    elif key == "rle":
        ds.PixelData = arr.tobytes()
        ds["PixelData"].VR = "OW"
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
        ds.compress("1.2.840.10008.1.2.5", encoding_plugin="pylibjpeg")
    else:
        ds.PixelData = encapsulate(_encode(arr, key))
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        ds.LossyImageCompression = "00"
    name = Path(out_dir) / f"IM{z:05d}.dcm"
    ds.save_as(name, enforce_file_format=True)


_TEMPLATE_CACHE: dict = {}


def _pool(workers: int):
    import multiprocessing as mp

    return ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"))


def ensure_data(data_dir: Path, nz: int, n_tree_series: int, tree_per_series: int, *,
                size: int = 512, tree_size: int = 64, verbose: bool = True) -> dict:
    """Make the data if missing (or made with other settings); return the manifest."""
    from pydicom.uid import generate_uid

    data_dir = Path(data_dir)
    tag = f"ct{size}x{nz}_tree{n_tree_series}x{tree_per_series}"
    root = data_dir / tag
    manifest_path = root / "manifest.json"
    if manifest_path.exists():
        m = json.loads(manifest_path.read_text())
        if m.get("format_version") == FORMAT_VERSION:
            return m
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    study = generate_uid()
    workers = max(1, os.cpu_count() or 1)
    m: dict = {"format_version": FORMAT_VERSION, "root": str(root), "size": size, "nz": nz,
               "series": {}, "tree": None}
    with _pool(workers) as pool:
        for i, key in enumerate(SYNTAXES):
            d = root / key
            d.mkdir(exist_ok=True)
            suid, fuid = generate_uid(), generate_uid()
            jobs = [(str(d), key, z, nz, size, suid, study, fuid, 100 + i, None, 1234) for z in range(nz)]
            list(pool.map(_make_ct_slice, jobs, chunksize=8))
            files = sorted(str(p) for p in d.glob("*.dcm"))
            m["series"][key] = {"dir": str(d), "uid": SYNTAXES[key][0], "label": SYNTAXES[key][1],
                                "series_uid": suid, "files": len(files),
                                "bytes": sum(os.path.getsize(f) for f in files)}
            if verbose:
                print(f"  made {key}: {len(files)} files, {m['series'][key]['bytes'] / 1e6:.1f} MB "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
        # the scan tree: n series x k small files, explicit VR LE, small pixels
        tree = root / "tree"
        tree.mkdir(exist_ok=True)
        jobs = []
        for s in range(n_tree_series):
            d = tree / f"series{s:02d}"
            d.mkdir(exist_ok=True)
            suid, fuid = generate_uid(), generate_uid()
            for z in range(tree_per_series):
                jobs.append((str(d), "explicit", z, tree_per_series, tree_size, suid, study, fuid, s + 1,
                             None, 99 + s * 1000))
        list(pool.map(_make_ct_slice, jobs, chunksize=32))
        files = [str(p) for p in tree.rglob("*.dcm")]
        m["tree"] = {"dir": str(tree), "files": len(files), "series": n_tree_series,
                     "bytes": sum(os.path.getsize(f) for f in files)}
    _verify(m)
    m["generated_s"] = round(time.perf_counter() - t0, 1)
    manifest_path.write_text(json.dumps(m, indent=1))
    if verbose:
        print(f"  made scan tree: {len(files)} files; data ready in {m['generated_s']} s", flush=True)
    return m


def _verify(m: dict) -> None:
    """Every syntax decodes (with pydicom) to the same stored values as the uncompressed file."""
    import pydicom

    mid = m["nz"] // 2
    ref = pydicom.dcmread(Path(m["series"]["explicit"]["dir"]) / f"IM{mid:05d}.dcm").pixel_array
    for key, s in m["series"].items():
        ds = pydicom.dcmread(Path(s["dir"]) / f"IM{mid:05d}.dcm")
        arr = ds.pixel_array
        if not np.array_equal(arr, ref):
            raise RuntimeError(f"generated {key} data does not decode to the reference values")
