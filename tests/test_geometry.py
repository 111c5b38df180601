"""Tests for dcmxr.geometry (numpy-only geometry) incl. property tests and oracles."""

from __future__ import annotations

import glob
import os
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dcmxr import geometry as g
from dcmxr.errors import GeometryError
from dcmxr.testing.strategies import orientations, origins, rotations, shapes, spacings, tilts
from dcmxr.testing.synthetic import expected_geometry, slice_positions
from _data import DATA as _DATA

DATA = str(_DATA)  # ../shared/data relative to the repo, or $DCMXR_TEST_DATA
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)

prop = settings(max_examples=int(os.environ.get("DCMXR_HYPOTHESIS_EXAMPLES", "150")), deadline=None, suppress_health_check=[HealthCheck.too_slow])


def voxel_position(shape, spacing, iop, origin, tilt, k, j, i):
    """Ground truth from the synthetic construction."""
    iop = np.asarray(iop, float)
    row, col = iop[:3] / np.linalg.norm(iop[:3]), iop[3:] / np.linalg.norm(iop[3:])
    p = slice_positions(shape, spacing, iop, origin, tilt)[k]
    return p + j * spacing[1] * col + i * spacing[2] * row


# --------------------------------------------------------------------------- purity


def test_geometry_imports_numpy_only():
    """geometry/ may import only numpy, the stdlib, dcmxr.errors and itself."""
    import ast
    import pathlib

    pkg = pathlib.Path(g.__file__).parent
    allowed_dcmxr = ("dcmxr.errors", "dcmxr.geometry")
    for path in pkg.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "dcmxr":
                    assert name.startswith(allowed_dcmxr), f"{path.name} imports {name}"
                else:
                    assert top == "numpy" or top in sys.stdlib_module_names, f"{path.name} imports {name}"


# --------------------------------------------------------------------------- orientation


def test_normalize_iop_accepts_and_normalises():
    out = g.normalize_iop([2e-4 + 1, 0, 0, 0, 1, 0])
    np.testing.assert_allclose(out, AXIAL)


def test_normalize_iop_not_unit_names_tolerance():
    with pytest.raises(GeometryError) as e:
        g.normalize_iop([1.1, 0, 0, 0, 1, 0])
    msg = str(e.value)
    assert "orientation_tol" in msg and "0.1" in msg and "0.001" in msg
    assert isinstance(e.value, ValueError)
    g.normalize_iop([1.1, 0, 0, 0, 1, 0], orientation_tol=0.2)  # relaxing works


def test_normalize_iop_not_orthogonal():
    c = np.array([0.05, 1, 0]) / np.linalg.norm([0.05, 1, 0])
    with pytest.raises(GeometryError, match="orthogonal.*orientation_tol"):
        g.normalize_iop([1, 0, 0, *c])
    g.normalize_iop([1, 0, 0, *c], orientation_tol=0.06)


@pytest.mark.parametrize("bad", [[1, 0, 0, 0, 1], [np.nan, 0, 0, 0, 1, 0]])
def test_normalize_iop_malformed(bad):
    with pytest.raises(GeometryError):
        g.normalize_iop(bad)


def test_row_col_normal():
    r, c, n = g.row_col_normal(SAGITTAL)
    np.testing.assert_allclose(n, [-1, 0, 0])
    r, c, n = g.row_col_normal(CORONAL)
    np.testing.assert_allclose(n, [0, 1, 0])


@pytest.mark.parametrize(
    "matrix, convention, expected",
    [
        (np.eye(3), "LPS", "LPS"),
        (np.eye(3), "RAS", "RAS"),
        (np.diag([-1.0, -1.0, 1.0]), "LPS", "RAS"),  # an axial volume stored RAS-wise
        (np.diag([-1.0, -1.0, -1.0]), "LPS", "RAI"),
        (np.diag([1.0, -1.0, -1.0]), "LPS", "LAI"),
        (np.column_stack([[0, 1, 0], [0, 0, -1], [-1, 0, 0]]), "LPS", "PIR"),  # sagittal stack
        (np.column_stack([[1, 0, 0], [0, 0, -1], [0, 1, 0]]), "LPS", "LIP"),  # coronal stack
    ],
)
def test_axis_codes_known(matrix, convention, expected):
    assert g.axis_codes(matrix, convention) == expected


