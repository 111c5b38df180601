"""Units: the pint registry dcmxr's ``units`` attrs parse with, and UCUM <-> pint.

Every ``attrs["units"]`` string dcmxr writes (on data, on coordinates and the
units of scalar attrs listed in :data:`ATTR_UNITS`) parses with :data:`ureg`,
so::

    q = da.pint.quantify(unit_registry=dcmxr.units.ureg)   # or dcmxr.units.quantify(da)

works (pint and pint-xarray come with the ``[units]`` extra). Nothing is
quantified by default.

The registry is pint's default registry plus the imaging units pint lacks:

``hounsfield_unit`` (``HU``)
    A base unit of its own dimension ``[radiodensity]``. HU is an affine scale
    of linear attenuation relative to water (0 HU = water, -1000 HU = air);
    giving it its own dimension makes nonsense conversions (HU -> percent,
    HU + mm) errors instead of silent results.
``ppb``
    Parts per billion (pint has ``ppm`` only).
``pow10_<k>`` / ``pow10_m<k>``
    Dimensionless powers of ten (``pow10_m3 == 1e-3``) for UCUM codes with a
    bare factor such as ``10*-3.mm2/s``; pint units cannot carry a numeric
    factor.

It is created with ``force_ndarray_like=True`` (pint-xarray requires it) and is
*not* made pint's application registry.

UCUM (the unit system of DICOM's ``MeasurementUnitsCodeSequence``,
coding scheme ``UCUM``) is converted both ways by :func:`ucum_to_pint` and
:func:`pint_to_ucum`: a curated table of the codes imaging uses
(:data:`UCUM_TABLE`) gives readable results, and a small parser of UCUM's
grammar (prefixes, atoms, exponents, ``.`` and ``/``, parentheses, integer
factors, ``{annotations}``) handles the rest.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import missing_dependency

__all__ = [
    "ureg",
    "get_registry",
    "quantify",
    "attr_quantity",
    "ucum_to_pint",
    "pint_to_ucum",
    "UCUM_TABLE",
    "ATTR_UNITS",
]

#: Units of scalar attrs written by :func:`dcmxr.open_series` (the attr value is a
#: plain number in this unit). ``dcmxr.backend.build`` uses this table.
ATTR_UNITS: dict[str, str] = {
    "slice_thickness": "mm",
    "spacing_between_slices": "mm",
    "echo_time": "ms",
    "repetition_time": "ms",
    "inversion_time": "ms",
    "flip_angle": "degree",
    "magnetic_field_strength": "T",
    "kvp": "kV",
    "gantry_detector_tilt": "degree",
    "tilt_deg": "degree",
    # perfusion acquisition parameters (dcmxr.perfusion.params.PARAM_UNITS)
    "temporal_resolution": "s",
    "post_labeling_delay": "s",
    "labeling_duration": "s",
    "bolus_cut_off_delay_time": "s",
    "b_values": "s/mm**2",
    "m0_scale": "dimensionless",
    "labeling_efficiency": "dimensionless",
}

#: (UCUM code, DICOM code meaning, pint unit string), in lookup-priority order:
#: :func:`pint_to_ucum` returns the first row whose pint unit equals the input.
UCUM_TABLE: tuple[tuple[str, str, str], ...] = (
    ("1", "no units", "dimensionless"),
    ("%", "Percent", "percent"),
    ("{counts}", "Counts", "count"),
    ("{ratio}", "ratio", "dimensionless"),
    ("{pixels}", "pixels", "dimensionless"),
    ("[hnsf'U]", "Hounsfield Unit", "HU"),
    ("[ppm]", "parts per million", "ppm"),
    # length, area, volume
    ("mm", "millimeter", "mm"),
    ("cm", "centimeter", "cm"),
    ("um", "micrometer", "um"),
    ("m", "meter", "m"),
    ("mm2", "square millimeter", "mm**2"),
    ("cm2", "square centimeter", "cm**2"),
    ("um2", "square micrometer", "um**2"),
    ("mm3", "cubic millimeter", "mm**3"),
    ("cm3", "cubic centimeter", "cm**3"),
    ("ml", "milliliter", "ml"),
    ("mL", "milliliter", "ml"),
    ("l", "liter", "l"),
    # mass, amount, concentration
    ("g", "Gram", "g"),
    ("kg", "kilogram", "kg"),
    ("mg/ml", "milligram per milliliter", "mg/ml"),
    ("g/ml", "gram per milliliter", "g/ml"),
    ("mmol/l", "millimole per liter", "mmol/l"),
    # time, rate
    ("s", "second", "s"),
    ("ms", "millisecond", "ms"),
    ("us", "microsecond", "us"),
    ("min", "minute", "min"),
    ("h", "hour", "hour"),
    ("/s", "per second", "1/s"),
    ("/min", "per minute", "1/min"),
    ("Hz", "Hertz", "Hz"),
    # angle
    ("deg", "degree", "degree"),
    ("rad", "radian", "rad"),
    ("mrad", "milliradian", "mrad"),
    # MR / CT / X-ray acquisition
    ("T", "Tesla", "T"),
    ("mT/m", "millitesla per meter", "mT/m"),
    ("kV", "kilovolt", "kV"),
    ("mA", "milliampere", "mA"),
    ("mA.s", "milliampere second", "mA*s"),
    ("keV", "kiloelectron volt", "keV"),
    # diffusion
    ("mm2/s", "square millimeter per second", "mm**2/s"),
    ("um2/s", "square micrometer per second", "um**2/s"),
    ("10*-3.mm2/s", "10^-3 square millimeter per second", "pow10_m3*mm**2/s"),
    ("10*-6.mm2/s", "10^-6 square millimeter per second", "um**2/s"),
    ("s/mm2", "second per square millimeter", "s/mm**2"),
    # perfusion
    ("ml/100g/min", "milliliter per 100 gram per minute", "ml/hg/min"),
    ("ml/(100.g)/min", "milliliter per 100 gram per minute", "ml/hg/min"),
    ("ml/100g", "milliliter per 100 gram", "ml/hg"),
    ("ml/100ml/s", "milliliter per 100 milliliter per second", "ml/dl/s"),
    ("ml/100ml/min", "milliliter per 100 milliliter per minute", "ml/dl/min"),
    ("ml/100ml", "milliliter per 100 milliliter", "ml/dl"),
    ("ml/min/g", "milliliter per minute per gram", "ml/min/g"),
    # dose, activity, PET
    ("Gy", "Gray", "Gy"),
    ("cGy", "centigray", "cGy"),
    ("mGy", "milligray", "mGy"),
    ("Sv", "Sievert", "Sv"),
    ("mSv", "millisievert", "mSv"),
    ("Bq", "Becquerel", "Bq"),
    ("MBq", "megabecquerel", "MBq"),
    ("Bq/ml", "Becquerels/milliliter", "Bq/ml"),
    ("kBq/ml", "kilobecquerels/milliliter", "kBq/ml"),
    ("{SUVbw}g/ml", "Standardized Uptake Value body weight", "g/ml"),
    ("{SUVlbm}g/ml", "Standardized Uptake Value lean body mass", "g/ml"),
    ("{SUVibw}g/ml", "Standardized Uptake Value ideal body weight", "g/ml"),
    ("{SUVbsa}cm2/ml", "Standardized Uptake Value body surface area", "cm**2/ml"),
    # velocity (phase contrast)
    ("cm/s", "centimeter per second", "cm/s"),
    ("mm/s", "millimeter per second", "mm/s"),
)

_BY_CODE = {code: pint_str for code, _, pint_str in UCUM_TABLE}

# ---------------------------------------------------------------- pint registry
_REGISTRY = None


def _definitions() -> list[str]:
    defs = [
        "hounsfield_unit = [radiodensity] = HU = hnsf_U",
        "ppb = 1e-9",
    ]
    for k in range(-18, 19):
        if k:
            defs.append(f"pow10_{'m' if k < 0 else ''}{abs(k)} = 1e{k}")
    return defs


def get_registry():
    """The dcmxr pint ``UnitRegistry`` (built on first use).

    Raises
    ------
    MissingDependencyError
        When pint is not installed (``pip install 'dcmxr[units]'``).
    """
    global _REGISTRY
    if _REGISTRY is None:
        try:
            import pint
        except ImportError as exc:  # pragma: no cover - exercised without pint
            raise missing_dependency("pint", "units") from exc
        reg = pint.UnitRegistry(force_ndarray_like=True)
        for d in _definitions():
            reg.define(d)
        _REGISTRY = reg
    return _REGISTRY


def __getattr__(name: str) -> Any:  # module attribute ``ureg``, built lazily
    if name == "ureg":
        return get_registry()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def quantify(obj: Any) -> Any:
    """``obj.pint.quantify(unit_registry=ureg)``: data and coords with a ``units`` attr.

    Raises
    ------
    MissingDependencyError
        When pint or pint-xarray is not installed.
    """
    reg = get_registry()
    try:
        import pint_xarray  # noqa: F401  (registers .pint)
    except ImportError as exc:  # pragma: no cover
        raise missing_dependency("pint_xarray", "units") from exc
    return obj.pint.quantify(unit_registry=reg)


def attr_quantity(obj: Any, name: str) -> Any:
    """A scalar attr as a pint Quantity in its unit from :data:`ATTR_UNITS`.

    >>> attr_quantity(da, "echo_time").to("s")      # doctest: +SKIP

    Raises
    ------
    KeyError
        When the attr is absent or has no known unit.
    """
    if name not in obj.attrs:
        raise KeyError(f"attr {name!r} is not set on this object")
    if name not in ATTR_UNITS:
        raise KeyError(f"attr {name!r} has no known unit (known: {sorted(ATTR_UNITS)})")
    return get_registry().Quantity(obj.attrs[name], ATTR_UNITS[name])


# ------------------------------------------------------------------- UCUM grammar
# prefix symbol -> (pint prefix name, value)
_PREFIXES: dict[str, tuple[str, float]] = {
    "Y": ("yotta", 1e24), "Z": ("zetta", 1e21), "E": ("exa", 1e18), "P": ("peta", 1e15),
    "T": ("tera", 1e12), "G": ("giga", 1e9), "M": ("mega", 1e6), "k": ("kilo", 1e3),
    "h": ("hecto", 1e2), "da": ("deca", 1e1), "d": ("deci", 1e-1), "c": ("centi", 1e-2),
    "m": ("milli", 1e-3), "u": ("micro", 1e-6), "n": ("nano", 1e-9), "p": ("pico", 1e-12),
    "f": ("femto", 1e-15), "a": ("atto", 1e-18), "z": ("zepto", 1e-21), "y": ("yocto", 1e-24),
}
_PREFIX_BY_NAME = {name: sym for sym, (name, _) in _PREFIXES.items()}

# UCUM atom -> (pint unit name, metric i.e. prefixable)
_ATOMS: dict[str, tuple[str, bool]] = {
    "m": ("meter", True), "g": ("gram", True), "s": ("second", True),
    "l": ("liter", True), "L": ("liter", True),
    "min": ("minute", False), "h": ("hour", False), "d": ("day", False),
    "wk": ("week", False), "mo": ("month", False), "a": ("year", False),
    "Hz": ("hertz", True), "Bq": ("becquerel", True), "Ci": ("curie", True),
    "Gy": ("gray", True), "Sv": ("sievert", True), "T": ("tesla", True), "G": ("gauss", True),
    "V": ("volt", True), "A": ("ampere", True), "eV": ("electron_volt", True),
    "rad": ("radian", True), "sr": ("steradian", True), "deg": ("degree", False),
    "'": ("arcminute", False), "''": ("arcsecond", False),
    "Cel": ("degree_Celsius", True), "K": ("kelvin", True), "mol": ("mole", True),
    "N": ("newton", True), "Pa": ("pascal", True), "J": ("joule", True), "W": ("watt", True),
    "C": ("coulomb", True), "Ohm": ("ohm", True), "S": ("siemens", True),
    "%": ("percent", False), "[ppm]": ("ppm", False), "[ppb]": ("ppb", False),
    "[hnsf'U]": ("hounsfield_unit", False), "m[Hg]": ("meter_Hg", True),
}
_ATOM_BY_PINT = {}
for _atom, (_pname, _) in _ATOMS.items():
    _ATOM_BY_PINT.setdefault(_pname, _atom)
_ATOM_BY_PINT.update({"count": "{counts}", "millimeter_Hg": "mm[Hg]"})
# longest first so "min" wins over "m"+..., "[hnsf'U]" over "[", "''" over "'"
_ATOM_KEYS = sorted(_ATOMS, key=len, reverse=True)


class _Comp:
    """One unit component: prefix value * atom ** exp (atom None: a pure factor)."""

    __slots__ = ("prefix", "atom", "exp")

    def __init__(self, prefix: float, atom: str | None, exp: int):
        self.prefix, self.atom, self.exp = prefix, atom, exp


class _UcumParser:
    """Recursive-descent parser of the UCUM case-sensitive grammar (the imaging subset)."""

    def __init__(self, code: str):
        self.s = code
        self.i = 0

    def error(self, why: str) -> ValueError:
        return ValueError(f"cannot parse UCUM code {self.s!r} at position {self.i}: {why}")

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def parse(self) -> tuple[float, list[_Comp]]:
        if self.s == "":
            raise self.error("empty code")
        factor, comps = self.term()
        if self.i != len(self.s):
            raise self.error(f"unexpected {self.s[self.i:]!r}")
        return factor, comps

    def term(self) -> tuple[float, list[_Comp]]:
        factor, comps = 1.0, []
        sign = 1
        if self.peek() == "/":
            self.i += 1
            sign = -1
        f, c = self.component()
        factor *= f ** sign
        comps += [_Comp(x.prefix, x.atom, x.exp * sign) for x in c]
        while self.peek() in (".", "/"):
            op = self.s[self.i]
            self.i += 1
            sign = -1 if op == "/" else 1
            f, c = self.component()
            factor *= f ** sign
            comps += [_Comp(x.prefix, x.atom, x.exp * sign) for x in c]
        return factor, comps

    def exponent(self) -> int | None:
        m = re.compile(r"[+-]?\d+").match(self.s, self.i)
        if not m:
            return None
        self.i = m.end()
        return int(m.group())

    def annotation(self) -> bool:
        if self.peek() != "{":
            return False
        j = self.s.find("}", self.i)
        if j < 0:
            raise self.error("unclosed annotation")
        self.i = j + 1
        return True

    def component(self) -> tuple[float, list[_Comp]]:
        if self.peek() == "(":
            self.i += 1
            f, c = self.term()
            if self.peek() != ")":
                raise self.error("missing ')'")
            self.i += 1
            e = self.exponent()
            if e is not None:
                f, c = f**e, [_Comp(x.prefix, x.atom, x.exp * e) for x in c]
            self.annotation()
            return f, c
        if self.annotation():  # a bare annotation is unity; "{SUVbw}g" reads as "g"
            if self.peek() and self.peek() not in "./)":
                return self.component()
            return 1.0, []
        # "10*" / "10^" power-of-ten atoms: 10*-3
        m = re.compile(r"10[*^]").match(self.s, self.i)
        if m:
            self.i = m.end()
            e = self.exponent()
            return 10.0 ** (1 if e is None else e), []
        m = re.compile(r"\d+").match(self.s, self.i)
        if m:
            self.i = m.end()
            f = float(m.group())
            nxt = self.peek()
            if nxt in ("-", "+") or (nxt and not nxt.isdigit() and nxt not in "./)"):
                if nxt in ("-", "+"):  # non-standard "10-3" meaning 10^-3
                    e = self.exponent()
                    f = f ** e
                    if self.peek() in ("", ".", "/", ")"):
                        return f, []
                # a factor glued to a unit ("100g"): fold it into that unit's prefix
                pf, comps = self.component()
                if len(comps) == 1 and abs(comps[0].exp) == 1:
                    c0 = comps[0]
                    return pf, [_Comp(c0.prefix * f ** c0.exp, c0.atom, c0.exp)]
                return pf * f, comps
            return f, []
        return self.simple()

    def simple(self) -> tuple[float, list[_Comp]]:
        rest = self.s[self.i:]
        # longest match wins; a whole atom wins a tie ("min", "mol", "Pa", "sr", "h")
        best: tuple[int, float, str] | None = None
        for atom in _ATOM_KEYS:
            if rest.startswith(atom):
                best = (len(atom), 1.0, atom)
                break
        for psym, (_, pval) in _PREFIXES.items():
            if rest.startswith(psym):
                for atom in _ATOM_KEYS:
                    if rest.startswith(atom, len(psym)) and _ATOMS[atom][1]:
                        n = len(psym) + len(atom)
                        if best is None or n > best[0]:
                            best = (n, pval, atom)
                        break
        if best is None:
            raise self.error("unknown unit")
        self.i += best[0]
        return 1.0, [self._finish(best[1], best[2])]

    def _finish(self, prefix: float, atom: str) -> _Comp:
        e = self.exponent()
        self.annotation()
        return _Comp(prefix, atom, 1 if e is None else e)


def _prefix_name(value: float) -> str | None:
    for name, v in _PREFIXES.values():
        if abs(value / v - 1) < 1e-9:
            return name
    return "" if abs(value - 1) < 1e-12 else None


def _pow10_name(factor: float) -> str:
    import math

    k = round(math.log10(factor)) if factor > 0 else None
    if k is None or abs(10.0**k / factor - 1) > 1e-9 or not -18 <= k <= 18:
        raise ValueError(f"UCUM factor {factor:g} is not a power of ten pint can carry")
    return f"pow10_{'m' if k < 0 else ''}{abs(k)}"


def _comps_to_pint(factor: float, comps: list[_Comp], code: str) -> str:
    num, den = [], []
    if abs(factor - 1) > 1e-12:
        num.append(_pow10_name(factor))
    for c in comps:
        pname = _ATOMS[c.atom][0]
        prefix = _prefix_name(c.prefix)
        if prefix is None:
            raise ValueError(f"UCUM code {code!r}: factor {c.prefix:g} on {c.atom!r} is not an SI prefix")
        name = prefix + pname
        e = abs(c.exp)
        if c.exp == 0:
            continue
        (num if c.exp > 0 else den).append(name if e == 1 else f"{name}**{e}")
    out = " * ".join(num) if num else ("1" if den else "dimensionless")
    if den:
        out += " / " + " / ".join(den)
    return out


def ucum_to_pint(code: str) -> str:
    """A pint unit string (parsed by :data:`ureg`) for a UCUM code.

    Parameters
    ----------
    code : str
        UCUM (case-sensitive) code, e.g. ``"mm2/s"``, ``"[hnsf'U]"``, ``"ml/100ml/s"``.

    Returns
    -------
    str
        E.g. ``"mm**2/s"``, ``"HU"``, ``"ml/dl/s"``. Annotations (``{SUVbw}``) are
        dropped (UCUM gives them no value); integer factors glued to a unit fold
        into its prefix (``100g`` -> ``hg``); bare powers of ten become
        ``pow10_<k>`` units.

    Raises
    ------
    ValueError
        When the code cannot be parsed.
    """
    code = str(code).strip()
    if code in _BY_CODE:
        return _BY_CODE[code]
    factor, comps = _UcumParser(code).parse()
    return _comps_to_pint(factor, comps, code)


def pint_to_ucum(unit: Any) -> tuple[str, str]:
    """The UCUM code and a code meaning for a pint unit.

    Parameters
    ----------
    unit : str, pint.Unit or pint.Quantity
        A unit :data:`ureg` understands (``"ms"``, ``"mm**2/s"``, ``"HU"``, ...).

    Returns
    -------
    (code, meaning) : tuple of str
        From :data:`UCUM_TABLE` when a row has an equal unit (so ``"HU"`` ->
        ``("[hnsf'U]", "Hounsfield Unit")``); otherwise built from the unit's
        components (``"kBq/l"`` -> ``("kBq/l", "kilobecquerel / liter")``).

    Raises
    ------
    ValueError
        When the unit has a component with no UCUM atom.
    """
    reg = get_registry()
    if hasattr(unit, "units") and not isinstance(unit, str):
        unit = unit.units
    u = reg.Unit(unit) if isinstance(unit, str) else reg.Unit(str(unit))
    for code, meaning, pint_str in UCUM_TABLE:
        if reg.Unit(pint_str) == u:
            return code, meaning
    num, den = [], []
    factor_code = ""
    for name, exp in u._units.items():
        if name.startswith("pow10_"):
            k = -int(name[7:]) if name[6] == "m" else int(name[6:])
            factor_code = f"10*{k}" if exp == 1 else ""
            if exp != 1:
                raise ValueError(f"unit {u} has a power-of-ten factor with exponent {exp}")
            continue
        if name in _ATOM_BY_PINT:
            sym = _ATOM_BY_PINT[name]
        else:
            parsed = reg.parse_unit_name(name)
            sym = None
            for pfx, base, _ in parsed:
                if base in _ATOM_BY_PINT and (pfx == "" or pfx in _PREFIX_BY_NAME):
                    sym = (_PREFIX_BY_NAME[pfx] if pfx else "") + _ATOM_BY_PINT[base]
                    break
            if sym is None:
                raise ValueError(f"no UCUM code for the pint unit {name!r} (in {u})")
        e = abs(int(exp)) if float(exp).is_integer() else None
        if e is None:
            raise ValueError(f"unit {u} has a non-integer exponent")
        (num if exp > 0 else den).append(sym + (str(e) if e != 1 else ""))
    if factor_code:
        num.insert(0, factor_code)
    code = ".".join(num) if num else ("" if den else "1")
    if den:
        code += "/" + "/".join(den)
    return code, str(u) if str(u) else "no units"
