"""Geometry: direction cosines, stacks, coordinates, affines (numpy only).

Conventions (see docs/DESIGN "Geometry lives on the coordinates"): volumes are
``("z", "y", "x")``; ``x`` runs along the row direction (IOP[:3]), ``y``
along the column direction (IOP[3:]), ``z`` along the stack; coordinate
values are voxel-centre positions in mm along unit LPS directions, and the
position of voxel ``(z, y, x)`` is ``x*dir_x + y*dir_y + z*dir_z``.
Affines map ``[i_x, i_y, i_z, 1]`` (NIfTI order) to LPS mm.

This package imports only numpy (and :mod:`dcmxr.errors`).
"""

from __future__ import annotations

from dcmxr.geometry import tolerances
from dcmxr.geometry.affine import (
    affine_from_coords,
    axis_step,
    index_to_world,
    lps_to_ras,
    ras_to_lps,
    world_to_index,
)
from dcmxr.geometry.coords import (
    basis_coefficients,
    coords_from_affine,
    positions_from_coords,
    stack_coords,
)
from dcmxr.geometry.orientation import (
    axis_codes,
    direction_matrix,
    is_oblique,
    normalize_iop,
    row_col_normal,
)
from dcmxr.geometry.stacking import (
    Regularity,
    Repeats,
    find_repeats,
    group_stacks,
    sort_stack,
    spacing_regularity,
    stack_direction,
)

__all__ = [
    "tolerances",
    "affine_from_coords",
    "axis_step",
    "index_to_world",
    "lps_to_ras",
    "ras_to_lps",
    "world_to_index",
    "basis_coefficients",
    "coords_from_affine",
    "positions_from_coords",
    "stack_coords",
    "axis_codes",
    "direction_matrix",
    "is_oblique",
    "normalize_iop",
    "row_col_normal",
    "Regularity",
    "Repeats",
    "find_repeats",
    "group_stacks",
    "sort_stack",
    "spacing_regularity",
    "stack_direction",
]
