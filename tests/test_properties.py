"""Property tests: dcmxr reads synthetic real-DICOM series exactly.

Every example writes real files (``dcmxr.testing.synthetic``) into its own
temporary directory, opens them with :func:`dcmxr.open_series` and checks the
conventions of docs/DESIGN.md "Conventions":

* file order and file names do not matter (values and coordinates identical);
* coordinates and directions equal :func:`expected_geometry`, the affine built
  from the coordinates round-trips voxel -> world -> voxel, and the world
  position of every voxel equals ImagePositionPatient + in-plane offsets read
  back from the written headers with pydicom (an independent computation);
* values are ``stored * slope + intercept`` (``raw=True``: stored) for every
  transfer syntax the writer can encode;
* repeated volumes lead with ``t`` in acquisition order; a tilted stack keeps
  its true stacking direction; missing slices give a non-uniform ``z``, a
  GeometryWarning and no affine;
* an enhanced multi-frame object (frames shuffled) opens to the same array as
  the classic series written with the same parameters.

Example counts are kept small (the whole file runs in well under a minute).
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
hypothesis = pytest.importorskip("hypothesis")
xr = pytest.importorskip("xarray")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import dcmxr  # noqa: E402
from dcmxr.errors import GeometryError, GeometryWarning  # noqa: E402
from dcmxr.geometry import affine_from_coords, index_to_world, world_to_index  # noqa: E402
from dcmxr.testing.assertions import assert_geometry_equal  # noqa: E402
from dcmxr.testing.strategies import origins, orientations, shapes, spacings, tilts  # noqa: E402
from dcmxr.testing.synthetic import (  # noqa: E402
    expected_geometry,
    expected_stored,
    slice_positions,
    write_enhanced,
    write_series,
)

EXPLICIT_LE = "1.2.840.10008.1.2.1"
OBLIQUE = (0.866025, 0.5, 0.0, -0.353553, 0.612372, -0.707107)

#: mm; coordinates go through DS strings (16 characters) in the files
ATOL_MM = 1e-5
ATOL_DIR = 1e-6

PROPS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
FEW = settings(PROPS, max_examples=10)


# --------------------------------------------------------------------- helpers


def _geometry_of(da) -> dict[str, np.ndarray]:
    """Coordinate values and direction attrs of a DataArray (KeyError if an attr is missing)."""
    out: dict[str, np.ndarray] = {}
    for ax in ("x", "y", "z"):
        c = da.coords[ax]
        assert c.attrs["units"] == "mm", f"{ax}: units {c.attrs.get('units')!r}"
        out[ax] = np.atleast_1d(np.asarray(c.values, dtype=np.float64))
        out[f"dir_{ax}"] = np.asarray(c.attrs["direction"], dtype=np.float64)
    return out


def _assert_matches_expected(da, exp: dict[str, np.ndarray]) -> None:
    got = _geometry_of(da)
    for ax in ("x", "y", "z"):
        np.testing.assert_allclose(got[ax], exp[ax], rtol=0, atol=ATOL_MM, err_msg=f"coordinate {ax}")
        np.testing.assert_allclose(
            got[f"dir_{ax}"], exp[f"dir_{ax}"], rtol=0, atol=ATOL_DIR, err_msg=f"direction of {ax}"
        )


def _frame_z_index(da, ds) -> int:
    """z index of a written frame, found by its SOPInstanceUID (not by position)."""
    c = da.coords.get("sop_instance_uid")
    if c is None or "z" not in c.dims:  # constant along z (a single slice): no per-slice coordinate
        assert da.sizes["z"] == 1
        return 0
    hits = np.argwhere(np.asarray(c.values) == ds.SOPInstanceUID)
    assert len(hits) == 1, ds.SOPInstanceUID
    return int(hits[0][c.dims.index("z")])


def _header_world(ds, jj: np.ndarray, ii: np.ndarray) -> np.ndarray:
    """World position (LPS mm) of pixels (row jj, column ii) from a frame's own header."""
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    row, col = iop[:3] / np.linalg.norm(iop[:3]), iop[3:] / np.linalg.norm(iop[3:])
    dy, dx = (float(v) for v in ds.PixelSpacing)  # [row spacing, column spacing]
    return ipp + jj[..., None] * dy * col + ii[..., None] * dx * row


