"""``dcmxr.open_bids``: one BIDS image (NIfTI + sidecars) as a Dataset with the DICOM path's dims.

Finds ``sub-<label>[/ses-<label>]/<datatype>/sub-<label>[_ses-<label>]_..._<suffix>.nii[.gz]``,
opens it with :func:`dcmxr.open_nifti` (which reads the JSON beside it, the
``.bval``/``.bvec`` as a ``dwi`` dim, ``SliceTiming`` as ``slice_time``), merges
inherited JSON sidecars (BIDS inheritance: a ``*_<suffix>.json`` higher up whose
entities are a subset of the file's), and for ASL:

* ``*_aslcontext.tsv`` becomes the ``asl_context`` coordinate on ``t``;
* ``*_m0scan.nii[.gz]`` is returned alongside as the ``m0scan`` variable
  (its volumes on an ``m0`` dim) when it lies on the same grid;
* the ASL appendix rules are checked and a missing field raises
  :class:`~dcmxr.errors.SelectionError` naming it and the file.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AmbiguousSelectionError, GeometryWarning, SelectionError

_NII = re.compile(r"^(?P<stem>.+)_(?P<suffix>[A-Za-z0-9]+)\.nii(\.gz)?$")

#: ASL appendix: required fields (all ASL) and by labeling type.
ASL_REQUIRED = ("ArterialSpinLabelingType", "PostLabelingDelay", "M0Type")
ASL_REQUIRED_BY_TYPE = {"PCASL": ("LabelingDuration",), "CASL": ("LabelingDuration",), "PASL": ("BolusCutOffFlag",)}
ASL_CONTEXT_VALUES = ("control", "label", "m0scan", "deltam", "cbf", "norf")


class BidsValidityError(SelectionError):
    """A BIDS file misses a field its modality requires."""


def _entities(name: str) -> dict[str, str]:
    m = _NII.match(name) or re.match(r"^(?P<stem>.+)_(?P<suffix>[A-Za-z0-9]+)\.(json|tsv)$", name)
    stem = m.group("stem") if m else name.split(".")[0]
    out = {}
    for part in stem.split("_"):
        if "-" in part:
            k, v = part.split("-", 1)
            out[k] = v
    return out


def _label(value: str, key: str) -> str:
    value = str(value)
    return value[len(key) + 1:] if value.startswith(f"{key}-") else value


def find_bids_files(root: str | Path, subject: str, session: str | None = None, suffix: str = "asl",
                    **entities: str) -> list[Path]:
    """NIfTI files of one subject (and session) with ``suffix`` and the given entities."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"BIDS root {root} is not a folder")
    sub = _label(subject, "sub")
    base = root / f"sub-{sub}"
    if not base.is_dir():
        subs = sorted(p.name for p in root.glob("sub-*") if p.is_dir())
        raise SelectionError(f"subject {sub!r} not found under {root}; subjects: {subs}")
    if session is not None:
        base = base / f"ses-{_label(session, 'ses')}"
        if not base.is_dir():
            raise SelectionError(f"session {session!r} not found under {base.parent}")
    hits = []
    for p in sorted(base.rglob(f"*_{suffix}.nii*")):
        m = _NII.match(p.name)
        if not m or m.group("suffix") != suffix:
            continue
        ent = _entities(p.name)
        if all(ent.get(k) == _label(v, k) for k, v in entities.items()):
            hits.append(p)
    return hits


def inherited_sidecar(root: Path, nifti: Path) -> dict:
    """The merged JSON sidecar of a NIfTI (BIDS inheritance, deepest file wins)."""
    suffix = _NII.match(nifti.name).group("suffix")
    ent = _entities(nifti.name)
    meta: dict = {}
    folders = [root] + [p for p in reversed(nifti.parents) if root in p.parents]
    for folder in folders:
        for j in sorted(folder.glob(f"*{suffix}.json"), key=lambda p: len(_entities(p.name))):
            if not j.name.endswith(f"_{suffix}.json") and j.name != f"{suffix}.json":
                continue
            jent = _entities(j.name)
            if all(ent.get(k) == v for k, v in jent.items()):
                meta.update(json.loads(j.read_text()))
    return meta


