"""Kubernetes' resource.Quantity: parsing, exact arithmetic and the canonical string form.

Parsing follows apimachinery's ParseQuantity step by step (sign, digits, optional fraction,
suffix, optional signed exponent), including its quirks: ``"+"`` parses as zero, ``"1."`` is
allowed, non-zero values are rounded away from zero to the nearest nano, BinarySI values are
capped at 2^63-1. The value is held as an exact Fraction; ``str()`` gives Kubernetes' canonical
form (``"1.5Gi"`` -> ``"1536Mi"``, ``"0.1"`` -> ``"100m"``, ``"1e3"`` -> ``"1e3"``).
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from fractions import Fraction

ERR_FORMAT_WRONG = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
ERR_NUMERIC = "unable to parse numeric part of quantity"
ERR_SUFFIX = "unable to parse quantity's suffix"


class Format(enum.Enum):
    DECIMAL_EXPONENT = "DecimalExponent"  # 1e3
    BINARY_SI = "BinarySI"  # 1Ki
    DECIMAL_SI = "DecimalSI"  # 1k


_BIN_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DEC_SUFFIXES = {
    "n": -9,
    "u": -6,
    "m": -3,
    "": 0,
    "k": 3,
    "M": 6,
    "G": 9,
    "T": 12,
    "P": 15,
    "E": 18,
}
_DEC_BY_EXP = {v: k for k, v in _DEC_SUFFIXES.items()}
_BIN_BY_EXP = {v // 10: k for k, v in _BIN_SUFFIXES.items()} | {0: ""}
_SUFFIX_CHARS = frozenset("eEinumkKMGTP")
_DIGITS = frozenset("0123456789")
_NANO = Fraction(1, 10**9)
_MAX_INT64 = 2**63 - 1
# Exponents this far out would make exact arithmetic explode; no real resource needs them.
_MAX_EXPONENT = 1000


def _interpret_suffix(suffix: str) -> tuple[int, int, Format] | None:
    """(base, exponent, format) for a suffix, or None (apimachinery's suffixer.interpret)."""
    if suffix in _DEC_SUFFIXES:
        return 10, _DEC_SUFFIXES[suffix], Format.DECIMAL_SI
    if suffix in _BIN_SUFFIXES:
        return 2, _BIN_SUFFIXES[suffix], Format.BINARY_SI
    if len(suffix) > 1 and suffix[0] in "eE":
        text = suffix[1:]
        body = text[1:] if text[0] in "+-" else text
        if not body or not body.isdigit() or not body.isascii():
            return None
        exponent = int(text)
        if exponent >= 2**63 or exponent < -(2**63):
            return None
        return 10, exponent, Format.DECIMAL_EXPONENT
    return None


def _split(text: str) -> tuple[bool, str, str]:
    """Split into (positive, numeric value, suffix) like parseQuantityString; raises on bad form."""
    positive = True
    pos = 0
    end = len(text)
    if pos < end and text[0] in "+-":
        positive = text[0] == "+"
        pos += 1
    while pos < end and text[pos] == "0":
        pos += 1
    if pos >= end:
        return positive, "0", ""
    while pos < end and text[pos] in _DIGITS:
        pos += 1
    if pos >= end:
        return positive, text, ""
    if text[pos] == ".":
        pos += 1
        while pos < end and text[pos] in _DIGITS:
            pos += 1
        if pos >= end:
            return positive, text, ""
    value = text[:pos]
    suffix_start = pos
    while pos < end and text[pos] in _SUFFIX_CHARS:
        pos += 1
    if pos < end and text[pos] in "+-":
        pos += 1
    while pos < end and text[pos] in _DIGITS:
        pos += 1
    if pos < end:
        raise ValueError(ERR_FORMAT_WRONG)
    return positive, value, text[suffix_start:]


def _parse_decimal(value: str) -> Fraction:
    """The exact value of ``[+-]?digits[.digits]``; at least one digit (inf.Dec.SetString)."""
    sign = 1
    if value and value[0] in "+-":
        sign = -1 if value[0] == "-" else 1
        value = value[1:]
    whole, _, frac = value.partition(".")
    if not (whole + frac):
        raise ValueError(ERR_NUMERIC)
    return sign * Fraction(int(whole + frac), 10 ** len(frac))


def _round_nano_away(amount: Fraction) -> Fraction:
    """Round away from zero to a multiple of 1e-9 (Kubernetes rounds tiny requests up)."""
    scaled = amount * 10**9
    if scaled.denominator == 1:
        return amount
    magnitude = -(-abs(scaled.numerator) // scaled.denominator)
    return Fraction(magnitude if amount > 0 else -magnitude, 10**9)


def _scaled_away(amount: Fraction, scale: int) -> int:
    """amount / 10^scale as an integer, rounded away from zero (Kubernetes' ScaledValue)."""
    scaled = amount / Fraction(10) ** scale
    if scaled.denominator == 1:
        return scaled.numerator
    magnitude = -(-abs(scaled.numerator) // scaled.denominator)
    return magnitude if scaled > 0 else -magnitude


@functools.total_ordering
@dataclass(frozen=True, eq=False)
class Quantity:
    """An exact quantity and the format it prints in. Equality and ordering compare values."""

    amount: Fraction
    format: Format = Format.DECIMAL_SI

    @classmethod
    def from_int(cls, value: int, fmt: Format = Format.DECIMAL_SI) -> Quantity:
        return cls(Fraction(value), fmt)

    @classmethod
    def from_milli(cls, milli: int) -> Quantity:
        return cls(Fraction(milli, 1000), Format.DECIMAL_SI)

    @classmethod
    def zero(cls) -> Quantity:
        return cls(Fraction(0))

    def value(self) -> int:
        """The value rounded away from zero to an integer (Kubernetes' Value)."""
        return _scaled_away(self.amount, 0)

    def milli_value(self) -> int:
        """The value in thousandths, rounded away from zero (Kubernetes' MilliValue)."""
        return _scaled_away(self.amount, -3)

    def scaled_value(self, scale: int) -> int:
        """The value in units of 10^scale, rounded away from zero (``scale=-9`` for nanos)."""
        return _scaled_away(self.amount, scale)

    def is_zero(self) -> bool:
        return self.amount == 0

    def sign(self) -> int:
        return (self.amount > 0) - (self.amount < 0)

    def cmp(self, other: Quantity) -> int:
        return (self.amount > other.amount) - (self.amount < other.amount)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        return self.amount == other.amount

    def __lt__(self, other: Quantity) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        return self.amount < other.amount

    def __hash__(self) -> int:
        return hash(self.amount)

    def __add__(self, other: Quantity) -> Quantity:
        # Kubernetes' Add keeps the receiver's format unless the receiver is zero.
        fmt = other.format if self.amount == 0 else self.format
        return Quantity(self.amount + other.amount, fmt)

    def __sub__(self, other: Quantity) -> Quantity:
        fmt = other.format if self.amount == 0 else self.format
        return Quantity(self.amount - other.amount, fmt)

    def __neg__(self) -> Quantity:
        return Quantity(-self.amount, self.format)

    def __str__(self) -> str:
        return format_quantity(self)

    def __repr__(self) -> str:
        return f"Quantity({format_quantity(self)!r})"


def parse_quantity(text: str) -> Quantity:
    """Parse a quantity string exactly as Kubernetes' resource.ParseQuantity does.

    Raises ValueError with Kubernetes' message (ERR_FORMAT_WRONG, ERR_NUMERIC or ERR_SUFFIX).
    """
    if not text:
        raise ValueError(ERR_FORMAT_WRONG)
    if text == "0":
        return Quantity(Fraction(0), Format.DECIMAL_SI)
    positive, value, suffix = _split(text)
    interpreted = _interpret_suffix(suffix)
    if interpreted is None:
        raise ValueError(ERR_SUFFIX)
    base, exponent, fmt = interpreted
    amount = abs(_parse_decimal(value))
    if amount != 0 and abs(exponent) > _MAX_EXPONENT:
        if exponent > 0:
            raise ValueError(f"quantity too large: {text}")
        amount = _NANO  # far below a nano: rounds up to the smallest representable value
    elif base == 10:
        amount *= Fraction(10) ** exponent
    else:
        amount *= 2**exponent
    if amount != 0:
        amount = _round_nano_away(amount)
    if fmt is Format.BINARY_SI and amount > _MAX_INT64:
        amount = Fraction(_MAX_INT64)
    if fmt is Format.BINARY_SI and 0 < amount < 1:
        fmt = Format.DECIMAL_SI
    return Quantity(amount if positive else -amount, fmt)


def is_valid_quantity(text: str) -> bool:
    try:
        parse_quantity(text)
    except ValueError:
        return False
    return True


def format_quantity(q: Quantity) -> str:
    """Kubernetes' canonical form (CanonicalizeBytes): the largest exact suffix."""
    amount = q.amount
    if amount == 0:
        return "0"
    fmt = q.format
    if fmt is Format.BINARY_SI and (-1024 < amount < 1024 or amount.denominator != 1):
        fmt = Format.DECIMAL_SI  # small or fractional binary values print in decimal
    if fmt is Format.BINARY_SI:
        number = amount.numerator
        exp = 0
        while number % 1024 == 0:
            number //= 1024
            exp += 1
        while exp > 6:  # beyond Ei there is no suffix
            number *= 1024
            exp -= 1
        return f"{number}{_BIN_BY_EXP[exp]}"
    amount = _round_nano_away(amount)
    number = (amount * 10**9).numerator
    exp = -9
    while number % 10 == 0:
        number //= 10
        exp += 1
    while exp % 3 != 0:
        number *= 10
        exp -= 1
    if fmt is Format.DECIMAL_EXPONENT:
        return f"{number}e{exp}" if exp != 0 else str(number)
    if exp > 18:
        number *= 10 ** (exp - 18)
        exp = 18
    return f"{number}{_DEC_BY_EXP[exp]}"
