"""The database's price rows and exchange rates, read whole for the price source.

Prices added through the service live in ``user_prices`` and
``user_exchange_rates`` (created by migration 0003 in every ledger database).
This module reads them all, in the shape of a price file, so the SDK's ledger
and the service hand the same rows to :class:`~llmledger.pricing.PriceResolver`.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

__all__ = ["read_price_rows"]

_prices = sa.table(
    "user_prices",
    sa.column("provider"),
    sa.column("model"),
    sa.column("service_tier"),
    sa.column("valid_from"),
    sa.column("checked"),
    sa.column("rates"),
)
_rates = sa.table(
    "user_exchange_rates",
    sa.column("currency"),
    sa.column("rate"),
    sa.column("valid_from"),
    sa.column("source"),
)


def read_price_rows(engine: Engine) -> dict[str, Any]:
    """Every price row and exchange rate of the database, as a price file's content.

    Dates stay ISO text and rates decimal text; the price file model validates
    them as it does a file's.

    Example:
        >>> from llmledger.store import open_store
        >>> read_price_rows(open_store("sqlite://").engine)
        {'prices': [], 'exchange_rates': {}}
    """
    p = _prices.c
    r = _rates.c
    with engine.connect() as conn:
        price_rows = conn.execute(
            sa.select(_prices).order_by(p.provider, p.model, p.service_tier, p.valid_from)
        ).all()
        rate_rows = conn.execute(sa.select(_rates).order_by(r.currency, r.valid_from)).all()
    prices: list[dict[str, Any]] = []
    for row in price_rows:
        m = row._mapping
        entry: dict[str, Any] = {"provider": m["provider"], "model": m["model"]}
        entry.update(json.loads(m["rates"]))
        for field, column in (("from", "valid_from"), ("checked", "checked")):
            if m[column] is not None:
                entry[field] = m[column]
        if m["service_tier"] is not None:
            entry["service_tier"] = m["service_tier"]
        prices.append(entry)
    rates: dict[str, list[dict[str, Any]]] = {}
    for row in rate_rows:
        m = row._mapping
        rates.setdefault(m["currency"], []).append(
            {"from": m["valid_from"], "rate": m["rate"], "source": m["source"] or "user:db"}
        )
    return {"prices": prices, "exchange_rates": rates}
