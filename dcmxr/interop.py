"""Hand dcmxr arrays to highdicom, SimpleITK and nibabel, and take them back.

Index orders (all exact, no resampling):

============== ============================= ====================================
library        array order                   geometry
============== ============================= ====================================
dcmxr          ``(..., z, y, x[, c])``       coords + ``direction`` attrs (LPS);
                                             ``da.dcm.affine`` maps ``[i_x, i_y, i_z, 1]``
highdicom      ``(slice, row, column, *ch)`` ``Volume.affine`` maps
                                             ``[slice, row, column, 1]`` to LPS:
                                             our affine with columns 0..2 reversed
SimpleITK      ``GetArrayFromImage``:        origin, spacing (> 0) and direction
               ``(z, y, x)``; index (x,y,z)  (columns = axis unit vectors), LPS
nibabel        ``(x, y, z, ...)``            RAS affine (``da.dcm.affine_ras``)
============== ============================= ====================================

The ``from_*`` functions return dcmxr's conventions: dims ``("z", "y", "x")``
with increasing coordinates in mm, ``direction`` attrs, and (``canonical=True``)
a right-handed stack, i.e. ``dir_z`` on the side of ``dir_x x dir_y``, as
:func:`dcmxr.open_series` makes it (highdicom's ``get_volume_from_series`` may
stack the other way). Only regular grids convert (irregular spacing raises
:class:`~dcmxr.errors.GeometryError`, naming the axis); arrays whose extra dims
a target cannot hold raise :class:`~dcmxr.errors.ExportError`.

highdicom, SimpleITK and nibabel are imported inside the functions.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from .accessors.spatial import spatial
from .errors import ExportError, GeometryError, missing_dependency
from .geometry.affine import affine_from_coords, lps_to_ras, ras_to_lps
from .geometry.coords import coords_from_affine

__all__ = [
    "to_highdicom_volume",
    "from_highdicom_volume",
    "to_simpleitk",
    "from_simpleitk",
    "to_nibabel",
    "from_nibabel",
]

_SPATIAL = ("z", "y", "x")

#: highdicom channel keyword -> dcmxr dim name (others become snake_case)
_CHANNEL_DIMS = {"RGBColorChannel": "c", "DiffusionBValue": "b", "EchoTime": "echo"}


# ------------------------------------------------------------------ helpers
def _as_volume(da: Any, func: str):
    """Check ``da``; expand scalar spatial coords (a slice) back to length-1 dims."""
    import xarray as xr

    if not isinstance(da, xr.DataArray):
        raise TypeError(f"{func} takes an xarray.DataArray, not {type(da).__name__}")
    spatial(da)  # GeometryError when x/y/z or their directions are missing
    for ax in _SPATIAL:
        if ax not in da.dims:  # a scalar coordinate left by isel(z=k)
            attrs = dict(da[ax].attrs)
            da = da.expand_dims(ax, axis=list(da.dims).index("y") if ax == "z" and "y" in da.dims else 0)
            da[ax].attrs.update(attrs)
    return da


def _affine_lps(da: Any) -> np.ndarray:
    s = spatial(da)
    return affine_from_coords(*s.as_args(), default_spacing=s.default_spacing)


def _other_dims(da: Any, allowed: tuple[str, ...], func: str, hint: str) -> list[str]:
    others = [d for d in da.dims if d not in _SPATIAL]
    bad = [d for d in others if d not in allowed]
    if bad:
        sel = ", ".join(f"{d}=0" for d in bad)
        raise ExportError(
            f"{func} takes a ({'z, y, x' + (', ' + ', '.join(allowed) if allowed else '')}) array; "
            f"this one also has dims {bad} ({hint}); select one volume first, e.g. .isel({sel})"
        )
    return others


def _values(da: Any) -> np.ndarray:
    arr = np.asarray(da.values)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.dtype.kind not in "biuf":
        raise ExportError(f"cannot convert an array of dtype {arr.dtype} (numbers only)")
    return arr


def _canonical_z(arr: np.ndarray, coords: dict, z_axis: int) -> tuple[np.ndarray, dict]:
    """Flip the stack so that dir_z lies on the side of dir_x x dir_y (dcmxr's stacking)."""
    normal = np.cross(coords["dir_x"], coords["dir_y"])
    if float(np.dot(normal, coords["dir_z"])) < 0:
        arr = np.flip(arr, axis=z_axis)
        coords = dict(coords, z=-coords["z"][::-1].copy(), dir_z=-coords["dir_z"])
    return arr, coords


def _build(arr: np.ndarray, coords: dict, lead: list[tuple[str, Any, dict]], trail: list[tuple[str, Any, dict]],
           attrs: dict, name: str | None):
    """DataArray with dims (*lead, z, y, x, *trail) and dcmxr geometry coords."""
    import xarray as xr

    cdict: dict[str, Any] = {}
    for dim, vals, a in lead + trail:
        if vals is not None:
            cdict[dim] = xr.Variable(dim, np.asarray(vals), attrs=a)
    for ax in _SPATIAL:
        cdict[ax] = xr.Variable(ax, np.asarray(coords[ax], dtype=np.float64), attrs={
            "units": "mm",
            "direction": [float(v) for v in coords[f"dir_{ax}"]],
            "long_name": f"{ax} position along its direction (LPS)",
        })
    dims = [d for d, _, _ in lead] + list(_SPATIAL) + [d for d, _, _ in trail]
    return xr.DataArray(arr, dims=dims, coords=cdict, attrs=attrs, name=name)


def _snake(keyword: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", keyword).lower()


# ------------------------------------------------------------------ highdicom
def to_highdicom_volume(da: Any):
    """A :class:`highdicom.Volume` with the same voxels and geometry.

    Parameters
    ----------
    da : xarray.DataArray
        dims ``(*other, z, y, x[, c])`` on a regular, untilted grid. ``c`` becomes
        highdicom's RGB channel; every other dim becomes a custom channel dim
        named after it (its coordinate values are the channel values),
        trailing the spatial dims in the same order.

    Returns
    -------
    highdicom.Volume
        ``array`` in ``(z, y, x, *channels)`` order, ``affine`` = ``da.dcm.affine``
        with its three index columns reversed (highdicom maps
        ``[slice, row, column, 1]``), coordinate system PATIENT and the
        array's ``frame_of_reference_uid``.

    Raises
    ------
    GeometryError
        Irregular spacing, or a tilted (non-orthogonal) stack highdicom cannot hold.
    MissingDependencyError
        highdicom is not installed (``dcmxr[export]``).
    """
    try:
        import highdicom as hd
    except ImportError as exc:  # pragma: no cover
        raise missing_dependency("highdicom", "export") from exc

    da = _as_volume(da, "to_highdicom_volume")
    aff = _affine_lps(da)
    cols = aff[:3, :3] / np.linalg.norm(aff[:3, :3], axis=0)
    off = np.abs(cols.T @ cols - np.eye(3)).max()
    if off > 1e-4:
        raise GeometryError(
            f"the grid axes are not orthogonal (|cos| up to {off:.3g}; a gantry-tilted stack?): "
            f"highdicom.Volume needs an orthogonal affine; resample onto an orthogonal grid first"
        )
    others = [d for d in da.dims if d not in _SPATIAL]
    order = [d for d in others if d != "c"] + (["c"] if "c" in others else [])
    arr = _values(da.transpose(*_SPATIAL, *order))
    channels: dict = {}
    for d in order:
        if d == "c":
            vals = [str(v) for v in np.asarray(da["c"].values)] if "c" in da.coords else list("RGB")
            if sorted(vals) != ["B", "G", "R"]:
                raise ExportError(f"dim 'c' must hold R, G, B for highdicom, got {vals}")
            channels[hd.volume.RGB_COLOR_CHANNEL_DESCRIPTOR] = [hd.RGBColorChannels[v] for v in vals]
            continue
        vals = np.asarray(da[d].values) if d in da.coords else np.arange(da.sizes[d])
        if vals.dtype.kind == "f":
            vtype, vals = float, [float(v) for v in vals]
        elif vals.dtype.kind in "iu":
            vtype, vals = int, [int(v) for v in vals]
        else:
            vtype, vals = str, [str(v) for v in vals]
        channels[hd.ChannelDescriptor(d, is_custom=True, value_type=vtype)] = vals
    aff_hd = aff[:, [2, 1, 0, 3]]
    return hd.Volume(
        arr,
        aff_hd,
        coordinate_system="PATIENT",
        frame_of_reference_uid=da.attrs.get("frame_of_reference_uid"),
        channels=channels or None,
    )


def from_highdicom_volume(vol: Any, *, name: str | None = None, canonical: bool = True):
    """A dcmxr-convention DataArray from a :class:`highdicom.Volume`.

    Parameters
    ----------
    vol : highdicom.Volume
        In the PATIENT coordinate system.
    name : str, optional
        Name of the DataArray.
    canonical : bool
        Reverse the slice axis when highdicom stacks against ``dir_x x dir_y``,
        so the result matches :func:`dcmxr.open_series` (default True).

    Returns
    -------
    xarray.DataArray
        dims ``(*channels, z, y, x[, c])``: channel dims lead (custom ones keep
        their name; RGB becomes a trailing ``c``; DICOM keywords become
        snake_case, ``DiffusionBValue`` -> ``b``).

    Raises
    ------
    GeometryError
        When the volume is not in the PATIENT frame.
    """
    try:
        import highdicom as hd  # noqa: F401
    except ImportError as exc:  # pragma: no cover
        raise missing_dependency("highdicom", "export") from exc
    cs = getattr(vol.coordinate_system, "name", str(vol.coordinate_system))
    if str(cs).upper() != "PATIENT":
        raise GeometryError(f"only PATIENT-frame volumes convert (this one is {cs}); slides are not stacks")
    arr = np.asarray(vol.array)
    aff = np.asarray(vol.affine, dtype=np.float64)[:, [2, 1, 0, 3]]
    coords = coords_from_affine(aff, vol.spatial_shape)
    if canonical:
        arr, coords = _canonical_z(arr, coords, 0)
    lead, trail = [], []
    descs = list(vol.channel_descriptors)
    src_order = []
    for k, desc in enumerate(descs):
        kw = desc.keyword
        dim = _CHANNEL_DIMS.get(kw, kw if desc.is_custom else _snake(kw))
        vals = vol.get_channel_values(desc)
        if dim == "c":
            vals = [getattr(v, "value", v) for v in vals]
            trail.append((dim, vals, {}))
        else:
            vals = [getattr(v, "value", v) for v in vals]
            lead.append((dim, vals, {"units": "s"} if dim == "t" else {}))
        src_order.append(dim)
    # array is (z, y, x, *channels): move non-c channels to the front
    lead_axes = [3 + src_order.index(d) for d, _, _ in lead]
    trail_axes = [3 + src_order.index(d) for d, _, _ in trail]
    arr = np.transpose(arr, lead_axes + [0, 1, 2] + trail_axes)
    attrs = {}
    if vol.frame_of_reference_uid:
        attrs["frame_of_reference_uid"] = str(vol.frame_of_reference_uid)
    return _build(arr, coords, lead, trail, attrs, name)


# ------------------------------------------------------------------ SimpleITK
def to_simpleitk(da: Any):
    """A 3-D :class:`SimpleITK.Image` with the same voxels and geometry (LPS).

    Parameters
    ----------
    da : xarray.DataArray
        dims ``(z, y, x)`` (or ``(z, y, x, c)``: a vector image) on a regular
        grid; a 2-D slice with a scalar ``z`` becomes a one-slice volume.

    Returns
    -------
    SimpleITK.Image
        Size ``(nx, ny, nz)`` (ITK index order x, y, z); origin = LPS of voxel
        (0, 0, 0); spacing = |steps|; direction columns = the axis directions,
        negated for a descending coordinate (so spacing stays positive). A
        tilted stack keeps its exact, non-orthogonal direction matrix.

    Raises
    ------
    ExportError
        Other dims (``t``, ``echo``, ...): select one volume first.
    GeometryError
        Irregular spacing.
    """
    try:
        import SimpleITK as sitk
    except ImportError as exc:  # pragma: no cover
        raise missing_dependency("SimpleITK", "itk") from exc
    da = _as_volume(da, "to_simpleitk")
    others = _other_dims(da, ("c",), "to_simpleitk", "SimpleITK images here are 3-D")
    aff = _affine_lps(da)
    arr = _values(da.transpose(*_SPATIAL, *others))
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr), isVector=bool(others))
    steps = np.linalg.norm(aff[:3, :3], axis=0)
    img.SetSpacing([float(v) for v in steps])
    img.SetOrigin([float(v) for v in aff[:3, 3]])
    img.SetDirection([float(v) for v in (aff[:3, :3] / steps).ravel()])
    for key, attr in (("0020|0052", "frame_of_reference_uid"), ("0020|000e", "series_instance_uid"),
                      ("0008|0060", "modality")):
        if attr in da.attrs:
            img.SetMetaData(key, str(da.attrs[attr]))
    return img


