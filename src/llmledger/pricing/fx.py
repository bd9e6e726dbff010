"""Exchange rates: dated, user-set rates from USD to other currencies.

Providers bill in USD; reports can show any currency.  A rate is a dated row
("from this UTC day, 1 USD = 5.43 BRL"); a conversion uses the latest rate on
or before the moment converted and says which rate it used.  Rates are history:
adding a rate never replaces an earlier one.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import pydantic

from llmledger.core.errors import ConfigError, CurrencyError, PriceFileError

__all__ = ["USD", "ExchangeRates", "Rate", "RateRow"]

USD = "USD"


def _to_decimal(value: Any) -> Any:
    # YAML reads 5.43 as a float; going through repr keeps the digits the user wrote.
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return Decimal(repr(value))
    return value


_PositiveDecimal = Annotated[
    Decimal, pydantic.BeforeValidator(_to_decimal), pydantic.Field(gt=0, allow_inf_nan=False)
]


class RateRow(pydantic.BaseModel):
    """One rate row of a file: ``{from: 2025-01-01, rate: 5.43, checked: ...}``."""

    model_config = pydantic.ConfigDict(extra="forbid", populate_by_name=True)

    valid_from: date = pydantic.Field(alias="from")
    rate: _PositiveDecimal
    source: str | None = None


class _RatesFile(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore")

    exchange_rates: dict[str, list[RateRow]] = pydantic.Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Rate:
    """How many units of ``currency`` one USD buys, from ``valid_from`` (UTC day) on.

    Example:
        >>> Rate("BRL", Decimal("5.43"), date(2025, 1, 1), "user:rates.yaml").rate
        Decimal('5.43')
    """

    currency: str
    rate: Decimal
    valid_from: date
    source: str


_IDENTITY = Rate(USD, Decimal(1), date.min, "identity")


def _currency_code(currency: str) -> str:
    code = currency.strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise ConfigError(f"currency must be a three-letter code such as BRL, got {currency!r}")
    return code


def _utc_day(at: datetime | date) -> date:
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise CurrencyError(f"conversion time must be timezone-aware, got {at!r}")
        return at.astimezone(UTC).date()
    return at


class ExchangeRates:
    """Dated USD exchange rates, set by the user.

    Example:
        >>> rates = ExchangeRates()
        >>> _ = rates.add("BRL", Decimal("6.18"), date(2025, 1, 1))
        >>> _ = rates.add("BRL", Decimal("5.80"), date(2025, 2, 1))
        >>> amount, used = rates.convert(Decimal("10"), "BRL", date(2025, 1, 31))
        >>> amount, used.rate
        (Decimal('61.80'), Decimal('6.18'))
    """

    def __init__(self, rates: Iterable[Rate] = ()) -> None:
        self._history: dict[str, list[Rate]] = {}
        for rate in rates:
            self._insert(rate)

    def add(self, currency: str, rate: Decimal, valid_from: date, *, source: str = "api") -> Rate:
        """Add a dated rate (1 USD = ``rate`` units of ``currency``).

        Raises:
            ConfigError: on a bad currency code, a non-positive rate, or a different
                rate already set for that currency and day (history is never
                overwritten).

        Example:
            >>> ExchangeRates().add("brl", Decimal("5.5"), date(2025, 3, 1)).currency
            'BRL'
        """
        if not isinstance(rate, Decimal) or not rate.is_finite() or rate <= 0:
            raise ConfigError(f"exchange rate must be a positive Decimal, got {rate!r}")
        code = _currency_code(currency)
        if code == USD:
            raise ConfigError("USD is the base currency; its rate is always 1")
        new = Rate(code, rate, valid_from, source)
        self._insert(new)
        return new

    def _insert(self, rate: Rate) -> None:
        history = self._history.setdefault(rate.currency, [])
        days = [r.valid_from for r in history]
        index = bisect.bisect_left(days, rate.valid_from)
        if index < len(history) and history[index].valid_from == rate.valid_from:
            existing = history[index]
            if existing.rate != rate.rate:
                raise ConfigError(
                    f"{rate.currency} already has rate {existing.rate} from "
                    f"{rate.valid_from} ({existing.source}); "
                    f"cannot also set {rate.rate} ({rate.source})"
                )
            return
        history.insert(index, rate)

    def currencies(self) -> list[str]:
        """Currencies with at least one rate, plus USD.

        Example:
            >>> ExchangeRates().currencies()
            ['USD']
        """
        return sorted({USD, *self._history})

    def history(self, currency: str) -> list[Rate]:
        """Every rate of a currency, oldest first.

        Example:
            >>> ExchangeRates().history("BRL")
            []
        """
        code = _currency_code(currency)
        return [_IDENTITY] if code == USD else list(self._history.get(code, ()))

    def rate_at(self, currency: str, at: datetime | date) -> Rate:
        """The rate in force at ``at``: the latest one on or before its UTC day.

        Raises:
            CurrencyError: when no rate of ``currency`` starts on or before ``at``.

        Example:
            >>> ExchangeRates().rate_at("USD", date(2025, 1, 1)).rate
            Decimal('1')
        """
        code = _currency_code(currency)
        if code == USD:
            return _IDENTITY
        day = _utc_day(at)
        history = self._history.get(code, [])
        index = bisect.bisect_right([r.valid_from for r in history], day)
        if index == 0:
            known = f"; first rate is from {history[0].valid_from}" if history else ""
            raise CurrencyError(f"no exchange rate for {code} on {day}{known}")
        return history[index - 1]

    def convert(
        self, amount_usd: Decimal, currency: str, at: datetime | date
    ) -> tuple[Decimal, Rate]:
        """Convert USD to ``currency`` with the rate in force at ``at``.

        Returns the exact product (callers round for display) and the rate used.

        Raises:
            CurrencyError: when no rate is known at that time.

        Example:
            >>> ExchangeRates().convert(Decimal("1.5"), "USD", date(2025, 1, 1))[0]
            Decimal('1.5')
        """
        rate = self.rate_at(currency, at)
        if rate is _IDENTITY:
            return amount_usd, rate
        return amount_usd * rate.rate, rate

    @classmethod
    def from_rows(cls, rows: dict[str, list[RateRow]], *, source: str) -> ExchangeRates:
        """Build from validated file rows (``{"BRL": [RateRow, ...]}``)."""
        rates = cls()
        for currency, entries in rows.items():
            for entry in entries:
                rates.add(currency, entry.rate, entry.valid_from, source=entry.source or source)
        return rates

    def merge(self, other: ExchangeRates) -> None:
        """Add every rate of ``other`` (a conflicting rate for the same day is an error)."""
        for history in other._history.values():
            for rate in history:
                self._insert(rate)

    @classmethod
    def load(cls, *paths: str | Path) -> ExchangeRates:
        """Read the ``exchange_rates`` section of YAML files (other sections ignored).

        The format::

            exchange_rates:
              BRL:
                - {from: 2025-01-01, rate: 6.18}
                - {from: 2025-02-01, rate: 5.80}

        Raises:
            PriceFileError: naming the file and field when a file is unreadable or
                invalid.
        """
        from llmledger.pricing.files import read_yaml, validation_message

        rates = cls()
        for path in paths:
            data = read_yaml(Path(path))
            try:
                parsed = _RatesFile.model_validate(data)
                rates.merge(cls.from_rows(parsed.exchange_rates, source=f"user:{Path(path).name}"))
            except pydantic.ValidationError as exc:
                raise PriceFileError(validation_message(Path(path), exc)) from None
            except ConfigError as exc:
                raise PriceFileError(f"{path}: exchange_rates: {exc}") from None
        return rates
