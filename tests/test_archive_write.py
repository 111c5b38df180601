"""The archive's direct local writer against xarray's own ``Dataset.to_zarr``.

``to_zarr`` writes a series group's metadata and small arrays through an
in-memory zarr store and stores the Dask arrays chunk by chunk itself
(``dcmxr.stores.archive._write_dataset``). Reference: the same Datasets
written by xarray's ``to_zarr(mode="w")`` to a local directory — the same
files must exist, every ``zarr.json`` must be equal, and xarray must read both
back identical.
"""

from __future__ import annotations

import json
import os
import warnings

import pytest

from _data import data_path

zarr = pytest.importorskip("zarr")

import xarray as xr  # noqa: E402

import dcmxr  # noqa: E402
from dcmxr.stores import archive  # noqa: E402


def _files(root) -> dict[str, bytes]:
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            out[os.path.relpath(p, root)] = open(p, "rb").read()
    return out


@pytest.fixture(scope="module")
def built():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # CT with the pixels in ``image`` only, and a MOSAIC / multi-stack folder that also keeps ``frames``
        table = dcmxr.scan([str(data_path("ct")), str(data_path("transfer_syntax"))], progress=False)
    out = []
    for entry in archive.series_groups(table):
        try:
            b = archive._build_series(entry, deid=None, chunk_bytes=2**20, workers=2)
        except Exception:  # series the archive reports as failed are covered by test_archive.py
            continue
        heads = archive._header_dataset(archive.read_series_headers(entry))
        out.append((b, heads))
    assert out
    return out


@pytest.mark.parametrize("eager_bytes", [0, 2**40], ids=["dask-store", "all-in-memory"])
def test_direct_write_equals_xarray_to_zarr(built, tmp_path, monkeypatch, eager_bytes):
    monkeypatch.setattr(archive, "EAGER_BYTES", eager_bytes)
    comp = archive._compressors("blosc-lz4", None)
    mine, ref = tmp_path / "mine.zarr", tmp_path / "ref.zarr"
    for store in (mine, ref):
        zarr.open_group(store, mode="w", zarr_format=3).attrs["dcmxr_archive"] = {"format": 1}
    n_lazy = 0
    for b, heads in built:
        for path, ds in b["datasets"].items():
            n_lazy += sum(hasattr(v.data, "dask") for v in ds.variables.values())
            enc = archive._encoding(ds, comp, False)
            archive._write_dataset(str(mine), path, ds, enc)
            ds.to_zarr(ref, group=path.strip("/"), mode="w", zarr_format=3, consolidated=False, encoding=enc)
        gpath = next(iter(b["datasets"]))
        archive._write_dataset(str(mine), gpath, heads, archive._encoding(heads, comp, False), arrays_only=True)
        heads = heads.copy()
        heads.attrs = dict(zarr.open_group(ref, path=gpath.strip("/"), mode="r").attrs)
        heads.to_zarr(ref, group=gpath.strip("/"), mode="a", zarr_format=3, consolidated=False,
                      encoding=archive._encoding(heads, comp, False))
    assert n_lazy
    a, r = _files(mine), _files(ref)
    assert sorted(a) == sorted(r)
    for key in r:
        if key.endswith("zarr.json"):
            assert json.loads(a[key]) == json.loads(r[key]), key
    for b, _ in built:
        for path in b["datasets"]:
            with xr.open_dataset(mine, group=path.strip("/"), engine="zarr", consolidated=False) as x, \
                    xr.open_dataset(ref, group=path.strip("/"), engine="zarr", consolidated=False) as y:
                xr.testing.assert_identical(x.load(), y.load())