def test_axis_codes_affine_and_tie():
    aff = np.diag([0.5, 0.5, 2.0, 1.0])
    assert g.axis_codes(aff) == "LPS"
    s = np.sqrt(0.5)
    tie = np.column_stack([[s, s, 0], [-s, s, 0], [0, 0, 1]])
    code = g.axis_codes(tie)
    assert len(set(code)) == 3 and code[2] == "S"
    with pytest.raises(ValueError):
        g.axis_codes(np.eye(3), "XYZ")


@prop
@given(rotations())
def test_axis_codes_match_nibabel(rot):
    nib_orient = pytest.importorskip("nibabel.orientations")
    aff = np.eye(4)
    aff[:3, :3] = rot
    ras = g.lps_to_ras(aff)
    # nibabel's assignment is also a unique (permutation) one; compare where unambiguous
    a = np.sort(np.abs(rot), axis=0)
    if np.any(a[-1] - a[-2] < 1e-3):
        return
    assert g.axis_codes(aff, "LPS") == "".join(nib_orient.aff2axcodes(ras))
    assert g.axis_codes(ras, "RAS") == g.axis_codes(aff, "LPS")


def test_is_oblique():
    assert not g.is_oblique(AXIAL)
    assert not g.is_oblique(SAGITTAL)
    assert not g.is_oblique(np.diag([-1.0, 1.0, -1.0]))
    c, s = np.cos(np.radians(10)), np.sin(np.radians(10))
    assert g.is_oblique([1, 0, 0, 0, c, s])
    assert not g.is_oblique([1, 0, 0, 0, c, s], oblique_tol=0.1)


# --------------------------------------------------------------------------- coords round trips


@prop
@given(orientations(), spacings(), origins(), shapes(min_z=2), tilts())
def test_coords_positions_round_trip(iop, spacing, origin, shape, tilt):
    pos = slice_positions(shape, spacing, iop, origin, tilt)
    co = g.stack_coords(pos[0], iop, spacing[1:], shape[1], shape[2], pos)
    exp = expected_geometry(shape, spacing, iop, origin, tilt)
    for k in ("x", "y", "z", "dir_x", "dir_y", "dir_z"):
        np.testing.assert_allclose(co[k], exp[k], atol=1e-6, err_msg=k)
    np.testing.assert_allclose(
        g.positions_from_coords(co["x"], co["y"], co["z"], co["dir_x"], co["dir_y"], co["dir_z"]),
        pos,
        atol=1e-6,
    )
    # every voxel: x*dir_x + y*dir_y + z*dir_z is the true position
    k, j, i = shape[0] - 1, shape[1] - 1, shape[2] - 1
    world = co["x"][i] * co["dir_x"] + co["y"][j] * co["dir_y"] + co["z"][k] * co["dir_z"]
    np.testing.assert_allclose(world, voxel_position(shape, spacing, iop, origin, tilt, k, j, i), atol=1e-6)
    # z increases; dir_z is in the normal's half-space
    assert np.all(np.diff(co["z"]) > 0)
    assert co["dir_z"] @ np.cross(co["dir_x"], co["dir_y"]) > 0