def from_simpleitk(img: Any, *, name: str | None = None, canonical: bool = True):
    """A dcmxr-convention DataArray from a 3-D :class:`SimpleITK.Image`.

    Parameters
    ----------
    img : SimpleITK.Image
        Three-dimensional; a vector pixel type becomes a trailing ``c`` dim.
    name : str, optional
    canonical : bool
        Reverse the slice axis if it points against ``dir_x x dir_y`` (default True).

    Returns
    -------
    xarray.DataArray
        dims ``("z", "y", "x"[, "c"])``, increasing coordinates in mm.

    Raises
    ------
    GeometryError
        When the image is not 3-D.
    """
    try:
        import SimpleITK as sitk
    except ImportError as exc:  # pragma: no cover
        raise missing_dependency("SimpleITK", "itk") from exc
    if img.GetDimension() != 3:
        raise GeometryError(f"from_simpleitk takes a 3-D image, this one is {img.GetDimension()}-D")
    arr = sitk.GetArrayFromImage(img)
    direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(3, 3)
    aff = np.eye(4)
    aff[:3, :3] = direction * np.asarray(img.GetSpacing(), dtype=np.float64)
    aff[:3, 3] = img.GetOrigin()
    coords = coords_from_affine(aff, arr.shape[:3])
    if canonical:
        arr, coords = _canonical_z(arr, coords, 0)
    trail = []
    if arr.ndim == 4:
        n = arr.shape[3]
        trail = [("c", list("RGB") if n == 3 else list(range(n)), {})]
    attrs = {}
    if img.HasMetaDataKey("0020|0052"):
        attrs["frame_of_reference_uid"] = img.GetMetaData("0020|0052").strip()
    return _build(arr, coords, [], trail, attrs, name)


