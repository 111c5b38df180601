"""Quick looks with matplotlib: orthogonal views and mask overlays, in mm.

What is drawn
-------------
The three panels of :func:`plot_orthoviews` are the array's own **index
planes** through one voxel: the ``z`` plane (``x`` across, ``y`` down/up), the
``y`` plane (``x`` across, ``z`` up) and the ``x`` plane (``y`` across, ``z``
up). Nothing is resampled, so every drawn pixel is a stored voxel; for an
axis-aligned acquisition these are exactly the axial, coronal and sagittal
planes, and each panel's title names the patient plane nearest to it
("axial", "coronal", "sagittal", or "oblique ... ~axial").

Axes are labelled in mm with the coordinate values (positions *along each
axis direction*, the dcmxr convention), and drawn with equal aspect, so
anisotropic voxels have their true shape. When an axis is oblique its label
says so and gives its LPS direction. Each panel is turned the way radiology
displays it, from the axis directions: patient Left on the viewer's right
(axial, coronal), Anterior at the top of axial views and on the left of
sagittal ones, Superior up; edge letters (``R``/``L``, ``A``/``P``,
``S``/``I``) show the result.

A gantry-tilted stack is drawn in its index planes with its along-axis
coordinates (the ``y``/``z`` panels are then sheared views, labelled as such).

matplotlib is imported inside the functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .accessors.spatial import spatial
from .errors import GeometryError, missing_dependency
from .geometry.affine import index_to_world, world_to_index

__all__ = ["plot_orthoviews", "plot_overlay"]

_LETTERS = (("L", "R"), ("P", "A"), ("S", "I"))
_PLANE_OF_NORMAL = {0: "sagittal", 1: "coronal", 2: "axial"}


def _plt():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover
        raise missing_dependency("matplotlib", "plot") from exc
    return plt


def _letter(v: np.ndarray) -> str:
    k = int(np.argmax(np.abs(v)))
    return _LETTERS[k][0 if v[k] >= 0 else 1]


def _check_volume(da: Any, func: str):
    import xarray as xr

    if not isinstance(da, xr.DataArray):
        raise TypeError(f"{func} takes an xarray.DataArray, not {type(da).__name__}")
    s = spatial(da)  # GeometryError without geometry
    extra = [d for d in da.dims if d not in ("z", "y", "x")]
    if extra:
        sel = ", ".join(f"{d}=0" for d in extra)
        raise GeometryError(
            f"{func} draws one 3-D volume; this array also has dims {extra}: select one first, "
            f"e.g. .isel({sel})"
        )
    return s


def _edges(c: np.ndarray) -> np.ndarray:
    """Cell edges around (possibly uneven) increasing centres."""
    if len(c) == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]])


def _regular(c: np.ndarray) -> bool:
    if len(c) < 3:
        return True
    d = np.diff(c)
    return bool(np.allclose(d, d.mean(), rtol=1e-3, atol=1e-4))


def _axis_label(name: str, direction: np.ndarray) -> str:
    d = np.asarray(direction, dtype=float)
    if np.max(np.abs(d)) >= 1 - 1e-3:
        return f"{name} (mm, towards {_letter(d)})"
    return f"{name} (mm along [{d[0]:.2f}, {d[1]:.2f}, {d[2]:.2f}] LPS, oblique)"


def _draw_plane(ax, img: np.ndarray, a: str, ca: np.ndarray, da_: np.ndarray, b: str, cb: np.ndarray,
                db: np.ndarray, imkw: dict, overlay: np.ndarray | None = None,
                overlay_kw: dict | None = None, contour: bool = False) -> tuple[str, str]:
    """Draw ``img`` (rows along axis ``b``, columns along axis ``a``) in mm, the radiological way.

    The axis nearest patient L/R goes across when there is one (axial, coronal views),
    else the one nearest A/P (sagittal); world L and P point right, S points up,
    otherwise P points down. Returns the (horizontal, vertical) axis names.
    """
    ka, kb = int(np.argmax(np.abs(da_))), int(np.argmax(np.abs(db)))
    if ka > kb:  # put the axis nearest L (then P) across
        img, (a, ca, da_), (b, cb, db) = img.T, (b, cb, db), (a, ca, da_)
        overlay = None if overlay is None else overlay.T
    h, v, hdir, vdir = np.asarray(ca, dtype=float), np.asarray(cb, dtype=float), np.asarray(da_), np.asarray(db)
    if len(h) > 1 and h[-1] < h[0]:  # draw with increasing coordinates
        h, img = h[::-1], img[:, ::-1]
        overlay = None if overlay is None else overlay[:, ::-1]
    if len(v) > 1 and v[-1] < v[0]:
        v, img = v[::-1], img[::-1, :]
        overlay = None if overlay is None else overlay[::-1, :]
    he, ve = _edges(h), _edges(v)
    layers = [(img, imkw)] + ([(overlay, overlay_kw or {})] if overlay is not None else [])
    for arr, kw in layers:
        if _regular(h) and _regular(v):
            ax.imshow(arr, origin="lower", extent=(he[0], he[-1], ve[0], ve[-1]),
                      interpolation="nearest", **kw)
        else:
            ax.pcolormesh(he, ve, arr, shading="flat",
                          **{k: val for k, val in kw.items() if k not in ("aspect", "interpolation")})
    if contour and overlay is not None and np.ma.count(overlay):
        ax.contour(h, v, np.ma.filled(overlay, 0) != 0, levels=[0.5], colors="red", linewidths=0.8)
    ax.set_aspect("equal")
    ax.set_xlim(he[0], he[-1])
    ax.set_ylim(ve[0], ve[-1])
    hk = int(np.argmax(np.abs(hdir)))
    flip_h = hdir[hk] < 0
    vk = int(np.argmax(np.abs(vdir)))
    flip_v = (vdir[vk] < 0) if vk == 2 else (vdir[vk] > 0)
    if flip_h:
        ax.invert_xaxis()
    if flip_v:
        ax.invert_yaxis()
    right = -hdir if flip_h else hdir
    top = -vdir if flip_v else vdir
    ax.set_xlabel(_axis_label(a, hdir))
    ax.set_ylabel(_axis_label(b, vdir))
    style = dict(transform=ax.transAxes, color="yellow", fontsize=10, fontweight="bold",
                 ha="center", va="center")
    ax.text(0.97, 0.5, _letter(right), **style)
    ax.text(0.03, 0.5, _letter(-right), **style)
    ax.text(0.5, 0.97, _letter(top), **style)
    ax.text(0.5, 0.03, _letter(-top), **style)
    ax.dcmxr_axes = (a, b)
    return a, b


def _plane_name(n: np.ndarray) -> str:
    n = np.asarray(n, dtype=float)
    n = n / np.linalg.norm(n)
    k = int(np.argmax(np.abs(n)))
    name = _PLANE_OF_NORMAL[k]
    return name if abs(n[k]) >= 1 - 1e-3 else f"oblique ~{name}"


def _window(slices: list[np.ndarray], kw: dict) -> dict:
    imkw = dict(kw)
    imkw.setdefault("cmap", "gray")
    if "vmin" not in imkw or "vmax" not in imkw:
        vals = np.concatenate([np.ravel(s) for s in slices]).astype(float)
        vals = vals[np.isfinite(vals)]
        lo, hi = (np.percentile(vals, [1, 99]) if vals.size else (0.0, 1.0))
        if hi <= lo:
            lo, hi = (float(vals.min()), float(vals.max())) if vals.size else (0.0, 1.0)
            if hi <= lo:
                hi = lo + 1
        imkw.setdefault("vmin", float(lo))
        imkw.setdefault("vmax", float(hi))
    return imkw


def plot_orthoviews(da: Any, point: Any = None, *, axes: Any = None, crosshair: bool = True, **kw: Any):
    """Three orthogonal index planes of a 3-D volume through a world point.

    Parameters
    ----------
    da : xarray.DataArray
        dims ``("z", "y", "x")`` (select other dims first) with dcmxr geometry;
        irregular spacing is fine (drawn with true cell sizes).
    point : sequence of 3 float, optional
        LPS position in mm. The planes go through the voxel nearest to it.
        Default: the voxel at the centre of the array.
    axes : sequence of 3 matplotlib Axes, optional
        Where to draw the three planes; default a new 1x3 figure. Panels go
        axial, coronal, sagittal (nearest patient planes) from left to right,
        or ``z``, ``y``, ``x`` planes when two are nearest the same patient plane;
        ``fig.dcmxr_planes`` lists the fixed dim of each panel.
    crosshair : bool
        Draw lines through the chosen voxel.
    **kw
        Passed to ``imshow`` (``cmap``, ``vmin``, ``vmax``, ...). The default
        window is the 1st-99th percentile of the three planes.

    Returns
    -------
    matplotlib.figure.Figure
        With ``fig.dcmxr_index = {"x": i, "y": j, "z": k}`` (the voxel drawn),
        ``fig.dcmxr_point`` (its LPS position, mm) and ``fig.dcmxr_planes``; each
        panel Axes has ``dcmxr_plane`` (its fixed dim) and ``dcmxr_axes``
        (the dims drawn across and up).

    Raises
    ------
    GeometryError
        No geometry, extra dims, or a point outside the volume.
    """
    plt = _plt()
    s = _check_volume(da, "plot_orthoviews")
    if da.ndim != 3:
        raise GeometryError("plot_orthoviews needs a 3-D (z, y, x) volume; a 2-D slice: use plot_overlay")
    n = {ax: da.sizes[ax] for ax in ("x", "y", "z")}
    args = s.as_args()
    if point is None:
        idx = np.array([(n["x"] - 1) // 2, (n["y"] - 1) // 2, (n["z"] - 1) // 2], dtype=int)
    else:
        p = np.asarray(point, dtype=float).reshape(3)
        frac = world_to_index(p, *args, default_spacing=s.default_spacing)
        sizes = np.array([n["x"], n["y"], n["z"]])
        if np.any(frac < -0.5) or np.any(frac > sizes - 0.5):
            raise GeometryError(
                f"point {p.tolist()} (LPS mm) lies outside the volume: fractional index (i_x, i_y, i_z) = "
                f"{np.round(frac, 2).tolist()} for shape (x, y, z) = {sizes.tolist()}"
            )
        idx = np.clip(np.rint(frac), 0, sizes - 1).astype(int)
    i, j, k = (int(v) for v in idx)
    dirs = dict(zip("xyz", s.directions))
    cx, cy, cz = (np.asarray(da[a].values, dtype=float) for a in ("x", "y", "z"))

    # three planes (computed lazily: only these slices are read)
    pz = np.asarray(da.isel(z=k).transpose("y", "x").values)
    py = np.asarray(da.isel(y=j).transpose("z", "x").values)
    px = np.asarray(da.isel(x=i).transpose("z", "y").values)
    imkw = _window([pz, py, px], kw)

    # panels: (fixed dim, image, (a, coord, dir), (b, coord, dir)); image rows along b
    panels = [
        ("z", pz, ("x", cx, dirs["x"]), ("y", cy, dirs["y"])),
        ("y", py, ("x", cx, dirs["x"]), ("z", cz, dirs["z"])),
        ("x", px, ("y", cy, dirs["y"]), ("z", cz, dirs["z"])),
    ]
    normals = {p[0]: np.cross(p[2][2], p[3][2]) for p in panels}
    names = {d: _plane_name(nrm) for d, nrm in normals.items()}
    order = {"axial": 0, "coronal": 1, "sagittal": 2}
    keys = [order[names[d].split("~")[-1]] for d in "zyx"]
    if len(set(keys)) == 3:  # axial, coronal, sagittal from left to right
        panels.sort(key=lambda p: order[names[p[0]].split("~")[-1]])
    if axes is None:
        widths = []
        for _, _, (a, ca, da_), (b, cb, db) in panels:
            if np.argmax(np.abs(da_)) > np.argmax(np.abs(db)):  # _draw_plane swaps them
                ca, cb = cb, ca
            widths.append(min(max((np.ptp(ca) + 1) / (np.ptp(cb) + 1), 0.3), 3.0))
        fig, axes = plt.subplots(1, 3, figsize=(4.0 * sum(widths) + 1.2, 4.6),
                                 gridspec_kw={"width_ratios": widths}, constrained_layout=True)
    else:
        axes = list(axes)
        if len(axes) != 3:
            raise ValueError(f"axes must hold 3 matplotlib Axes, got {len(axes)}")
        fig = axes[0].figure
    value = {"x": cx[i], "y": cy[j], "z": cz[k]}
    index = {"x": i, "y": j, "z": k}
    normal = np.cross(dirs["x"], dirs["y"])
    tilt = abs(float(np.dot(normal / np.linalg.norm(normal), dirs["z"]))) < 1 - 1e-3
    for axis, (fixed, img, (a, ca, da_), (b, cb, db)) in zip(axes, panels):
        hname, vname = _draw_plane(axis, img, a, ca, da_, b, cb, db, imkw)
        sheared = " (sheared: tilted stack)" if tilt and fixed != "z" else ""
        letter = {"x": "i", "y": "j", "z": "k"}[fixed]
        axis.set_title(f"{names[fixed]}: {fixed} = {value[fixed]:.1f} mm ({letter}={index[fixed]}){sheared}")
        axis.dcmxr_plane = fixed
        if crosshair:
            line = dict(color="cyan", lw=0.6, alpha=0.8)
            axis.axvline(value[hname], **line)
            axis.axhline(value[vname], **line)
    world = index_to_world([i, j, k], *args, default_spacing=s.default_spacing)
    name = da.name or da.attrs.get("series_description") or ""
    units = da.attrs.get("units")
    fig.suptitle(f"{name}{' [' + units + ']' if units else ''}  at LPS "
                 f"({world[0]:.1f}, {world[1]:.1f}, {world[2]:.1f}) mm".strip())
    fig.dcmxr_index = {"x": i, "y": j, "z": k}
    fig.dcmxr_point = world
    fig.dcmxr_planes = [p[0] for p in panels]
    return fig


def _mask_on_grid(da: Any, mask: Any) -> np.ndarray:
    import xarray as xr

    if isinstance(mask, xr.DataArray):
        for ax in ("z", "y", "x"):
            if ax in mask.coords and ax in da.coords:
                a = np.atleast_1d(np.asarray(mask[ax].values, dtype=float))
                b = np.atleast_1d(np.asarray(da[ax].values, dtype=float))
                da_dir, m_dir = da[ax].attrs.get("direction"), mask[ax].attrs.get("direction")
                same_dir = da_dir is None or m_dir is None or np.allclose(da_dir, m_dir, atol=1e-4)
                if a.shape != b.shape or not np.allclose(a, b, atol=1e-3) or not same_dir:
                    raise GeometryError(
                        f"mask and image grids differ along {ax!r}; resample the mask onto the image grid "
                        f"(e.g. mask.interp_like(image, method='nearest'))"
                    )
        dims = [d for d in da.dims]
        if set(mask.dims) != set(dims):
            raise GeometryError(f"mask dims {mask.dims} differ from image dims {da.dims}")
        return np.asarray(mask.transpose(*dims).values)
    m = np.asarray(mask)
    if m.shape != da.shape:
        raise GeometryError(f"mask shape {m.shape} differs from image shape {da.shape} (dims {da.dims})")
    return m


def plot_overlay(da: Any, mask: Any, *, alpha: float = 0.4, z: float | None = None, ax: Any = None,
                 mask_cmap: Any = None, contour: bool = True, **kw: Any):
    """One slice with a mask (or label map) drawn over it.

    Parameters
    ----------
    da : xarray.DataArray
        ``("z", "y", "x")`` volume, or a ``("y", "x")`` slice keeping a scalar ``z``.
    mask : xarray.DataArray or numpy.ndarray
        Same grid as ``da`` (a DataArray's coords are checked); non-zero voxels
        are drawn, integer labels each in their own colour.
    alpha : float
        Opacity of the filled mask.
    z : float, optional
        The slice, as a ``z`` coordinate value in mm (the nearest slice is
        drawn). Default: the slice with the most mask voxels (the middle one
        when the mask is empty).
    ax : matplotlib Axes, optional
    mask_cmap : colormap, optional
        Default ``"autumn"`` for a binary mask, ``"tab10"`` for labels.
    contour : bool
        Also outline the mask.
    **kw
        Passed to the image's ``imshow`` (``cmap``, ``vmin``, ``vmax``, ...).

    Returns
    -------
    matplotlib.figure.Figure
        With ``fig.dcmxr_index = {"z": k}``.

    Raises
    ------
    GeometryError
        Grids differ, extra dims, or ``z`` beyond the volume.
    """
    plt = _plt()
    s = _check_volume(da, "plot_overlay")
    m = _mask_on_grid(da, mask)
    if "z" in da.dims:
        m3 = np.moveaxis(m, list(da.dims).index("z"), 0)
        cz = np.asarray(da["z"].values, dtype=float)
        if z is None:
            area = np.count_nonzero(m3.reshape(m3.shape[0], -1), axis=1)
            k = int(np.argmax(area)) if area.any() else (len(cz) - 1) // 2
        else:
            k = int(np.argmin(np.abs(cz - float(z))))
            step = np.min(np.abs(np.diff(cz))) if len(cz) > 1 else s.default_spacing["z"]
            if abs(cz[k] - float(z)) > step:
                raise GeometryError(f"z = {z} mm is outside the volume (z runs {cz.min():.2f} to {cz.max():.2f} mm)")
        img = np.asarray(da.isel(z=k).transpose("y", "x").values)
        msl = m3[k] if [d for d in da.dims if d != "z"] == ["y", "x"] else m3[k].T
        zval = cz[k]
    else:
        k = 0
        img = np.asarray(da.transpose("y", "x").values)
        msl = m if list(da.dims) == ["y", "x"] else m.T
        zval = float(np.atleast_1d(da["z"].values)[0])
    imkw = _window([img], kw)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 6), constrained_layout=True)
    else:
        fig = ax.figure
    dirs = dict(zip("xyz", s.directions))
    cx, cy = (np.asarray(da[a].values, dtype=float) for a in ("x", "y"))
    labels = np.unique(msl[msl != 0])
    binary = labels.size <= 1
    if binary:
        layer = np.ma.masked_where(msl == 0, np.ones(msl.shape))
        over = {"cmap": mask_cmap or "autumn", "vmin": 0.0, "vmax": 1.0}
    else:
        layer = np.ma.masked_where(msl == 0, msl.astype(float))
        over = {"cmap": mask_cmap or "tab10", "vmin": float(labels.min()), "vmax": float(labels.max())}
    over["alpha"] = alpha
    _draw_plane(ax, img, "x", cx, dirs["x"], "y", cy, dirs["y"], imkw, overlay=layer, overlay_kw=over,
                contour=contour)
    ax.set_title(f"{_plane_name(np.cross(dirs['x'], dirs['y']))}: z = {zval:.1f} mm (k={k}), "
                 f"{int(np.count_nonzero(msl))} mask voxels")
    fig.dcmxr_index = {"z": k}
    return fig
