"""Attribution: who and what caused a call, carried by a context variable.

A ``contextvars.ContextVar`` follows asyncio tasks by itself; for threads,
:func:`propagate` (or :func:`llmledger.submit_with_context`) copies the current
context into the worker.

Nothing here knows the ledger: whether a feature is declared is checked where an
event is built (:func:`check_feature`, given the declared features), so opening
an :func:`attribute` block never builds or reads a ledger.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from llmledger.core.errors import InvalidEventError, UnknownFeatureError

__all__ = [
    "Attribution",
    "attribute",
    "attribution_in_force",
    "check_feature",
    "current_attribution",
    "propagate",
]

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Attribution:
    """The attribution in force: tenant, user, feature, session and tags."""

    tenant: str | None = None
    user: str | None = None
    feature: str | None = None
    session: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    def merged(self, **changes: Any) -> Attribution:
        """A new attribution: given fields replace ours, tags are merged (inner wins)."""
        tags = changes.pop("tags", None)
        values = {
            "tenant": self.tenant,
            "user": self.user,
            "feature": self.feature,
            "session": self.session,
        }
        values.update({k: v for k, v in changes.items() if v is not None})
        merged_tags = {**self.tags, **tags} if tags else self.tags
        return Attribution(tags=merged_tags, **values)


_EMPTY = Attribution()
_current: contextvars.ContextVar[Attribution] = contextvars.ContextVar(
    "llmledger_attribution", default=_EMPTY
)


def current_attribution() -> Attribution:
    """The attribution in force in this thread or task."""
    return _current.get()


#: :func:`current_attribution` without the function call, for the capture hooks' hot path.
attribution_in_force = _current.get


def check_feature(feature: str | None, declared: Collection[str]) -> None:
    """Refuse a feature that is not declared, when features are declared.

    Raises:
        UnknownFeatureError: naming the feature and the declared ones.

    Example:
        >>> check_feature("search", {"search", "chat"})
        >>> check_feature("anything", ())  # nothing declared: every feature is fine
        >>> check_feature("serach", {"search", "chat"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        llmledger.core.errors.UnknownFeatureError: unknown feature 'serach'; declared ...
    """
    if feature is not None and declared and feature not in declared:
        raise UnknownFeatureError(
            f"unknown feature {feature!r}; declared features: {', '.join(sorted(declared))}"
        )


def _check(tenant: Any, user: Any, feature: Any, session: Any, tags: Any) -> dict[str, str]:
    for name, value in (
        ("tenant", tenant),
        ("user", user),
        ("feature", feature),
        ("session", session),
    ):
        if value is not None and not isinstance(value, str):
            raise InvalidEventError(f"{name} must be a string, got {type(value).__name__}")
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise InvalidEventError("tags must be a mapping of strings to strings")
    checked: dict[str, str] = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not key:
            raise InvalidEventError(f"tag names must be non-empty strings, got {key!r}")
        # Ids are often ints in the host app; keep them, as text.
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise InvalidEventError(f"tag {key!r} must be a string, got {type(value).__name__}")
        checked[key] = str(value)
    return checked


class attribute:
    """Attribute the calls made inside a block (or a function) to a tenant, user, feature…

    Nested blocks refine the outer ones: given fields replace, tags merge. Works as a
    context manager (sync and async) and as a decorator of sync or async functions.
    When features are declared, a feature that is not is refused where the call is
    recorded (``record()``, ``track()``, capture), not here.

    Example:
        >>> with attribute(tenant="acme", feature="search", tags={"doc": "42"}):
        ...     current_attribution().feature
        'search'
    """

    def __init__(
        self,
        *,
        tenant: str | None = None,
        user: str | None = None,
        feature: str | None = None,
        session: str | None = None,
        tags: Mapping[str, str | int] | None = None,
    ) -> None:
        self._changes: dict[str, Any] = {
            "tenant": tenant,
            "user": user,
            "feature": feature,
            "session": session,
            "tags": _check(tenant, user, feature, session, tags),
        }
        self._tokens: list[contextvars.Token[Attribution]] = []

    def __enter__(self) -> Attribution:
        value = _current.get().merged(**self._changes)
        self._tokens.append(_current.set(value))
        return value

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._tokens.pop())

    async def __aenter__(self) -> Attribution:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__()

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                with attribute(**self._changes):
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with attribute(**self._changes):
                return func(*args, **kwargs)

        return wrapper


def propagate(func: Callable[P, R]) -> Callable[P, R]:
    """Wrap ``func`` so it runs with the attribution of the caller, in any thread.

    Example:
        >>> from concurrent.futures import ThreadPoolExecutor
        >>> with attribute(user="u1"), ThreadPoolExecutor() as pool:
        ...     pool.submit(propagate(lambda: current_attribution().user)).result()
        'u1'
    """
    context = contextvars.copy_context()

    @functools.wraps(func)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return context.copy().run(func, *args, **kwargs)

    return run
