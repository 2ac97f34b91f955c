"""resource.Quantity parsing, arithmetic and canonical strings, checked against Kubernetes'."""

from __future__ import annotations

from fractions import Fraction

import pytest

from kubelite.api.quantity import (
    ERR_FORMAT_WRONG,
    ERR_NUMERIC,
    ERR_SUFFIX,
    Format,
    Quantity,
    format_quantity,
    is_valid_quantity,
    parse_quantity,
)


@pytest.mark.parametrize(
    ("text", "canonical", "fmt"),
    [
        ("0", "0", Format.DECIMAL_SI),
        ("100m", "100m", Format.DECIMAL_SI),
        ("0.1", "100m", Format.DECIMAL_SI),
        ("1000m", "1", Format.DECIMAL_SI),
        ("1.5", "1500m", Format.DECIMAL_SI),
        ("1000", "1k", Format.DECIMAL_SI),
        ("1500", "1500", Format.DECIMAL_SI),
        ("2k", "2k", Format.DECIMAL_SI),
        ("5n", "5n", Format.DECIMAL_SI),
        ("1Ki", "1Ki", Format.BINARY_SI),
        ("1.5Gi", "1536Mi", Format.BINARY_SI),
        ("1024Mi", "1Gi", Format.BINARY_SI),
        ("-1.5Gi", "-1536Mi", Format.BINARY_SI),
        ("1e3", "1e3", Format.DECIMAL_EXPONENT),
        ("1E3", "1e3", Format.DECIMAL_EXPONENT),
        ("1e+3", "1e3", Format.DECIMAL_EXPONENT),
        ("12e-3", "12e-3", Format.DECIMAL_EXPONENT),
        ("1.1e3", "1100", Format.DECIMAL_EXPONENT),
        ("+1", "1", Format.DECIMAL_SI),
        ("1.", "1", Format.DECIMAL_SI),
        (".5", "500m", Format.DECIMAL_SI),
        ("0Mi", "0", Format.BINARY_SI),
        ("1E", "1E", Format.DECIMAL_SI),
    ],
)
def test_parse_and_canonical_form(text: str, canonical: str, fmt: Format) -> None:
    q = parse_quantity(text)
    assert str(q) == canonical
    assert format_quantity(q) == canonical
    assert q.format is fmt
    # The canonical form parses back to the same value.
    assert parse_quantity(canonical) == q


def test_small_binary_values_print_in_decimal() -> None:
    q = parse_quantity("0.5Ki")
    assert q.amount == 512
    assert str(q) == "512"
    # Below one, binary quantities become DecimalSI at parse time, as in Kubernetes.
    assert parse_quantity("0.0001Ki").format is Format.DECIMAL_SI


def test_fractional_binary_value_prints_exactly() -> None:
    assert str(parse_quantity("1.1Ki")) == "1126400m"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc", ERR_FORMAT_WRONG),
        ("1.5.5", ERR_FORMAT_WRONG),
        ("10 Mi", ERR_FORMAT_WRONG),
        ("1MB", ERR_FORMAT_WRONG),
        ("", ERR_FORMAT_WRONG),
        (" 1", ERR_FORMAT_WRONG),
        ("1e", ERR_SUFFIX),
        ("1K", ERR_SUFFIX),
        ("1i", ERR_SUFFIX),
        ("1MM", ERR_SUFFIX),
        ("1Mi+3", ERR_SUFFIX),
        (".", ERR_NUMERIC),
        ("+.", ERR_NUMERIC),
        ("e3", ERR_NUMERIC),
    ],
)
def test_rejects_bad_quantities_with_kubernetes_messages(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_quantity(text)
    assert str(info.value) == message
    assert not is_valid_quantity(text)


def test_regex_message_is_kubernetes_wording() -> None:
    assert ERR_FORMAT_WRONG == (
        "quantities must match the regular expression "
        "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )


def test_bare_sign_is_zero_like_kubernetes() -> None:
    assert parse_quantity("+").is_zero()
    assert parse_quantity("-").is_zero()


def test_values_round_away_from_zero_to_nano() -> None:
    assert parse_quantity("0.0000000001").amount == Fraction(1, 10**9)
    assert str(parse_quantity("-0.0000000001")) == "-1n"
    assert parse_quantity("1.0000000001").amount == Fraction(1_000_000_001, 10**9)


def test_binary_values_are_capped_at_max_int64() -> None:
    assert parse_quantity("9Ei").amount == 2**63 - 1
    assert parse_quantity("7Ei").amount == 7 * 2**60


def test_milli_value_and_value_round_up() -> None:
    assert parse_quantity("100m").milli_value() == 100
    assert parse_quantity("1.5").milli_value() == 1500
    assert parse_quantity("1n").milli_value() == 1  # ceil, as MilliValue
    assert parse_quantity("1500m").value() == 2
    assert parse_quantity("1Gi").value() == 1024**3
    assert parse_quantity("-1500m").value() == -2  # away from zero
    assert parse_quantity("64Mi").scaled_value(6) == 68  # 67.108864 M rounded up


def test_comparison_is_by_value() -> None:
    assert parse_quantity("1") == parse_quantity("1000m")
    assert parse_quantity("1Ki") == parse_quantity("1024")
    assert parse_quantity("500m") < parse_quantity("1")
    assert parse_quantity("2Gi") > parse_quantity("2G")
    assert parse_quantity("1k") >= parse_quantity("1000")
    assert len({parse_quantity("1"), parse_quantity("1000m")}) == 1
    assert parse_quantity("1").cmp(parse_quantity("2")) == -1


def test_addition_keeps_receiver_format() -> None:
    total = parse_quantity("1Gi") + parse_quantity("512Mi")
    assert str(total) == "1536Mi"
    assert str(parse_quantity("100m") + parse_quantity("900m")) == "1"
    # A zero receiver takes the other side's format.
    assert (Quantity.zero() + parse_quantity("1Ki")).format is Format.BINARY_SI
    assert str(parse_quantity("1") - parse_quantity("250m")) == "750m"
    assert str(-parse_quantity("1Ki")) == "-1Ki"


def test_constructors() -> None:
    assert str(Quantity.from_milli(250)) == "250m"
    assert str(Quantity.from_int(2048, Format.BINARY_SI)) == "2Ki"
    assert Quantity.from_int(3).value() == 3


def test_quantity_is_frozen() -> None:
    q = parse_quantity("1")
    with pytest.raises(AttributeError):
        q.amount = Fraction(2)  # type: ignore[misc]


def test_huge_exponents_do_not_explode() -> None:
    with pytest.raises(ValueError):
        parse_quantity("1e100000000")
    # Rounded up to one nano; exponent form, as Kubernetes keeps the DecimalExponent format.
    assert str(parse_quantity("1e-100000000")) == "1e-9"