def _check_world_positions(da, paths, *, use_affine: bool = True) -> None:
    """Every voxel of every written frame sits where its header says (independent of dcmxr geometry)."""
    g = _geometry_of(da)
    ny, nx = da.sizes["y"], da.sizes["x"]
    jj, ii = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    aff = affine_from_coords(g["x"], g["y"], g["z"], g["dir_x"], g["dir_y"], g["dir_z"]) if use_affine else None
    for p in paths:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        k = _frame_z_index(da, ds)
        want = _header_world(ds, jj, ii)
        idx = np.stack([ii, jj, np.full_like(ii, k)], axis=-1).astype(np.float64)
        got = index_to_world(idx, g["x"], g["y"], g["z"], g["dir_x"], g["dir_y"], g["dir_z"])
        np.testing.assert_allclose(got, want, rtol=0, atol=ATOL_MM, err_msg=f"index_to_world, {p.name}")
        if aff is not None:
            got_aff = np.concatenate([idx, np.ones(idx.shape[:-1] + (1,))], axis=-1) @ aff.T
            np.testing.assert_allclose(got_aff[..., :3], want, rtol=0, atol=ATOL_MM, err_msg=f"affine, {p.name}")


def _open(source, **kw):
    """open_series, turning any GeometryWarning into an error (regular series must open quietly)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", GeometryWarning)
        return dcmxr.open_series(source, **kw)


# ------------------------------------------------------------ order and names


@PROPS
@given(
    shape=shapes(max_z=8, max_yx=8, min_z=2),
    n_t=st.integers(1, 3),
    name_seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_file_order_and_names_do_not_matter(shape, n_t, name_seed, data):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = write_series(tmp / "a", shape=shape, iop=OBLIQUE, n_timepoints=n_t, seed=name_seed)
        ref = _open(sorted(paths)).compute()
        # the same files listed in random orders
        for _ in range(3):
            perm = data.draw(st.permutations(range(len(paths))), label="order")
            got = _open([paths[i] for i in perm])
            xr.testing.assert_identical(got.compute(), ref)
        # the same files copied under other shuffled names
        names = data.draw(st.permutations(range(len(paths))), label="names")
        (tmp / "b").mkdir()
        for p, n in zip(paths, names):
            shutil.copy(p, tmp / "b" / f"IM{n:05d}")
        xr.testing.assert_identical(_open(tmp / "b").compute(), ref)
        # and the directory itself
        xr.testing.assert_identical(_open(tmp / "a").compute(), ref)
        assert ref.dims == (("t",) if n_t > 1 else ()) + ("z", "y", "x")


# ------------------------------------------------------------ random geometry


@PROPS
@given(shape=shapes(max_z=8, max_yx=10), spacing=spacings(), iop=orientations(), origin=origins())
def test_random_geometry_matches_headers(shape, spacing, iop, origin):
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_series(tmp, shape=shape, spacing=spacing, iop=iop, origin=origin)
        da = _open(tmp)
        assert da.dims == ("z", "y", "x") and da.shape == tuple(shape)
        _assert_matches_expected(da, expected_geometry(shape, spacing, iop, origin))
        g = _geometry_of(da)
        # dir_x / dir_y are the IOP row / column directions, dir_z the right-handed normal
        np.testing.assert_allclose(np.cross(g["dir_x"], g["dir_y"]), g["dir_z"], atol=ATOL_DIR)
        # voxel -> world -> voxel through the affine built from the coordinates
        aff = affine_from_coords(
            g["x"], g["y"], g["z"], g["dir_x"], g["dir_y"], g["dir_z"],
            default_spacing=dict(zip("zyx", spacing)),  # axes of length 1 have no step of their own
        )
        rng = np.random.default_rng(0)
        idx = rng.uniform(-1, 1, (20, 3)) * 0.5 + rng.integers(0, shape[::-1], (20, 3))
        world = (np.c_[idx, np.ones(len(idx))] @ aff.T)[:, :3]
        back = (np.c_[world, np.ones(len(world))] @ np.linalg.inv(aff).T)[:, :3]
        np.testing.assert_allclose(back, idx, atol=1e-8)
        np.testing.assert_allclose(
            world_to_index(world, g["x"], g["y"], g["z"], g["dir_x"], g["dir_y"], g["dir_z"],
                           default_spacing=dict(zip("zyx", spacing))),
            idx, atol=1e-6,
        )
        # the world position of every voxel equals IPP + in-plane offsets of its written frame
        _check_world_positions(da, paths)
        # steps are the written spacings
        np.testing.assert_allclose(np.linalg.norm(aff[:3, :3], axis=0), spacing[::-1], rtol=1e-9)


# ------------------------------------------------------------ values / syntaxes

SYNTAXES = [
    pytest.param("1.2.840.10008.1.2", id="implicit_le"),
    pytest.param("1.2.840.10008.1.2.1", id="explicit_le"),
    pytest.param("1.2.840.10008.1.2.2", id="explicit_be"),
    pytest.param("1.2.840.10008.1.2.1.99", id="deflated"),
    pytest.param("1.2.840.10008.1.2.5", id="rle"),
    pytest.param("1.2.840.10008.1.2.4.80", id="jpeg_ls_lossless"),
    pytest.param("1.2.840.10008.1.2.4.90", id="j2k_lossless"),
]

RESCALES = [
    pytest.param(np.int16, 1.0, -1024.0, "CT", id="int16_hu"),
    pytest.param(np.uint16, 0.5, 3.25, "MR", id="uint16_float_rescale"),
    pytest.param(np.uint16, 1.0, 0.0, "MR", id="uint16_identity"),
    pytest.param(np.int16, 2.0, 7.0, "CT", id="int16_int_rescale"),
]

# OpenJPEG encodes only frames of at least 32 x 32 pixels with its default resolutions
VALUE_SHAPE = (3, 33, 34)


def _encodable(ts: str) -> None:
    from pydicom.uid import UID

    uid = UID(ts)
    if uid.is_compressed:
        from pydicom.pixels import get_encoder

        if not get_encoder(uid).is_available:
            pytest.skip(f"no pydicom encoder plugin for {uid.name}")


@pytest.mark.parametrize("dtype, slope, intercept, modality", RESCALES)
@pytest.mark.parametrize("ts", SYNTAXES)
def test_values_rescaled_and_raw(tmp_path, ts, dtype, slope, intercept, modality):
    _encodable(ts)
    write_series(
        tmp_path, shape=VALUE_SHAPE, iop=OBLIQUE, transfer_syntax=ts, dtype=dtype,
        rescale_slope=slope, rescale_intercept=intercept, modality=modality,
    )
    stored = expected_stored(VALUE_SHAPE, dtype=dtype)[0]
    raw = _open(tmp_path, raw=True)
    assert raw.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(raw.values, stored)
    assert raw.encoding["transfer_syntax_uid"] == ts
    da = _open(tmp_path)
    want = stored.astype(np.float64) * slope + intercept
    got = da.values
    if float(slope).is_integer() and float(intercept).is_integer():
        assert got.dtype.kind in "iu", f"integer rescale should stay integer, got {got.dtype}"
        np.testing.assert_array_equal(got, want.astype(got.dtype))
        assert np.array_equal(got.astype(np.float64), want)  # held exactly
    else:
        assert got.dtype.kind == "f"
        np.testing.assert_allclose(got, want, rtol=1e-6)
    if slope == 1 and intercept == 0:
        assert got.dtype == np.dtype(dtype)
    _assert_matches_expected(da, expected_geometry(VALUE_SHAPE, (2.5, 0.75, 0.5), OBLIQUE, (-30.0, -40.0, 10.0)))


@FEW
@given(
    slope=st.sampled_from([1.0, 0.25, 3.0]),
    intercept=st.sampled_from([0.0, -1024.0, 12.5]),
    chunks=st.sampled_from(["auto", 1, 2, 5]),
)
def test_values_independent_of_chunks(slope, intercept, chunks):
    shape = (5, 6, 7)
    with tempfile.TemporaryDirectory() as tmp:
        write_series(tmp, shape=shape, rescale_slope=slope, rescale_intercept=intercept, n_timepoints=2)
        da = _open(tmp, chunks=chunks)
        want = expected_stored(shape, 2).astype(np.float64) * slope + intercept
        np.testing.assert_allclose(da.values, want, rtol=1e-6)
        np.testing.assert_array_equal(_open(tmp, raw=True, chunks=chunks).values, expected_stored(shape, 2))


# ------------------------------------------------------------ repeated volumes


@FEW
@given(
    shape=shapes(max_z=6, max_yx=6, min_z=1),
    n_t=st.integers(2, 5),
    step=st.sampled_from([0.5, 2.0, 61.0]),
    seed=st.integers(0, 1000),
)
def test_repeated_volumes_lead_with_t(shape, n_t, step, seed):
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_series(tmp, shape=shape, iop=OBLIQUE, n_timepoints=n_t, time_step_s=step, seed=seed)
        # the files handed over in reverse acquisition order
        da = _open(list(reversed(paths)))
        assert da.dims == ("t", "z", "y", "x")
        assert da.shape == (n_t,) + tuple(shape)
        np.testing.assert_allclose(da["t"].values, np.arange(n_t) * step, atol=1e-6)
        assert da["t"].attrs.get("units") == "s"
        np.testing.assert_array_equal(da["acquisition_number"].values, np.arange(1, n_t + 1))
        stored = expected_stored(shape, n_t)
        np.testing.assert_array_equal(da.values, stored.astype(np.int64) - 1024)
        # value // 4096 is the time point of the frame
        np.testing.assert_array_equal(
            (np.asarray(_open(paths, raw=True).values) // 4096)[:, 0, 0, 0], np.arange(n_t)
        )
        _assert_matches_expected(da, expected_geometry(shape, (2.5, 0.75, 0.5), OBLIQUE, (-30.0, -40.0, 10.0)))
        _check_world_positions(da, paths)


# ------------------------------------------------------------ tilted stacks


@PROPS
@given(
    shape=shapes(max_z=8, max_yx=8, min_z=2),
    spacing=spacings(min_value=0.3),
    iop=orientations(),
    origin=origins(200.0),
    tilt=tilts(25.0),
)
def test_tilted_stack_keeps_true_stacking_direction(shape, spacing, iop, origin, tilt):
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_series(tmp, shape=shape, spacing=spacing, iop=iop, origin=origin, tilt_deg=tilt)
        da = _open(tmp)
        exp = expected_geometry(shape, spacing, iop, origin, tilt)
        _assert_matches_expected(da, exp)
        g = _geometry_of(da)
        # dir_z is the direction between consecutive written positions, not the slice normal
        pos = slice_positions(shape, spacing, iop, origin, tilt)
        along = (pos[1] - pos[0]) / np.linalg.norm(pos[1] - pos[0])
        np.testing.assert_allclose(g["dir_z"], along, atol=ATOL_DIR)
        normal = np.cross(g["dir_x"], g["dir_y"])
        angle = np.degrees(np.arccos(np.clip(abs(g["dir_z"] @ normal), -1, 1)))
        assert angle == pytest.approx(abs(tilt), abs=1e-4)
        np.testing.assert_allclose(np.diff(g["z"]), spacing[0], rtol=1e-9, atol=1e-9)
        if abs(tilt) > 0.05:
            assert da.attrs["tilt_deg"] == pytest.approx(abs(tilt), abs=1e-3)
        else:
            assert "tilt_deg" not in da.attrs
        _check_world_positions(da, paths)


# ------------------------------------------------------------ missing slices


@st.composite
def _missing(draw):
    nz = draw(st.integers(4, 10))
    interior = list(range(1, nz - 1))
    miss = draw(st.lists(st.sampled_from(interior), min_size=1, max_size=max(1, (nz - 2) // 2), unique=True))
    return nz, sorted(miss)


@FEW
@given(nz_miss=_missing(), iop=orientations(), tilt=st.sampled_from([0.0, 12.0]))
def test_missing_slices_nonuniform_z(nz_miss, iop, tilt):
    nz, miss = nz_miss
    shape, spacing, origin = (nz, 5, 4), (1.5, 0.8, 0.6), (10.0, -20.0, 30.0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_series(
            tmp, shape=shape, spacing=spacing, iop=iop, origin=origin, tilt_deg=tilt, missing_slices=miss
        )
        # the message says "missing slice(s)" (see test_missing_slices_detected_when_most_steps_are_double)
        with pytest.warns(GeometryWarning, match="non-uniform coordinate"):
            da = dcmxr.open_series(tmp)
        assert da.sizes["z"] == nz - len(miss)
        exp = expected_geometry(shape, spacing, iop, origin, tilt, missing_slices=miss)
        _assert_matches_expected(da, exp)
        g = _geometry_of(da)
        assert len(np.unique(np.round(np.diff(g["z"]), 6))) > 1  # non-uniform
        with pytest.raises(GeometryError, match="'z'"):
            affine_from_coords(g["x"], g["y"], g["z"], g["dir_x"], g["dir_y"], g["dir_z"])
        # positions stay exact on the irregular grid (index_to_world interpolates the coordinate)
        _check_world_positions(da, paths, use_affine=False)
        # the present slices hold their own values (slice k encoded as value // 64 % 64)
        present = [k for k in range(nz) if k not in miss]
        raw = _open_quiet(tmp, raw=True).values
        np.testing.assert_array_equal(raw[:, 0, 0] // 64 % 64, present)


@pytest.mark.parametrize(
    "z, missing",
    [
        pytest.param([0.0, 3.0, 4.5], [1], id="4_slices_missing_1"),
        pytest.param([0.0, 1.5, 4.5, 7.5], [2, 4], id="6_slices_missing_2_4"),
    ],
)
def test_missing_slices_detected_when_most_steps_are_double(tmp_path, z, missing):
    from dcmxr.geometry import spacing_regularity

    reg = spacing_regularity(z)
    assert reg.on_grid and not reg.regular
    assert reg.spacing == pytest.approx(1.5)
    assert reg.missing.tolist() == missing


def test_missing_slices_message_names_the_gap(tmp_path):
    """The common case (most steps single) is reported as missing slices with their grid index."""
    write_series(tmp_path, shape=(8, 4, 4), spacing=(1.5, 1.0, 1.0), missing_slices=[3])
    with pytest.warns(GeometryWarning, match=r"1 missing slice\(s\) at grid index \[3\]"):
        dcmxr.open_series(tmp_path)


def _open_quiet(source, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GeometryWarning)
        return dcmxr.open_series(source, **kw)


# ------------------------------------------------------------ enhanced multi-frame


@FEW
@given(
    shape=shapes(max_z=6, max_yx=7, min_z=2),
    n_t=st.integers(1, 3),
    iop=orientations(),
    tilt=st.sampled_from([0.0, 15.0]),
    seed=st.integers(0, 1000),
)
def test_enhanced_equals_classic(shape, n_t, iop, tilt, seed):
    kw = dict(shape=shape, spacing=(1.25, 0.7, 0.9), iop=iop, origin=(5.0, -7.0, 12.5), tilt_deg=tilt,
              n_timepoints=n_t, rescale_slope=1.0, rescale_intercept=-1024.0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        enh = write_enhanced(tmp / "enh" / "mf.dcm", shuffle_frames=True, seed=seed, **kw)
        write_series(tmp / "classic", seed=seed, **kw)
        a = _open(enh)
        b = _open(tmp / "classic")
        assert a.dims == b.dims == (("t",) if n_t > 1 else ()) + ("z", "y", "x")
        assert a.shape == b.shape
        assert_geometry_equal(a, b, atol=ATOL_MM)
        _assert_matches_expected(a, expected_geometry(shape, kw["spacing"], iop, kw["origin"], tilt))
        np.testing.assert_array_equal(a.values, b.values)
        assert a.dtype == b.dtype
        if n_t > 1:
            np.testing.assert_allclose(a["t"].values, b["t"].values, atol=1e-6)
        np.testing.assert_array_equal(_open(enh, raw=True).values.reshape(b.shape), _open(tmp / "classic", raw=True).values)


def test_enhanced_per_frame_rescale(tmp_path):
    shape, n_t = (4, 5, 6), 2

    def rescale(t, k):
        return (1.0 + 0.5 * k, 10.0 * t - 3.0)

    path = write_enhanced(tmp_path / "mf.dcm", shape=shape, n_timepoints=n_t, iop=OBLIQUE,
                          shuffle_frames=True, rescale_fn=rescale)
    da = _open(path)
    stored = expected_stored(shape, n_t).astype(np.float64)
    slope = np.array([[rescale(t, k)[0] for k in range(shape[0])] for t in range(n_t)])
    icpt = np.array([[rescale(t, k)[1] for k in range(shape[0])] for t in range(n_t)])
    want = stored * slope[:, :, None, None] + icpt[:, :, None, None]
    np.testing.assert_allclose(da.values, want, rtol=1e-6)
    np.testing.assert_array_equal(_open(path, raw=True).values, expected_stored(shape, n_t))


@pytest.mark.parametrize(
    "ts",
    [
        pytest.param("1.2.840.10008.1.2", id="implicit_le"),
        pytest.param("1.2.840.10008.1.2.2", id="explicit_be"),
        pytest.param("1.2.840.10008.1.2.5", id="rle"),
        pytest.param("1.2.840.10008.1.2.4.80", id="jpeg_ls_lossless"),
    ],
)
def test_enhanced_encapsulated_and_missing_slices(tmp_path, ts):
    """Multi-frame objects in other syntaxes (one fragment per frame), frames shuffled, a slice missing."""
    _encodable(ts)
    shape, n_t, miss = (6, 5, 4), 2, [2]
    path = write_enhanced(tmp_path / "mf.dcm", shape=shape, n_timepoints=n_t, iop=OBLIQUE, tilt_deg=8.0,
                          missing_slices=miss, shuffle_frames=True, transfer_syntax=ts)
    with pytest.warns(GeometryWarning, match=r"missing slice\(s\) at grid index \[2\]"):
        da = dcmxr.open_series(path)
    assert da.dims == ("t", "z", "y", "x")
    _assert_matches_expected(
        da, expected_geometry(shape, (2.5, 0.75, 0.5), OBLIQUE, (-30.0, -40.0, 10.0), 8.0, missing_slices=miss)
    )
    np.testing.assert_array_equal(
        da.values, expected_stored(shape, n_t, missing_slices=miss).astype(np.int64) - 1024
    )
