"""Automatic capture of every provider SDK call: :func:`instrument`.

``instrument()`` hooks the provider SDKs that are installed (``openai``,
``anthropic``, ``google-genai``) so that every call they make is recorded in
the ledger, with no change to the calling code: the same return types, the
same exceptions, the caller's arguments untouched. Calls made through LiteLLM
or LangChain are recorded once, with their attribution, by
:func:`litellm_callback` and :func:`langchain_handler`.

Example:
    >>> import llmledger
    >>> handle = llmledger.instrument()
    >>> sorted(handle.sdks) == sorted(set(handle.sdks))
    True
    >>> handle.uninstrument()
"""

from __future__ import annotations

import enum
import importlib
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from llmledger.capture._core import CaptureOptions, Redactor, capture_content, internal_errors
from llmledger.capture._patch import Patch
from llmledger.core.errors import ConfigError

if TYPE_CHECKING:
    from llmledger.runtime.ledger import Ledger

__all__ = [
    "CaptureOptions",
    "Instrumentation",
    "Redactor",
    "capture_content",
    "capture_stats",
    "instrument",
    "langchain_handler",
    "litellm_callback",
]

_SDKS = ("openai", "anthropic", "google")
_lock = threading.Lock()
_active: Instrumentation | None = None


class _Unset(enum.Enum):
    UNSET = "unset"


_UNSET = _Unset.UNSET


class Instrumentation:
    """The handle :func:`instrument` returns: which SDKs are hooked, with which options,
    and how to undo it.

    The options are fixed for the handle's life: its hooks were made with them.
    Also a context manager: the hooks are removed when the block ends.

    Example:
        >>> import llmledger
        >>> with llmledger.instrument(google=False) as handle:
        ...     "google" in handle.sdks, handle.options.include_usage
        (False, False)
    """

    def __init__(self, options: CaptureOptions | None = None) -> None:
        self._options = options or CaptureOptions()
        self._patches: dict[str, list[Patch]] = {}

    @property
    def options(self) -> CaptureOptions:
        """The options every hook of this handle follows."""
        return self._options

    @property
    def sdks(self) -> tuple[str, ...]:
        """The SDKs hooked now (those asked for that are installed)."""
        return tuple(name for name, patches in self._patches.items() if patches)

    @property
    def active(self) -> bool:
        """Whether the hooks are in place."""
        return any(self._patches.values())

    def _add(self, name: str, make: Callable[[CaptureOptions], list[Patch]]) -> None:
        if self._patches.get(name):
            return
        patches = make(self._options)
        for patch in patches:
            patch.apply()
        self._patches[name] = patches

    def _remove(self, name: str) -> None:
        for patch in reversed(self._patches.pop(name, [])):
            patch.undo()

    def uninstrument(self) -> None:
        """Remove every hook; calls made afterwards are no longer recorded.

        Streams already returned keep recording until they end.
        """
        global _active
        with _lock:
            for name in list(self._patches):
                self._remove(name)
            if _active is self:
                _active = None

    def __enter__(self) -> Instrumentation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.uninstrument()

    def __repr__(self) -> str:
        return f"<Instrumentation sdks={list(self.sdks)}>"


def _module(name: str) -> Any:
    return importlib.import_module(f"llmledger.capture.{name}")


