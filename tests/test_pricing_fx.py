"""Exchange rates: dated, user-set, latest rate on or before the moment converted."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from llmledger.core.errors import ConfigError, CurrencyError, PriceFileError
from llmledger.pricing import ExchangeRates, Rate

EXAMPLE = Path(__file__).parent / "fixtures" / "prices" / "prices.yaml"


@pytest.fixture
def rates() -> ExchangeRates:
    rates = ExchangeRates()
    rates.add("BRL", Decimal("6.18"), date(2025, 1, 1), source="bcb")
    rates.add("BRL", Decimal("5.80"), date(2025, 2, 1), source="bcb")
    return rates


def test_convert_uses_the_rate_in_force(rates: ExchangeRates) -> None:
    amount, used = rates.convert(Decimal("10"), "BRL", date(2025, 1, 31))
    assert amount == Decimal("61.80")
    assert used == Rate("BRL", Decimal("6.18"), date(2025, 1, 1), "bcb")
    amount, used = rates.convert(Decimal("10"), "brl", datetime(2025, 2, 1, tzinfo=UTC))
    assert (amount, used.valid_from) == (Decimal("58.00"), date(2025, 2, 1))


def test_times_are_read_in_utc(rates: ExchangeRates) -> None:
    # 22:00 on Jan 31 in São Paulo is already Feb 1 in UTC.
    local = datetime(2025, 1, 31, 22, tzinfo=timezone(timedelta(hours=-3)))
    assert rates.rate_at("BRL", local).rate == Decimal("5.80")


def test_before_the_first_rate(rates: ExchangeRates) -> None:
    with pytest.raises(
        CurrencyError, match="no exchange rate for BRL on 2024-12-31; first rate is from 2025-01-01"
    ):
        rates.convert(Decimal(1), "BRL", date(2024, 12, 31))


def test_unknown_currency(rates: ExchangeRates) -> None:
    with pytest.raises(CurrencyError, match=r"no exchange rate for EUR on 2025-01-01$"):
        rates.convert(Decimal(1), "EUR", date(2025, 1, 1))


def test_usd_is_rate_one(rates: ExchangeRates) -> None:
    amount, used = rates.convert(Decimal("1.234"), "usd", date(1999, 1, 1))
    assert amount == Decimal("1.234")
    assert used.rate == Decimal(1) and used.source == "identity"
    assert rates.currencies() == ["BRL", "USD"]
    assert rates.history("USD")[0].rate == 1


def test_history_is_never_overwritten(rates: ExchangeRates) -> None:
    rates.add("BRL", Decimal("6.18"), date(2025, 1, 1))  # the same rate again: no-op
    with pytest.raises(ConfigError, match=r"already has rate 6\.18"):
        rates.add("BRL", Decimal("7"), date(2025, 1, 1))
    rates.add("BRL", Decimal("6.00"), date(2025, 1, 15))
    assert [r.rate for r in rates.history("BRL")] == [
        Decimal("6.18"),
        Decimal("6.00"),
        Decimal("5.80"),
    ]


@pytest.mark.parametrize(
    ("currency", "rate", "message"),
    [
        ("BRL", Decimal(0), "positive"),
        ("BRL", Decimal("NaN"), "positive"),
        ("BRL", 5.5, "positive"),
        ("REAL", Decimal(5), "three-letter"),
        ("USD", Decimal(2), "base currency"),
    ],
)
def test_add_validates(currency: str, rate: Decimal, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ExchangeRates().add(currency, rate, date(2025, 1, 1))


def test_naive_time_is_refused(rates: ExchangeRates) -> None:
    with pytest.raises(CurrencyError, match="timezone-aware"):
        rates.rate_at("BRL", datetime(2025, 1, 1))


def test_load_rates_from_a_price_file() -> None:
    rates = ExchangeRates.load(EXAMPLE)
    used = rates.rate_at("BRL", date(2025, 3, 1))
    assert used == Rate("BRL", Decimal("5.80"), date(2025, 2, 1), "user:prices.yaml")


def test_load_rates_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "rates.yaml"
    path.write_text("exchange_rates:\n  BRL: [{from: 2025-01-01}]\n", encoding="utf-8")
    with pytest.raises(
        PriceFileError, match=r"rates.yaml: exchange_rates\.BRL\[0\]\.rate: Field required"
    ):
        ExchangeRates.load(path)
    path.write_text(
        "exchange_rates:\n  BRL: [{from: 2025-01-01, rate: 5}, {from: 2025-01-01, rate: 6}]\n",
        encoding="utf-8",
    )
    with pytest.raises(PriceFileError, match="exchange_rates: BRL already has rate 5"):
        ExchangeRates.load(path)