# ------------------------------------------------------------------ nibabel
def to_nibabel(da: Any):
    """A :class:`nibabel.Nifti1Image` with the RAS affine (``da.dcm.affine_ras``).

    Parameters
    ----------
    da : xarray.DataArray
        dims ``(*other, z, y, x)`` on a regular grid. Other dims follow x, y, z
        in their order (``("t", "z", "y", "x")`` -> a 4-D ``(x, y, z, t)`` image
        whose 4th zoom is the ``t`` step in seconds when ``t`` is regular).

    Returns
    -------
    nibabel.Nifti1Image
        Data ``(x, y, z, ...)``; sform and qform = the RAS affine (code 1,
        scanner); xyzt units mm / s. int64 data is stored as int32 when it fits.

    Raises
    ------
    GeometryError
        Irregular spacing.
    """
    try:
        import nibabel as nib
    except ImportError as exc:  # pragma: no cover
        raise missing_dependency("nibabel", "export") from exc
    da = _as_volume(da, "to_nibabel")
    if "c" in da.dims:
        raise ExportError("to_nibabel does not write colour (dim 'c'); convert to grey or select a channel")
    others = [d for d in da.dims if d not in _SPATIAL]
    arr = _values(da.transpose("x", "y", "z", *others))
    if arr.dtype == np.int64:
        if arr.size == 0 or (arr.min() >= np.iinfo(np.int32).min and arr.max() <= np.iinfo(np.int32).max):
            arr = arr.astype(np.int32)
        else:
            raise ExportError("int64 values outside the int32 range do not fit a portable NIfTI")
    ras = lps_to_ras(_affine_lps(da))
    img = nib.Nifti1Image(arr, ras)
    # header sform/qform hold float32 (the NIfTI format); img.affine keeps float64
    img.set_sform(ras, code=1, update_affine=False)
    img.set_qform(ras, code=1, update_affine=False)
    zooms = list(img.header.get_zooms())
    if others and others[0] == "t" and da.sizes["t"] > 1:
        tv = np.asarray(da["t"].values, dtype=np.float64)
        steps = np.diff(tv)
        if np.allclose(steps, steps.mean(), rtol=1e-3, atol=1e-3):
            zooms[3] = float(steps.mean())
    img.header.set_zooms(zooms)
    img.header.set_xyzt_units("mm", "sec")
    return img


