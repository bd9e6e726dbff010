"""Settings, resolved late.

Explicit arguments > ``LLMLEDGER_*`` environment > config file > defaults.

Nothing here runs at import time; :func:`load_settings` reads the environment
when it is called, so tests can point ``LLMLEDGER_HOME`` at a temporary folder.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from llmledger.core.errors import ConfigError

__all__ = ["DEFAULT_CATALOG_URL", "Settings", "default_home", "load_settings"]

ENV_PREFIX = "LLMLEDGER_"

#: Where the price catalog is fetched from by default: the URL genai-prices' own
#: updater reads (``genai_prices.update_prices.DEFAULT_UPDATE_URL``; a test keeps
#: them equal).
DEFAULT_CATALOG_URL = (
    "https://raw.githubusercontent.com/pydantic/genai-prices/refs/heads/main/"
    "prices/new_data/v2/data.json"
)


def default_home() -> Path:
    """The platform's user data folder for llmledger (used when LLMLEDGER_HOME is unset)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("llmledger", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """Every setting llmledger reads, with its default.

    Attributes:
        home: Folder holding all local state (ledger, price files, config, spool).
        database_url: SQLAlchemy URL of the ledger; default SQLite at ``home/ledger.db``.
        price_files: User price files (YAML), applied over the bundled catalog.
        features: Declared feature names (name -> display name); when not empty,
            an undeclared feature is an error.  Reports for people show each
            display name beside its feature's name.
        queue_limit: Most kept texts (``store_content``) waiting in memory, once read
            back from the journal, for their event's batch to be written or sent;
            beyond it the oldest text is dropped and counted.
        batch_size: Most events written in one transaction.
        flush_interval: Seconds the writer waits to fill a batch.
        store_content: Keep prompt and response text (off by default).
        currency: Currency reports show by default.
        strict: Re-raise internal tracking errors instead of logging them (tests).
        url: Base URL of an llmledger service; when set (with ``api_key``) events
            are sent there instead of to a local database.
        api_key: The ingest key the SDK sends events with.
        spool_limit: Most bytes of the journal (``home/spool``), where every event
            waits until its store or service has it; beyond it new events are
            dropped, counted and logged as errors.
        journal_fsync: ``fsync`` the journal after every event, so events survive
            a power loss too (much slower); off, they survive the process.
        writer_process: Write from a child process fed by the journal
            (:mod:`llmledger.runtime.drain`) rather than from a thread of the
            application: a caller busy in Python then never slows the writer, nor the
            writer the caller.
        shutdown_timeout: Most seconds spent flushing at exit or on SIGTERM/SIGINT;
            what is left waits in the journal for the next process.
        handle_signals: Flush on SIGTERM and SIGINT (then hand the signal to the
            handler that was there before).
        max_body_bytes: Largest request body the service accepts.
        key_cache_seconds: How long the service trusts an API key it verified
            before reading it again (0: every request); a key revoked through
            another instance stops working within this time.
        query_timeout: Seconds one report query of the service may run (0: no
            limit); a query stopped at the limit is answered 503 ``query_timeout``.
        ingest_timeout: Seconds one ingest batch of the service may spend in the
            database (0: no limit); a batch stopped at the limit stores nothing
            and is answered 503 with ``Retry-After``, so the sender sends it again.
        report_slots: Most report queries one service process runs at once; the
            others wait (within ``query_timeout``), so reads always leave database
            connections for ingest.
        otel: Export each stored event as an OpenTelemetry span, with GenAI
            metrics, over OTLP/HTTP (needs ``llmledger[otel]``).
        otel_endpoint: Base URL of the OTLP/HTTP receiver (``/v1/traces`` and
            ``/v1/metrics`` are added); unset: the OpenTelemetry SDK's own
            ``OTEL_EXPORTER_OTLP_*`` variables decide, as they do for headers.
        otel_metrics: Export the metrics too (off: spans only, e.g. to a receiver
            that takes traces alone, such as ``llmledger serve``).
        limits: Check every instrumented SDK call against the limits before it is
            sent (reserve, then settle once it ends); off: no call is checked.
        limit_policy: What a checked call does when the limit store (the database,
            or the service with ``url``) cannot be reached: ``open`` lets it
            through, ``closed`` refuses it; either is recorded on its event.
        limit_ttl: Seconds a reservation counts before it expires unsettled (a
            process killed mid-call); keep it above the longest call.
        limit_bytes_per_token: Bytes of request JSON counted as one input token
            by the pre-call estimate (1 never underestimates; 4 is typical English).
        limit_output_tokens: Output tokens reserved for a call without a
            ``max_tokens`` (or alias).
        session_secret: The key that signs the dashboard's session cookies; every
            instance behind one address needs the same.  When unset, a random one
            is made once and kept in ``home/session-secret``.
        run_jobs: ``llmledger serve`` runs the scheduled jobs (budget and alert
            checks, deliveries, the weekly price check); one instance leads.
        check_interval: Seconds between two budget and alert checks.
        alert_recipients: Who is told of alerts other than budgets' and of the
            weekly price check (``email:…``, ``webhook:…``, ``slack:…``).
        error_rate_threshold: Error share (0 to 1) above which the error-rate alert fires.
        error_rate_window: Seconds of the error-rate and authentication windows.
        alert_min_calls: Fewest calls a window needs before its error rate or p95 counts.
        spike_factor: How many times its baseline makes a spend or token spike.
        spike_window: Seconds of the spike window.
        baseline_days: Days the spike and latency baselines cover.
        spike_min_cost: Least USD spent in the spike window for a spend spike.
        spike_min_tokens: Least tokens in the spike window for a token spike.
        latency_factor: How many times the baseline p95 makes a latency alert.
        latency_window: Seconds of the latency window.
        stale_price_days: Days after which a price row not checked is stale.
        alert_cooldown: Seconds a resolved alert stays quiet before it may fire again.
        price_refresh: Let the weekly price check refresh the catalog from the
            network (off: the bundled catalog is used as pinned).
        price_catalog_url: Where the catalog is fetched from: a genai-prices data
            document (by default the one genai-prices' own updater reads).
        price_catalog_timeout: Seconds fetching the catalog may take.
        smtp_host: Mail server for ``email:`` recipients.
        smtp_port: Its port.
        smtp_security: ``starttls``, ``tls`` (implicit TLS) or ``none``.
        smtp_user: Login, when the server needs one.
        smtp_password: Its password.
        smtp_sender: The ``From`` address.
        smtp_ca_file: A PEM file of the certificate authorities the mail server's
            certificate is verified against, instead of the system's (``starttls``, ``tls``).
        webhook_secret: Key of the ``X-Llmledger-Signature`` HMAC-SHA256 of webhook bodies.
        notify_timeout: Seconds one delivery attempt may take.
        debug: Log each captured call at DEBUG: how its usage was read and how it
            was priced (never prompt or response text).
    """

    home: Path = field(default_factory=default_home)
    database_url: str | None = None
    price_files: tuple[Path, ...] = ()
    features: Mapping[str, str] = field(default_factory=dict)
    queue_limit: int = 100_000
    batch_size: int = 2_000
    flush_interval: float = 0.2
    store_content: bool = False
    currency: str = "USD"
    strict: bool = False
    url: str | None = None
    api_key: str | None = None
    spool_limit: int = 2_000_000_000
    journal_fsync: bool = False
    writer_process: bool = False
    shutdown_timeout: float = 5.0
    handle_signals: bool = True
    max_body_bytes: int = 10_000_000
    key_cache_seconds: float = 5.0
    query_timeout: float = 30.0
    ingest_timeout: float = 30.0
    report_slots: int = 4
    otel: bool = False
    otel_endpoint: str | None = None
    otel_metrics: bool = True
    limits: bool = False
    limit_policy: str = "open"
    limit_ttl: float = 600.0
    limit_bytes_per_token: float = 4.0
    limit_output_tokens: int = 4096
    session_secret: str | None = None
    run_jobs: bool = True
    check_interval: float = 300.0
    alert_recipients: tuple[str, ...] = ()
    error_rate_threshold: float = 0.05
    error_rate_window: float = 900.0
    alert_min_calls: int = 20
    spike_factor: float = 3.0
    spike_window: float = 3600.0
    baseline_days: int = 7
    spike_min_cost: float = 1.0
    spike_min_tokens: int = 100_000
    latency_factor: float = 1.5
    latency_window: float = 900.0
    stale_price_days: int = 30
    alert_cooldown: float = 3600.0
    price_refresh: bool = False
    price_catalog_url: str = DEFAULT_CATALOG_URL
    price_catalog_timeout: float = 30.0
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_security: str = "starttls"
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_sender: str = "llmledger@localhost"
    smtp_ca_file: str | None = None
    webhook_secret: str | None = None
    notify_timeout: float = 10.0
    debug: bool = False

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to the SQLite file in ``home``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'ledger.db'}"

    @property
    def config_file(self) -> Path:
        """Where the optional config file lives."""
        return self.home / "config.toml"

    @property
    def default_price_file(self) -> Path:
        """The user price file read when present, besides any named in ``price_files``."""
        return self.home / "prices.yaml"

    def all_price_files(self) -> tuple[Path, ...]:
        """Named price files, plus ``home/prices.yaml`` when it exists."""
        files = list(self.price_files)
        if self.default_price_file.exists() and self.default_price_file not in files:
            files.insert(0, self.default_price_file)
        return tuple(files)


_BOOL_TRUE = {"1", "true", "yes", "on"}
_BOOL_FALSE = {"0", "false", "no", "off", ""}


def _coerce(name: str, value: Any) -> Any:
    """Turn a string or TOML value into the setting's type."""
    try:
        if name == "home":
            return Path(value).expanduser()
        if name == "price_files":
            if isinstance(value, str):
                value = [p for p in value.split(os.pathsep) if p]
            return tuple(Path(p).expanduser() for p in value)
        if name == "features":
            if isinstance(value, str):
                # "chat=Chat assistant,search": a display name after "=" is optional.
                pairs = [item.partition("=") for item in value.split(",") if item.strip()]
                value = {k.strip(): (v.strip() or k.strip()) for k, _, v in pairs}
            if isinstance(value, Mapping):
                return {str(k): str(v) for k, v in value.items()}
            return {str(f): str(f) for f in value}
        if name == "limit_policy":
            text = str(value).strip().lower()
            if text not in ("open", "closed"):
                raise ValueError("must be open or closed")
            return text
        if name in ("limit_ttl", "limit_bytes_per_token"):
            number = float(value)
            if not 0 < number <= 86_400:
                raise ValueError("must be positive (at most 86400)")
            return number
        if name in (
            "queue_limit",
            "batch_size",
            "spool_limit",
            "max_body_bytes",
            "report_slots",
            "limit_output_tokens",
        ):
            number = int(value)
            if number < 1:
                raise ValueError("must be at least 1")
            return number
        if name == "flush_interval":
            seconds = float(value)
            if seconds <= 0:
                raise ValueError("must be positive")
            return seconds
        if name in ("key_cache_seconds", "query_timeout", "ingest_timeout", "shutdown_timeout"):
            seconds = float(value)
            if not 0 <= seconds <= 3600:
                raise ValueError("must be between 0 and 3600")
            return seconds
        if name in _RANGES:
            return _in_range(name, value)
        if name == "alert_recipients":
            if isinstance(value, str):
                value = [item for item in value.split(",") if item.strip()]
            return tuple(str(item).strip() for item in value)
        if name == "smtp_security":
            text = str(value).strip().lower()
            if text not in ("starttls", "tls", "none"):
                raise ValueError("must be starttls, tls or none")
            return text
        if name in (
            "store_content",
            "strict",
            "otel",
            "otel_metrics",
            "run_jobs",
            "price_refresh",
            "journal_fsync",
            "writer_process",
            "handle_signals",
            "limits",
            "debug",
        ):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _BOOL_TRUE:
                return True
            if text in _BOOL_FALSE:
                return False
            raise ValueError("must be true or false")
        if name == "currency":
            return str(value).upper()
        if name == "price_catalog_url":
            text = str(value).strip()
            if not text.startswith(("http://", "https://")):
                raise ValueError("must be an http:// or https:// URL")
            return text
        return None if value in (None, "") else str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name}: {value!r} is not valid ({exc})") from None


