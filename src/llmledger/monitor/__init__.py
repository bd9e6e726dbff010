"""Running budgets and alerts: the checks, the outbox's delivery, the scheduled jobs and
the catalog's refresh from the network.

Example:
    >>> from datetime import UTC, datetime
    >>> from llmledger.core.settings import load_settings
    >>> from llmledger.pricing import PriceResolver
    >>> from llmledger.store import open_store
    >>> monitor = Monitor(open_store("sqlite://"), load_settings(), PriceResolver)
    >>> monitor.check(datetime(2025, 3, 1, tzinfo=UTC)).fired
    []
"""

from __future__ import annotations

from llmledger.monitor.checks import CheckResult, Delivery, Monitor, alert_settings
from llmledger.monitor.refresh import CatalogRefresh, refresh_catalog
from llmledger.monitor.scheduler import Scheduler

__all__ = [
    "CatalogRefresh",
    "CheckResult",
    "Delivery",
    "Monitor",
    "Scheduler",
    "alert_settings",
    "refresh_catalog",
]
