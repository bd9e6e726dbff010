"""Prices and exchange rates added through the API: dated rows in the ledger database.

They take the shape of a price file's rows (``docs/prices.md``) and become one
:class:`~llmledger.pricing.PriceBook` layered over the user's price files, so
resolution is the same as everywhere else.  Rows are history: adding a row
never replaces one; a second row for the same model, tier and first day (or
currency and day) is a conflict.  Marking a row verified sets its ``checked`` day.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmledger.core.ids import new_id
from llmledger.pricing import PriceBook
from llmledger.pricing.files import DATABASE_NAME
from llmledger.server.errors import ConflictError, NotFoundError
from llmledger.store.price_rows import read_price_rows
from llmledger.store.schema import metadata

__all__ = ["PriceDB", "StoredPrice", "StoredRate", "user_exchange_rates", "user_prices"]

# Created by migration 0003, on the ledger's shared metadata.
user_prices = sa.Table(
    "user_prices",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("row_key", sa.Text, nullable=False, unique=True),
    sa.Column("provider", sa.Text, nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("service_tier", sa.Text),
    sa.Column("valid_from", sa.Text),
    sa.Column("checked", sa.Text),
    sa.Column("rates", sa.Text, nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("created_by", sa.Text),
)
user_exchange_rates = sa.Table(
    "user_exchange_rates",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("rate", sa.Text, nullable=False),
    sa.Column("valid_from", sa.Text, nullable=False),
    sa.Column("checked", sa.Text),
    sa.Column("source", sa.Text),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("created_by", sa.Text),
    sa.UniqueConstraint("currency", "valid_from"),
)

#: Name of the database's price rows in ``price_ref`` (``user:db:acme/acme-1@2025-01-01``).
BOOK_NAME = DATABASE_NAME


@dataclass(frozen=True, slots=True)
class StoredPrice:
    """One price row of the database."""

    id: str
    provider: str
    model: str
    service_tier: str | None
    valid_from: date | None
    checked: date | None
    rates: dict[str, Any]
    created: datetime
    created_by: str | None


@dataclass(frozen=True, slots=True)
class StoredRate:
    """One exchange rate row of the database: from ``valid_from``, 1 USD = ``rate`` ``currency``."""

    id: str
    currency: str
    rate: Decimal
    valid_from: date
    checked: date | None
    source: str | None
    created: datetime
    created_by: str | None


def _micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _day(text: str | None) -> date | None:
    return None if text is None else date.fromisoformat(text)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class PriceDB:
    """Read and add the database's price rows and exchange rates."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

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
        key = "|".join(
            (
                price.provider.lower(),
                price.model.lower(),
                price.service_tier or "",
                "" if price.valid_from is None else price.valid_from.isoformat(),
            )
        )
        values = {
            "id": stored.id,
            "row_key": key,
            "provider": stored.provider,
            "model": stored.model,
            "service_tier": stored.service_tier,
            "valid_from": None if stored.valid_from is None else stored.valid_from.isoformat(),
            "checked": None if stored.checked is None else stored.checked.isoformat(),
            "rates": json.dumps(rates, sort_keys=True),
            "created_us": _micros(now),
            "created_by": by,
        }
        with self.engine.begin() as conn:
            taken = conn.execute(
                sa.select(user_prices.c.id).where(user_prices.c.row_key == key)
            ).first()
            if taken is not None:
                raise ConflictError(
                    f"a price row for {stored.provider}/{stored.model} from "
                    f"{stored.valid_from or 'the beginning'} exists ({taken[0]}); prices are "
                    "history: add a row with a later 'from' day instead"
                )
            try:
                conn.execute(user_prices.insert().values(**values))
            except sa.exc.IntegrityError:
                raise ConflictError(
                    f"a price row for {stored.provider}/{stored.model} from "
                    f"{stored.valid_from or 'the beginning'} exists"
                ) from None
        return stored

    def prices(self, *, provider: str | None = None, model: str | None = None) -> list[StoredPrice]:
        """Every price row, by provider, model, tier and first day."""
        c = user_prices.c
        query = sa.select(user_prices).order_by(c.provider, c.model, c.service_tier, c.valid_from)
        if provider is not None:
            query = query.where(c.provider == provider)
        if model is not None:
            query = query.where(c.model == model)
        with self.engine.connect() as conn:
            return [self._price(row._mapping) for row in conn.execute(query)]

    def verify_price(self, price_id: str, checked: date) -> StoredPrice:
        """Record that a price row was checked against the provider's price page on ``checked``.

        Raises:
            NotFoundError: when there is no such row.
        """
        return self._price(
            self._mark_checked(user_prices, price_id, checked, f"no price row {price_id!r}")
        )

    @staticmethod
    def _price(m: Any) -> StoredPrice:
        return StoredPrice(
            id=m["id"],
            provider=m["provider"],
            model=m["model"],
            service_tier=m["service_tier"],
            valid_from=_day(m["valid_from"]),
            checked=_day(m["checked"]),
            rates=json.loads(m["rates"]),
            created=datetime.fromtimestamp(int(m["created_us"]) / 1e6, UTC),
            created_by=m["created_by"],
        )

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
        with self.engine.begin() as conn:
            taken = conn.execute(
                sa.select(user_exchange_rates.c.id).where(
                    user_exchange_rates.c.currency == code,
                    user_exchange_rates.c.valid_from == valid_from.isoformat(),
                )
            ).first()
            if taken is not None:
                raise ConflictError(
                    f"a {code} rate from {valid_from} exists ({taken[0]}); rates are history: "
                    "add a rate from a later day instead"
                )
            conn.execute(
                user_exchange_rates.insert().values(
                    id=stored.id,
                    currency=code,
                    rate=format(rate, "f"),
                    valid_from=valid_from.isoformat(),
                    checked=None if checked is None else checked.isoformat(),
                    source=source,
                    created_us=_micros(now),
                    created_by=by,
                )
            )
        return stored

    def rates(self, *, currency: str | None = None) -> list[StoredRate]:
        """Every exchange rate row, by currency and first day."""
        c = user_exchange_rates.c
        query = sa.select(user_exchange_rates).order_by(c.currency, c.valid_from)
        if currency is not None:
            query = query.where(c.currency == currency.upper())
        with self.engine.connect() as conn:
            return [self._rate(row._mapping) for row in conn.execute(query)]

    def verify_rate(self, rate_id: str, checked: date) -> StoredRate:
        """Record that a rate was checked on ``checked``.

        Raises:
            NotFoundError: when there is no such row.
        """
        return self._rate(
            self._mark_checked(
                user_exchange_rates, rate_id, checked, f"no exchange rate {rate_id!r}"
            )
        )

    def _mark_checked(self, table: sa.Table, row_id: str, checked: date, missing: str) -> Any:
        """Set a row's ``checked`` day and return the updated row's mapping."""
        with self.engine.begin() as conn:
            done = conn.execute(
                table.update().where(table.c.id == row_id).values(checked=checked.isoformat())
            )
            if done.rowcount == 0:
                raise NotFoundError(missing)
            return conn.execute(sa.select(table).where(table.c.id == row_id)).one()._mapping

    @staticmethod
    def _rate(m: Any) -> StoredRate:
        return StoredRate(
            id=m["id"],
            currency=m["currency"],
            rate=Decimal(m["rate"]),
            valid_from=date.fromisoformat(m["valid_from"]),
            checked=_day(m["checked"]),
            source=m["source"],
            created=datetime.fromtimestamp(int(m["created_us"]) / 1e6, UTC),
            created_by=m["created_by"],
        )

    # -- for the resolver ------------------------------------------------------------

    def book(self) -> PriceBook:
        """Every row as one price book of ``database`` rows (``price_ref`` ``user:db:…``)."""
        return PriceBook.from_database(read_price_rows(self.engine))

    def version(self) -> tuple[Any, ...]:
        """Changes whenever a row is added or verified (cheap: counts and newest times)."""
        with self.engine.connect() as conn:
            prices = conn.execute(
                sa.select(sa.func.count(), sa.func.max(user_prices.c.created_us))
            ).one()
            rates = conn.execute(
                sa.select(sa.func.count(), sa.func.max(user_exchange_rates.c.created_us))
            ).one()
        return (*prices, *rates)