def instrument(
    *,
    openai: bool = True,
    anthropic: bool = True,
    google: bool = True,
    include_usage: bool | Literal[_Unset.UNSET] = _UNSET,
    store_content: bool | Literal[_Unset.UNSET] | None = _UNSET,
    redact: Redactor | Literal[_Unset.UNSET] | None = _UNSET,
    ledger: Ledger | Literal[_Unset.UNSET] | None = _UNSET,
) -> Instrumentation:
    """Record every call the installed provider SDKs make, from now on.

    Safe to call more than once: the hooks are installed once, and a later call
    returns the same handle, hooking the SDKs asked for that are not hooked yet
    (and unhooking those passed as ``False``). The options (``include_usage``,
    ``store_content``, ``redact``, ``ledger``) are the handle's for its life: a later
    call may repeat them or leave them out, but naming a different value is a
    :class:`~llmledger.ConfigError`; ``uninstrument()`` first to change them.
    Attribution in force at the start of each call (:func:`llmledger.attribute`)
    is recorded with it.

    Args:
        openai: Hook the ``openai`` SDK (chat completions, Responses, embeddings;
            also against OpenAI-compatible servers).
        anthropic: Hook the ``anthropic`` SDK (Messages, including ``.stream()``).
        google: Hook the ``google-genai`` SDK (``generate_content``,
            ``generate_content_stream``, ``embed_content``).
        include_usage: Ask OpenAI chat streams for their usage
            (``stream_options.include_usage``) when the caller did not, and hide the
            extra usage-only chunk from the caller. Without it such streams are
            recorded with their usage marked missing, never as zero.
        store_content: Keep prompt and response text (apart from the events);
            ``None`` follows the ``store_content`` setting. :func:`capture_content`
            decides per block of calls.
        redact: Called as ``redact("prompt" | "response", text)`` before any text
            is kept; returns the text to keep.
        ledger: Record into this ledger instead of the process ledger
            (:func:`llmledger.get_ledger`, followed as :func:`llmledger.configure`
            replaces it).

    Returns:
        The :class:`Instrumentation` handle; ``.uninstrument()`` undoes it.

    Raises:
        ConfigError: when instrumentation is already on with other options.

    Example:
        >>> import llmledger
        >>> handle = llmledger.instrument(include_usage=True)
        >>> handle is llmledger.instrument() is llmledger.instrument(include_usage=True)
        True
        >>> llmledger.instrument(include_usage=False)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        llmledger.core.errors.ConfigError: instrument() is already on with include_usage=True; ...
        >>> handle.uninstrument()
    """
    global _active
    given: dict[str, Any] = {
        name: value
        for name, value in (
            ("include_usage", include_usage),
            ("store_content", store_content),
            ("redact", redact),
            ("ledger", ledger),
        )
        if value is not _UNSET
    }
    with _lock:
        handle = _active
        if handle is not None:
            for name, value in given.items():
                current = getattr(handle.options, name)
                if value is current or value == current:
                    continue
                if not handle.active:
                    # Nothing is hooked with the old options: nothing for new ones to contradict.
                    handle = None
                    break
                raise ConfigError(
                    f"instrument() is already on with {name}={current!r}; "
                    "call uninstrument() on its handle first to change it"
                )
        if handle is None:
            handle = Instrumentation(CaptureOptions(**given))
        wanted = {"openai": openai, "anthropic": anthropic, "google": google}
        for name in _SDKS:
            module = _module(name)
            if wanted[name] and module.available():
                handle._add(name, module.make_patches)
            elif not wanted[name]:
                handle._remove(name)
        _active = handle
        return handle


def langchain_handler(**attribution: Any) -> Any:
    """A LangChain callback handler recording each model call once (see :mod:`.langchain`).

    Example:
        >>> handler = langchain_handler(feature="support")
        >>> handler.run_inline
        True
    """
    made: Any = _module("langchain").langchain_handler(**attribution)
    return made


def litellm_callback(**attribution: Any) -> Any:
    """A LiteLLM callback recording each call once (see :mod:`.litellm`).

    Example:
        >>> callback = litellm_callback(tenant="acme")
        >>> callable(callback.log_success_event)
        True
    """
    made: Any = _module("litellm").litellm_callback(**attribution)
    return made


def capture_stats() -> dict[str, int]:
    """Counters of the capture hooks: internal errors caught (and logged) so far.

    Example:
        >>> capture_stats()["internal_errors"] >= 0
        True
    """
    return {"internal_errors": internal_errors()}
