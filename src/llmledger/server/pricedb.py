"""Prices and exchange rates added through the API: dated rows in the ledger database.

They take the shape of a price file's rows (``docs/prices.md``) and become one
:class:`~llmledger.pricing.PriceBook` layered over the user's price files, so
resolution is the same as everywhere else.  Rows are history: adding a row
never replaces one; a second row for the same model, tier and first day (or
currency and day) is a conflict.  Marking a row verified sets its ``checked`` day.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from llmledger.core.ids import new_id
from llmledger.pricing import PriceBook
from llmledger.pricing.files import DATABASE_NAME
from llmledger.server.errors import ConflictError, NotFoundError
from llmledger.store import RowExistsError, Store, StoredPrice, StoredRate

__all__ = ["BOOK_NAME", "PriceDB", "StoredPrice", "StoredRate"]

#: Name of the database's price rows in ``price_ref`` (``user:db:acme/acme-1@2025-01-01``).
BOOK_NAME = DATABASE_NAME


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class PriceDB:
    """Check, add and read the database's price rows and exchange rates, kept in the store.

    Example:
        >>> from datetime import UTC
        >>> from llmledger.store import open_store
        >>> prices = PriceDB(open_store("sqlite://"))
        >>> prices.add_rate("brl", Decimal("5.5"), date(2025, 1, 1),
        ...                 now=datetime.now(UTC), by=None).currency
        'BRL'
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- prices ----------------------------------------------------------------------

    def add_price(self, row: dict[str, Any], *, now: datetime, by: str | None) -> StoredPrice:
        """Add a dated price row (price-file shape: provider, model, from, rates…).

        Raises:
            PriceFileError: when the row is not a valid price row.
            ConflictError: when a row for the same model, tier and first day exists.
        """
        book = PriceBook.from_database({"prices": [row]})
        price = book.prices[0]
        rates = {
            k: _plain(v)
            for k, v in row.items()
            if k not in ("provider", "model", "from", "checked", "service_tier") and v is not None
        }
        stored = StoredPrice(
            id=new_id(),
            provider=price.provider,
            model=price.model,
            service_tier=price.service_tier,
            valid_from=price.valid_from,
            checked=price.checked,
            rates=rates,
            created=now,
            created_by=by,
        )
        try:
            self.store.add_price(stored)
        except RowExistsError as exc:
            raise ConflictError(_conflict(exc, "prices", "a row with a later 'from' day")) from None
        return stored

    def prices(self, *, provider: str | None = None, model: str | None = None) -> list[StoredPrice]:
        """Every price row, by provider, model, tier and first day."""
        return self.store.list_prices(provider=provider, model=model)

    def verify_price(self, price_id: str, checked: date) -> StoredPrice:
        """Record that a price row was checked against the provider's price page on ``checked``.

        Raises:
            NotFoundError: when there is no such row.
        """
        stored = self.store.check_price(price_id, checked)
        if stored is None:
            raise NotFoundError(f"no price row {price_id!r}")
        return stored

    # -- exchange rates -------------------------------------------------------------

    def add_rate(
        self,
        currency: str,
        rate: Decimal,
        valid_from: date,
        *,
        now: datetime,
        by: str | None,
        source: str | None = None,
        checked: date | None = None,
    ) -> StoredRate:
        """Add a dated exchange rate.

        Raises:
            ConfigError: on a currency that is not a three-letter code or a rate not above 0.
            ConflictError: when the currency has a rate from that day already.
        """
        probe = {"exchange_rates": {currency: [{"from": valid_from, "rate": rate}]}}
        book = PriceBook.from_database(probe)
        code = book.exchange_rates.currencies()[0]
        stored = StoredRate(new_id(), code, rate, valid_from, checked, source, now, by)
        try:
            self.store.add_rate(stored)
        except RowExistsError as exc:
            raise ConflictError(_conflict(exc, "rates", "a rate from a later day")) from None
        return stored

    def rates(self, *, currency: str | None = None) -> list[StoredRate]:
        """Every exchange rate row, by currency and first day."""
        return self.store.list_rates(currency=currency)

    def verify_rate(self, rate_id: str, checked: date) -> StoredRate:
        """Record that a rate was checked on ``checked``.

        Raises:
            NotFoundError: when there is no such row.
        """
        stored = self.store.check_rate(rate_id, checked)
        if stored is None:
            raise NotFoundError(f"no exchange rate {rate_id!r}")
        return stored

    # -- for the resolver ------------------------------------------------------------

    def book(self) -> PriceBook:
        """Every row as one price book of ``database`` rows (``price_ref`` ``user:db:…``)."""
        return PriceBook.from_database(self.store.database_prices().as_price_file())

    def version(self) -> tuple[Any, ...]:
        """Changes whenever a row is added (cheap: counts and newest times)."""
        return self.store.prices_version()


def _conflict(exc: RowExistsError, kind: str, instead: str) -> str:
    taken = "" if exc.existing is None else f" ({exc.existing})"
    return f"{exc}{taken}; {kind} are history: add {instead} instead"