def from_nibabel(img: Any, *, name: str | None = None, canonical: bool = True):
    """A dcmxr-convention DataArray from a nibabel spatial image (RAS affine -> LPS coords).

    Parameters
    ----------
    img : nibabel.Nifti1Image (or any nibabel SpatialImage)
    name : str, optional
    canonical : bool
        Reverse the slice axis if it points against ``dir_x x dir_y`` (default True).

    Returns
    -------
    xarray.DataArray
        dims ``(..., z, y, x)``: a 4th image axis becomes ``t`` (coords = index x
        the 4th zoom, units s), further axes ``dim4``, ``dim5`` ...
    """
    try:
        import nibabel  # noqa: F401
    except ImportError as exc:  # pragma: no cover
        raise missing_dependency("nibabel", "export") from exc
    data = np.asanyarray(img.dataobj)
    if data.ndim < 3:
        raise GeometryError(f"from_nibabel takes a 3-D or higher image, this one is {data.ndim}-D")
    lps = ras_to_lps(np.asarray(img.affine, dtype=np.float64))
    nx, ny, nz = data.shape[:3]
    coords = coords_from_affine(lps, (nz, ny, nx))
    extra = data.ndim - 3
    arr = np.transpose(data, list(range(3, data.ndim)) + [2, 1, 0])
    # arr dims: (*extra in file order, z, y, x)
    if canonical:
        arr, coords = _canonical_z(arr, coords, extra)
    lead = []
    zooms = img.header.get_zooms()
    for k in range(extra):
        n = data.shape[3 + k]
        if k == 0:
            step = float(zooms[3]) if len(zooms) > 3 and zooms[3] else 1.0
            lead.append(("t", np.arange(n) * step, {"units": "s"}))
        else:
            lead.append((f"dim{3 + k}", np.arange(n), {}))
    return _build(np.ascontiguousarray(arr), coords, lead, [], {}, name)
