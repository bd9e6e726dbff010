"""llmledger: record, price and attribute every LLM provider call.

Example:
    >>> import llmledger
    >>> with llmledger.attribute(tenant="acme", feature="search"):
    ...     event = llmledger.record(provider="openai", model="gpt-4o",
    ...                              input_tokens=1000, output_tokens=100)
    >>> event.tenant, str(event.cost)
    ('acme', '0.003500000')
"""

from __future__ import annotations

from llmledger.capture import Instrumentation, capture_content, instrument
from llmledger.core.attribution import Attribution, attribute, current_attribution, propagate
from llmledger.core.errors import (
    ConfigError,
    CurrencyError,
    InvalidEventError,
    InvalidUsageError,
    LedgerError,
    PriceFileError,
    ResponseParseError,
    StoreError,
    UnknownFeatureError,
    UnknownModelError,
    UnknownProviderError,
)
from llmledger.core.events import UsageEvent
from llmledger.core.settings import Settings, load_settings
from llmledger.core.usage import Usage
from llmledger.runtime.ledger import Ledger, configure, flush, get_ledger
from llmledger.runtime.recording import Tracker, record, track

__version__ = "0.1.0"

__all__ = [
    "Attribution",
    "ConfigError",
    "CurrencyError",
    "Instrumentation",
    "InvalidEventError",
    "InvalidUsageError",
    "Ledger",
    "LedgerError",
    "PriceFileError",
    "ResponseParseError",
    "Settings",
    "StoreError",
    "Tracker",
    "UnknownFeatureError",
    "UnknownModelError",
    "UnknownProviderError",
    "Usage",
    "UsageEvent",
    "__version__",
    "attribute",
    "capture_content",
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
