"""Test helpers: synthetic DICOM builders, hypothesis strategies, assertions.

Never imported by the library. Submodules import their heavy dependencies
(pydicom, hypothesis, xarray) themselves, so import the one you need::

    from dcmxr.testing.synthetic import write_series, write_enhanced
    from dcmxr.testing.strategies import rotations, orientations
    from dcmxr.testing.assertions import assert_geometry_equal
"""
