"""Money as a person reads it: one format for every page, alert and summary (JSON keeps exact decimals).

Totals and budgets show cents (`$1,234.57`); a per-request or per-token figure, which is often a
fraction of a cent, shows enough significant digits to compare (`$0.00031`).
"""

from __future__ import annotations

from decimal import Decimal


def usd(value: float | Decimal | str | None) -> str:
    """A total: dollars and cents with thousands separators; `-$3.20` for a negative amount."""
    v = float(value or 0)
    return f"-${-v:,.2f}" if v < 0 else f"${v:,.2f}"


def unit_usd(value: float | Decimal | str | None) -> str:
    """A price or a per-request cost: cents when at least a dollar, else three significant digits."""
    v = float(value or 0)
    if v == 0 or abs(v) >= 1:
        return usd(v)
    sign, v = ("-", -v) if v < 0 else ("", v)
    digits = f"{v:.3g}" if v >= 1e-4 else f"{v:.12f}".rstrip("0")  # never an exponent
    return f"{sign}${digits}"


def exact(value: float | Decimal | str | None) -> str:
    """Exact dollars for JSON: a plain decimal string to 10 places, never an exponent (`0E-10`)."""
    return f"{Decimal(str(value or 0)).quantize(Decimal('0.0000000001')):f}"