#: Numeric settings checked by range: name -> (type, least, most).
_RANGES: dict[str, tuple[type, float, float]] = {
    "check_interval": (float, 0.1, 86_400),
    "error_rate_threshold": (float, 0.0001, 0.9999),
    "error_rate_window": (float, 60, 86_400),
    "alert_min_calls": (int, 1, 1_000_000),
    "spike_factor": (float, 1.01, 1_000),
    "spike_window": (float, 60, 86_400),
    "baseline_days": (int, 1, 90),
    "spike_min_cost": (float, 0, 1e9),
    "spike_min_tokens": (int, 0, 10**15),
    "latency_factor": (float, 1.01, 1_000),
    "latency_window": (float, 60, 86_400),
    "stale_price_days": (int, 1, 3650),
    "alert_cooldown": (float, 0, 30 * 86_400),
    "smtp_port": (int, 1, 65_535),
    "notify_timeout": (float, 0.1, 600),
    "price_catalog_timeout": (float, 0.1, 600),
}


def _in_range(name: str, value: Any) -> Any:
    kind, least, most = _RANGES[name]
    if isinstance(value, bool):
        raise ValueError("must be a number")
    number = kind(value)
    if not least <= number <= most:
        raise ValueError(f"must be between {least:g} and {most:g}")
    return number


