"""llmledger: record, price and attribute every LLM provider call.

Example:
    >>> import llmledger
    >>> llmledger.get_ledger().prices.wait()  # else the first events come back pending
    True
    >>> with llmledger.attribute(tenant="acme", feature="search"):
    ...     event = llmledger.record(provider="openai", model="gpt-4o",
    ...                              input_tokens=1000, output_tokens=100)
    >>> event.tenant, str(event.cost)
    ('acme', '0.003500000')
"""

from __future__ import annotations

import importlib
import typing

if typing.TYPE_CHECKING:
    from llmledger.capture import Instrumentation, capture_content, instrument
    from llmledger.core.attribution import Attribution, attribute, current_attribution, propagate
    from llmledger.core.errors import (
        BatchRefused,
        BudgetError,
        CatalogError,
        ConfigError,
        CurrencyError,
        ExportError,
        FileAccessError,
        InvalidEventError,
        InvalidLimitError,
        InvalidQueryError,
        InvalidUsageError,
        LedgerError,
        LimitExceededError,
        MissingDependencyError,
        NotificationError,
        PriceFileError,
        ResponseParseError,
        ServiceUnavailable,
        StoreError,
        StoreUnavailableError,
        UnknownFeatureError,
        UnknownModelError,
        UnknownProviderError,
    )
    from llmledger.core.events import UsageEvent
    from llmledger.core.limits import Limit
    from llmledger.core.settings import Settings, load_settings
    from llmledger.core.usage import Usage
    from llmledger.runtime.ledger import Ledger, configure, flush, get_ledger
    from llmledger.runtime.limits import LimitCheck, check
    from llmledger.runtime.recording import Tracker, record, track

__version__ = "0.1.0"

__all__ = [
    "Attribution",
    "BatchRefused",
    "BudgetError",
    "CatalogError",
    "ConfigError",
    "CurrencyError",
    "ExportError",
    "FileAccessError",
    "Instrumentation",
    "InvalidEventError",
    "InvalidLimitError",
    "InvalidQueryError",
    "InvalidUsageError",
    "Ledger",
    "LedgerError",
    "Limit",
    "LimitCheck",
    "LimitExceededError",
    "MissingDependencyError",
    "NotificationError",
    "PriceFileError",
    "ResponseParseError",
    "ServiceUnavailable",
    "Settings",
    "StoreError",
    "StoreUnavailableError",
    "Tracker",
    "UnknownFeatureError",
    "UnknownModelError",
    "UnknownProviderError",
    "Usage",
    "UsageEvent",
    "__version__",
    "attribute",
    "capture_content",
    "check",
    "configure",
    "current_attribution",
    "flush",
    "get_ledger",
    "instrument",
    "load_settings",
    "propagate",
    "record",
    "track",
]

# Each name is imported on first use, so ``import llmledger`` (and every
# ``llmledger`` command's start) loads no more than what is used.
_EXPORTS: dict[str, str] = {
    "Attribution": "llmledger.core.attribution",
    "BatchRefused": "llmledger.core.errors",
    "BudgetError": "llmledger.core.errors",
    "CatalogError": "llmledger.core.errors",
    "ConfigError": "llmledger.core.errors",
    "CurrencyError": "llmledger.core.errors",
    "ExportError": "llmledger.core.errors",
    "FileAccessError": "llmledger.core.errors",
    "Instrumentation": "llmledger.capture",
    "InvalidEventError": "llmledger.core.errors",
    "InvalidLimitError": "llmledger.core.errors",
    "InvalidQueryError": "llmledger.core.errors",
    "InvalidUsageError": "llmledger.core.errors",
    "Ledger": "llmledger.runtime.ledger",
    "LedgerError": "llmledger.core.errors",
    "Limit": "llmledger.core.limits",
    "LimitCheck": "llmledger.runtime.limits",
    "LimitExceededError": "llmledger.core.errors",
    "MissingDependencyError": "llmledger.core.errors",
    "NotificationError": "llmledger.core.errors",
    "PriceFileError": "llmledger.core.errors",
    "ResponseParseError": "llmledger.core.errors",
    "ServiceUnavailable": "llmledger.core.errors",
    "Settings": "llmledger.core.settings",
    "StoreError": "llmledger.core.errors",
    "StoreUnavailableError": "llmledger.core.errors",
    "Tracker": "llmledger.runtime.recording",
    "UnknownFeatureError": "llmledger.core.errors",
    "UnknownModelError": "llmledger.core.errors",
    "UnknownProviderError": "llmledger.core.errors",
    "Usage": "llmledger.core.usage",
    "UsageEvent": "llmledger.core.events",
    "attribute": "llmledger.core.attribution",
    "capture_content": "llmledger.capture",
    "check": "llmledger.runtime.limits",
    "configure": "llmledger.runtime.ledger",
    "current_attribution": "llmledger.core.attribution",
    "flush": "llmledger.runtime.ledger",
    "get_ledger": "llmledger.runtime.ledger",
    "instrument": "llmledger.capture",
    "load_settings": "llmledger.core.settings",
    "propagate": "llmledger.core.attribution",
    "record": "llmledger.runtime.recording",
    "track": "llmledger.runtime.recording",
}


def __getattr__(name: str) -> typing.Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