@prop
@given(orientations(), spacings(), origins(), shapes(min_z=1), tilts(), st.data())
def test_affine_voxel_world_voxel(iop, spacing, origin, shape, tilt, data):
    pos = slice_positions(shape, spacing, iop, origin, tilt)
    co = g.stack_coords(pos[0], iop, spacing[1:], shape[1], shape[2], pos)
    aff = g.affine_from_coords(**co, default_spacing=spacing[0])
    k = data.draw(st.integers(0, shape[0] - 1))
    j = data.draw(st.integers(0, shape[1] - 1))
    i = data.draw(st.integers(0, shape[2] - 1))
    truth = voxel_position(shape, spacing, iop, origin, tilt, k, j, i)
    # affine index order is (i_x, i_y, i_z): the array's dims reversed
    np.testing.assert_allclose((aff @ [i, j, k, 1])[:3], truth, atol=1e-6)
    np.testing.assert_allclose(g.index_to_world([i, j, k], **co), truth, atol=1e-6)
    idx = g.world_to_index(truth, **co)
    np.testing.assert_allclose(idx, [i, j, k], atol=1e-6)
    # fractional indices agree with the affine too
    frac = np.array([i + 0.3, j - 0.7, k + 0.5])
    w = g.index_to_world(frac, **co, default_spacing=spacing[0])
    np.testing.assert_allclose(w, (aff @ [*frac, 1])[:3], atol=1e-6)
    np.testing.assert_allclose(g.world_to_index(w, **co, default_spacing=spacing[0]), frac, atol=1e-6)
    # affine <-> coords
    back = g.coords_from_affine(aff, shape)
    for key in ("x", "y", "z", "dir_x", "dir_y", "dir_z"):
        np.testing.assert_allclose(back[key], co[key], atol=1e-6, err_msg=key)


def test_affine_descending_coordinate():
    co = g.stack_coords([0, 0, 0], AXIAL, [1.0, 2.0], 3, 4, [[0, 0, 0], [0, 0, 3], [0, 0, 6]])
    x = co["x"][::-1]  # e.g. after isel(x=slice(None, None, -1))
    aff = g.affine_from_coords(x, co["y"], co["z"], co["dir_x"], co["dir_y"], co["dir_z"])
    np.testing.assert_allclose(aff[:3, 0], [-2, 0, 0])
    np.testing.assert_allclose(aff[:3, 3], [6, 0, 0])
    idx = g.world_to_index([[2, 1, 3]], x, co["y"], co["z"], co["dir_x"], co["dir_y"], co["dir_z"])
    np.testing.assert_allclose(idx, [[2, 1, 1]])


def test_lps_ras():
    aff = np.diag([0.5, 0.7, 2.0, 1.0])
    aff[:3, 3] = [1, 2, 3]
    ras = g.lps_to_ras(aff)
    np.testing.assert_allclose(ras[:3, 3], [-1, -2, 3])
    np.testing.assert_allclose(np.diag(ras), [-0.5, -0.7, 2.0, 1.0])
    np.testing.assert_allclose(g.ras_to_lps(ras), aff)


def test_scalar_coords_keep_plane():
    co = g.stack_coords([0, 0, 0], AXIAL, [1.0, 1.0], 2, 2, [[0, 0, 0], [0, 0, 2]])
    aff = g.affine_from_coords(co["x"], co["y"], co["z"][1], co["dir_x"], co["dir_y"], co["dir_z"])
    np.testing.assert_allclose(aff[:3, 3], [0, 0, 2])


# --------------------------------------------------------------------------- stacking


