"""OME-NGFF (OME-Zarr 0.5) metadata for archived images.

``to_zarr(..., layout="ome")`` calls :func:`write_ome_metadata` on each series
group after its ``image`` array is written: the group gets an ``ome``
attribute with one single-level ``multiscales`` entry whose dataset is the
``image`` array, so OME-Zarr readers (ome-zarr-py, napari, ...) open it with
physical units:

* ``axes``: the image dims in order; ``z``/``y``/``x`` are ``space`` axes in
  ``millimeter``, ``t`` is a ``time`` axis (unit from the coordinate when it
  is one OME knows), other leading dims are ``custom`` axes;
* ``coordinateTransformations``: ``scale`` = the mean step of each spatial
  coordinate (1 for others), ``translation`` = its first value (the position
  of voxel 0 *along that axis's direction*);
* OME-NGFF has no rotation: the LPS direction of each axis is kept under
  ``ome.multiscales[0].metadata.dcmxr_direction`` (a vendor key readers
  ignore) and :func:`read_direction` returns it.

NGFF allows at most 5 axes with channels before space; images with a trailing
colour dim ``c`` or more than 5 dims get no OME metadata (a warning says so).
Downsampled pyramid levels are not written (single-resolution multiscales).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..errors import DcmxrWarning
from .archive import _zarr

__all__ = ["ome_metadata", "write_ome_metadata", "read_direction"]

_TIME_UNITS = {"s": "second", "ms": "millisecond", "us": "microsecond", "min": "minute"}


def ome_metadata(image, name: str = "image", path: str = "image") -> dict | None:
    """The OME-NGFF 0.5 ``ome`` attribute for an image DataArray (None when not expressible)."""
    dims = list(image.dims)
    if "c" in dims or len(dims) > 5 or not {"y", "x"} <= set(dims):
        return None
    axes, scale, trans, direction = [], [], [], {}
    for d in dims:
        c = image.coords.get(d)
        if d in ("x", "y", "z"):
            axes.append({"name": d, "type": "space", "unit": "millimeter"})
            vals = np.asarray(c.values, dtype=float) if c is not None else np.arange(image.sizes[d], dtype=float)
            step = float(np.mean(np.diff(vals))) if len(vals) > 1 else 1.0
            scale.append(step if step != 0 else 1.0)
            trans.append(float(vals[0]) if len(vals) else 0.0)
            if c is not None and "direction" in c.attrs:
                direction[d] = [float(v) for v in c.attrs["direction"]]
        elif d == "t":
            unit = _TIME_UNITS.get(str(c.attrs.get("units", "")) if c is not None else "")
            axes.append({"name": d, "type": "time", **({"unit": unit} if unit else {})})
            scale.append(1.0)
            trans.append(0.0)
        else:
            axes.append({"name": d, "type": "custom"})
            scale.append(1.0)
            trans.append(0.0)
    return {"version": "0.5", "multiscales": [{
        "name": name, "axes": axes,
        "datasets": [{"path": path, "coordinateTransformations": [
            {"type": "scale", "scale": scale}, {"type": "translation", "translation": trans}]}],
        "metadata": {"dcmxr_direction": direction, "frame": "LPS"},
    }]}


def write_ome_metadata(store: Any, group: str, image) -> bool:
    """Add the ``ome`` attribute for ``image`` to ``group`` of ``store``.

    Returns
    -------
    bool
        False (with a :class:`~dcmxr.errors.DcmxrWarning`) when the image's
        dims cannot be expressed in OME-NGFF.
    """
    meta = ome_metadata(image, name=group.strip("/").rsplit("/", 1)[-1])
    if meta is None:
        warnings.warn(f"{group}: dims {tuple(image.dims)} have no OME-NGFF form; no OME metadata written",
                      DcmxrWarning, stacklevel=2)
        return False
    g = _zarr().open_group(store, path=group.strip("/"), mode="r+")
    g.attrs["ome"] = meta
    return True


def read_direction(store: Any, group: str) -> dict[str, list[float]]:
    """The LPS direction of each spatial axis stored by :func:`write_ome_metadata`."""
    g = _zarr().open_group(store, path=group.strip("/"), mode="r")
    return dict(g.attrs["ome"]["multiscales"][0]["metadata"]["dcmxr_direction"])