def _stem(p: Path) -> str:
    return _NII.match(p.name).group("stem")


def read_aslcontext(path: Path) -> list[str]:
    """``volume_type`` column of an ``*_aslcontext.tsv``."""
    lines = [ln.rstrip("\n").split("\t") for ln in path.read_text().splitlines() if ln.strip()]
    if not lines or lines[0][0].strip() != "volume_type":
        raise BidsValidityError(f"{path}: the first column of an aslcontext.tsv must be 'volume_type'")
    vals = [ln[0].strip() for ln in lines[1:]]
    bad = sorted({v for v in vals if v.lower() not in ASL_CONTEXT_VALUES})
    if bad:
        raise BidsValidityError(f"{path}: volume_type values {bad} are not BIDS ASL values {ASL_CONTEXT_VALUES}")
    return vals


def check_asl(meta: dict, path: Path, n_volumes: int, context: list[str] | None, has_m0scan: bool) -> None:
    """The BIDS ASL appendix rules dcmxr relies on; raise :class:`BidsValidityError` when broken."""
    missing = [k for k in ASL_REQUIRED if k not in meta]
    kind = str(meta.get("ArterialSpinLabelingType", "")).upper()
    if "ArterialSpinLabelingType" in meta and kind not in ASL_REQUIRED_BY_TYPE:
        raise BidsValidityError(f"{path}: ArterialSpinLabelingType {meta['ArterialSpinLabelingType']!r} is not "
                                f"one of {sorted(ASL_REQUIRED_BY_TYPE)}")
    missing += [k for k in ASL_REQUIRED_BY_TYPE.get(kind, ()) if k not in meta]
    if kind == "PASL" and meta.get("BolusCutOffFlag") is True:
        missing += [k for k in ("BolusCutOffDelayTime", "BolusCutOffTechnique") if k not in meta]
    if missing:
        raise BidsValidityError(f"{path}: the BIDS ASL appendix requires {missing} in the sidecar "
                                f"(labeling type {kind or 'unknown'}); add them to the JSON")
    if context is None:
        raise BidsValidityError(f"{path}: an ASL file needs its _aslcontext.tsv (one volume_type per volume)")
    if len(context) != n_volumes:
        raise BidsValidityError(f"{path}: aslcontext.tsv lists {len(context)} volumes but the image has {n_volumes}")
    m0type = meta.get("M0Type")
    if m0type == "Separate" and not has_m0scan:
        raise BidsValidityError(f"{path}: M0Type is 'Separate' but there is no _m0scan.nii[.gz] beside it")
    if m0type == "Included" and "m0scan" not in [c.lower() for c in context]:
        raise BidsValidityError(f"{path}: M0Type is 'Included' but aslcontext.tsv has no m0scan volume")
    if m0type == "Estimate" and "M0Estimate" not in meta:
        raise BidsValidityError(f"{path}: M0Type is 'Estimate' but the sidecar has no M0Estimate")
    pld = meta["PostLabelingDelay"]
    if isinstance(pld, list) and len(pld) not in (1, n_volumes):
        raise BidsValidityError(f"{path}: PostLabelingDelay has {len(pld)} values for {n_volumes} volumes")


def _same_grid(a, b) -> bool:
    for ax in ("x", "y", "z"):
        if a.sizes[ax] != b.sizes[ax] or not np.allclose(a[ax].values, b[ax].values, atol=1e-3):
            return False
        if not np.allclose(a[ax].attrs["direction"], b[ax].attrs["direction"], atol=1e-6):
            return False
    return True


