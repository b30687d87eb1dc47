import io
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.rating import COLUMNS, Rate, RowError, iter_rows, read_rates, write_rates

from .strategies import rates

HEADER = ",".join(COLUMNS[:-2])  # all but periods and next_increment_ms (tested apart)


def lines(*rows: str) -> list[str]:
    return [row + "\n" for row in rows]


def test_reads_a_full_row() -> None:
    rates_, errors = read_rates(
        lines(
            HEADER,
            "442071,UK London,0.0123,0.05,30,6,10,3,2024-01-01,2025-01-01T12:30:00+02:00",
        )
    )
    assert errors == []
    assert rates_ == [
        Rate(
            prefix="442071",
            destination="UK London",
            price_per_min_micros=12_300,
            connect_fee_micros=50_000,
            first_increment_s=30,
            next_increment_s=6,
            min_duration_s=10,
            grace_s=3,
            effective_from=datetime(2024, 1, 1, tzinfo=UTC),
            effective_to=datetime(2025, 1, 1, 10, 30, tzinfo=UTC),
        )
    ]


def test_empty_optional_fields_take_defaults() -> None:
    rates_, errors = read_rates(lines(HEADER, "44,UK,1,,,,,,,"))
    assert errors == []
    assert rates_ == [Rate("44", "UK", 1_000_000)]


def test_optional_columns_may_be_left_out_and_order_is_free() -> None:
    rates_, errors = read_rates(
        lines("price_per_min,prefix,destination,grace_s", "0.5,49,Germany,2", "0.25,33,France,")
    )
    assert errors == []
    assert rates_ == [Rate("49", "Germany", 500_000, grace_s=2), Rate("33", "France", 250_000)]


def test_fields_are_trimmed_and_quoted_fields_work() -> None:
    rates_, errors = read_rates(lines(HEADER, ' 44 , "UK, London ""City""", 0.01 ,,,,,,,'))
    assert errors == []
    assert rates_[0].prefix == "44"
    assert rates_[0].destination == 'UK, London "City"'


def test_naive_datetimes_mean_utc() -> None:
    rates_, errors = read_rates(lines(HEADER, "44,UK,1,,,,,,2024-03-01T08:00:00,"))
    assert errors == []
    assert rates_[0].effective_from == datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


def test_every_bad_row_is_reported_with_its_line_number() -> None:
    text = lines(
        HEADER,  # 1
        "44,UK,0.01,,,,,,,",  # 2 ok
        "",  # 3 blank, skipped
        "4x,Bad prefix,0.01,,,,,,,",  # 4
        "45,Too precise,0.0000005,,,,,,,",  # 5
        "46,Float exponent,1e-3,,,,,,,",  # 6
        "47,Zero increment,0.01,,0,,,,,",  # 7
        "48,Backwards,0.01,,,,,,2025-01-01,2024-01-01",  # 8
        "49,Bad date,0.01,,,,,,2024-13-01,",  # 9
        "50,Too few fields,0.01",  # 10
        "51,No price,,,,,,,,",  # 11
        "52,Negative,-0.01,,,,,,,",  # 12
        "53,Seconds,0.01,,1.5,,,,,",  # 13
        "33,France,0.02,,,,,,,",  # 14 ok
    )
    rates_, errors = read_rates(text)
    assert [r.prefix for r in rates_] == ["44", "33"]
    assert [e.line for e in errors] == [4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    messages = {e.line: e.message for e in errors}
    assert "prefix" in messages[4]
    assert "'0.0000005'" in messages[5] and "6 decimals" in messages[5]
    assert "'1e-3'" in messages[6]
    assert "first_increment_s" in messages[7]
    assert "effective_to" in messages[8]
    assert "effective_from" in messages[9] and "2024-13-01" in messages[9]
    assert "expected 10 fields, got 3" in messages[10]
    assert "price_per_min: required" in messages[11]
    assert "price_per_min_micros" in messages[12]
    assert "first_increment_s" in messages[13] and "'1.5'" in messages[13]


def test_all_problems_of_one_row_are_listed_together() -> None:
    _, errors = read_rates(lines(HEADER, "44,UK,abc,x,y,,,,soon,"))
    assert len(errors) == 1
    message = errors[0].message
    for column in ("price_per_min", "connect_fee", "first_increment_s", "effective_from"):
        assert column in message


def test_duplicate_prefix_and_start_is_reported_against_the_first_line() -> None:
    text = lines(
        HEADER,
        "44,UK,0.01,,,,,,,",
        "44,UK,0.02,,,,,,2024-01-01,",
        "44,UK again,0.03,,,,,,,",
        "44,UK same instant,0.02,,,,,,2024-01-01T01:00:00+01:00,",
    )
    rates_, errors = read_rates(text)
    assert len(rates_) == 2
    assert errors == [
        RowError(
            4, "duplicate rate for prefix 44 with effective_from open (first defined on line 2)"
        ),
        RowError(
            5,
            "duplicate rate for prefix 44 with effective_from 2024-01-01T00:00:00+00:00 "
            "(first defined on line 3)",
        ),
    ]
    assert str(errors[0]).startswith("line 4: duplicate")


def test_multiline_quoted_field_keeps_physical_line_numbers() -> None:
    text = lines(HEADER, '44,"UK', 'London",0.01,,,,,,,', "4x,Bad,0.01,,,,,,,")
    rates_, errors = read_rates(text)
    assert rates_[0].destination == "UK\nLondon"
    assert errors == [RowError(4, errors[0].message)]


def test_malformed_quoting_is_reported_and_reading_continues() -> None:
    text = lines(HEADER, '44,"UK"x,0.01,,,,,,,', "33,France,0.02,,,,,,,")
    rates_, errors = read_rates(text)
    assert [r.prefix for r in rates_] == ["33"]
    assert [e.line for e in errors] == [2]
    assert "malformed CSV" in errors[0].message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (lines("prefix,destination"), "missing required column(s) in header: price_per_min"),
        (lines(HEADER + ",rate_deck"), "unknown column(s) in header: rate_deck"),
        (lines("prefix,destination,price_per_min,conect_fee"), "unknown column(s)"),
        (lines("prefix,prefix,destination,price_per_min"), "duplicate column(s) in header: prefix"),
    ],
)
def test_header_problems(text: list[str], message: str) -> None:
    rates_, errors = read_rates([*text, "44,UK,0.01\n"])
    assert rates_ == []
    assert len(errors) == 1
    assert message in errors[0].message


