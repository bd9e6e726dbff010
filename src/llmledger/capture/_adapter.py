"""What the framework adapters (LangChain, LiteLLM) share.

Each adapter is a recorder class holding the attribution it was given, mixed on
first use into the framework's own base class (the framework calls only
instances of that class), so importing llmledger never imports the framework.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from typing import Any, TypedDict, Unpack

from llmledger.capture._core import attribution_from, merge_attribution

__all__ = ["AdapterRecorder", "AttributionArgs", "mixed_class"]


class AttributionArgs(TypedDict, total=False):
    """The attribution an adapter is given, as :func:`llmledger.attribute` takes it."""

    tenant: str | None
    user: str | None
    feature: str | None
    session: str | None
    tags: Mapping[str, str] | None


class AdapterRecorder:
    """An adapter's attribution for every call it sees; a call's own metadata wins over it.

    Args:
        tenant, user, feature, session, tags: The adapter's attribution.
    """

    def __init__(self, **attribution: Unpack[AttributionArgs]) -> None:
        super().__init__()
        self._defaults = attribution_from(attribution)

    def _attribution(self, named: Mapping[str, Any]) -> dict[str, Any]:
        """The adapter's attribution with what one call names (``named``) over it."""
        return merge_attribution(self._defaults, named)


_made: dict[type, type] = {}
_lock = threading.Lock()


def mixed_class(recorder: type, base: str, name: str, *, optional: bool = False) -> type:
    """``recorder`` mixed into the framework class ``base`` (``"module:Class"``), made once.

    Raises:
        ImportError: when the framework is not installed, unless ``optional``: then
            the plain ``recorder`` serves.

    Example:
        >>> class Recorder(AdapterRecorder): ...
        >>> cls = mixed_class(Recorder, "collections:OrderedDict", "Mixed")
        >>> cls.__name__, issubclass(cls, Recorder), mixed_class(Recorder, "x:Y", "Z") is cls
        ('Mixed', True, True)
    """
    with _lock:
        made = _made.get(recorder)
        if made is None:
            module, _, attr = base.partition(":")
            try:
                framework_base = getattr(importlib.import_module(module), attr)
            except ImportError:
                if not optional:
                    raise
                made = recorder
            else:
                made = type(
                    name,
                    (recorder, framework_base),
                    {"__module__": recorder.__module__, "__doc__": recorder.__doc__},
                )
            _made[recorder] = made
        return made