@prop
@given(orientations(), spacings(), origins(), shapes(min_z=2, max_z=20), st.randoms(use_true_random=False))
def test_shuffled_frames_sort_back(iop, spacing, origin, shape, rnd):
    pos = slice_positions(shape, spacing, iop, origin)
    perm = list(range(shape[0]))
    rnd.shuffle(perm)
    _, _, n = g.row_col_normal(iop)
    order, dist = g.sort_stack(pos[perm], n)
    np.testing.assert_array_equal(np.asarray(perm)[order], np.arange(shape[0]))
    np.testing.assert_allclose(np.diff(dist), spacing[0], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("tilt", [14.0, -20.0, 5.0])
def test_tilted_stack(tilt):
    shape, spacing, iop, origin = (6, 4, 5), (1.25, 0.5, 0.6), AXIAL, (10.0, -5.0, 3.0)
    pos = slice_positions(shape, spacing, iop, origin, tilt)
    _, col, n = g.row_col_normal(iop)
    d, measured = g.stack_direction(pos, n)
    th = np.radians(tilt)
    np.testing.assert_allclose(d, np.cos(th) * n + np.sin(th) * col, atol=1e-12)
    assert measured == pytest.approx(abs(tilt), abs=1e-9)
    co = g.stack_coords(pos[0], iop, spacing[1:], shape[1], shape[2], pos)
    np.testing.assert_allclose(co["dir_z"], d, atol=1e-12)
    np.testing.assert_allclose(np.diff(co["z"]), spacing[0], atol=1e-9)  # true step, not projected
    np.testing.assert_allclose(
        g.positions_from_coords(co["x"], co["y"], co["z"], co["dir_x"], co["dir_y"], co["dir_z"]), pos, atol=1e-9
    )
    # non-orthogonal basis: y values are coefficients, not dot products
    if tilt:
        assert not np.isclose(co["y"][0], pos[0] @ col)


def test_small_tilt_is_noise():
    pos = slice_positions((5, 2, 2), (2.0, 1, 1), AXIAL, (0, 0, 0), tilt_deg=0.01)
    d, measured = g.stack_direction(pos, [0, 0, 1])
    np.testing.assert_allclose(d, [0, 0, 1])
    assert measured == pytest.approx(0.01, abs=1e-6)


def test_stack_direction_errors():
    with pytest.raises(GeometryError, match="collinearity_atol"):
        g.stack_direction([[0, 0, 0], [0, 0, 1], [5, 0, 2]], [0, 0, 1])
    with pytest.raises(GeometryError, match="max_tilt_deg"):
        g.stack_direction([[0, 0, 0], [1, 0, 0.1], [2, 0, 0.2]], [0, 0, 1])
    d, t = g.stack_direction([[1, 2, 3]] * 4, [0, 0, 2])  # one position, repeated
    np.testing.assert_allclose(d, [0, 0, 1])
    assert t == 0.0


def test_stack_coords_rejects_unsorted():
    with pytest.raises(GeometryError, match="sorted"):
        g.stack_coords([0, 0, 0], AXIAL, [1, 1], 2, 2, [[0, 0, 0], [0, 0, 2], [0, 0, 1]])
    with pytest.raises(GeometryError, match="PixelSpacing"):
        g.stack_coords([0, 0, 0], AXIAL, [0, 1], 2, 2)


def test_missing_slice():
    shape, spacing = (8, 3, 3), (2.0, 1.0, 1.0)
    pos = np.delete(slice_positions(shape, spacing, AXIAL, (0, 0, -7)), [3, 6], axis=0)
    co = g.stack_coords(pos[0], AXIAL, spacing[1:], 3, 3, pos)
    np.testing.assert_allclose(co["z"], -7 + 2.0 * np.array([0, 1, 2, 4, 5, 7]))
    reg = g.spacing_regularity(co["z"])
    assert not reg.regular and reg.on_grid
    assert reg.spacing == pytest.approx(2.0)
    np.testing.assert_array_equal(reg.missing, [3, 6])
    with pytest.raises(GeometryError) as e:
        g.affine_from_coords(**co)
    assert "'z'" in str(e.value) and "spacing_rtol" in str(e.value)
    # index <-> world still exact on the irregular grid
    np.testing.assert_allclose(g.index_to_world([1, 2, 3], **co), [1, 2, -7 + 8.0])
    np.testing.assert_allclose(g.world_to_index([1, 2, -7 + 6.0], **co), [1, 2, 2.5])


def test_uneven_spacing():
    reg = g.spacing_regularity([0.0, 1.0, 2.0, 3.4, 4.4])
    assert not reg.regular and not reg.on_grid
    assert reg.max_deviation == pytest.approx(0.4)
    assert g.spacing_regularity([0.0, 1.0, 2.0005, 3.0]).regular
    assert g.spacing_regularity([5.0]).regular
    with pytest.raises(GeometryError, match="find_repeats"):
        g.spacing_regularity([0.0, 1.0, 1.0, 2.0])


def test_find_repeats_time_points():
    pos = slice_positions((5, 2, 2), (3.0, 1, 1), AXIAL, (0, 0, 0))
    frames = np.concatenate([pos, pos + 1e-4, pos])  # 3 volumes, acquisition order
    rep = g.find_repeats(frames @ [0, 0, 1])
    assert rep.uniform and rep.n_repeats == 3
    np.testing.assert_allclose(rep.unique, 3.0 * np.arange(5), atol=1e-3)
    np.testing.assert_array_equal(rep.index, np.tile(np.arange(5), 3))
    np.testing.assert_array_equal(rep.repeat, np.repeat(np.arange(3), 5))
    uneven = g.find_repeats([0.0, 0.0, 1.0])
    assert not uneven.uniform and uneven.n_repeats is None
    assert len(g.find_repeats([]).unique) == 0


def test_group_stacks_splits_localizers():
    axial = slice_positions((10, 4, 4), (2.0, 1, 1), AXIAL, (0, 0, 0))
    positions = [axial[0], [0, 0, 0], *axial[1:5], [0, 0, 0], *axial[5:], [0, 0, 0], [1, 2, 3]]
    orientations = [AXIAL, SAGITTAL, *[AXIAL] * 4, CORONAL, *[AXIAL] * 5, AXIAL, [np.nan] * 6]
    rows = [4] * 13 + [4]
    rows[12] = 256  # an axial localizer with another matrix
    groups = g.group_stacks(positions, orientations, rows=rows, cols=rows, pixel_spacing=[[1, 1]] * 14)
    as_lists = [list(x) for x in groups]
    assert as_lists[0] == [0, 2, 3, 4, 5, 7, 8, 9, 10, 11]
    assert [1] in as_lists and [6] in as_lists and [12] in as_lists and [13] in as_lists
    # tiny orientation jitter stays in one group; the spacing key splits
    jitter = np.array(AXIAL) + [0, 2e-4, 0, 0, 0, 0]
    assert len(g.group_stacks(axial[:2], [AXIAL, jitter])) == 1
    assert len(g.group_stacks(axial[:2], [AXIAL, AXIAL], pixel_spacing=[[1, 1], [1, 1.1]])) == 2


def test_single_slice():
    co = g.stack_coords([1, 2, 3], SAGITTAL, [0.5, 0.25], 4, 3)
    np.testing.assert_allclose(co["dir_z"], [-1, 0, 0])
    np.testing.assert_allclose(co["z"], [-1.0])
    np.testing.assert_allclose(
        g.positions_from_coords(co["x"], co["y"], co["z"], co["dir_x"], co["dir_y"], co["dir_z"]), [[1, 2, 3]]
    )
    aff = g.affine_from_coords(**co, default_spacing={"z": 3.0})
    np.testing.assert_allclose(aff[:3, 2], [-3, 0, 0])


# --------------------------------------------------------------------------- oracles: highdicom


def _corner_set(aff_cols_fn, shape):
    nz, ny, nx = shape
    pts = []
    for k in (0, nz - 1):
        for j in (0, ny - 1):
            for i in (0, nx - 1):
                pts.append(aff_cols_fn(i, j, k))
    pts = np.round(np.array(pts), 4)
    return pts[np.lexsort(pts.T[::-1])]


def _our_geometry(datasets):
    pos = np.array([d.ImagePositionPatient for d in datasets], float)
    iop = np.array(datasets[0].ImageOrientationPatient, float)
    _, _, n = g.row_col_normal(iop)
    order, _ = g.sort_stack(pos, n)
    d0 = datasets[int(order[0])]
    co = g.stack_coords(d0.ImagePositionPatient, iop, d0.PixelSpacing, d0.Rows, d0.Columns, pos[order])
    return co, g.affine_from_coords(**co)


def _compare_with_highdicom(datasets):
    hd = pytest.importorskip("highdicom")
    vol = hd.get_volume_from_series(datasets)
    co, aff = _our_geometry(datasets)
    shape = (len(co["z"]), len(co["y"]), len(co["x"]))
    assert tuple(vol.spatial_shape) == shape
    hd_aff = vol.affine  # maps (slice, row, column) -> LPS
    ours = _corner_set(lambda i, j, k: (aff @ [i, j, k, 1])[:3], shape)
    theirs = _corner_set(lambda i, j, k: (hd_aff @ [k, j, i, 1])[:3], shape)
    np.testing.assert_allclose(ours, theirs, atol=1e-3)
    # in-plane columns agree exactly (same index meaning); slice axis may be flipped
    np.testing.assert_allclose(aff[:3, 0], hd_aff[:3, 2], atol=1e-6)
    np.testing.assert_allclose(aff[:3, 1], hd_aff[:3, 1], atol=1e-6)
    np.testing.assert_allclose(np.abs(aff[:3, 2]), np.abs(hd_aff[:3, 0]), atol=1e-5)


def test_affine_matches_highdicom_real_ct():
    files = sorted(glob.glob(os.path.join(DATA, "ct", "dcmqi", "ct-3slice", "*.dcm")))
    if len(files) < 2:
        pytest.skip(f"shared CT data not found under {DATA}/ct/dcmqi/ct-3slice")
    pydicom = pytest.importorskip("pydicom")
    datasets = [pydicom.dcmread(f) for f in files]
    _compare_with_highdicom(datasets)


@pytest.mark.parametrize(
    "iop",
    [AXIAL, SAGITTAL, CORONAL, (0.866025, 0.5, 0.0, -0.353553, 0.612372, -0.707107)],
)
def test_affine_matches_highdicom_synthetic(tmp_path, iop):
    pydicom = pytest.importorskip("pydicom")
    from dcmxr.testing.synthetic import write_series

    paths = write_series(tmp_path, shape=(5, 6, 7), spacing=(1.5, 0.8, 0.6), iop=iop, origin=(12.0, -3.0, 40.0))
    _compare_with_highdicom([pydicom.dcmread(p) for p in paths])


def test_real_gantry_tilt():
    files = sorted(glob.glob(os.path.join(DATA, "ct", "dicom2nifti_gantrytilt", "001", "*.dcm")))
    if len(files) < 2:
        pytest.skip(f"gantry-tilt data not found under {DATA}/ct/dicom2nifti_gantrytilt")
    pydicom = pytest.importorskip("pydicom")
    dss = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    pos = np.array([d.ImagePositionPatient for d in dss], float)
    iop = np.array(dss[0].ImageOrientationPatient, float)
    _, _, n = g.row_col_normal(iop)
    order, _ = g.sort_stack(pos, n)
    d, tilt = g.stack_direction(pos[order], n)
    # the table moves along patient z; the image plane is tilted by 14 degrees about x
    np.testing.assert_allclose(d, [0, 0, 1], atol=1e-9)
    assert tilt == pytest.approx(np.degrees(np.arccos(iop[4])), abs=1e-6)
    co = g.stack_coords(pos[order][0], iop, dss[0].PixelSpacing, dss[0].Rows, dss[0].Columns, pos[order])
    assert g.spacing_regularity(co["z"]).regular
    np.testing.assert_allclose(
        g.positions_from_coords(co["x"], co["y"], co["z"], co["dir_x"], co["dir_y"], co["dir_z"]),
        pos[order],
        atol=1e-6,
    )
