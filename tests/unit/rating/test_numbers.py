import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.rating import InvalidNumber, NumberPlan, normalize

ANY = NumberPlan()
UK = NumberPlan(country_code="44", international_prefixes=("00",))
US = NumberPlan(country_code="1", international_prefixes=("011",), national_prefix="1")
DE = NumberPlan(country_code="49", international_prefixes=("00",))
PBX = NumberPlan(country_code="44", international_prefixes=("00",), strip_prefixes=("9#", "99#"))


@pytest.mark.parametrize(
    ("raw", "plan", "expected"),
    [
        ("00442071234567", ANY, "442071234567"),
        ("+1 (212) 555-0100", ANY, "12125550100"),
        ("02071234567", UK, "442071234567"),
        ("011 49 30 1234567", ANY, "49301234567"),
        ("011 49 30 1234567", US, "49301234567"),
        ("sip:+4930123@host;user=phone", ANY, "4930123"),
        # international formats
        ("+44 20 7123 4567", UK, "442071234567"),
        ("+44 (0)20 7123 4567", ANY, "4402071234567"),  # "(0)" is kept: it is digits
        ("0049 30 1234567", DE, "49301234567"),
        ("+49.30.123.4567", DE, "49301234567"),
        ("  +1-212-555-0100\t", ANY, "12125550100"),
        # national formats
        ("030 1234567", DE, "49301234567"),
        ("030/1234567", DE, "49301234567"),
        ("020 7123 4567", UK, "442071234567"),
        ("1 212 555 0100", US, "12125550100"),
        ("0113 496 0000", UK, "441134960000"),  # Leeds: not the "011" exit code in a UK plan
        ("02071234567", ANY, "02071234567"),  # no country code: left alone
        ("2071234567", UK, "2071234567"),  # no trunk prefix: left alone
        # SIP and TEL URIs
        ("sip:00442071234567@10.0.0.1:5060;transport=udp", ANY, "442071234567"),
        ("SIP:+4930123@Host", ANY, "4930123"),
        ("sips:+4930123@example.com", ANY, "4930123"),
        ("<sip:+4930123@example.com>;tag=abc", ANY, "4930123"),
        ('"Alice" <sip:+4930123@example.com;user=phone>', ANY, "4930123"),
        ("sip:+4930123;npdi;rn=+4930999@host", ANY, "4930123"),
        ("sip:02071234567:secret@pbx.example.com", UK, "442071234567"),
        ("sip:+44-20-7123-4567@host?Subject=x", ANY, "442071234567"),
        ("tel:+1-212-555-0100", ANY, "12125550100"),
        ("tel:+1-212-555-0100;phone-context=example.com", ANY, "12125550100"),
        ("tel:020-7123-4567;phone-context=+44", UK, "442071234567"),
        ("4930123@host", ANY, "4930123"),
        # technical prefixes, longest first, removed before anything else
        ("9#00442071234567", PBX, "442071234567"),
        ("99#02071234567", PBX, "442071234567"),
        ("9#+442071234567", PBX, "442071234567"),
        ("sip:9%2302071234567@pbx", PBX, "442071234567"),
        ("02071234567", PBX, "442071234567"),  # strip prefixes are optional
        # add_prefix is prepended last
        ("+442071234567", NumberPlan(add_prefix="777"), "777442071234567"),
        ("02071234567", NumberPlan(country_code="44", add_prefix="1"), "1442071234567"),
    ],
)
def test_normalize(raw: str, plan: NumberPlan, expected: str) -> None:
    assert normalize(raw, plan) == expected


def test_default_plan_treats_011_as_an_exit_code() -> None:
    # Plans for countries with 011x area codes must not list "011" as an exit code.
    leeds = "01134960000"
    assert normalize(leeds, NumberPlan(country_code="44")) == "34960000"
    assert normalize(leeds, UK) == "441134960000"


@pytest.mark.parametrize(
    ("raw", "plan"),
    [
        ("", ANY),
        ("   ", ANY),
        ("+", ANY),
        ("00", ANY),
        ("0", UK),
        ("-()", ANY),
        ("abc", ANY),
        ("44 20 7123 4567 ext 5", ANY),
        ("12*34", ANY),
        ("++442071234567", ANY),
        ("44+20", ANY),
        ("٤٤٢٠", ANY),  # Arabic-Indic digits
        ("sip:@host", ANY),
        ("sip:alice@example.com", ANY),
        ("9#", PBX),
        ("", NumberPlan(add_prefix="1")),
    ],
)
def test_invalid_numbers(raw: str, plan: NumberPlan) -> None:
    with pytest.raises(InvalidNumber, match="number"):
        normalize(raw, plan)


def test_invalid_number_is_a_value_error_naming_the_input() -> None:
    with pytest.raises(ValueError, match="'abc'"):
        normalize("abc", ANY)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"country_code": "+44"},
        {"country_code": "UK"},
        {"national_prefix": "O"},
        {"international_prefixes": ("",)},
        {"international_prefixes": ("+",)},
        {"strip_prefixes": ("",)},
        {"add_prefix": "#"},
    ],
)
def test_plan_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        NumberPlan(**kwargs)  # type: ignore[arg-type]


e164 = st.text("0123456789", min_size=1, max_size=15)
plans = st.builds(
    NumberPlan,
    country_code=st.sampled_from(["", "1", "44", "49"]),
    international_prefixes=st.sampled_from([("00",), ("011",), ("00", "011")]),
    national_prefix=st.sampled_from(["", "0", "1"]),
    add_prefix=st.sampled_from(["", "9"]),
)


@given(e164, plans)
def test_plus_form_is_always_the_digits(digits: str, plan: NumberPlan) -> None:
    assert normalize("+" + digits, plan) == plan.add_prefix + digits


@given(e164, plans, st.lists(st.sampled_from(" -.()/"), min_size=len("+123456789012345")))
def test_separators_do_not_matter(digits: str, plan: NumberPlan, separators: list[str]) -> None:
    decorated = "".join(c + s for c, s in zip("+" + digits, separators, strict=False))
    assert normalize(decorated, plan) == normalize("+" + digits, plan)


@given(st.text(max_size=20), plans)
def test_result_is_digits_or_invalid(raw: str, plan: NumberPlan) -> None:
    try:
        result = normalize(raw, plan)
    except InvalidNumber:
        return
    assert result and result.isascii() and result.isdigit()
