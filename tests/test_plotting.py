"""dcmxr.plotting: orthogonal views and overlays render (Agg) and draw the right voxels."""
from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import pytest
import xarray as xr

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import dcmxr  # noqa: E402
from dcmxr.errors import GeometryError  # noqa: E402
from dcmxr.plotting import plot_orthoviews, plot_overlay  # noqa: E402

from _data import data_path  # noqa: E402


@lru_cache(maxsize=None)
def _open(rel: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        da = dcmxr.open_series(data_path(rel))
    return da.isel({d: 0 for d in da.dims if d not in ("z", "y", "x")})


def _panel_array(ax):
    """What the panel shows, turned back to (rows along ax.dcmxr_axes[1], cols along [0])."""
    arr = np.asarray(ax.images[0].get_array())
    return arr


def _expected(da, fixed, idx, ax):
    h, v = ax.dcmxr_axes
    sl = da.isel({fixed: idx[fixed]}).transpose(v, h).values
    # _draw_plane draws with increasing coordinates; dcmxr coordinates already increase
    return sl


@pytest.mark.parametrize("rel", [
    "ct/dcmqi/ct-3slice",
    "mr/dcm_qa/In/Orientation/sag/sagasc36",
    "mr/dcm_qa/In/Orientation/cor/corasc36",
    "mr/dicom2nifti/hitachi/anatomical/001",  # oblique
])
def test_orthoviews_render_and_show_the_requested_voxel(rel, tmp_path):
    da = _open(rel)
    # a world point: the centre of an off-centre voxel, nudged by a third of a voxel
    ijk = np.array([da.sizes["x"] // 3, (2 * da.sizes["y"]) // 3, da.sizes["z"] - 1])
    point = da.dcm.index_to_world(ijk + 0.3)
    fig = plot_orthoviews(da, point)
    expect = {ax: int(v) for ax, v in zip("xyz", np.rint(da.dcm.world_to_index(point)))}
    assert fig.dcmxr_index == expect == dict(zip("xyz", ijk.tolist()))
    np.testing.assert_allclose(fig.dcmxr_point, da.dcm.index_to_world(ijk), atol=1e-9)
    axes = fig.axes[:3]
    assert sorted(ax.dcmxr_plane for ax in axes) == ["x", "y", "z"]
    for ax in axes:
        np.testing.assert_array_equal(_panel_array(ax), _expected(da, ax.dcmxr_plane, expect, ax))
        assert "mm" in ax.get_xlabel() and "mm" in ax.get_ylabel()
        assert ax.get_aspect() == 1.0  # equal mm aspect
        # the crosshair passes through the requested voxel's coordinates
        h, v = ax.dcmxr_axes
        xs = [ln.get_xdata()[0] for ln in ax.lines if ln.get_xdata()[0] == ln.get_xdata()[1]]
        ys = [ln.get_ydata()[0] for ln in ax.lines if ln.get_ydata()[0] == ln.get_ydata()[1]]
        assert np.isclose(xs, float(da[h][expect[h]])).any()
        assert np.isclose(ys, float(da[v][expect[v]])).any()
    out = tmp_path / "ortho.png"
    fig.savefig(out, dpi=60)
    plt.close(fig)
    assert out.exists() and out.stat().st_size > 5000
    w, h = plt.imread(out).shape[1::-1]
    assert w > h > 100


def test_orthoviews_radiological_layout():
    """Sagittal acquisition: panels axial, coronal, sagittal; edge letters are radiological."""
    da = _open("mr/dcm_qa/In/Orientation/sag/sagasc36")
    fig = plot_orthoviews(da)
    titles = [ax.get_title() for ax in fig.axes[:3]]
    assert [t.split(":")[0] for t in titles] == ["axial", "coronal", "sagittal"]
    letters = []
    for ax in fig.axes[:3]:
        txt = {(round(t.get_position()[0], 2), round(t.get_position()[1], 2)): t.get_text() for t in ax.texts}
        letters.append((txt[(0.03, 0.5)], txt[(0.97, 0.5)], txt[(0.5, 0.97)], txt[(0.5, 0.03)]))
    assert letters == [("R", "L", "A", "P"), ("R", "L", "S", "I"), ("A", "P", "S", "I")]
    plt.close(fig)


def test_orthoviews_oblique_labels():
    da = _open("mr/dcm_qa/In/Orientation/ax/axasc35")  # oblique axial
    fig = plot_orthoviews(da)
    labels = " ".join(ax.get_xlabel() + ax.get_ylabel() for ax in fig.axes[:3])
    assert "oblique" in labels and "LPS" in labels
    plt.close(fig)


def test_orthoviews_irregular_spacing_uses_cell_edges():
    da = _open("ct/dcmqi/ct-3slice")
    gap = xr.concat([da.isel(z=[0, 1]), da.isel(z=[2]).assign_coords(z=da.z[2:] + 4.0)], dim="z")
    gap.z.attrs.update(da.z.attrs)
    fig = plot_orthoviews(gap)
    meshes = [c for ax in fig.axes[:3] for c in ax.collections if isinstance(c, matplotlib.collections.QuadMesh)]
    assert len(meshes) == 2  # the two panels containing z
    plt.close(fig)


def test_orthoviews_into_given_axes_and_errors():
    da = _open("ct/dcmqi/ct-3slice")
    fig, axes = plt.subplots(1, 3)
    assert plot_orthoviews(da, axes=axes, cmap="bone", vmin=-200, vmax=400) is fig
    assert fig.axes[0].images[0].get_clim() == (-200, 400)
    plt.close(fig)
    with pytest.raises(GeometryError, match="outside the volume"):
        plot_orthoviews(da, point=da.dcm.index_to_world([0, 0, 10]))
    four = dcmxr.open_series(data_path("mr/dcm_qa/In/Orientation/ax/axasc35"))
    with pytest.raises(GeometryError, match=r"isel\(t=0\)"):
        plot_orthoviews(four)
    with pytest.raises(GeometryError, match="no DICOM geometry"):
        plot_orthoviews(xr.DataArray(np.zeros((2, 2, 2)), dims=("z", "y", "x")))


def test_overlay_render(tmp_path):
    da = _open("ct/dcmqi/ct-3slice")
    mask = da > 300
    fig = plot_overlay(da, mask, alpha=0.5)
    counts = mask.sum(("y", "x")).values
    assert fig.dcmxr_index == {"z": int(np.argmax(counts))}  # default: the slice with most mask
    fig2 = plot_overlay(da, mask, z=float(da.z[1]) + 0.2)
    assert fig2.dcmxr_index == {"z": 1}
    ax = fig2.axes[0]
    np.testing.assert_array_equal(np.asarray(ax.images[0].get_array()), da.isel(z=1).values)
    shown = np.ma.getmaskarray(ax.images[1].get_array())
    np.testing.assert_array_equal(~shown, mask.isel(z=1).values)
    out = tmp_path / "overlay.png"
    fig2.savefig(out, dpi=50)
    assert out.exists() and out.stat().st_size > 5000
    # labels, a numpy mask, and a 2-D slice
    labels = np.zeros(da.shape, dtype=np.uint8)
    labels[:, 100:200, 100:200] = 1
    labels[:, 300:350, 300:350] = 2
    plot_overlay(da, labels, z=float(da.z[0]))
    sl = da.isel(z=2)
    f3 = plot_overlay(sl, mask.isel(z=2))
    assert "mm" in f3.axes[0].get_title()
    plt.close("all")


def test_overlay_errors():
    da = _open("ct/dcmqi/ct-3slice")
    with pytest.raises(GeometryError, match="shape"):
        plot_overlay(da, np.zeros((2, 2, 2)))
    shifted = (da > 0).assign_coords(x=da.x + 1.0)
    shifted.x.attrs.update(da.x.attrs)
    with pytest.raises(GeometryError, match="grids differ along 'x'"):
        plot_overlay(da, shifted)
    with pytest.raises(GeometryError, match="outside the volume"):
        plot_overlay(da, da > 0, z=float(da.z.max()) + 50)


def test_missing_matplotlib(monkeypatch):
    import sys

    from dcmxr.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(MissingDependencyError, match=r"dcmxr\[plot\]"):
        plot_orthoviews(_open("ct/dcmqi/ct-3slice"))
