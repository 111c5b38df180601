"""Write a float Parametric Map (ADC, Ktrans, T1 ... maps) aligned with a source series.

The map is matched to the source through its coordinates exactly as a SEG
mask is (:func:`dcmxr.export.seg.place_on_source`). Values are stored as
32-bit Float Pixel Data (64-bit Double Float for float64 input), with an
identity Real World Value Mapping whose unit is the UCUM code of the map's
pint units (``attrs["units"]`` or ``units=``) and whose quantity is a coded
concept (:data:`dcmxr.export.codes.QUANTITY_CODES`). highdicom builds the
object; dcmxr adds the Type 2C Laterality of the General Series module that
highdicom leaves out, so the result passes dciodvfy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExportError, missing_dependency
from .codes import coded, quantity_code
from .seg import _as_source, _index, _slabs, _version, _with_zyx, place_on_source, source_datasets

__all__ = ["to_paramap", "ucum_of"]

_AXES = ("z", "y", "x")


def ucum_of(units: Any, argument: str = "units") -> tuple[str, str]:
    """(UCUM code, meaning) of a pint unit string, via :func:`dcmxr.units.pint_to_ucum`.

    Raises
    ------
    ExportError
        When pint cannot parse the unit or it has no UCUM code.
    """
    from ..units import pint_to_ucum

    try:
        return pint_to_ucum(units)
    except Exception as exc:  # pint raises UndefinedUnitError, ValueError, ...
        raise ExportError(f"{argument}: no UCUM code for units {units!r} ({exc})") from exc


def to_paramap(
    pmap: Any,
    source: Any,
    quantity: str | tuple[str, str, str],
    units: str | None = None,
    *,
    path: str | Path | None = None,
    resample: bool = False,
    series_description: str | None = None,
    series_number: int = 400,
    manufacturer: str = "dcmxr",
    label: str | None = None,
) -> Any:
    """Write a float Parametric Map of ``pmap`` aligned with ``source``.

    Parameters
    ----------
    pmap : xarray.DataArray
        Float map, dims ``(z, y, x)`` with dcmxr geometry, on (a subset of)
        the source's voxels. NaN is refused (mask it to a number first).
    source : xarray.DataArray or path(s)
        The series the map was computed from.
    quantity : str or (value, scheme, meaning)
        A name from :data:`dcmxr.export.codes.QUANTITY_CODES` (``"ADC"``,
        ``"Ktrans"``, ``"ve"``, ``"vp"``, ``"CBF"``, ``"CBV"``, ``"MTT"``,
        ``"T1"``, ``"T2"``) or a code triple.
    units : str, optional
        pint units of the values; default ``pmap.attrs["units"]``, then the
        quantity's usual unit.
    path : path, optional
        Where to write the file.
    resample : bool
        Resample a map on another grid onto the source (linear) instead of refusing it.
    series_description, series_number, manufacturer, label
        Identification; ``label`` is the LUT label (default: the quantity name).

    Returns
    -------
    highdicom.pm.ParametricMap
        Also written to ``path`` when given.

    Raises
    ------
    ExportError
        Non-float data, NaN or infinite values, units without a UCUM code,
        an unknown quantity, a map off the source grid.
    """
    import xarray as xr

    try:
        import highdicom as hd
    except ImportError as exc:  # pragma: no cover
        raise missing_dependency("highdicom", "export") from exc
    if not isinstance(pmap, xr.DataArray):
        raise ExportError(f"pmap must be an xarray.DataArray, not {type(pmap).__name__}")
    if pmap.dtype.kind != "f":
        raise ExportError(f"pmap: a Parametric Map is written from float data, got {pmap.dtype}; "
                          f"use .astype('float32')")
    if isinstance(quantity, str):
        qtriple, default_unit = quantity_code(quantity)
        qname = quantity
    elif isinstance(quantity, tuple) and len(quantity) == 3:
        qtriple, default_unit, qname = quantity, None, quantity[2]
    else:
        raise ExportError("quantity must be a name (e.g. 'ADC') or a (value, scheme, meaning) triple")
    if units is None:
        units = pmap.attrs.get("units")
    if units is not None:
        ucum = ucum_of(units)
    elif default_unit is not None:
        from ..units import ucum_to_pint

        ucum = ucum_of(ucum_to_pint(default_unit), "quantity")
        ucum = (default_unit, ucum[1])
    else:
        raise ExportError("units: give the map's units (units=... or attrs['units']) for a custom quantity")
    pmap = _with_zyx(pmap)
    extra = [d for d in pmap.dims if d not in _AXES]
    if extra:
        raise ExportError(f"pmap has extra dims {extra}; select one volume first, e.g. .isel({extra[0]}=0)")
    src = _with_zyx(_as_source(source))
    try:
        place = place_on_source(pmap, src, argument="pmap")
    except ExportError:
        if not resample:
            raise
        pmap = _with_zyx(pmap.dcm.resample_like(src, method="linear", fill_value=0.0))
        place = place_on_source(pmap, src, argument="pmap")
    pmap = pmap.transpose(*_AXES)
    datasets, frames = source_datasets(src, place.z)
    rows, cols = int(src.sizes["y"]), int(src.sizes["x"])
    dtype = np.float64 if pmap.dtype == np.float64 else np.float32
    if frames is None:
        out_z, nz = np.arange(len(place.z)), len(place.z)
    else:
        out_z, nz = np.asarray(frames), int(datasets[0].NumberOfFrames)
    pixels = np.zeros((nz, rows, cols), dtype=dtype)
    yy, xx = _index(place.y), _index(place.x)
    if not (isinstance(yy, slice) and isinstance(xx, slice)):
        yy, xx = np.ix_(place.y, place.x)
    lo, hi = np.inf, -np.inf
    for a, b in _slabs(pmap):
        block = np.asarray(pmap.isel(z=slice(a, b)).values, dtype=dtype)
        if not np.isfinite(block).all():
            raise ExportError("pmap holds NaN or infinite values; a Parametric Map stores numbers only "
                              "(e.g. pmap.fillna(0))")
        lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
        for k in range(b - a):
            pixels[out_z[a + k], yy, xx] = block[k]
    if frames is None:
        order = np.argsort(place.z)
        datasets, pixels = [datasets[i] for i in order], pixels[order]
    if lo == hi:
        hi = lo + 1.0
    rwv = hd.pm.RealWorldValueMapping(
        lut_label=str(label or qname)[:16],
        lut_explanation=str(qtriple[2])[:64],
        unit=coded((ucum[0], "UCUM", ucum[1])),
        value_range=(lo, hi),
        slope=1.0,
        intercept=0.0,
        quantity_definition=coded(qtriple),
    )
    try:
        pm = hd.pm.ParametricMap(
            source_images=datasets,
            pixel_array=pixels,
            series_instance_uid=hd.UID(),
            series_number=int(series_number),
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer=manufacturer,
            manufacturer_model_name="dcmxr",
            software_versions=_version(),
            device_serial_number="0",
            contains_recognizable_visual_features=False,
            real_world_value_mappings=[rwv],
            voi_lut_transformations=[hd.VOILUTTransformation(window_center=(lo + hi) / 2,
                                                             window_width=hi - lo)],
            content_label="MAP",
        )
    except (ValueError, TypeError) as exc:
        raise ExportError(f"highdicom refused the parametric map: {exc}") from exc
    # General Series: Laterality is Type 2C (required, possibly empty, for paired body parts);
    # highdicom omits it. Copy the source's value, or send it empty.
    pm.Laterality = str(datasets[0].get("Laterality", "") or "")
    pm.SeriesDescription = str(series_description or f"{qname} map")[:64]
    if path is not None:
        pm.save_as(str(path), enforce_file_format=True)
    return pm
