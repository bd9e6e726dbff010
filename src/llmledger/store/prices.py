"""Prices and exchange rates added through the service: ``user_prices`` and
``user_exchange_rates`` (migration 0003).

Rows are history: adding one never replaces another.  A second price row for the
same model, tier and first day (case aside), or a second rate for the same
currency and day, is refused with :class:`~llmledger.store.errors.RowExistsError`.
Checking what a row says (its shape, its rates) is the caller's; the store keeps
rows and hands them back.

Example:
    >>> from datetime import UTC, date, datetime
    >>> from decimal import Decimal
    >>> from llmledger.store import open_store
    >>> store = open_store("sqlite://")
    >>> store.add_rate(StoredRate("01JRATE", "BRL", Decimal("5.5"), date(2025, 1, 1), None,
    ...                           None, datetime(2025, 1, 2, tzinfo=UTC), "ops"))
    >>> [rate.rate for rate in store.list_rates(currency="brl")]
    [Decimal('5.5')]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llmledger.store.catalogs import newest_catalog_id
from llmledger.store.codec import from_micros, to_micros
from llmledger.store.errors import RowExistsError, database_errors
from llmledger.store.schema import metadata

__all__ = [
    "DatabasePrices",
    "PriceRows",
    "StoredPrice",
    "StoredRate",
    "user_exchange_rates",
    "user_prices",
]

user_prices = sa.Table(
    "user_prices",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    # provider|model|tier|from, lower-cased: one row per model, tier and first day.
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


@dataclass(frozen=True, slots=True)
class StoredPrice:
    """One price row of the database.

    Attributes:
        rates: The row's rates in price-file shape (``input_mtok``, ``tiers``…),
            numbers as strings.

    Example:
        >>> from datetime import UTC, datetime
        >>> StoredPrice("01JP", "acme", "acme-1", None, None, None,
        ...             {"input_mtok": "1"}, datetime.now(UTC), None).rates
        {'input_mtok': '1'}
    """

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
    """One exchange rate row: from ``valid_from``, 1 USD = ``rate`` ``currency``.

    Example:
        >>> from datetime import UTC, date, datetime
        >>> StoredRate("01JR", "BRL", Decimal("5.5"), date(2025, 1, 1), None, None,
        ...            datetime.now(UTC), None).currency
        'BRL'
    """

    id: str
    currency: str
    rate: Decimal
    valid_from: date
    checked: date | None
    source: str | None
    created: datetime
    created_by: str | None


@dataclass(frozen=True, slots=True)
class DatabasePrices:
    """Every price and exchange rate row, read together in one transaction.

    Attributes:
        prices: By provider, model, tier and first day.
        rates: By currency and first day.
        version: Changes whenever a row is added (see
            :meth:`PriceRows.prices_version`).
    """

    prices: tuple[StoredPrice, ...]
    rates: tuple[StoredRate, ...]
    version: tuple[Any, ...]

    def as_price_file(self) -> dict[str, Any]:
        """Every row as a price file's content (``prices``, ``exchange_rates``).

        Days are ISO text and rates decimal text, for the price file model to
        validate as it does a file's; a rate without a source is marked ``user:db``.

        Example:
            >>> from datetime import UTC
            >>> rate = StoredRate("01JR", "BRL", Decimal("5.5"), date(2025, 1, 1), None, None,
            ...                   datetime.now(UTC), None)
            >>> DatabasePrices((), (rate,), ()).as_price_file()["exchange_rates"]
            {'BRL': [{'from': '2025-01-01', 'rate': '5.5', 'source': 'user:db'}]}
        """
        prices: list[dict[str, Any]] = []
        for price in self.prices:
            entry: dict[str, Any] = {"provider": price.provider, "model": price.model}
            entry.update(price.rates)
            for name, day in (("from", price.valid_from), ("checked", price.checked)):
                if day is not None:
                    entry[name] = day.isoformat()
            if price.service_tier is not None:
                entry["service_tier"] = price.service_tier
            prices.append(entry)
        rates: dict[str, list[dict[str, Any]]] = {}
        for rate in self.rates:
            rates.setdefault(rate.currency, []).append(
                {
                    "from": rate.valid_from.isoformat(),
                    "rate": format(rate.rate, "f"),
                    "source": rate.source or "user:db",
                }
            )
        return {"prices": prices, "exchange_rates": rates}


def _day(text: str | None) -> date | None:
    return None if text is None else date.fromisoformat(text)


def _iso(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


def _price(m: Any) -> StoredPrice:
    return StoredPrice(
        id=m["id"],
        provider=m["provider"],
        model=m["model"],
        service_tier=m["service_tier"],
        valid_from=_day(m["valid_from"]),
        checked=_day(m["checked"]),
        rates=json.loads(m["rates"]),
        created=from_micros(int(m["created_us"])),
        created_by=m["created_by"],
    )


def _rate(m: Any) -> StoredRate:
    return StoredRate(
        id=m["id"],
        currency=m["currency"],
        rate=Decimal(m["rate"]),
        valid_from=date.fromisoformat(m["valid_from"]),
        checked=_day(m["checked"]),
        source=m["source"],
        created=from_micros(int(m["created_us"])),
        created_by=m["created_by"],
    )


def _row_key(price: StoredPrice) -> str:
    return "|".join(
        (
            price.provider.lower(),
            price.model.lower(),
            price.service_tier or "",
            _iso(price.valid_from) or "",
        )
    )


# NULL (no tier; from the beginning) first on every database, as SQLite does by default.
_PRICE_ORDER = (
    user_prices.c.provider,
    user_prices.c.model,
    user_prices.c.service_tier.asc().nulls_first(),
    user_prices.c.valid_from.asc().nulls_first(),
)
_RATE_ORDER = (user_exchange_rates.c.currency, user_exchange_rates.c.valid_from)


class PriceRows:
    """The store's statements on the price and rate tables (a part of
    :class:`~llmledger.store.SqlStore`)."""

    def _connect(self, *, write: bool = False) -> Connection:  # pragma: no cover - SqlStore's
        raise NotImplementedError

    # -- prices ----------------------------------------------------------------------

    def add_price(self, price: StoredPrice) -> None:
        """Store a price row.

        Raises:
            RowExistsError: when a row for the same model, tier and first day exists
                (its id in ``existing``).

        Example:
            >>> from datetime import UTC, datetime
            >>> from llmledger.store import open_store
            >>> open_store("sqlite://").add_price(StoredPrice(
            ...     "01JP", "acme", "acme-1", None, None, None, {"input_mtok": "1"},
            ...     datetime.now(UTC), None))
        """
        key = _row_key(price)
        with (
            database_errors("store the price row"),
            self._connect(write=True) as conn,
            conn.begin(),
        ):
            taken = conn.execute(
                sa.select(user_prices.c.id).where(user_prices.c.row_key == key)
            ).first()
            if taken is None:
                try:
                    with conn.begin_nested():
                        conn.execute(
                            user_prices.insert().values(
                                id=price.id,
                                row_key=key,
                                provider=price.provider,
                                model=price.model,
                                service_tier=price.service_tier,
                                valid_from=_iso(price.valid_from),
                                checked=_iso(price.checked),
                                rates=json.dumps(price.rates, sort_keys=True),
                                created_us=to_micros(price.created),
                                created_by=price.created_by,
                            )
                        )
                    return
                except sa.exc.IntegrityError:
                    # Another writer took the key between the check and the insert.
                    taken = conn.execute(
                        sa.select(user_prices.c.id).where(user_prices.c.row_key == key)
                    ).first()
        raise RowExistsError(
            f"a price row for {price.provider}/{price.model} from "
            f"{price.valid_from or 'the beginning'} exists",
            existing=None if taken is None else str(taken[0]),
        )

    def list_prices(
        self, *, provider: str | None = None, model: str | None = None
    ) -> list[StoredPrice]:
        """Price rows, by provider, model, tier and first day.

        Example:
            >>> from llmledger.store import open_store
            >>> open_store("sqlite://").list_prices(provider="acme")
            []
        """
        query = sa.select(user_prices).order_by(*_PRICE_ORDER)
        if provider is not None:
            query = query.where(user_prices.c.provider == provider)
        if model is not None:
            query = query.where(user_prices.c.model == model)
        with database_errors("read the price rows"), self._connect() as conn:
            return [_price(row._mapping) for row in conn.execute(query)]

    def check_price(self, price_id: str, checked: date) -> StoredPrice | None:
        """Set a price row's ``checked`` day; the row as stored after, or None when missing.

        Example:
            >>> from llmledger.store import open_store
            >>> open_store("sqlite://").check_price("01JNONE", date(2025, 1, 1)) is None
            True
        """
        row = self._mark_checked(user_prices, price_id, checked)
        return None if row is None else _price(row)

    # -- exchange rates -------------------------------------------------------------

    def add_rate(self, rate: StoredRate) -> None:
        """Store an exchange rate row.

        Raises:
            RowExistsError: when the currency has a rate from that day (its id in ``existing``).

        Example:
            >>> from datetime import UTC, datetime
            >>> from llmledger.store import open_store
            >>> open_store("sqlite://").add_rate(StoredRate(
            ...     "01JR", "BRL", Decimal("5.5"), date(2025, 1, 1), None, None,
            ...     datetime.now(UTC), None))
        """
        c = user_exchange_rates.c
        same_day = sa.select(c.id).where(
            c.currency == rate.currency, c.valid_from == rate.valid_from.isoformat()
        )
        with (
            database_errors("store the exchange rate"),
            self._connect(write=True) as conn,
            conn.begin(),
        ):
            taken = conn.execute(same_day).first()
            if taken is None:
                try:
                    with conn.begin_nested():
                        conn.execute(
                            user_exchange_rates.insert().values(
                                id=rate.id,
                                currency=rate.currency,
                                rate=format(rate.rate, "f"),
                                valid_from=rate.valid_from.isoformat(),
                                checked=_iso(rate.checked),
                                source=rate.source,
                                created_us=to_micros(rate.created),
                                created_by=rate.created_by,
                            )
                        )
                    return
                except sa.exc.IntegrityError:
                    taken = conn.execute(same_day).first()
        raise RowExistsError(
            f"a {rate.currency} rate from {rate.valid_from} exists",
            existing=None if taken is None else str(taken[0]),
        )

    def list_rates(self, *, currency: str | None = None) -> list[StoredRate]:
        """Exchange rate rows, by currency and first day (``currency`` in any case).

        Example:
            >>> from llmledger.store import open_store
            >>> open_store("sqlite://").list_rates(currency="brl")
            []
        """
        query = sa.select(user_exchange_rates).order_by(*_RATE_ORDER)
        if currency is not None:
            query = query.where(user_exchange_rates.c.currency == currency.upper())
        with database_errors("read the exchange rates"), self._connect() as conn:
            return [_rate(row._mapping) for row in conn.execute(query)]

    def check_rate(self, rate_id: str, checked: date) -> StoredRate | None:
        """Set a rate row's ``checked`` day; the row as stored after, or None when missing.

        Example:
            >>> from llmledger.store import open_store
            >>> open_store("sqlite://").check_rate("01JNONE", date(2025, 1, 1)) is None
            True
        """
        row = self._mark_checked(user_exchange_rates, rate_id, checked)
        return None if row is None else _rate(row)

    def _mark_checked(self, table: sa.Table, row_id: str, checked: date) -> Any:
        with (
            database_errors("mark the row checked"),
            self._connect(write=True) as conn,
            conn.begin(),
        ):
            done = conn.execute(
                table.update().where(table.c.id == row_id).values(checked=checked.isoformat())
            )
            if done.rowcount == 0:
                return None
            return conn.execute(sa.select(table).where(table.c.id == row_id)).one()._mapping

    # -- all of them ------------------------------------------------------------------

    def database_prices(self) -> DatabasePrices:
        """Every price and rate row, and their version, read in one transaction.

        Example:
            >>> from llmledger.store import open_store
            >>> rows = open_store("sqlite://").database_prices()
            >>> rows.prices, rows.rates
            ((), ())
        """
        with database_errors("read the price rows"), self._connect() as conn, conn.begin():
            version = _version(conn)
            prices = tuple(
                _price(row._mapping)
                for row in conn.execute(sa.select(user_prices).order_by(*_PRICE_ORDER))
            )
            rates = tuple(
                _rate(row._mapping)
                for row in conn.execute(sa.select(user_exchange_rates).order_by(*_RATE_ORDER))
            )
        return DatabasePrices(prices, rates, version)

    def prices_version(self) -> tuple[Any, ...]:
        """A value that changes whenever a price or rate row is added, or a
        fetched catalog is stored.

        Cheap (counts, newest times, the newest catalog's id), so a service can
        poll it to see rows another instance added.

        Example:
            >>> from llmledger.store import open_store
            >>> open_store("sqlite://").prices_version()
            (0, None, 0, None, None)
        """
        with database_errors("read the price rows"), self._connect() as conn:
            return _version(conn)


def _version(conn: Connection) -> tuple[Any, ...]:
    prices = conn.execute(sa.select(sa.func.count(), sa.func.max(user_prices.c.created_us))).one()
    rates = conn.execute(
        sa.select(sa.func.count(), sa.func.max(user_exchange_rates.c.created_us))
    ).one()
    return (*prices, *rates, newest_catalog_id(conn))
