"""dcmxr load benchmark: dcmxr vs pydicom, SimpleITK, highdicom, dcm2niix, and the floors.

    python benchmarks/run.py            # full: 512x512x300 CT x 5 syntaxes, 10 x 300-file scan tree
    python benchmarks/run.py --quick    # smoke: 512x512x40 (explicit, RLE, JPEG-LS), 10 x 60 files, 1 repeat

Every case runs in its own fresh interpreter (``benchmarks/cases.py``) so peak
RSS is that case's own; times are medians of in-process repeats after the
imports (import time is reported on its own). Data is generated once under
``--data-dir`` and reused. The full run rewrites the results section of
``docs/performance.md`` (between the BEGIN/END RESULTS markers) unless
``--no-docs``; ``--quick`` writes nothing unless ``--docs`` is given.
Targets are ratios measured in this one run; nothing here asserts timings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import data as bdata  # noqa: E402

MB = 1e6
BEGIN, END = "<!-- BEGIN RESULTS (written by benchmarks/run.py) -->", "<!-- END RESULTS -->"

# dcmxr configurations: (label, threads= of open_series, scheduler, workers)
DCMXR_1 = ("dcmxr 1 thread (threads=1, sync scheduler)", 1, "sync", 1)
DCMXR_2W = ("dcmxr 2 threads (threads=1, dask threads x2) [default]", 1, "threads", 2)
DCMXR_2T = ("dcmxr 2 threads (threads=2, sync scheduler)", 2, "sync", 1)


FLOOR_READ = "floor: raw read of pixel byte ranges"
FLOOR_FILES = "floor: read the files (list, open, read whole; no parsing)"

#: --quick covers the native path and two codec paths (the rest differ only in the codec called)
QUICK_SYNTAXES = ["explicit", "rle", "jpegls"]


def run_case(name: str, params: dict, timeout: float = 900) -> dict:
    cmd = [sys.executable, str(HERE / "cases.py"), name, json.dumps(params)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            out = json.loads(line[7:])
            out["process_wall_s"] = wall
            return out
    return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"], "process_wall_s": wall}


def med(r: dict, key: str = "times") -> float | None:
    v = r.get(key)
    return statistics.median(v) if v else None


def machine() -> dict:
    mem = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) * 1024
    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "mem_gb": round(mem / 2**30, 1), "cpu": cpu,
            "os": platform.platform(), "python": platform.python_version()}


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("dcmxr", "numpy", "pydicom", "dask", "xarray", "pandas", "imagecodecs", "pylibjpeg",
                "pylibjpeg-openjpeg", "pylibjpeg-libjpeg", "pylibjpeg-rle", "SimpleITK", "highdicom",
                "nibabel", "dcm2niix"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "dcmxr"], cwd=HERE.parent, capture_output=True,
                               text=True).stdout.strip()
        out["dcmxr git"] = rev + (" (+ uncommitted changes in dcmxr/)" if dirty else "")
    except OSError:
        pass
    return out


def fmt_s(x):
    return "—" if x is None else (f"{x:.3f}" if x < 10 else f"{x:.1f}")


def fmt_mb(x):
    return "—" if x is None else f"{x / MB:.0f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small data, 1 repeat: a smoke run")
    ap.add_argument("--data-dir", default=str(HERE / "_data"), help="where generated data is cached")
    ap.add_argument("--repeat", type=int, default=None, help="repeats per case (default 3; quick: 1)")
    ap.add_argument("--cap", type=float, default=40.0, help="stop repeating a case after this many seconds")
    ap.add_argument("--docs", default=None, help="write results into this markdown file")
    ap.add_argument("--no-docs", action="store_true", help="full run: do not touch docs/performance.md")
    ap.add_argument("--only", default=None, help="comma list of syntaxes (explicit,rle,jpegls,jpegll,j2k)")
    ap.add_argument("--skip-peers", action="store_true", help="only dcmxr and the floors")
    ap.add_argument("--json", default=None, help="also dump raw results to this file")
    args = ap.parse_args(argv)

    nz, tree_series, tree_per = (40, 10, 60) if args.quick else (300, 10, 300)
    repeat = args.repeat or (1 if args.quick else 3)
    docs = args.docs or (None if args.quick or args.no_docs else str(HERE.parent / "docs" / "performance.md"))
    command = "python benchmarks/run.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()

    t_all = time.perf_counter()
    print(f"data: {args.data_dir} (512x512x{nz} CT x {len(bdata.SYNTAXES)} syntaxes, scan tree {tree_series} x {tree_per})",
          flush=True)
    m = bdata.ensure_data(Path(args.data_dir), nz, tree_series, tree_per)
    load_before = os.getloadavg()
    default_keys = QUICK_SYNTAXES if args.quick else list(bdata.SYNTAXES)
    keys = [k for k in bdata.SYNTAXES if k in (args.only.split(",") if args.only else default_keys)]
    common = {"repeat": repeat, "cap": args.cap}
    results: dict = {"series": {}, "tree": {}}

    def go(label, name, params):
        r = run_case(name, {**common, **params})
        t = med(r)
        msg = f"    {label:<58} {fmt_s(t):>8} s" if t is not None else f"    {label:<58} ERROR {r.get('error')}"
        print(msg, flush=True)
        return r

    for key in keys:
        s = m["series"][key]
        d = s["dir"]
        print(f"  {key}: {s['label']}, {s['files']} files, {s['bytes'] / MB:.0f} MB on disk", flush=True)
        rs: dict = {}
        for label, threads, sched, workers in (DCMXR_1, DCMXR_2W, DCMXR_2T):
            rs[label] = go(label, "dcmxr_load", {"dir": d, "threads": threads, "scheduler": sched, "workers": workers})
        rs["first slice"] = go("dcmxr first slice isel(z=mid) (default config)", "dcmxr_slice", {"dir": d, "threads": 1})
        if not args.skip_peers:
            rs["pydicom dcmread loop + np.stack"] = go("pydicom dcmread loop + np.stack", "pydicom_loop", {"dir": d})
            rs["SimpleITK ImageSeriesReader"] = go("SimpleITK ImageSeriesReader", "sitk", {"dir": d})
            rs["highdicom get_volume_from_series"] = go("highdicom get_volume_from_series", "highdicom", {"dir": d})
            rs["dcm2niix + nibabel"] = go("dcm2niix + nibabel", "dcm2niix", {"dir": d})
        if key == "explicit":
            rs[FLOOR_READ] = go(FLOOR_READ, "floor_read", {"dir": d, "size": m["size"]})
            rs[FLOOR_FILES] = go(FLOOR_FILES, "floor_files", {"dir": d})
        else:
            for th in (1, 2):
                lab = f"floor: imagecodecs alone, {th} thread{'s' if th > 1 else ''}"
                rs[lab] = go(lab, "floor_codec", {"dir": d, "key": key, "threads": th})
        results["series"][key] = rs

    print(f"  scan tree: {m['tree']['files']} files in {m['tree']['series']} series", flush=True)
    results["tree"]["dcmxr open (scan + graphs)"] = go("dcmxr open (scan + one graph per series)", "dcmxr_open_tree",
                                                       {"dir": m["tree"]["dir"]})
    results["tree"]["pydicom dcmread(stop_before_pixels=True) loop"] = go(
        "pydicom dcmread(stop_before_pixels=True) loop", "pydicom_headers", {"dir": m["tree"]["dir"]})
    load_after = os.getloadavg()
    total = time.perf_counter() - t_all
    meta = {"command": command, "machine": machine(), "versions": versions(), "nz": nz, "repeat": repeat,
            "loadavg_before": load_before, "loadavg_after": load_after, "total_s": round(total, 1),
            "manifest": m, "date": time.strftime("%Y-%m-%d %H:%M %Z")}
    md = render(meta, results)
    print()
    print(md)
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=str))
    if docs:
        write_docs(Path(docs), md)
        print(f"results written to {docs}")
    return 0


# --------------------------------------------------------------------------- report
def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "**FAIL**")


def render(meta: dict, results: dict) -> str:
    L = []
    mach, ver = meta["machine"], meta["versions"]
    L.append(f"Command: `{meta['command']}` (run {meta['date']}, {meta['total_s']:.0f} s in all, "
             f"{meta['repeat']} repeat(s) per case, median shown).")
    L.append("")
    L.append(f"Machine: {mach['nproc']} CPUs ({mach['cpu']}), {mach['mem_gb']} GB RAM, {mach['os']}, "
             f"Python {mach['python']}. Load average (1/5/15 min) before: "
             f"{' / '.join(f'{x:.1f}' for x in meta['loadavg_before'])}, after: "
             f"{' / '.join(f'{x:.1f}' for x in meta['loadavg_after'])}. Files are in the page cache (warm).")
    L.append("")
    L.append("Versions: " + ", ".join(f"{k} {v}" for k, v in ver.items()) + ".")
    L.append("")
    targets = []
    nz = meta["nz"]
    for key, rs in results["series"].items():
        s = meta["manifest"]["series"][key]
        ref = rs[DCMXR_2W[0]]
        ref_t = med(ref)
        nbytes = ref.get("nbytes")
        L.append(f"### {s['label']} — 512 x 512 x {nz}, {s['files']} files, {s['bytes'] / MB:.0f} MB on disk, "
                 f"array {fmt_mb(nbytes)} MB {ref.get('dtype', '')}")
        L.append("")
        L.append("| case | median s | of which open s | CPU s | vs dcmxr default | peak RSS MB | RSS growth MB | import s |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for label, r in rs.items():
            t = med(r)
            if "error" in r:
                L.append(f"| {label} | error: {' '.join(r['error'])[:120]} | | | | | | |")
                continue
            if label == "first slice":
                continue
            ratio = "" if (t is None or not ref_t) else f"{t / ref_t:.2f}x"
            grow = r["rss_peak"] - r["rss_base"] if "rss_base" in r else None
            op = med(r, "open_s")
            L.append(f"| {label} | {fmt_s(t)} | {fmt_s(op) if op is not None else ''} | {fmt_s(med(r, 'cpu_s'))} | "
                     f"{ratio} | {fmt_mb(r.get('rss_peak'))} | {fmt_mb(grow)} | {r.get('import_s', 0):.2f} |")
        fs = rs["first slice"]
        L.append("")
        pl = rs.get("pydicom dcmread loop + np.stack", {})
        if "checksum" in pl and "checksum" in ref:
            same = "yes" if pl["checksum"] == ref["checksum"] else "**NO**"
            L.append(f"dcmxr values equal the pydicom loop's (checksum of a strided subsample): {same}.")
            L.append("")
        if "error" not in fs and ref_t:
            sl_c, full_c = med(fs, "compute_s"), med(ref, "compute_s")
            L.append(f"First slice (`isel(z={nz // 2}).values`, default config): compute {fmt_s(sl_c)} s "
                     f"(+ open {fmt_s(med(fs, 'open_s'))} s) vs full-load compute {fmt_s(full_c)} s: "
                     f"ratio 1/{full_c / sl_c:.1f}; with open on both sides 1/{ref_t / med(fs):.1f}.")
            targets.append((f"{key}: first slice < 1/20 of full load (compute only)", f"1/{full_c / sl_c:.1f}",
                            sl_c < full_c / 20))
        L.append("")
        # targets
        one, two_w, two_t = (rs[c[0]] for c in (DCMXR_1, DCMXR_2W, DCMXR_2T))
        if key == "explicit":
            # compute only vs the strict floor (the pixel ranges, already known, read into one array);
            # open + compute vs reading the files (the "reading the same bytes": it pays the
            # opening and reading of every file, as dcmxr's open + compute does)
            fl, ff = med(rs[FLOOR_READ]), med(rs[FLOOR_FILES])
            for lab, r in (("default", two_w), ("1 thread", one)):
                c, e = med(r, "compute_s"), med(r)
                if fl:
                    targets.append((f"{key}: full load <= 1.5x raw-read floor ({lab}; compute only)",
                                    f"{c / fl:.2f}x", c <= 1.5 * fl))
                if ff:
                    targets.append((f"{key}: full load <= 1.5x read-the-files floor ({lab}; open + compute)",
                                    f"{e / ff:.2f}x", e <= 1.5 * ff))
        else:
            fl2 = med(rs["floor: imagecodecs alone, 2 threads"])
            for lab, r in (("threads=1 + dask x2", two_w), ("threads=2 + sync", two_t)):
                c = med(r, "compute_s")
                targets.append((f"{key}: full load at 2 threads <= 1.2x codec floor at 2 threads ({lab}; compute only)",
                                f"{c / fl2:.2f}x", c <= 1.2 * fl2))
            c1 = med(one, "compute_s")
            for lab, r in (("threads=1 + dask x2", two_w), ("threads=2 + sync", two_t)):
                c = med(r, "compute_s")
                targets.append((f"{key}: 2 threads >= 1.7x faster than 1 thread ({lab})", f"{c1 / c:.2f}x",
                                c1 / c >= 1.7))
            f1 = med(rs["floor: imagecodecs alone, 1 thread"])
            targets.append((f"{key}: (reference) codec floor's own 2-thread speed-up", f"{f1 / fl2:.2f}x", None))
        peak_growth = two_w["rss_peak"] - two_w["rss_base"]
        targets.append((f"{key}: peak RSS growth of a full load < 1.3x array size (default config)",
                        f"{peak_growth / two_w['nbytes']:.2f}x (absolute peak {two_w['rss_peak'] / two_w['nbytes']:.2f}x)",
                        peak_growth < 1.3 * two_w["nbytes"]))
    tr = results["tree"]
    o, p = tr["dcmxr open (scan + graphs)"], tr["pydicom dcmread(stop_before_pixels=True) loop"]
    nfiles = meta["manifest"]["tree"]["files"]
    L.append(f"### Opening a {nfiles}-file tree ({meta['manifest']['tree']['series']} series, 64 x 64 slices)")
    L.append("")
    L.append("| case | median s | scan s | graphs s | CPU s (parent) | vs dcmxr | peak RSS MB | import s |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    ot = med(o)
    for label, r in tr.items():
        if "error" in r:
            L.append(f"| {label} | error: {' '.join(r['error'])[:120]} | | | | | | |")
            continue
        t = med(r)
        L.append(f"| {label} | {fmt_s(t)} | {fmt_s(med(r, 'scan_s')) if 'scan_s' in r else ''} | "
                 f"{fmt_s(med(r, 'graph_s')) if 'graph_s' in r else ''} | {fmt_s(med(r, 'cpu_s'))} | "
                 f"{t / ot:.2f}x | {fmt_mb(r['rss_peak'])} | {r['import_s']:.2f} |")
    L.append("")
    if "error" not in o and "error" not in p:
        targets.insert(0, (f"open (scan + graphs) >= 3x faster than dcmread(stop_before_pixels) loop, {nfiles} files",
                           f"{med(p) / ot:.2f}x", med(p) / ot >= 3))
    T = ["### Targets", "", "| target | measured | verdict |", "|---|---:|---|"]
    for name, val, ok in targets:
        T.append(f"| {name} | {val} | {_verdict(ok)} |")
    T.append("")
    return "\n".join(T + L)


def write_docs(path: Path, md: str) -> None:
    block = f"{BEGIN}\n{md}\n{END}"
    if path.exists():
        text = path.read_text()
        if BEGIN in text and END in text:
            pre, rest = text.split(BEGIN, 1)
            post = rest.split(END, 1)[1]
            path.write_text(pre + block + post)
            return
        path.write_text(text.rstrip() + "\n\n" + block + "\n")
        return
    path.write_text("# Performance\n\n" + block + "\n")


if __name__ == "__main__":
    sys.exit(main())
