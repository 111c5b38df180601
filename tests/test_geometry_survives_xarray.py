"""Geometry survives xarray operations: a parametrised matrix (source x op x keep_attrs mode).

dcmxr keeps geometry on the coordinates (docs/DESIGN.md "Geometry lives on the
coordinates"): each of ``x``, ``y``, ``z`` holds voxel-centre positions in mm
and carries ``attrs = {"units": "mm", "direction": [3 floats, LPS]}``. The
claim is that ordinary xarray operations carry this through with no
bookkeeping. For every op below we check, on the result:

* ``x``/``y``/``z`` (those the op keeps) still carry ``units == "mm"`` and the
  original ``direction``;
* the coordinate values are those of the expected sub-grid: every op declares
  the map ``i_orig = a * i_new + b`` per axis (``("scalar", b)`` for a scalar
  selection, ``None`` for an axis reduced away), and the affine built from the
  result's coordinates (:func:`dcmxr.geometry.affine_from_coords`) equals the
  original affine composed with that map. E.g. ``isel(z=slice(2, 6))`` is
  ``z: (1, 2)`` -> the origin moves by two slices; ``coarsen(z=2)`` is
  ``z: (2, 0.5)`` -> block centres and doubled spacing;
* where cheap, the values equal the numpy equivalent.

Sources: an oblique synthetic CT series, the same with a 12 degree gantry tilt
(non-orthogonal basis), and a real Siemens MR mosaic series
(``mr/dcm_qa/In/Orientation/ax/axasc35``, two repeated volumes: dims
``("t", "z", "y", "x")``; skipped when the shared data is absent).

Modes: xarray's default ``keep_attrs``, ``keep_attrs=True`` and
``keep_attrs=False``. Ops that lose geometry are recorded as strict xfails
(see ``LOSES`` below), not papered over: under the default and
``keep_attrs=True`` every plain-xarray op keeps the geometry except
``coarsen(...).mean()`` (fails outright on per-slice string coordinates) and
``pad`` (NaN coordinates); ``keep_attrs=False`` additionally drops coordinate
attrs in numpy ufuncs, ``clip``, ``xr.where``, ``apply_ufunc``, ``coarsen``
and coordinate arithmetic. The library-side fixes for the first two,
``dcmxr.transform.coarsen`` (``da.dcm.coarsen(z=2)``) and
``dcmxr.transform.pad`` (``da.dcm.pad({"z": 1})``), keep the geometry in
every mode (ops ``dcmxr_coarsen_z2_mean`` and ``dcmxr_pad_z1``); the plain
xarray calls stay listed as losses because that is what xarray does.

Zarr: the DataArray goes through ``to_zarr``/``open_zarr`` unchanged:
``encoding`` does NOT need clearing (xarray drops the dcmxr keys it does not
know, such as ``transfer_syntax_uid``, when they come from ``.encoding``), and
the list-valued ``direction`` attr round-trips as a list of floats.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

xr = pytest.importorskip("xarray")
pytest.importorskip("pydicom")
pytest.importorskip("dask")

import dcmxr  # noqa: E402
from dcmxr.geometry import affine_from_coords  # noqa: E402
from dcmxr.testing.assertions import assert_geometry_equal  # noqa: E402
from dcmxr.testing.synthetic import expected_geometry, write_series  # noqa: E402
from dcmxr.transform import pad as dcmxr_pad  # noqa: E402
from dcmxr.transform.coarsen import coarsen as dcmxr_coarsen  # noqa: E402

from _data import data_path  # noqa: E402

AXES = ("x", "y", "z")
OBLIQUE = (0.866025, 0.5, 0.0, -0.353553, 0.612372, -0.707107)
SYN = dict(shape=(8, 10, 9), spacing=(2.5, 0.75, 0.5), iop=OBLIQUE, origin=(-30.0, -40.0, 10.0))
ATOL = 1e-6


# --------------------------------------------------------------------- sources


SOURCES = ("oblique", "oblique_tilted", "real_axasc35")
#: sources whose arrays carry per-slice string coordinates on z (one file per slice)
SINGLE_FRAME_FILES = ("oblique", "oblique_tilted")


@pytest.fixture(scope="module", params=SOURCES)
def source(request, tmp_path_factory):
    """(lazy DataArray, its computed numpy values)."""
    if request.param == "real_axasc35":
        path = data_path("mr", "dcm_qa", "In", "Orientation", "ax", "axasc35")
        da = dcmxr.open_series(path)
    else:
        tilt = 12.0 if request.param == "oblique_tilted" else 0.0
        d = tmp_path_factory.mktemp(request.param)
        write_series(d, tilt_deg=tilt, **SYN)
        da = dcmxr.open_series(d, chunks={"z": 3})  # several chunks along z
        # the fixture itself is what the property tests promise
        exp = expected_geometry(SYN["shape"], SYN["spacing"], OBLIQUE, SYN["origin"], tilt)
        for ax in AXES:
            np.testing.assert_allclose(da[ax].values, exp[ax], atol=1e-5)
    return da, da.values


def _geom(obj) -> dict[str, Any]:
    return {ax: obj.coords[ax] for ax in AXES if ax in obj.coords}


def _step(c) -> float:
    v = np.atleast_1d(np.asarray(c.values, dtype=np.float64))
    return float((v[-1] - v[0]) / (len(v) - 1))


def _affine(obj, steps: dict[str, float]) -> np.ndarray:
    c = {ax: obj.coords[ax] for ax in AXES}
    return affine_from_coords(
        c["x"].values, c["y"].values, c["z"].values,
        c["x"].attrs["direction"], c["y"].attrs["direction"], c["z"].attrs["direction"],
        default_spacing=steps,  # a scalar coordinate (isel(z=5)) keeps the original slice step
    )


# --------------------------------------------------------------------- ops


@dataclass
class Op:
    """One xarray operation and the index map it should apply to the geometry."""

    name: str
    run: Callable[[Any, Any], Any]  # (da, tmp_path) -> DataArray
    #: per axis: (a, b) with i_orig = a * i_new + b; ("scalar", b); None = reduced away.
    #: A callable gets the source DataArray and returns that dict.
    spec: Any = field(default_factory=dict)
    #: optional (orig_values, da) -> expected numpy values of the result
    values: Callable[[np.ndarray, Any], np.ndarray] | None = None


def _ax(da, name):
    return da.get_axis_num(name)


def _take(vals, da, **idx):
    sl = [slice(None)] * vals.ndim
    for k, v in idx.items():
        sl[_ax(da, k)] = v
    return vals[tuple(sl)]


def _nz(da):
    return da.sizes["z"]


def _interp_x(da):
    x = da.x.values
    return x[:-1] + 0.5 * (x[1] - x[0])


def _interp_y(da):
    y = da.y.values
    return y[1:-1] - 0.25 * (y[1] - y[0])


def _pairs_mean(vals, da):
    """numpy reference for coarsen(z=2, boundary="trim").mean()."""
    ax = _ax(da, "z")
    n = 2 * (vals.shape[ax] // 2)
    v = np.moveaxis(np.take(vals, np.arange(n), axis=ax), ax, 0).astype(np.float64)
    return np.moveaxis(0.5 * (v[0::2] + v[1::2]), 0, ax)


def _zarr(da, tmp):
    store = tmp / "roundtrip.zarr"
    da.to_dataset().to_zarr(store, consolidated=False)
    out = xr.open_zarr(store, consolidated=False)["image"]
    for ax in AXES:  # lists come back as lists (JSON), not as numpy arrays or strings
        d = out[ax].attrs["direction"]
        assert isinstance(d, list) and all(isinstance(v, float) for v in d), (ax, d)
    return out


def _concat_halves(da, tmp):
    h = _nz(da) // 2
    return xr.concat([da.isel(z=slice(0, h)), da.isel(z=slice(h, None))], dim="z")


IDENTITY = {"x": (1, 0), "y": (1, 0), "z": (1, 0)}

OPS = [
    # ----- indexing
    Op("isel_slices", lambda da, _: da.isel(z=slice(2, 6), y=slice(1, None), x=slice(None, -1)),
       {"x": (1, 0), "y": (1, 1), "z": (1, 2)},
       lambda v, da: _take(v, da, z=slice(2, 6), y=slice(1, None), x=slice(None, -1))),
    Op("isel_steps", lambda da, _: da.isel(z=slice(1, None, 2), x=slice(None, None, 3)),
       {"x": (3, 0), "y": (1, 0), "z": (2, 1)},
       lambda v, da: _take(v, da, z=slice(1, None, 2), x=slice(None, None, 3))),
    Op("isel_reversed_x", lambda da, _: da.isel(x=slice(None, None, -1)),
       lambda da: {"x": (-1, da.sizes["x"] - 1), "y": (1, 0), "z": (1, 0)},
       lambda v, da: _take(v, da, x=slice(None, None, -1))),
    Op("isel_scalar_z", lambda da, _: da.isel(z=5),
       {"x": (1, 0), "y": (1, 0), "z": ("scalar", 5)},
       lambda v, da: _take(v, da, z=5)),
    Op("isel_fancy_x", lambda da, _: da.isel(x=[1, 3, 5]),
       {"x": (2, 1), "y": (1, 0), "z": (1, 0)},
       lambda v, da: _take(v, da, x=[1, 3, 5])),
    Op("sel_slice", lambda da, _: da.sel(z=slice(float(da.z[2]), float(da.z[5]))),
       {"x": (1, 0), "y": (1, 0), "z": (1, 2)},
       lambda v, da: _take(v, da, z=slice(2, 6))),
    Op("sel_values", lambda da, _: da.sel(x=da.x.values[[1, 3, 5]], z=da.z.values[2:5]),
       {"x": (2, 1), "y": (1, 0), "z": (1, 2)}),
    Op("sel_nearest_scalar", lambda da, _: da.sel(z=float(da.z[3]) + 0.3 * _step(da.z), method="nearest"),
       {"x": (1, 0), "y": (1, 0), "z": ("scalar", 3)},
       lambda v, da: _take(v, da, z=3)),
    Op("sel_nearest_array",
       lambda da, _: da.sel(y=da.y.values[[0, 2, 4]] + 0.2 * _step(da.y), method="nearest"),
       {"x": (1, 0), "y": (2, 0), "z": (1, 0)}),
    Op("reindex_subset", lambda da, _: da.reindex(z=da.z.values[1:5]),
       {"x": (1, 0), "y": (1, 0), "z": (1, 1)},
       lambda v, da: _take(v, da, z=slice(1, 5))),
    Op("sortby_descending", lambda da, _: da.sortby("z", ascending=False),
       lambda da: {"x": (1, 0), "y": (1, 0), "z": (-1, _nz(da) - 1)},
       lambda v, da: _take(v, da, z=slice(None, None, -1))),
    # ----- arithmetic, ufuncs, where
    Op("add_scalar", lambda da, _: da + 1, IDENTITY, lambda v, da: v + 1),
    Op("radd_scalar", lambda da, _: 1 + da, IDENTITY),
    Op("mul_self", lambda da, _: da * da, IDENTITY),
    Op("sub_broadcast_slice", lambda da, _: da - da.isel(z=0, drop=True), IDENTITY),
    Op("compare", lambda da, _: da > 0, IDENTITY),
    Op("astype_float32", lambda da, _: da.astype("float32"), IDENTITY),
    Op("np_sqrt", lambda da, _: np.sqrt(abs(da)), IDENTITY),
    Op("np_abs", lambda da, _: np.abs(da), IDENTITY, lambda v, da: np.abs(v)),
    Op("clip", lambda da, _: da.clip(0, 100), IDENTITY),
    Op("where_method", lambda da, _: da.where(da > 0), IDENTITY),
    Op("xr_where", lambda da, _: xr.where(da > 0, da, 0), IDENTITY),
    Op("apply_ufunc", lambda da, _: xr.apply_ufunc(np.negative, da, dask="parallelized"), IDENTITY),
    Op("map_blocks", lambda da, _: da.map_blocks(lambda b: b * 2), IDENTITY),
    # ----- resampling / windows
    Op("interp_xy", lambda da, _: da.astype("float64").interp(x=_interp_x(da), y=_interp_y(da)),
       {"x": (1, 0.5), "y": (1, 0.75), "z": (1, 0)}),
    Op("interp_z_midpoints",
       lambda da, _: da.astype("float64").interp(z=0.5 * (da.z.values[1:] + da.z.values[:-1])),
       {"x": (1, 0), "y": (1, 0), "z": (1, 0.5)}),
    # dcmxr puts per-frame string coords (sop_instance_uid, acquisition_time...) on z; coarsen's
    # default coord_func "mean" cannot average them -> see LOSES
    Op("coarsen_z2_mean", lambda da, _: da.coarsen(z=2, boundary="trim").mean(),
       {"x": (1, 0), "y": (1, 0), "z": (2, 0.5)}),
    # the library-side fix: dcmxr.transform.coarsen passes coord_func per coordinate (block mean for
    # positions, joined values for per-frame strings) and restores the x/y/z attrs
    Op("dcmxr_coarsen_z2_mean", lambda da, _: dcmxr_coarsen(da, z=2),
       {"x": (1, 0), "y": (1, 0), "z": (2, 0.5)}, lambda v, da: _pairs_mean(v, da)),
    Op("coarsen_z2_mean_dropped_frame_coords",
       lambda da, _: da.reset_coords(drop=True).coarsen(z=2, boundary="trim").mean(),
       {"x": (1, 0), "y": (1, 0), "z": (2, 0.5)}),
    Op("rolling_z3_center_mean", lambda da, _: da.rolling(z=3, center=True).mean(), IDENTITY),
    Op("shift_z", lambda da, _: da.shift(z=1), IDENTITY),
    Op("diff_z", lambda da, _: da.diff("z"), {"x": (1, 0), "y": (1, 0), "z": (1, 1)}),
    Op("cumsum_z", lambda da, _: da.cumsum("z"), IDENTITY),
    # pad fills the new coordinate entries with NaN -> see LOSES
    Op("pad_z1", lambda da, _: da.pad(z=1), {"x": (1, 0), "y": (1, 0), "z": (1, -1)}),
    # the library-side fix: dcmxr.transform.pad continues the coordinates regularly
    Op("dcmxr_pad_z1", lambda da, _: dcmxr_pad(da, {"z": 1}), {"x": (1, 0), "y": (1, 0), "z": (1, -1)},
       lambda v, da: np.pad(v, [(1, 1) if d == "z" else (0, 0) for d in da.dims])),
    # ----- reductions (the reduced axis is gone; the others keep their geometry)
    Op("mean_over_z", lambda da, _: da.mean("z"), {"x": (1, 0), "y": (1, 0), "z": None}),
    Op("max_over_x", lambda da, _: da.max("x"), {"x": None, "y": (1, 0), "z": (1, 0)}),
    Op("quantile_over_y", lambda da, _: da.quantile(0.5, dim="y"), {"x": (1, 0), "y": None, "z": (1, 0)}),
    # ----- combine / reshape
    Op("concat_halves", _concat_halves, IDENTITY, lambda v, da: v),
    Op("transpose", lambda da, _: da.transpose(*reversed(da.dims)), IDENTITY,
       lambda v, da: v.transpose()),
    Op("transpose_roundtrip", lambda da, _: da.transpose(*reversed(da.dims)).transpose(*da.dims), IDENTITY,
       lambda v, da: v),
    Op("stack_unstack_yx", lambda da, _: da.stack(v=("y", "x")).unstack("v"), IDENTITY),
    Op("to_dataset_and_back", lambda da, _: da.to_dataset()["image"], IDENTITY),
    Op("assign_coords_shift_z_10mm", lambda da, _: da.assign_coords(z=da.z + 10.0),
       lambda da: {"x": (1, 0), "y": (1, 0), "z": (1, 10.0 / _step(da.z))}),
    # ----- storage / dask
    Op("zarr_roundtrip", _zarr, IDENTITY, lambda v, da: v),
    Op("chunk", lambda da, _: da.chunk({"z": 1}), IDENTITY),
    Op("persist", lambda da, _: da.persist(), IDENTITY, lambda v, da: v),
    Op("compute", lambda da, _: da.compute(), IDENTITY, lambda v, da: v),
    Op("load_copy", lambda da, _: da.copy(deep=True).load(), IDENTITY, lambda v, da: v),
]

# ---------------------------------------------------------------------------------
# Ops that lose geometry: (op, mode) -> (reason, sources it applies to). Strict xfails:
# when xarray or dcmxr starts carrying geometry through, the test XPASSes and fails,
# and the entry must be removed.
ALL_MODES = ("default", "keep_attrs_true", "keep_attrs_false")
_COARSEN = ("coarsen(z=2).mean() raises ValueError ('could not convert string to float'): the default "
            "coord_func 'mean' cannot average dcmxr's per-slice string coordinates on z (sop_instance_uid, "
            "one per file); works after reset_coords(drop=True) or with coord_func={name: ...}; "
            "dcmxr.transform.coarsen (op dcmxr_coarsen_z2_mean) does that for you")
_PAD = ("pad(z=1) fills the new z coordinate entries with NaN, so there is no affine (geometry lost); "
        "dcmxr.transform.pad (op dcmxr_pad_z1) extends the coordinates regularly instead")
_DROP_FALSE = ("under xr.set_options(keep_attrs=False) this op drops the attrs of the x/y/z coordinates "
               "(units and direction lost)")
_DROP_FALSE_Z = ("under xr.set_options(keep_attrs=False) this op drops the attrs of the z coordinate "
                 "(units and direction lost)")
LOSES: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {}
for _mode in ALL_MODES:
    LOSES[("coarsen_z2_mean", _mode)] = (_COARSEN, SINGLE_FRAME_FILES)
    LOSES[("pad_z1", _mode)] = (_PAD, SOURCES)
for _name in ("np_sqrt", "np_abs", "xr_where", "apply_ufunc", "clip"):
    LOSES[(_name, "keep_attrs_false")] = (_DROP_FALSE, SOURCES)
for _name in ("coarsen_z2_mean_dropped_frame_coords", "assign_coords_shift_z_10mm"):
    LOSES[(_name, "keep_attrs_false")] = (_DROP_FALSE_Z, SOURCES)
# coarsen on the real mosaic series (no string coords on z) under keep_attrs=False: z attrs dropped
LOSES[("coarsen_z2_mean", "keep_attrs_false")] = (
    _COARSEN + "; " + _DROP_FALSE_Z.replace("this op", "coarsen"), SOURCES
)

MODES = {
    "default": contextlib.nullcontext,
    "keep_attrs_true": lambda: xr.set_options(keep_attrs=True),
    "keep_attrs_false": lambda: xr.set_options(keep_attrs=False),
}


def _params():
    return [pytest.param(op, mode, id=f"{op.name}-{mode}") for op in OPS for mode in MODES]


def _mark_known_losses(request, op_name: str, mode: str) -> None:
    """Strict xfail for the (source, op, mode) combinations listed in LOSES.

    Applied at run time (not as parametrize marks) so that the module-scoped ``source``
    fixture is parametrised by itself and built once per source.
    """
    src = request.node.callspec.params["source"]
    entry = LOSES.get((op_name, mode))
    if entry is not None and src in entry[1]:
        request.applymarker(pytest.mark.xfail(strict=True, reason=entry[0]))


# --------------------------------------------------------------------- the matrix


@pytest.mark.parametrize("op, mode", _params())
def test_geometry_survives(source, op: Op, mode: str, tmp_path, request):
    _mark_known_losses(request, op.name, mode)
    da, vals = source
    steps = {ax: abs(_step(da[ax])) for ax in AXES}
    a0 = _affine(da, steps)
    spec = op.spec(da) if callable(op.spec) else op.spec
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nan means at the rolling/shift edges
        with MODES[mode]():
            res = op.run(da, tmp_path)

    m = np.eye(4)
    for k, ax in enumerate(AXES):
        s = spec[ax]
        if s is None:
            assert ax not in res.dims, f"{op.name}: {ax} should have been reduced away"
            continue
        assert ax in res.coords, f"{op.name}: coordinate {ax} lost"
        c = res.coords[ax]
        assert c.attrs.get("units") == "mm", f"{op.name}: {ax} lost units (attrs {dict(c.attrs)})"
        assert "direction" in c.attrs, f"{op.name}: {ax} lost its direction attr (attrs {dict(c.attrs)})"
        np.testing.assert_allclose(
            np.asarray(c.attrs["direction"], dtype=float), da[ax].attrs["direction"], atol=ATOL,
            err_msg=f"{op.name}: direction of {ax}",
        )
        orig = np.asarray(da[ax].values, dtype=np.float64)
        got = np.atleast_1d(np.asarray(c.values, dtype=np.float64))
        if s[0] == "scalar":
            assert ax not in res.dims and c.ndim == 0, f"{op.name}: {ax} should be a scalar coordinate"
            want = np.atleast_1d(orig[0] + s[1] * _step(da[ax]))
            m[k, 3] = s[1]
        else:
            a, b = s
            want = orig[0] + (a * np.arange(res.sizes[ax]) + b) * _step(da[ax])
            m[k, k], m[k, 3] = a, b
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6, err_msg=f"{op.name}: values of {ax}")

    if all(spec[ax] is not None for ax in AXES):
        # the affine of the result's coordinates is the original affine composed with the index map
        np.testing.assert_allclose(_affine(res, steps), a0 @ m, rtol=0, atol=1e-6, err_msg=f"{op.name}: affine")
    if op.values is not None:
        want_vals = op.values(vals, da)
        np.testing.assert_array_equal(np.asarray(res.values), want_vals, err_msg=f"{op.name}: values")


# --------------------------------------------------------------------- single checks


def test_scalar_slice_knows_its_plane(source):
    """After isel(z=5) the 2-D slice still places every pixel in 3-D (no z dim, z scalar coord)."""
    da, _ = source
    sl = da.isel(z=5)
    assert "z" not in sl.dims and sl.z.ndim == 0
    assert sl.z.attrs["units"] == "mm" and sl.z.attrs["direction"] == da.z.attrs["direction"]
    d = {ax: np.asarray(da[ax].attrs["direction"]) for ax in AXES}
    j, i = 3, 4
    world_slice = float(sl.x[i]) * d["x"] + float(sl.y[j]) * d["y"] + float(sl.z) * d["z"]
    world_vol = float(da.x[i]) * d["x"] + float(da.y[j]) * d["y"] + float(da.z[5]) * d["z"]
    np.testing.assert_allclose(world_slice, world_vol, atol=1e-9)


def test_coarsen_block_centres(source):
    """coarsen(z=2).mean(): block-centre positions and doubled spacing (after dropping frame coords)."""
    da, _ = source
    c = da.reset_coords(drop=True).coarsen(z=2, boundary="trim").mean()
    z = da.z.values
    n = len(z) // 2
    np.testing.assert_allclose(c.z.values, 0.5 * (z[0 : 2 * n : 2] + z[1 : 2 * n : 2]), atol=1e-9)
    steps = {ax: abs(_step(da[ax])) for ax in AXES}
    a = _affine(c, steps)
    np.testing.assert_allclose(np.linalg.norm(a[:3, 2]), 2 * steps["z"], rtol=1e-9)


def test_concat_halves_identical(source):
    da, _ = source
    xr.testing.assert_identical(_concat_halves(da, None).compute(), da.compute())


def test_zarr_roundtrip_identical_geometry(source, tmp_path):
    da, vals = source
    out = _zarr(da, tmp_path)
    assert_geometry_equal(out, da, atol=0)
    for ax in AXES:
        assert out[ax].attrs == da[ax].attrs
    np.testing.assert_array_equal(out.values, vals)
    assert out.attrs == da.attrs
