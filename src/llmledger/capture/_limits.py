"""Guarded calls: the limits checked before an instrumented call is sent.

Only reached when the ledger's ``limits`` setting is on (the hooks read one flag,
``ledger.guarded``).  A refused call raises
:class:`~llmledger.core.errors.LimitExceededError` before any request leaves the
process, and is recorded with status ``blocked``; an allowed one carries its
reservation, settled once its event is built (:func:`~llmledger.capture._core.submit`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from llmledger.capture._core import Call, hand_over, internal_error
from llmledger.core.errors import LimitExceededError
from llmledger.core.ids import fingerprint
from llmledger.core.limits import Subject
from llmledger.runtime.limits import NOTE_TAG, LimitCheck

__all__ = ["guard_call"]


def guard_call(call: Call, body: Any, resolve: Callable[[], None]) -> None:
    """Check and reserve for a call about to be sent; raise when it is refused.

    ``resolve`` reads the client's provider and key into ``call`` first (the key's
    fingerprint is what ``api_key`` limits name).  A failure of the guard itself
    (not of the limit store, whose outage the policy covers) is an internal error:
    logged, and the call goes on unguarded.

    Raises:
        LimitExceededError: when a blocking limit would be passed, or the store
            cannot be reached and the policy is to fail closed.
    """
    try:
        resolve()
        attribution = call.attribution.merged(**call.extra) if call.extra else call.attribution
        subject = Subject(
            tenant=attribution.tenant,
            user=attribution.user,
            feature=attribution.feature,
            api_key=fingerprint(call.api_key),
        )
        result = call.ledger.limits.guard_request(subject, call.provider, call.model, body)
        note = result.note()
        if note is not None:
            call.attribution = call.attribution.merged(tags={NOTE_TAG: note})
    except Exception:
        internal_error(f"{call.provider} limit check", call.ledger)
        return
    if result.allowed:
        call.reservation = result if result.reservation is not None else None
        return
    error = result.error()
    _record_blocked(call, result, error)
    raise error


def _record_blocked(call: Call, result: LimitCheck, error: LimitExceededError) -> None:
    """Record a call refused before it was sent: status ``blocked``, no usage, no kept text."""
    try:
        call.prompt = None
        hand_over(call, ended=time.perf_counter(), status="blocked", exc=error)
    except Exception:
        internal_error(f"{call.provider} blocked call", call.ledger)
