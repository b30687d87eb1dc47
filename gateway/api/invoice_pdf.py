"""An issued invoice as a PDF (ReportLab) and as CSV rows, from what was issued.

Both read the invoice's stored lines only, so a download months later shows what was
issued even if names or rates changed since. The PDF is one A4 document: the header
(number, issuer, account, period), the balance summary, the money moves, the calls
by destination and the tax lines.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from gateway.agents.invoices import InvoiceDetail

CSV_HEADER = ("section", "date", "item", "detail", "calls", "minutes", "amount", "currency")


def amount(micros: int, places: int = 2) -> str:
    """Micro-units as a decimal, rounded half-up to ``places`` (money columns print 2,
    the tax base keeps 6 in the CSV)."""
    value = Decimal(micros) / Decimal(1_000_000)
    return f"{value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP):,}"


def _minutes(billed_s: int) -> str:
    return f"{Decimal(billed_s) / Decimal(60):.1f}"


def tax_label(detail: InvoiceDetail) -> str:
    inv = detail.invoice
    rate = f"{Decimal(inv.tax_rate_bp) / Decimal(100):g} %"
    return f"Tax {rate} ({'included in the prices' if inv.tax_inclusive else 'on top'})"


def summary_rows(detail: InvoiceDetail) -> list[tuple[str, int]]:
    """The statement's balance lines: opening, each kind's total, calls, closing."""
    inv = detail.invoice
    per_kind: dict[str, int] = {}
    for move in detail.moves:
        if move.pocket == "main":
            per_kind[move.label] = per_kind.get(move.label, 0) + move.amount_micros
    rows = [("Opening balance", inv.opening_balance_micros)]
    rows += sorted(per_kind.items())
    rows.append(("Calls", detail.calls_micros))
    rows.append(("Closing balance", inv.closing_balance_micros))
    return rows


def tax_rows(detail: InvoiceDetail) -> list[tuple[str, int]]:
    inv = detail.invoice
    return [
        ("Charges (calls and recurring fees)", inv.charges_micros),
        ("Net", inv.net_micros),
        (tax_label(detail), inv.tax_micros),
        ("Total with tax", inv.gross_micros),
    ]


def csv_rows(detail: InvoiceDetail) -> Iterator[Sequence[Any]]:
    """The invoice as CSV rows under ``CSV_HEADER``; amounts with 6 decimals."""
    inv = detail.invoice
    cur = inv.currency
    yield ("invoice", f"{inv.issued_at:%Y-%m-%d}", inv.number, inv.issuer_name, "", "", "", cur)
    yield (
        "period",
        f"{inv.period_start:%Y-%m-%d %H:%M}",
        inv.account_name,
        f"to {inv.period_end:%Y-%m-%d %H:%M} UTC",
        "",
        "",
        "",
        cur,
    )
    for move in detail.moves:
        item = move.label if move.pocket == "main" else f"{move.label} (commission balance)"
        detail_text = " ".join(t for t in (move.reference, move.note) if t)
        at = f"{move.at:%Y-%m-%d %H:%M}"
        yield ("move", at, item, detail_text, "", "", amount(move.amount_micros, 6), cur)
    for call in detail.calls:
        yield (
            "calls",
            "",
            call.prefix,
            call.destination,
            call.calls,
            _minutes(call.billed_s),
            amount(call.cost_micros, 6),
            cur,
        )
    for label, micros in summary_rows(detail) + tax_rows(detail):
        yield ("total", "", label, "", "", "", amount(micros, 6), cur)


_GRID = TableStyle(
    [
        ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 9),
        ("FONT", (0, 1), (-1, -1), "Helvetica", 9),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#dde3ea")),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.HexColor("#9aa5b1")),
        ("ALIGN", (-1, 0), (-1, -1), "RIGHT"),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]
)


def _table(rows: list[list[str]], widths: list[float], numeric_from: int) -> Table:
    table = Table(rows, colWidths=widths, repeatRows=1, hAlign="LEFT")
    table.setStyle(_GRID)
    table.setStyle(TableStyle([("ALIGN", (numeric_from, 0), (-1, -1), "RIGHT")]))
    return table


def _totals(rows: list[tuple[str, int]], currency: str, bold_last: bool) -> Table:
    body = [[label, f"{amount(micros)} {currency}"] for label, micros in rows]
    table = Table(body, colWidths=[120 * mm, 50 * mm], hAlign="LEFT")
    style = [
        ("FONT", (0, 0), (-1, -1), "Helvetica", 10),
        ("ALIGN", (1, 0), (1, -1), "RIGHT"),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.HexColor("#9aa5b1")),
    ]
    if bold_last:
        style.append(("FONT", (0, -1), (-1, -1), "Helvetica-Bold", 10))
    table.setStyle(TableStyle(style))
    return table


def render_pdf(detail: InvoiceDetail) -> bytes:
    """The invoice as a PDF document (bytes)."""
    inv = detail.invoice
    styles = getSampleStyleSheet()
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=20 * mm,
        rightMargin=20 * mm,
        topMargin=18 * mm,
        bottomMargin=18 * mm,
        title=f"Invoice {inv.number}",
        author=inv.issuer_name,
        invariant=1,  # the same invoice renders to the same bytes
    )
    cur = inv.currency
    story: list[Any] = [
        Paragraph(f"Invoice {inv.number}", styles["Title"]),
        Paragraph(
            f"Issued by <b>{_esc(inv.issuer_name)}</b> on {inv.issued_at:%Y-%m-%d}",
            styles["Normal"],
        ),
        Paragraph(
            f"To <b>{_esc(inv.account_name)}</b> (account {inv.account_id})", styles["Normal"]
        ),
        Paragraph(
            f"Period {inv.period_start:%Y-%m-%d %H:%M} to {inv.period_end:%Y-%m-%d %H:%M} UTC",
            styles["Normal"],
        ),
        Spacer(1, 6 * mm),
        Paragraph("Balance", styles["Heading2"]),
        _totals(summary_rows(detail), cur, bold_last=True),
        Spacer(1, 4 * mm),
        Paragraph("Money moves", styles["Heading2"]),
    ]
    moves = [["Date (UTC)", "Item", "Reference", f"Amount ({cur})"]]
    for move in detail.moves:
        item = move.label if move.pocket == "main" else f"{move.label} (commission)"
        ref = " ".join(t for t in (move.reference, move.note) if t)[:60]
        moves.append([f"{move.at:%Y-%m-%d %H:%M}", item, ref, amount(move.amount_micros)])
    if len(moves) == 1:
        moves.append(["", "No money moves in this period", "", ""])
    story.append(_table(moves, [32 * mm, 45 * mm, 63 * mm, 30 * mm], 3))
    story += [Spacer(1, 4 * mm), Paragraph("Calls by destination", styles["Heading2"])]
    calls = [["Prefix", "Destination", "Calls", "Minutes", f"Cost ({cur})"]]
    for call in detail.calls:
        calls.append(
            [
                call.prefix,
                call.destination[:40],
                str(call.calls),
                _minutes(call.billed_s),
                amount(call.cost_micros),
            ]
        )
    if len(calls) == 1:
        calls.append(["", "No calls in this period", "", "", ""])
    story.append(_table(calls, [25 * mm, 65 * mm, 20 * mm, 25 * mm, 35 * mm], 2))
    story += [
        Spacer(1, 4 * mm),
        Paragraph("Tax", styles["Heading2"]),
        _totals(tax_rows(detail), cur, bold_last=True),
    ]
    if not inv.tax_inclusive and inv.tax_micros:
        story.append(
            Paragraph(
                "The prepaid balance paid the net charges; the tax is due on top.",
                styles["Italic"],
            )
        )
    doc.build(story)
    return out.getvalue()


def _esc(text: str) -> str:
    """Text safe inside a ReportLab paragraph (its markup is XML-like)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
