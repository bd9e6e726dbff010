"""One exception tree for the whole library.

Every error llmledger raises derives from :class:`LedgerError` and also from the
builtin a caller would naturally catch, so ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "CurrencyError",
    "InvalidEventError",
    "InvalidQueryError",
    "InvalidUsageError",
    "LedgerError",
    "PriceFileError",
    "ResponseParseError",
    "StoreError",
    "UnknownFeatureError",
    "UnknownModelError",
    "UnknownProviderError",
]


class LedgerError(Exception):
    """Base class of every error raised by llmledger."""


class ConfigError(LedgerError, ValueError):
    """A setting or configuration file is invalid."""


class InvalidEventError(LedgerError, ValueError):
    """A usage event has a field that is missing, malformed or out of range."""


class InvalidUsageError(InvalidEventError):
    """Token counts are negative or a part exceeds its total."""


class UnknownProviderError(LedgerError, LookupError):
    """The provider name is not one llmledger knows how to read."""


class UnknownModelError(LedgerError, LookupError):
    """No price is known for the model."""


class UnknownFeatureError(InvalidEventError):
    """A feature was used that is not in the declared list of features."""


class PriceFileError(ConfigError):
    """A user price file cannot be read or is invalid."""


class ResponseParseError(LedgerError, ValueError):
    """A saved provider response or stream transcript cannot be understood."""


class StoreError(LedgerError, RuntimeError):
    """The ledger database cannot be opened, migrated or written."""


class CurrencyError(LedgerError, LookupError):
    """No exchange rate is known for a currency at the requested time."""


class InvalidQueryError(StoreError, ValueError):
    """A read or report was asked for with an unknown filter, dimension or a naive time."""
