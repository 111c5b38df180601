"""DVHs of every ROI of the dicompyler-core example: dcmxr vs dicompyler-core ``get_dvh``.

Data: ``../shared/data/rt/dicompyler/example_data`` (rtdose.dcm 194x129x98,
rtss.dcm with 10 ROIs, one without contours). Both tools start from the
file paths and produce 1 cGy-bin cumulative DVHs for every ROI with contours:

* ``dcmxr``: ``open_dose`` + ``open_rtstruct`` + ``rt.dvh(dose, structs)``
  (all ROIs in one call; the dose is read once).
* ``dicompyler-core``: ``dvhcalc.get_dvh(rtss, rtdose, roi)`` per ROI, as its
  documentation shows (each call parses both files).

Each tool runs in a fresh subprocess (peak RSS is the child's ``ru_maxrss``),
``--repeat`` times; the best wall time counts. The children print their
metrics; the parent checks they agree (volume to 1e-6 cm³, max and mean to a
bin) before printing the table. Target: dcmxr at least 3x faster.

Usage::

    python benchmarks/bench_dvh.py [--data ../shared/data] [--repeat 3]
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

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = Path(os.environ.get("DCMXR_TEST_DATA", HERE.parents[1] / "shared" / "data"))


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_dcmxr(ex: Path) -> dict:
    import warnings

    t0 = time.perf_counter()
    import dask.array  # noqa: F401  (dcmxr imports these lazily on first use;
    import xarray  # noqa: F401       dicompyler-core's matplotlib/pydicom load at import)

    import dcmxr.rt as rt

    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dose = rt.open_dose(ex / "rtdose.dcm")
        s = rt.open_rtstruct(ex / "rtss.dcm")
        res = rt.dvh(dose, s)
    dt = time.perf_counter() - t0
    out = {str(n): {"volume": float(res.volume.sel(roi=n)), "max": float(res.dmax.sel(roi=n)),
                    "mean": float(res.dmean.sel(roi=n)), "d95": float(res.d95.sel(roi=n))}
           for n in res.roi.values}
    return {"seconds": dt, "import_seconds": t_import, "metrics": out}


def run_dicompyler(ex: Path) -> dict:
    import logging

    import pydicom
    import pydicom.dicomio

    pydicom.dicomio.read_file = pydicom.dcmread  # dicompyler-core 0.5.6 imports the pydicom 2 name
    logging.disable(logging.WARNING)
    t0 = time.perf_counter()
    from dicompylercore import dicomparser, dvhcalc

    t_import = time.perf_counter() - t0

    t0 = time.perf_counter()
    names = dicomparser.DicomParser(str(ex / "rtss.dcm")).GetStructures()
    out = {}
    for n, st in names.items():
        d = dvhcalc.get_dvh(str(ex / "rtss.dcm"), str(ex / "rtdose.dcm"), n)
        if d.volume:
            out[st["name"]] = {"volume": float(d.volume), "max": float(d.max), "mean": float(d.mean),
                               "d95": float(d.D95.value)}
    dt = time.perf_counter() - t0
    return {"seconds": dt, "import_seconds": t_import, "metrics": out}


def child(which: str, data: Path) -> None:
    ex = data / "rt" / "dicompyler" / "example_data"
    res = run_dcmxr(ex) if which == "dcmxr" else run_dicompyler(ex)
    res["peak_rss_mib"] = _peak_mib()
    print(json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child", choices=["dcmxr", "dicompyler"])
    a = ap.parse_args()
    if a.child:
        child(a.child, a.data)
        return
    if not (a.data / "rt" / "dicompyler" / "example_data" / "rtdose.dcm").exists():
        sys.exit(f"data not found under {a.data} (pass --data ../shared/data)")
    best = {}
    for which in ("dcmxr", "dicompyler"):
        runs = []
        for _ in range(a.repeat):
            p = subprocess.run([sys.executable, __file__, "--child", which, "--data", str(a.data)],
                               capture_output=True, text=True, check=True)
            runs.append(json.loads(p.stdout.strip().splitlines()[-1]))
        best[which] = min(runs, key=lambda r: r["seconds"]) | {"peak_rss_mib": max(r["peak_rss_mib"] for r in runs)}
    m, r = best["dcmxr"]["metrics"], best["dicompyler"]["metrics"]
    assert sorted(m) == sorted(r), (sorted(m), sorted(r))
    for n in r:
        assert abs(m[n]["volume"] - r[n]["volume"]) < 1e-6, n
        assert r[n]["max"] - 0.0101 <= m[n]["max"] <= r[n]["max"] + 1e-6, n
        assert abs(m[n]["mean"] - r[n]["mean"]) <= 0.0051, n
    t_x, t_d = best["dcmxr"]["seconds"], best["dicompyler"]["seconds"]
    ratio = t_d / t_x
    print(f"DVHs of {len(r)} ROIs (dicompyler-core example, 1 cGy bins), best of {a.repeat}, fresh process each\n")
    print("| tool | time (s) | speed-up vs dicompyler-core | import (s, not timed) | peak RSS (MiB) |")
    print("|---|---|---|---|---|")
    for label, k, sp in ((f"dcmxr open_dose + open_rtstruct + rt.dvh", "dcmxr", f"{ratio:.1f}x"),
                         (f"dicompyler-core get_dvh x {len(r)}", "dicompyler", "1.0x")):
        b = best[k]
        print(f"| {label} | {b['seconds']:.3f} | {sp} | {b['import_seconds']:.2f} | {b['peak_rss_mib']:.0f} |")
    print(f"\nmetrics agree (volume 1e-6 cm³, max/mean within a bin); target >= 3x: {'PASS' if ratio >= 3 else 'FAIL'}")


if __name__ == "__main__":
    main()
