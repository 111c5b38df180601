"""``dcmxr`` command line: demo | scan | info | convert."""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path


def _demo_source() -> str:
    """A real enhanced CT (2 frames, 512x512) that pydicom-data ships."""
    try:
        from pydicom.data import get_testdata_file

        path = get_testdata_file("eCT_Supplemental.dcm")
        if path:
            return str(path)
    except Exception:  # pragma: no cover - pydicom-data missing
        pass
    from pydicom.data import get_testdata_file

    return str(get_testdata_file("CT_small.dcm"))


def cmd_demo(args: argparse.Namespace) -> int:
    import numpy as np

    import dcmxr
    from dcmxr.geometry.affine import affine_from_coords
    from dcmxr.geometry.orientation import axis_codes, direction_matrix

    src = args.source or _demo_source()
    print(f"source: {src}")
    table = dcmxr.scan(src)
    print(f"scanned {table['path'].nunique()} file(s), {len(table)} frame(s), "
          f"{table['series_instance_uid'].nunique()} series (headers only)")
    da = dcmxr.open_series(table, series=args.series)
    print(da)
    dirs = [da[a].attrs["direction"] for a in ("x", "y", "z")]
    print("orientation:", axis_codes(direction_matrix(*dirs)))
    try:
        aff = affine_from_coords(da.x.values, da.y.values, da.z.values, *dirs)
        print("affine (LPS, [i_x, i_y, i_z, 1] -> mm):")
        print(np.array2string(aff, precision=3, suppress_small=True))
    except dcmxr.errors.GeometryError as exc:
        print(f"no single affine: {exc}")
    lo, hi, mean = (float(v) for v in (da.min().compute(), da.max().compute(), da.mean().compute()))
    print(f"summary: {da.attrs.get('modality', '?')} {dict(da.sizes)} {da.dtype} "
          f"min={lo:g} max={hi:g} mean={mean:.4g} {da.attrs.get('units', '')}".rstrip())
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="dcmxr-demo-")) / "demo.zarr"
    ds = da.to_dataset()
    for v in ds.variables.values():
        v.encoding = {}
        for k, val in list(v.attrs.items()):
            if isinstance(val, (list, tuple)):
                v.attrs[k] = [float(x) for x in val]
    ds.to_zarr(out, mode="w", consolidated=False)
    print(f"wrote {out}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .stores.archive import cli_convert

    return cli_convert(args)


def cmd_scan(args: argparse.Namespace) -> int:
    import dcmxr

    table = dcmxr.scan(args.source, progress=True)
    listing = dcmxr.list_series(table)
    with_pd = listing.to_string(max_colwidth=40)
    print(with_pd)
    if args.csv:
        table.to_csv(args.csv, index=False)
        print(f"frame table written to {args.csv}")
    skipped = table.attrs.get("skipped", [])
    if skipped:
        print(f"{len(skipped)} file(s) skipped")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import dcmxr

    da = dcmxr.open_series(args.source, series=args.series)
    print(da)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dcmxr`` console script."""
    parser = argparse.ArgumentParser(prog="dcmxr", description="DICOM as lazy xarray objects")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("demo", help="open a real series shipped with pydicom-data, print it, write zarr")
    p.add_argument("source", nargs="?", help="DICOM folder/file (default: pydicom-data eCT_Supplemental.dcm)")
    p.add_argument("--series", default=None)
    p.add_argument("--out", default=None, help="zarr store to write (default: a temp dir)")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("scan", help="list the series in a folder / files / DICOMDIR / URL")
    p.add_argument("source")
    p.add_argument("--csv", default=None, help="write the per-frame table to this CSV")
    p.set_defaults(func=cmd_scan)
    p = sub.add_parser("convert", help="convert a DICOM tree into one zarr v3 archive (a group per series)")
    p.add_argument("source", nargs="+", help="folders, files, globs or a DICOMDIR")
    p.add_argument("dest", help="destination zarr store (resumed when it exists)")
    p.add_argument("--layout", choices=["dicom", "ome"], default="dicom", help="'ome' adds OME-NGFF metadata")
    p.add_argument("--compressor", default="blosc-lz4",
                   help="blosc-lz4 (default, fastest to write and read), blosc-zstd (smallest), zstd, gzip or none")
    p.add_argument("--level", type=int, default=None, help="compression level (default: per compressor)")
    p.add_argument("--shards", action="store_true", help="one shard per chunk, one-frame inner chunks")
    p.add_argument("--deidentify", action="store_true", help="apply the DICOM PS3.15 Basic Profile")
    p.add_argument("--uid-map", dest="uid_map", help="with --deidentify: write the old->new UID map (JSON) here")
    p.add_argument("--overwrite", action="store_true", help="rewrite series that are already complete")
    p.add_argument("--workers", type=int, default=None, help="threads/processes (default: CPUs, max 8)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_convert)
    p = sub.add_parser("info", help="print one series as a DataArray")
    p.add_argument("source")
    p.add_argument("--series", default=None)
    p.set_defaults(func=cmd_info)
    args = parser.parse_args(argv)
    if getattr(args, "series", None) is not None and str(args.series).isdigit():
        args.series = int(args.series)
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
