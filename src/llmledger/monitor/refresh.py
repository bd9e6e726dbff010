"""Refreshing the price catalog from the network (``price_refresh``, ``llmledger prices refresh``).

The document genai-prices publishes is fetched with httpx (one GET, within a
timeout), read and checked by :mod:`llmledger.pricing.fetched`, compared with
the catalog in force, and stored in the ledger database, whose newest fetched
catalog every process and service instance over it then prices with.  A
document that cannot be fetched or read is refused with a logged error, and the
catalog in force stays.

genai-prices' own ``UpdatePrices`` is not used: it runs a background thread that
swaps genai-prices' process-wide data (which llmledger never reads), fetches
with another HTTP client, and keeps no copy of the document to store; its URL
is the default of ``price_catalog_url`` and its reading of the document
(``_providers_from_raw``) is the one used here.

Example:
    >>> from datetime import UTC, datetime
    >>> from llmledger.pricing import Catalog
    >>> from llmledger.store import open_store
    >>> result = refresh_catalog(open_store("sqlite://"), Catalog(), url="http://127.0.0.1:9/x",
    ...                          timeout=1, now=datetime(2026, 12, 3, tzinfo=UTC))
    >>> result.ok, result.error.startswith("could not fetch the catalog from http://127.0.0.1:9/x")
    (False, True)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

import httpx

from llmledger.core.errors import CatalogError, LedgerError
from llmledger.core.ids import new_id
from llmledger.pricing import Catalog
from llmledger.pricing.fetched import CatalogChanges, read_catalog
from llmledger.store import Store
from llmledger.store.catalogs import StoredCatalog

__all__ = ["MAX_CATALOG_BYTES", "CatalogRefresh", "fetch_catalog", "refresh_catalog"]

log = logging.getLogger("llmledger.monitor")

#: Largest catalog document accepted (genai-prices' is about 1 MB).
MAX_CATALOG_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class CatalogRefresh:
    """What one refresh did.

    Attributes:
        url: Where the catalog was fetched from.
        at: When.
        error: Why it failed (None when it worked); the catalog in force stays.
        changes: What the fetched catalog changes from the one in force.
        stored: False when the document was the one in force already.
        catalog: The catalog that prices from now on (the fetched one when it
            worked, else the one in force before).
    """

    url: str
    at: datetime
    error: str | None = None
    changes: CatalogChanges = field(default_factory=CatalogChanges)
    stored: bool = False
    catalog: Catalog | None = None

    @property
    def ok(self) -> bool:
        """Whether the catalog was fetched, read and stored."""
        return self.error is None

    def lines(self) -> list[str]:
        """The refresh, told in a few lines (the digest's section, the command's output).

        Example:
            >>> from datetime import UTC, datetime
            >>> CatalogRefresh("https://e.com/d.json", datetime(2026, 12, 3, tzinfo=UTC),
            ...                error="the catalog document lists no providers").lines()[0]
            'not refreshed: the catalog document lists no providers; the catalog in force stays'
        """
        if self.error is not None:
            return [f"not refreshed: {self.error}; the catalog in force stays"]
        day = self.at.date().isoformat()
        if not self.stored:
            return [f"refreshed from {self.url} on {day}: unchanged since the last refresh"]
        lines = [f"refreshed from {self.url} on {day}: {self.changes.summary()}"]
        for label, models in (
            ("added", self.changes.added),
            ("price changed", self.changes.changed),
            ("removed", self.changes.removed),
        ):
            shown = ", ".join(models[:20]) + (
                f" and {len(models) - 20} more" if len(models) > 20 else ""
            )
            if models:
                lines.append(f"{label}: {shown}")
        return lines


def fetch_catalog(url: str, *, timeout: float) -> bytes:
    """The catalog document at ``url``.

    Raises:
        CatalogError: when it cannot be fetched (no answer within ``timeout``,
            a status other than 2xx, larger than :data:`MAX_CATALOG_BYTES`).
    """
    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=True) as client,
            client.stream("GET", url, headers={"Accept": "application/json"}) as response,
        ):
            response.raise_for_status()
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_CATALOG_BYTES:
                    raise CatalogError(
                        f"the catalog at {url} is larger than {MAX_CATALOG_BYTES:,} bytes"
                    )
            return bytes(body)
    except httpx.HTTPStatusError as exc:
        raise CatalogError(
            f"could not fetch the catalog from {url}: HTTP {exc.response.status_code}"
        ) from None
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        raise CatalogError(f"could not fetch the catalog from {url}: {reason}") from None


def refresh_catalog(
    store: Store,
    current: Catalog | None,
    *,
    url: str,
    timeout: float,
    now: datetime,
) -> CatalogRefresh:
    """Fetch the catalog, check it and store it as the one in force.

    Never raises for a catalog that cannot be fetched, read or stored: the
    result says why, the error is logged, and the catalog in force stays.

    Args:
        store: The ledger database the catalog is kept in.
        current: The catalog in force, to say what changed.
        url: Where to fetch it (``price_catalog_url``).
        timeout: Seconds the fetch may take (``price_catalog_timeout``).
        now: When (the fetched catalog is named by this day).
    """
    try:
        document = fetch_catalog(url, timeout=timeout)
        text = document.decode("utf-8")
        catalog = read_catalog(text, fetched=now)
        stored = store.add_catalog(StoredCatalog(new_id(), text, url, now, now))
    except UnicodeDecodeError as exc:
        return _failed(url, now, current, f"the catalog document is not UTF-8 text: {exc}")
    except (CatalogError, LedgerError) as exc:
        return _failed(url, now, current, str(exc))
    from llmledger.pricing.fetched import catalog_changes

    changes = catalog_changes(current, catalog) if current is not None else CatalogChanges()
    in_force = catalog if stored or current is None else current
    result = CatalogRefresh(url, now, None, changes, stored, in_force)
    log.info("llmledger: price catalog %s", "; ".join(result.lines()))
    return result


def _failed(url: str, now: datetime, current: Catalog | None, error: str) -> CatalogRefresh:
    log.error("llmledger: the price catalog was not refreshed: %s", error)
    return CatalogRefresh(url, now, error, catalog=current)