_NAMES = tuple(f.name for f in fields(Settings))


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Resolve settings from arguments, the environment and the config file.

    Args:
        environ: The environment to read (``os.environ`` by default).
        **overrides: Explicit values, which win over everything else.

    Example:
        >>> s = load_settings({"LLMLEDGER_HOME": "/tmp/ledger-home"})
        >>> s.resolved_database_url
        'sqlite:////tmp/ledger-home/ledger.db'

    Raises:
        ConfigError: on an unknown setting or a value of the wrong kind.
    """
    env = os.environ if environ is None else environ
    unknown = set(overrides) - set(_NAMES)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    from_env = {
        name: _coerce(name, env[ENV_PREFIX + name.upper()])
        for name in _NAMES
        if ENV_PREFIX + name.upper() in env
    }
    explicit = {
        name: _coerce(name, value) for name, value in overrides.items() if value is not None
    }
    home = explicit.get("home") or from_env.get("home") or default_home()
    settings = Settings(home=home)
    from_file = _read_config_file(settings.config_file)
    merged = {**from_file, **from_env, **explicit, "home": home}
    return replace(settings, **merged)


def _read_config_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    unknown = set(data) - set(_NAMES) - {"home"}
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s): {', '.join(sorted(unknown))}")
    return {name: _coerce(name, value) for name, value in data.items() if name != "home"}
