"""Named, documented geometry tolerances.

Every tolerance used by :mod:`dcmxr.geometry` is a module constant here, and
every public function that uses one takes a keyword argument *of the same
name in lower case* (``orientation_tol``, ``spacing_rtol`` ...). Error
messages quote that keyword, so a user who hits a :class:`GeometryError`
knows exactly which option relaxes it.

The defaults are chosen for real scanner output: ImageOrientationPatient is
usually written with 6 decimal places (errors ~1e-6), ImagePositionPatient
with 2-6 decimals, and slice spacing varies by a few micrometres from
floating-point accumulation on the scanner.
"""

from __future__ import annotations

__all__ = [
    "ORIENTATION_TOL",
    "OBLIQUE_TOL",
    "SPACING_RTOL",
    "SPACING_ATOL",
    "DUPLICATE_POSITION_ATOL",
    "COLLINEARITY_ATOL",
    "TILT_TOL_DEG",
    "MAX_TILT_DEG",
    "PIXEL_SPACING_RTOL",
]

#: Direction-cosine tolerance (dimensionless). ImageOrientationPatient is
#: accepted when each cosine vector's norm is within this of 1 and the
#: absolute dot product of the row and column cosines is at most this.
#: Two frames have "the same orientation" when every component of their
#: normalised direction cosines differs by at most this (1e-3 ~ 0.06 degree).
ORIENTATION_TOL: float = 1e-3

#: A direction is "not oblique" when its largest absolute component (the
#: cosine of its angle to the nearest patient axis) is at least
#: ``1 - OBLIQUE_TOL``; 1e-4 allows about 0.8 degree off an axis.
OBLIQUE_TOL: float = 1e-4

#: Relative tolerance on slice/grid spacing: a step ``s`` is regular when
#: ``|s - spacing| <= SPACING_ATOL + SPACING_RTOL * spacing``.
SPACING_RTOL: float = 1e-2

#: Absolute tolerance on slice/grid spacing, in mm (see ``SPACING_RTOL``).
SPACING_ATOL: float = 1e-3

#: Two frames whose positions along the stack differ by at most this many mm
#: are at the same position (repeated volumes: time points, echoes, b-values).
DUPLICATE_POSITION_ATOL: float = 1e-2

#: Slice positions may deviate by at most this many mm from the straight line
#: of the stack (after removing the stacking direction); more means the frames
#: do not form one stack.
COLLINEARITY_ATOL: float = 1e-1

#: Stacks whose positions move along a direction within this many degrees of
#: the slice normal are treated as ordinary (untilted) stacks: ``dir_z`` is the
#: normal and the small in-plane drift is treated as rounding noise.
TILT_TOL_DEG: float = 0.05

#: Largest accepted angle, in degrees, between the stacking direction and the
#: slice normal (CT gantry tilt rarely exceeds 30 degrees). Beyond this the
#: frames are not treated as a stack.
MAX_TILT_DEG: float = 60.0

#: Relative tolerance when comparing PixelSpacing of frames for grouping.
PIXEL_SPACING_RTOL: float = 1e-4
