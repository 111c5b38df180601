"""The ``.dcm`` accessor on DataArray and Dataset: thin and stateless.

Every property is computed from the object's coordinates on each call (like
cf-xarray and pint-xarray, the accessor keeps only ``self._obj``); every verb
delegates to a function in a lower module.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from ..errors import GeometryError
from ..geometry import affine as _affine
from ..geometry.orientation import axis_codes, direction_matrix
from .spatial import spatial


class DcmAccessor:
    """Geometry, transforms and exports for arrays opened by dcmxr (``obj.dcm``)."""

    def __init__(self, obj: xr.DataArray | xr.Dataset):
        self._obj = obj

    # ------------------------------------------------------------------ geometry
    @property
    def affine(self) -> np.ndarray:
        """4x4 LPS affine mapping ``[i_x, i_y, i_z, 1]`` to mm.

        Raises
        ------
        GeometryError
            When an axis is not regularly spaced (the message names it).
        """
        s = spatial(self._obj)
        return _affine.affine_from_coords(*s.as_args(), default_spacing=s.default_spacing)

    @property
    def affine_ras(self) -> np.ndarray:
        """The affine in RAS (NIfTI convention)."""
        return _affine.lps_to_ras(self.affine)

    @property
    def spacing(self) -> dict[str, float]:
        """Voxel spacing in mm per axis (``{"x": .., "y": .., "z": ..}``)."""
        s = spatial(self._obj)
        return {ax: abs(_affine.axis_step(v, ax, default_spacing=s.default_spacing[ax]))
                for ax, v in zip("xyz", s.values)}

    @property
    def origin(self) -> np.ndarray:
        """LPS position (mm) of the voxel at index (0, 0, 0)."""
        s = spatial(self._obj)
        return sum(v[0] * d for v, d in zip(s.values, s.directions))

    @property
    def direction(self) -> np.ndarray:
        """3x3 matrix whose columns are the x, y, z directions (LPS)."""
        return direction_matrix(*spatial(self._obj).directions)

    @property
    def orientation(self) -> str:
        """Axis codes of the x, y, z index axes, e.g. ``"LPS"`` or ``"RAI"``."""
        s = spatial(self._obj)
        signed = [d * (np.sign(v[-1] - v[0]) if len(v) > 1 and v[-1] != v[0] else 1.0)
                  for v, d in zip(s.values, s.directions)]
        return axis_codes(direction_matrix(*signed))

    @property
    def is_regular(self) -> bool:
        """True when every axis is evenly spaced (an affine exists)."""
        try:
            self.affine
        except GeometryError:
            return False
        return True

    @property
    def bounds(self) -> np.ndarray:
        """World box ``[[min_L, min_P, min_S], [max_L, max_P, max_S]]`` of voxel centres."""
        s = spatial(self._obj)
        corners = np.array([[i, j, k] for i in (0, s.shape[0] - 1) for j in (0, s.shape[1] - 1)
                            for k in (0, s.shape[2] - 1)], dtype=float)
        pts = _affine.index_to_world(corners, *s.as_args(), default_spacing=s.default_spacing)
        return np.stack([pts.min(axis=0), pts.max(axis=0)])

    def world_coords(self) -> xr.DataArray:
        """Lazy LPS positions of every voxel.

        Returns
        -------
        xarray.DataArray
            Dask-backed, dims = the object's spatial dims (in its order) plus a trailing
            ``world`` dim labelled ``L``, ``P``, ``S``; values in mm.
        """
        import dask.array as dska

        s = spatial(self._obj)
        obj = self._obj
        out = None
        for ax, d in zip("xyz", s.directions):
            c = obj[ax]
            lazy = xr.DataArray(dska.from_array(np.asarray(c.values)), dims=c.dims, coords=c.coords)
            term = lazy * xr.DataArray(d, dims="world", coords={"world": ["L", "P", "S"]})
            out = term if out is None else out + term
        spatial_dims = [d for d in obj.dims if d in ("z", "y", "x")]
        out = out.transpose(*spatial_dims, "world")
        out.attrs = {"units": "mm", "long_name": "voxel centre position (DICOM LPS)"}
        return out.rename("world_position")

    def index_to_world(self, indices: Any) -> np.ndarray:
        """LPS mm of fractional ``(i_x, i_y, i_z)`` indices (works on irregular grids too)."""
        s = spatial(self._obj)
        return _affine.index_to_world(indices, *s.as_args(), default_spacing=s.default_spacing)

    def world_to_index(self, points: Any) -> np.ndarray:
        """Fractional ``(i_x, i_y, i_z)`` of LPS points in mm."""
        s = spatial(self._obj)
        return _affine.world_to_index(points, *s.as_args(), default_spacing=s.default_spacing)

    @property
    def frame_of_reference_uid(self) -> str | None:
        """FrameOfReferenceUID shared by the array (None when unknown)."""
        return self._obj.attrs.get("frame_of_reference_uid")

    @property
    def headers(self):
        """The per-frame header table (``dcmxr.scan`` rows) of the frames in this array.

        Raises
        ------
        LookupError
            When the table is not available in this process (e.g. on a worker).
        """
        from ..backend.registry import lookup

        uid = self._obj.attrs.get("series_instance_uid")
        table = lookup(uid) if uid else None
        if table is None:
            raise LookupError(
                "the header table of this array is not known in this process; "
                "re-open it with dcmxr.open_series or use dcmxr.scan"
            )
        obj = self._obj
        if "sop_instance_uid" in obj.coords:
            uids = set(np.ravel(obj.coords["sop_instance_uid"].values).tolist())
            table = table[table["sop_instance_uid"].isin(uids)]
        if "frame_index" in obj.coords:
            frames = set(int(v) for v in np.ravel(obj.coords["frame_index"].values))
            table = table[table["frame"].isin(frames)]
        return table

    # ------------------------------------------------------------------ loading
    def load(self, **compute_kwargs) -> xr.DataArray:
        """Compute into one preallocated numpy array (memory-lean ``.load()``).

        ``da.values`` keeps every computed chunk and then concatenates them, so a
        full load briefly needs twice the array; this decodes every frame straight
        into its place, so the peak stays near the array size. An array as opened
        (no operations applied) of local files is decoded frame by frame on as many
        threads as the Dask scheduler setting gives (synchronous: the ``threads=``
        it was opened with), each thread taking the next frame when free
        (:func:`dcmxr.backend.build.load_into`); anything else, or any
        ``compute_kwargs``, goes through ``dask.array.store`` chunk by chunk. A
        whole-slide level as opened is read by its level reader
        (:func:`dcmxr.wsi.load.load_level_into`).

        Returns
        -------
        xarray.DataArray
            Same dims, coords and attrs, numpy-backed.
        """
        import dask.array as dska

        obj = self._obj
        if not isinstance(obj, xr.DataArray):
            raise TypeError("dcm.load() works on a DataArray; use ds.load() for a Dataset")
        if not isinstance(obj.data, dska.Array):
            return obj
        from ..backend.build import load_into

        out = np.empty(obj.shape, dtype=obj.dtype)
        if not compute_kwargs and load_into(obj.data, out):
            return obj.copy(data=out)
        from ..wsi.load import load_level_into

        if load_level_into(obj.data, out, **compute_kwargs):  # a WSI level: its reader decodes into `out`, no Dask
            return obj.copy(data=out)
        dska.store(obj.data, out, lock=False, **compute_kwargs)
        return obj.copy(data=out)

    # ------------------------------------------------------------------ interop / plotting / units
    def to_simpleitk(self):
        """A 3-D SimpleITK.Image (LPS origin/spacing/direction); see :func:`dcmxr.interop.to_simpleitk`."""
        from ..interop import to_simpleitk

        return to_simpleitk(self._obj)

    def to_highdicom_volume(self):
        """A highdicom.Volume; see :func:`dcmxr.interop.to_highdicom_volume`."""
        from ..interop import to_highdicom_volume

        return to_highdicom_volume(self._obj)

    def to_nibabel(self):
        """A nibabel.Nifti1Image with the RAS affine; see :func:`dcmxr.interop.to_nibabel`."""
        from ..interop import to_nibabel

        return to_nibabel(self._obj)

    def plot_orthoviews(self, point=None, **kw):
        """Axial/coronal/sagittal index planes through an LPS point; see :func:`dcmxr.plotting.plot_orthoviews`."""
        from ..plotting import plot_orthoviews

        return plot_orthoviews(self._obj, point, **kw)

    def plot_overlay(self, mask, **kw):
        """One slice with a mask over it; see :func:`dcmxr.plotting.plot_overlay`."""
        from ..plotting import plot_overlay

        return plot_overlay(self._obj, mask, **kw)

    def quantify(self):
        """``obj.pint.quantify(unit_registry=dcmxr.units.ureg)``; see :func:`dcmxr.units.quantify`."""
        from ..units import quantify

        return quantify(self._obj)

    # ------------------------------------------------------------------ exports
    def to_nifti(self, path, sidecar: bool = True, *, dtype=None, compresslevel: int = 1):
        """Write NIfTI-1 (+ BIDS JSON, .bval/.bvec); see :func:`dcmxr.export.nifti.to_nifti`."""
        from ..export.nifti import to_nifti

        return to_nifti(self._obj, path, sidecar, dtype=dtype, compresslevel=compresslevel)

    def to_rtdose(self, path, reference=None, **kwargs):
        """Write an RT Dose (quantised, DoseGridScaling); see :func:`dcmxr.export.rtdose.to_rtdose`."""
        from ..export.rtdose import to_rtdose

        return to_rtdose(self._obj, path, reference, **kwargs)

    def to_seg(self, source, segments=None, *, path=None, **kwargs):
        """Write a DICOM Segmentation aligned with ``source``; see :func:`dcmxr.export.seg.to_seg`."""
        from ..export.seg import to_seg

        return to_seg(self._obj, source, segments, path=path, **kwargs)

    def to_paramap(self, source, quantity, units=None, *, path=None, **kwargs):
        """Write a float Parametric Map; see :func:`dcmxr.export.paramap.to_paramap`."""
        from ..export.paramap import to_paramap

        return to_paramap(self._obj, source, quantity, units, path=path, **kwargs)

    def to_sr(self, masks_or_seg, measurements=("volume", "mean", "min", "max", "std"), *, path=None, **kwargs):
        """Write a TID 1500 measurement report; see :func:`dcmxr.export.sr.measurement_report`."""
        from ..export.sr import measurement_report

        return measurement_report(self._obj, masks_or_seg, measurements, path=path, **kwargs)

    def bids_sidecar(self) -> dict:
        """The BIDS sidecar fields ``to_nifti`` would write; see :func:`dcmxr.export.bids.sidecar`."""
        from ..export.bids import sidecar

        return sidecar(self._obj)

    # ---------------------------------------------------------------- transforms
    def reorient(self, code: str = "RAS") -> xr.DataArray:
        """Exact flips/transposes so index axes x, y, z point to ``code``; see dcmxr.transform.reorient."""
        from ..transform import reorient

        return reorient(self._obj, code)

    def flip(self, dims) -> xr.DataArray:
        """Reverse spatial dims keeping world positions; see dcmxr.transform.flip."""
        from ..transform import flip

        return flip(self._obj, dims)

    def crop(self, box_or_mask, margin=0) -> xr.DataArray:
        """Crop to an index/mm/world box or a mask's bounding box; see dcmxr.transform.crop."""
        from ..transform import crop

        return crop(self._obj, box_or_mask, margin=margin)

    def pad(self, widths, value=0, **kwargs) -> xr.DataArray:
        """Pad spatial dims, extending coordinates regularly; see dcmxr.transform.pad."""
        from ..transform import pad

        return pad(self._obj, widths, value, **kwargs)

    def coarsen(self, windows=None, func: str = "mean", **kwargs) -> xr.DataArray:
        """Block reduction keeping geometry and per-frame UIDs (joined with "\\"); see dcmxr.transform.coarsen."""
        from ..transform.coarsen import coarsen

        return coarsen(self._obj, windows, func=func, **kwargs)

    def resample(self, spacing=None, method=None, **kwargs) -> xr.DataArray:
        """Lazy resampling to a new spacing, same orientation and field of view; see dcmxr.transform.resample."""
        from ..transform import resample

        return resample(self._obj, spacing, method, **kwargs)

    def resample_like(self, other, method=None, **kwargs) -> xr.DataArray:
        """Lazy resampling onto ``other``'s grid; see dcmxr.transform.resample_like."""
        from ..transform import resample_like

        return resample_like(self._obj, other, method, **kwargs)

    def deskew(self, method="linear", **kwargs) -> xr.DataArray:
        """Resample a tilted stack onto an orthogonal grid; see dcmxr.transform.deskew."""
        from ..transform import deskew

        return deskew(self._obj, method, **kwargs)


xr.register_dataarray_accessor("dcm")(DcmAccessor)
xr.register_dataset_accessor("dcm")(DcmAccessor)
