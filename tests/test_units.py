"""dcmxr.units: the pint registry parses every unit dcmxr writes; UCUM <-> pint."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest

pint = pytest.importorskip("pint")
pytest.importorskip("pint_xarray")

import dcmxr  # noqa: E402
from dcmxr import units as U  # noqa: E402
from dcmxr.backend import build  # noqa: E402

from _data import DATA  # noqa: E402

ureg = U.ureg

#: folders walked by the real-data test (each a scan root; every series in it is opened)
WALK = [
    "ct",
    "mr/dcm_qa",
    "mr/dcm_qa_nih",
    "dwi",
    "enhanced",
    "perfusion",
    "paramap",
    "rt",
    "seg",
    "transfer_syntax/pydicom-data",
]


# ------------------------------------------------------------------ registry
def test_registry_is_pint_xarray_ready():
    assert isinstance(ureg, pint.UnitRegistry)
    assert ureg.force_ndarray_like
    assert U.get_registry() is ureg  # one registry, built once


@pytest.mark.parametrize(
    "unit", ["HU", "hounsfield_unit", "Gy", "s", "ms", "mm", "s/mm**2", "degree", "T", "kV",
             "mg/ml", "percent", "%", "counts", "count", "Bq/ml", "mm**2/s", "ml/hg/min", "ml/dl/s",
             "1", "dimensionless", "pow10_m3*mm**2/s", "ppb", "mrad", "Hz"],
)
def test_registry_parses(unit):
    ureg.Unit(unit)
    ureg.parse_units(unit)


def test_conversion_sanity():
    assert ureg.Quantity(1, "ms") == ureg.Quantity(0.001, "s")
    assert ureg.Quantity(1, "ms").to("s").magnitude == pytest.approx(1e-3)
    assert ureg.Quantity("1 mm").to("m").magnitude == pytest.approx(1e-3)
    assert ureg.Quantity(1000, "s/mm**2").to("s/m**2").magnitude == pytest.approx(1e9)
    assert ureg.Quantity(1, "ml/hg/min").to("ml/g/min").magnitude == pytest.approx(0.01)
    assert ureg.Quantity(1, "ml/dl/s").to("1/s").magnitude == pytest.approx(0.01)
    assert ureg.Quantity(50, "percent").to("dimensionless").magnitude == pytest.approx(0.5)
    assert ureg.Quantity(90, "degree").to("rad").magnitude == pytest.approx(np.pi / 2)
    assert ureg.Quantity(3, "counts").to("dimensionless").magnitude == 3
    assert ureg.Quantity(1, "pow10_m3*mm**2/s").to("um**2/s").magnitude == pytest.approx(1000)


def test_hu_is_its_own_dimension():
    hu = ureg.Quantity(40, "HU")
    assert hu.to("hounsfield_unit").magnitude == 40
    assert (hu - ureg.Quantity(10, "HU")).magnitude == 30
    for other in ("dimensionless", "percent", "mm"):
        with pytest.raises(pint.DimensionalityError):
            hu.to(other)


# ------------------------------------------------------------------ what build.py writes
def _build_unit_strings() -> set[str]:
    """Every literal unit string build.py can write (grepped from its source)."""
    src = Path(build.__file__).read_text()
    out = set(build._UNIT_OF_ATTR.values())
    out |= set(re.findall(r'"units":\s*"([^"]+)"', src))
    m = re.search(r"return\s*\{([^}]*)\}\.get\(rt", src)  # _value_units' rescale-type table
    assert m, "build._value_units changed shape; update this test"
    out |= {v for v in re.findall(r':\s*"([^"]+)"', m.group(1))}
    out |= set(re.findall(r'return\s+"([^"]+)"', src))
    from dcmxr.assembly.volumes import CANDIDATES

    out |= {unit for _name, _cols, unit in CANDIDATES if unit}
    return out


def test_every_unit_build_can_emit_parses():
    found = _build_unit_strings()
    assert {"mm", "s", "HU", "mg/ml", "ms", "degree", "T", "kV"} <= found
    for u in found:
        ureg.Unit(u)


def test_attr_units_table_matches_build():
    for name, unit in build._UNIT_OF_ATTR.items():
        assert ureg.Unit(U.ATTR_UNITS[name]) == ureg.Unit(unit), name


def test_attr_quantity():
    import xarray as xr

    da = xr.DataArray(np.zeros(2), dims="x", attrs={"echo_time": 30.0, "flip_angle": 90,
                                                     "magnetic_field_strength": 3.0, "kvp": 120.0})
    assert U.attr_quantity(da, "echo_time").to("s").magnitude == pytest.approx(0.03)
    assert U.attr_quantity(da, "flip_angle").to("rad").magnitude == pytest.approx(np.pi / 2)
    assert U.attr_quantity(da, "kvp").to("V").magnitude == pytest.approx(120e3)
    with pytest.raises(KeyError):
        U.attr_quantity(da, "repetition_time")


def _series(folder: str):
    root = DATA / folder
    if not root.exists():
        pytest.skip(f"real test data not found at {root} (set DCMXR_TEST_DATA to ../shared/data)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = dcmxr.scan(root)
        listing = dcmxr.list_series(table)
    return table, list(listing["series_instance_uid"])


@pytest.mark.parametrize("folder", WALK)
def test_quantify_every_series_in_shared_data(folder):
    """pint-xarray quantifies data + every coord with a units attr, for every series that opens."""
    table, uids = _series(folder)
    opened = 0
    seen: set[str] = set()
    for uid in uids:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                obj = dcmxr.open_series(table, series=uid)
        except Exception:  # opening is tested elsewhere; here we test what does open
            continue
        opened += 1
        arrays = list(obj.data_vars.values()) if hasattr(obj, "data_vars") else [obj]
        for da in arrays:
            q = U.quantify(da)
            unit = da.attrs.get("units")
            if unit is not None:
                seen.add(unit)
                assert q.pint.units == ureg.Unit(unit)
            for name, c in da.coords.items():
                cu = c.attrs.get("units")
                if cu is None:
                    continue
                seen.add(cu)
                assert q[name].pint.units == ureg.Unit(cu), name
                mag = q[name].pint.magnitude
                np.testing.assert_array_equal(np.asarray(mag), np.asarray(c.values))
            # attrs with a known unit make quantities too
            for name in U.ATTR_UNITS:
                if name in da.attrs:
                    U.attr_quantity(da, name).to_base_units()
            back = q.pint.dequantify()
            for name, c in back.coords.items():
                if "units" in c.attrs:
                    ureg.Unit(c.attrs["units"])  # dequantified strings reparse
    if opened == 0:
        pytest.skip(f"no series in {folder} opened")
    assert "mm" in seen or not seen


def test_quantified_ct_values_and_coords():
    """A CT series quantifies to HU with mm coordinates, and HU arithmetic keeps HU."""
    path = DATA / "ct" / "dcmqi" / "ct-3slice"
    if not path.exists():
        pytest.skip(f"real test data not found at {path}")
    da = dcmxr.open_series(path)
    assert da.attrs["units"] == "HU"
    q = U.quantify(da)
    assert q.pint.units == ureg.HU
    assert q.x.pint.units == ureg.mm
    diff = q.isel(z=0) - q.isel(z=1)
    assert diff.pint.units == ureg.HU
    np.testing.assert_array_equal(q.pint.magnitude.values if hasattr(q.pint.magnitude, "values")
                                  else np.asarray(q.pint.magnitude), da.values)
    assert U.attr_quantity(da, "slice_thickness").to("m").magnitude == pytest.approx(1.25e-3)


# ------------------------------------------------------------------ UCUM
@pytest.mark.parametrize("code,meaning,pint_str", U.UCUM_TABLE)
def test_ucum_table_rows_agree_with_the_parser(code, meaning, pint_str):
    """Each curated row equals what the generic UCUM parser makes of the code."""
    from dcmxr.units import _comps_to_pint, _UcumParser

    generic = _comps_to_pint(*_UcumParser(code).parse(), code)
    a, b = ureg.Quantity(1, pint_str), ureg.Quantity(1, generic)
    assert a.dimensionality == b.dimensionality
    assert b.to(pint_str).magnitude == pytest.approx(1.0)


@pytest.mark.parametrize("code", [row[0] for row in U.UCUM_TABLE])
def test_ucum_round_trip(code):
    p = U.ucum_to_pint(code)
    back, meaning = U.pint_to_ucum(p)
    assert isinstance(meaning, str) and meaning
    # the code we get back means the same unit (annotations like {SUVbw} are not units)
    assert ureg.Quantity(1, U.ucum_to_pint(back)).to(p).magnitude == pytest.approx(1.0)
    if "{" not in code and code not in ("mL", "ml/(100.g)/min", "10*-6.mm2/s"):
        assert back == code


@pytest.mark.parametrize(
    "code,pint_str",
    [
        ("mm2/s", "mm**2/s"),
        ("ms", "ms"),
        ("s", "s"),
        ("Gy", "Gy"),
        ("[hnsf'U]", "HU"),
        ("1", "dimensionless"),
        ("/min", "1/min"),
        ("ml/(100.g)/min", "ml/hg/min"),
        ("ml/100g", "ml/hg"),
        ("mg/ml", "mg/ml"),
        ("Bq/ml", "Bq/ml"),
        ("{counts}", "count"),
        ("%", "percent"),
        ("deg", "degree"),
        ("mm", "mm"),
        ("10-3mm2/s", "pow10_m3*mm**2/s"),  # not strict UCUM, seen in the wild
        ("10*-3.mm2/s", "pow10_m3*mm**2/s"),
        ("kBq/l", "kBq/l"),  # not in the table: parsed
        ("s-1", "1/s"),
        ("(ml/100g)/min", "ml/hg/min"),
        ("mm[Hg]", "mmHg"),
        ("{SUVbw}g/ml", "g/ml"),
        ("ml/100ml/s", "ml/dl/s"),
        ("um2", "um**2"),
        ("mrad", "mrad"),
    ],
)
def test_ucum_to_pint(code, pint_str):
    got = U.ucum_to_pint(code)
    q = ureg.Quantity(1, got)
    assert q.dimensionality == ureg.Quantity(1, pint_str).dimensionality
    assert q.to(pint_str).magnitude == pytest.approx(1.0)


@pytest.mark.parametrize(
    "unit,code",
    [("ms", "ms"), ("millisecond", "ms"), ("HU", "[hnsf'U]"), ("mm**2/s", "mm2/s"),
     ("dimensionless", "1"), ("Gy", "Gy"), ("percent", "%"), ("count", "{counts}"),
     ("degree", "deg"), ("1/min", "/min"), ("kBq/l", "kBq/l"), ("s/mm**2", "s/mm2"),
     ("mg/ml", "mg/ml")],
)
def test_pint_to_ucum(unit, code):
    assert U.pint_to_ucum(unit)[0] == code
    assert U.pint_to_ucum(ureg.Unit(unit))[0] == code
    assert U.pint_to_ucum(ureg.Quantity(2.0, unit))[0] == code


def test_ucum_in_shared_data_parses():
    """Every UCUM code found in the shared data's coded units converts (real-data corpus)."""
    seen = {"ml/100ml/s", "1", "{pixels}", "{SUVbw}g/ml", "ml", "g", "%", "[hnsf'U]", "mm", "mm3",
            "cm2", "mrad", "Hz", "um2"}  # collected from shared/data (MeasurementUnitsCodeSequence etc.)
    for code in seen:
        ureg.Unit(U.ucum_to_pint(code))


def test_ucum_errors():
    for bad in ("", "furlong", "mm/(s", "{open"):
        with pytest.raises(ValueError):
            U.ucum_to_pint(bad)
    with pytest.raises(ValueError):
        U.pint_to_ucum("furlong")