def open_bids(root: str | Path, subject: str, session: str | None = None, suffix: str = "asl", *,
              chunks: Any = "auto", acquisition: dict | None = None, **entities: str):
    """Open one BIDS image of a subject as a Dataset with dcmxr dims and coords.

    Parameters
    ----------
    root : path
        The BIDS dataset folder.
    subject : str
        Subject label (``"01"`` or ``"sub-01"``).
    session : str, optional
        Session label.
    suffix : str
        ``"asl"``, ``"dwi"``, ``"bold"``, ``"T1w"``, ``"m0scan"`` ...
    chunks : "auto", int, dict, tuple or None
        As for :func:`dcmxr.open_nifti`.
    acquisition : dict, optional
        For ``asl``: parameters that override the sidecar (as
        :func:`dcmxr.open_perfusion`).
    **entities : str
        Further BIDS entities that pick one file (``task="rest"``,
        ``run="1"``, ``acq="pcasl"``, ``dir="AP"``).

    Returns
    -------
    xarray.Dataset
        The image as the variable named ``suffix`` (dims as
        :func:`dcmxr.open_nifti` names them: ``("t", "z", "y", "x")``,
        ``("dwi", ...)`` with b-values and LPS gradients); for ASL an
        ``asl_context`` coord on ``t``, the perfusion parameters in the
        variable's attrs (see :func:`dcmxr.open_perfusion`), and the
        ``m0scan`` variable (volumes on an ``m0`` dim) when there is one on
        the same grid. ``attrs["source"]`` is the NIfTI path.

    Raises
    ------
    SelectionError
        Subject, session or file not found.
    AmbiguousSelectionError
        Several files match; the message lists them and the entities that pick one.
    BidsValidityError
        An ASL file breaks the ASL appendix rules (missing
        ArterialSpinLabelingType, PostLabelingDelay, M0Type, LabelingDuration
        for (P)CASL, BolusCutOff fields for PASL, aslcontext.tsv).
    """
    import xarray as xr

    from ..backend.nifti import _attrs_from_bids, open_nifti

    root = Path(root)
    hits = find_bids_files(root, subject, session, suffix, **entities)
    if not hits:
        raise SelectionError(f"no *_{suffix}.nii[.gz] for subject {subject!r}"
                             f"{'' if session is None else f', session {session!r}'} under {root}"
                             f"{'' if not entities else f' with {entities}'}")
    if len(hits) > 1:
        listing = "\n".join(f"  {p.relative_to(root)}  entities={_entities(p.name)}" for p in hits)
        raise AmbiguousSelectionError(f"{len(hits)} files match; pick one with entities such as task=, run=, "
                                      f"acq=, dir= or session=:\n{listing}")
    path = hits[0]
    meta = inherited_sidecar(root, path)
    da = open_nifti(path, chunks=chunks)
    da.attrs.update(_attrs_from_bids(meta))
    stem = _stem(path)
    variables = {}
    if suffix == "asl":
        ctx_path = path.with_name(f"{stem}_aslcontext.tsv")
        context = read_aslcontext(ctx_path) if ctx_path.exists() else None
        m0_hits = sorted(path.parent.glob(f"{stem}_m0scan.nii*"))
        n_vol = da.sizes.get("t", 1)
        check_asl(meta, path, n_vol, context, bool(m0_hits))
        if "t" not in da.dims:
            da = da.expand_dims("t")
        da = da.assign_coords(asl_context=("t", list(context)))
        from .open import apply_acquisition

        da = apply_acquisition(da, "ASL", acquisition=acquisition, sidecar=meta)
        if m0_hits:
            m0 = open_nifti(m0_hits[0], chunks=chunks)
            m0.attrs.update(_attrs_from_bids(inherited_sidecar(root, m0_hits[0])))
            if "t" in m0.dims:
                m0 = m0.rename(t="m0")
            if _same_grid(da, m0):
                variables["m0scan"] = m0.assign_coords(x=da.x, y=da.y, z=da.z)
            else:
                warnings.warn(f"{m0_hits[0].name} is not on the grid of {path.name}; it is left out: open it with "
                              f"dcmxr.open_nifti({str(m0_hits[0])!r}) and resample", GeometryWarning, stacklevel=2)
    da.name = suffix
    variables[suffix] = da
    ds = xr.Dataset(variables)
    ds.attrs["source"] = str(path)
    return ds