@pytest.mark.parametrize("text", [[], ["\n", "  \n"], "", ",,\n"])
def test_missing_header(text: list[str] | str) -> None:
    assert read_rates(text) == ([], [RowError(1, "missing header row")])


def test_data_without_header_is_rejected_as_a_bad_header() -> None:
    rates_, errors = read_rates(lines("44,UK,0.01", "33,FR,0.02"))
    assert rates_ == []
    assert errors == [RowError(1, errors[0].message)]
    assert "unknown column(s) in header: 44" in errors[0].message


def test_header_may_have_a_bom_and_any_case() -> None:
    rates_, errors = read_rates(lines("\ufeffPrefix, Destination ,PRICE_PER_MIN", "44,UK,0.01"))
    assert errors == []
    assert rates_ == [Rate("44", "UK", 10_000)]


def test_a_whole_document_string_is_accepted() -> None:
    rates_, errors = read_rates(HEADER + "\n44,UK,0.01,,,,,,,\n")
    assert errors == [] and len(rates_) == 1


def test_iter_rows_streams_with_line_numbers() -> None:
    consumed: list[str] = []

    def source() -> Iterator[str]:
        for line in lines(HEADER, "44,UK,0.01,,,,,,,", "4x,Bad,0.01,,,,,,,", "33,FR,0.02,,,,,,,"):
            consumed.append(line)
            yield line

    rows = iter_rows(source())
    line_no, item = next(rows)
    assert line_no == 2 and isinstance(item, Rate)
    assert len(consumed) == 2  # nothing read ahead of the row just yielded
    rest = list(rows)
    assert [n for n, _ in rest] == [3, 4]
    assert isinstance(rest[0][1], RowError) and isinstance(rest[1][1], Rate)


def test_iter_rows_can_skip_duplicate_detection() -> None:
    text = lines(HEADER, "44,UK,0.01,,,,,,,", "44,UK,0.02,,,,,,,")
    items = [item for _, item in iter_rows(text, detect_duplicates=False)]
    assert all(isinstance(item, Rate) for item in items) and len(items) == 2


def test_write_rates_format() -> None:
    out = io.StringIO()
    write_rates(
        [
            Rate("44", "UK, London", 12_300, connect_fee_micros=1_000_000),
            Rate(
                "1212",
                "USA",
                0,
                first_increment_s=6,
                next_increment_s=6,
                min_duration_s=12,
                grace_s=2,
                effective_from=datetime(2024, 1, 1, tzinfo=UTC),
                effective_to=datetime(2024, 7, 1, 12, 30, 15, 250, tzinfo=UTC),
            ),
        ],
        out,
    )
    assert out.getvalue() == (
        HEADER + ",periods,next_increment_ms\n"
        '44,"UK, London",0.0123,1,60,60,0,0,,,,\n'
        "1212,USA,0,0,6,6,12,2,2024-01-01T00:00:00+00:00,2024-07-01T12:30:15.000250+00:00,,\n"
    )


def test_periods_column_reads_writes_and_reports() -> None:
    text = lines(
        "prefix,destination,price_per_min,periods",
        '44,UK,0.01,"Mon-Fri 08:00-18:00 0.10 0.05 ; sat 9:00-13:00 0.08"',
        "45,DK,0.01,mon 18:00-08:00 0.1",
        "46,NO,0.01,",
    )
    found, errors = read_rates(text)
    assert [r.prefix for r in found] == ["44", "46"]
    assert found[0].periods is not None and found[1].periods is None
    assert found[0].periods.text() == "mon-fri 08:00-18:00 0.1 0.05; sat 09:00-13:00 0.08"
    assert [str(e) for e in errors] == [
        "line 3: periods: a period's end must be after its start within one day "
        "(00:00-24:00); split a night period in two"
    ]
    out = io.StringIO()
    write_rates(found, out)
    again, errors = read_rates(io.StringIO(out.getvalue()))
    assert again == found and errors == []


def test_write_rates_empty_writes_only_the_header() -> None:
    out = io.StringIO()
    write_rates([], out)
    assert out.getvalue() == HEADER + ",periods,next_increment_ms\n"
    assert read_rates(io.StringIO(out.getvalue())) == ([], [])


@st.composite
def unique_decks(draw: st.DrawFn) -> list[Rate]:
    deck = draw(st.lists(rates(), max_size=20))
    seen: set[tuple[str, datetime | None]] = set()
    unique = []
    for rate in deck:
        if (rate.prefix, rate.effective_from) not in seen:
            seen.add((rate.prefix, rate.effective_from))
            unique.append(rate)
    return unique


@given(unique_decks())
def test_write_then_read_round_trips(deck: list[Rate]) -> None:
    out = io.StringIO()
    write_rates(deck, out)
    rates_, errors = read_rates(io.StringIO(out.getvalue()))
    assert errors == []
    assert rates_ == deck
