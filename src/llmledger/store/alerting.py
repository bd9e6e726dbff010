"""The store's statements on budgets, alerts, the outbox and the scheduler's lease.

Firing an alert and queueing its messages happen in one transaction, so a
crash leaves either both or neither: a restart skips no crossing.  A message is
marked delivered after it was sent, so a crash in between sends it again (at
least once) under the same delivery id, which receivers dedupe on.

Example:
    >>> from datetime import UTC, datetime
    >>> from decimal import Decimal
    >>> from llmledger.alerts import Budget
    >>> from llmledger.store import open_store
    >>> store = open_store("sqlite://")
    >>> store.add_budget(Budget(name="chat", amount=Decimal(50), where=("feature=chat",)),
    ...                  now=datetime(2025, 1, 1, tzinfo=UTC))
    >>> [b.name for b in store.list_budgets()]
    ['chat']
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from llmledger.alerts import Alert, Budget, Message
from llmledger.store.alert_tables import (
    alert_from_row,
    alert_values,
    alerts,
    budget_from_row,
    budget_values,
    budgets,
    jobs,
    message_from_row,
    message_values,
    outbox,
)
from llmledger.store.codec import from_micros, to_micros
from llmledger.store.errors import RowExistsError, database_errors
from llmledger.store.schema import events

__all__ = ["AlertRows"]

#: Every tenant: the default of the tenant arguments below.
ALL = "*"


def _insert_new(conn: Connection, table: sa.Table, values: dict[str, Any], key: str) -> bool:
    """Insert a row unless one with the same ``key`` exists; whether it was inserted."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[key])
        .returning(table.c[key])
    )
    # RETURNING, not the row count: psycopg counts a skipped row of ON CONFLICT as written.
    return conn.execute(statement).first() is not None


class AlertRows:
    """Budgets, alerts, the outbox and jobs (a part of :class:`~llmledger.store.SqlStore`)."""

    def _connect(self, *, write: bool = False) -> Connection:  # pragma: no cover - SqlStore's
        raise NotImplementedError

    # -- budgets ---------------------------------------------------------------------

    def add_budget(self, budget: Budget, *, now: datetime) -> None:
        """Store a new budget.

        Raises:
            RowExistsError: when a budget has this name (or id) already.
        """
        with database_errors("store the budget"), self._connect(write=True) as conn, conn.begin():
            clash = conn.execute(
                sa.select(budgets.c.id).where(
                    sa.or_(budgets.c.name == budget.name, budgets.c.id == budget.id)
                )
            ).first()
            if clash is not None or not _insert_new(
                conn, budgets, budget_values(budget, now), "name"
            ):
                raise RowExistsError(
                    f"a budget named {budget.name!r} exists",
                    existing=None if clash is None else str(clash[0]),
                )

    def get_budget(self, id_or_name: str) -> Budget | None:
        """The budget with this id or name, or None."""
        query = sa.select(budgets).where(
            sa.or_(budgets.c.id == id_or_name, budgets.c.name == id_or_name)
        )
        with database_errors("read the budget"), self._connect() as conn:
            row = conn.execute(query.order_by((budgets.c.id == id_or_name).desc())).first()
        return None if row is None else budget_from_row(row._mapping)

    def list_budgets(self, *, tenant: str | None = ALL, active_only: bool = False) -> list[Budget]:
        """Budgets by name: every one, or only ``tenant``'s (None: those of no tenant)."""
        query = sa.select(budgets).order_by(budgets.c.name)
        if tenant != ALL:
            query = query.where(
                budgets.c.tenant.is_(None) if tenant is None else budgets.c.tenant == tenant
            )
        if active_only:
            query = query.where(budgets.c.active.is_(True))
        with database_errors("list the budgets"), self._connect() as conn:
            return [budget_from_row(row._mapping) for row in conn.execute(query)]

    def update_budget(self, budget: Budget, *, now: datetime) -> Budget | None:
        """Replace the stored budget of ``budget.id``; the budget stored, or None when missing.

        Raises:
            RowExistsError: when another budget has the new name.
        """
        values = budget_values(budget, now)
        del values["created_us"], values["id"]
        with database_errors("change the budget"), self._connect(write=True) as conn, conn.begin():
            clash = conn.execute(
                sa.select(budgets.c.id).where(
                    budgets.c.name == budget.name, budgets.c.id != budget.id
                )
            ).first()
            if clash is not None:
                raise RowExistsError(f"a budget named {budget.name!r} exists", existing=clash[0])
            conn.execute(budgets.update().where(budgets.c.id == budget.id).values(**values))
            row = conn.execute(sa.select(budgets).where(budgets.c.id == budget.id)).first()
        return None if row is None else budget_from_row(row._mapping)

    def remove_budget(self, budget_id: str) -> bool:
        """Delete a budget (its alerts stay in the history); whether there was one."""
        with database_errors("remove the budget"), self._connect(write=True) as conn, conn.begin():
            return bool(conn.execute(budgets.delete().where(budgets.c.id == budget_id)).rowcount)

    # -- alerts ----------------------------------------------------------------------

    def open_alerts(self) -> list[Alert]:
        """The alerts not resolved yet, oldest first."""
        query = sa.select(alerts).where(alerts.c.open_key.is_not(None)).order_by(alerts.c.fired_us)
        with database_errors("read the open alerts"), self._connect() as conn:
            return [alert_from_row(row._mapping) for row in conn.execute(query)]

    def last_resolved(self, since: datetime) -> dict[str, datetime]:
        """Key -> when its latest alert resolved, for alerts resolved after ``since``."""
        query = (
            sa.select(alerts.c.key, sa.func.max(alerts.c.resolved_us))
            .where(alerts.c.resolved_us >= to_micros(since))
            .group_by(alerts.c.key)
        )
        with database_errors("read the resolved alerts"), self._connect() as conn:
            return {str(key): from_micros(int(us)) for key, us in conn.execute(query)}

    def record_alerts(
        self,
        fired: Sequence[tuple[Alert, Sequence[Message]]],
        resolved: Iterable[str],
        *,
        now: datetime,
    ) -> list[Alert]:
        """Store fired alerts with their messages, and resolve alerts, in one transaction.

        An alert whose key is open already (fired by another instance meanwhile)
        is skipped with its messages.

        Returns:
            The alerts stored.
        """
        stored = []
        with database_errors("record the alerts"), self._connect(write=True) as conn, conn.begin():
            for alert_id in resolved:
                conn.execute(
                    alerts.update()
                    .where(alerts.c.id == alert_id, alerts.c.open_key.is_not(None))
                    .values(open_key=None, resolved_us=to_micros(now))
                )
            for alert, messages in fired:
                if not _insert_new(conn, alerts, alert_values(alert), "open_key"):
                    continue
                stored.append(alert)
                for message in messages:
                    _insert_new(conn, outbox, message_values(message), "dedupe")
        return stored

    def list_alerts(
        self,
        *,
        tenant: str | None = ALL,
        state: str | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> list[Alert]:
        """Alerts newest first: every tenant's, or only ``tenant``'s; ``state`` is
        ``firing`` or ``resolved``; ``before`` an alert id to page from."""
        query = sa.select(alerts).order_by(alerts.c.fired_us.desc(), alerts.c.id.desc())
        if tenant != ALL:
            query = query.where(
                alerts.c.tenant.is_(None) if tenant is None else alerts.c.tenant == tenant
            )
        if state == "firing":
            query = query.where(alerts.c.open_key.is_not(None))
        elif state == "resolved":
            query = query.where(alerts.c.open_key.is_(None))
        if before is not None:
            query = query.where(alerts.c.id < before)
        with database_errors("list the alerts"), self._connect() as conn:
            return [alert_from_row(row._mapping) for row in conn.execute(query.limit(limit))]

    def get_alert(self, alert_id: str) -> Alert | None:
        """The alert with this id, or None."""
        with database_errors("read the alert"), self._connect() as conn:
            row = conn.execute(sa.select(alerts).where(alerts.c.id == alert_id)).first()
        return None if row is None else alert_from_row(row._mapping)

    def ack_alert(self, alert_id: str, *, by: str | None, now: datetime) -> Alert | None:
        """Acknowledge an alert (a second ack keeps the first); the alert after, or None."""
        with database_errors("acknowledge the alert"), self._connect(write=True) as conn:
            with conn.begin():
                conn.execute(
                    alerts.update()
                    .where(alerts.c.id == alert_id, alerts.c.acked_us.is_(None))
                    .values(acked_us=to_micros(now), acked_by=by)
                )
            row = conn.execute(sa.select(alerts).where(alerts.c.id == alert_id)).first()
        return None if row is None else alert_from_row(row._mapping)

    def auth_failures(
        self, since: datetime, until: datetime, error_types: Iterable[str]
    ) -> list[tuple[str, str | None, int, str | None]]:
        """``(provider, key fingerprint, failures, a message)`` of the calls in the range
        that failed with one of ``error_types``, most failures first."""
        query = (
            sa.select(
                events.c.provider,
                events.c.api_key_fingerprint,
                sa.func.count(),
                sa.func.max(events.c.error_message),
            )
            .where(
                events.c.ts_us >= to_micros(since),
                events.c.ts_us < to_micros(until),
                events.c.status == "error",
                events.c.error_type.in_(sorted(error_types)),
            )
            .group_by(events.c.provider, events.c.api_key_fingerprint)
            .order_by(sa.func.count().desc())
        )
        with database_errors("read the authentication failures"), self._connect() as conn:
            return [(str(p), f, int(n), m) for p, f, n, m in conn.execute(query)]

    # -- the outbox ------------------------------------------------------------------

    def queue_messages(
        self, messages: Sequence[Message], *, job: tuple[str, datetime] | None = None
    ) -> int:
        """Queue messages (a dedupe key queued before is skipped) and, in the same
        transaction, record a job's run; how many were queued."""
        queued = 0
        with (
            database_errors("queue the messages"),
            self._connect(write=True) as conn,
            conn.begin(),
        ):
            for message in messages:
                queued += _insert_new(conn, outbox, message_values(message), "dedupe")
            if job is not None:
                _set_job(conn, job[0], last_run_us=to_micros(job[1]))
        return queued

    def due_messages(self, now: datetime, *, limit: int = 100) -> list[Message]:
        """Messages not delivered nor given up whose next attempt is due, oldest first."""
        query = (
            sa.select(outbox)
            .where(
                outbox.c.delivered_us.is_(None),
                outbox.c.failed_us.is_(None),
                outbox.c.next_us <= to_micros(now),
            )
            .order_by(outbox.c.next_us, outbox.c.id)
            .limit(limit)
        )
        with database_errors("read the outbox"), self._connect() as conn:
            return [message_from_row(row._mapping) for row in conn.execute(query)]

    def list_messages(self, *, alert_id: str | None = None, limit: int = 100) -> list[Message]:
        """Messages newest first (only an alert's, when given)."""
        query = sa.select(outbox).order_by(outbox.c.created_us.desc(), outbox.c.id.desc())
        if alert_id is not None:
            query = query.where(outbox.c.alert_id == alert_id)
        with database_errors("read the outbox"), self._connect() as conn:
            return [message_from_row(row._mapping) for row in conn.execute(query.limit(limit))]

    def message_attempted(
        self,
        message: Message,
        *,
        now: datetime,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> Message:
        """Record an attempt: delivered (no ``error``), to retry at ``retry_at``, or given
        up (an ``error`` and no ``retry_at``); the message after."""
        after = replace(
            message,
            attempts=message.attempts + 1,
            delivered=now if error is None else None,
            failed=now if error is not None and retry_at is None else None,
            next_attempt=retry_at,
            last_error=error,
        )
        values = message_values(after)
        changes = {
            k: values[k] for k in ("attempts", "delivered_us", "failed_us", "next_us", "last_error")
        }
        with database_errors("update the outbox"), self._connect(write=True) as conn, conn.begin():
            conn.execute(outbox.update().where(outbox.c.id == message.id).values(**changes))
        return after

    # -- jobs ------------------------------------------------------------------------

    def lead(self, holder: str, *, now: datetime, ttl: timedelta) -> bool:
        """Take or keep the scheduler's lease for ``ttl``; whether ``holder`` leads now."""
        until = to_micros(now + ttl)
        with database_errors("take the lease"), self._connect(write=True) as conn, conn.begin():
            _insert_new(
                conn,
                jobs,
                {"name": "leader", "holder": holder, "lease_until_us": until},
                "name",
            )
            taken = conn.execute(
                jobs.update()
                .where(
                    jobs.c.name == "leader",
                    sa.or_(
                        jobs.c.holder == holder,
                        jobs.c.holder.is_(None),
                        jobs.c.lease_until_us < to_micros(now),
                    ),
                )
                .values(holder=holder, lease_until_us=until)
            )
            return bool(taken.rowcount)

    def release(self, holder: str) -> None:
        """Give the lease up (when ``holder`` has it), so another instance leads at once."""
        with database_errors("release the lease"), self._connect(write=True) as conn, conn.begin():
            conn.execute(
                jobs.update()
                .where(jobs.c.name == "leader", jobs.c.holder == holder)
                .values(holder=None, lease_until_us=None)
            )

    def job_last_run(self, name: str) -> datetime | None:
        """When the job last ran, or None."""
        with database_errors("read the job"), self._connect() as conn:
            value = conn.execute(
                sa.select(jobs.c.last_run_us).where(jobs.c.name == name)
            ).scalar_one_or_none()
        return None if value is None else from_micros(int(value))

    def job_ran(self, name: str, *, now: datetime) -> None:
        """Record that the job ran at ``now``."""
        with database_errors("record the job"), self._connect(write=True) as conn, conn.begin():
            _set_job(conn, name, last_run_us=to_micros(now))


def _set_job(conn: Connection, name: str, **values: Any) -> None:
    if not _insert_new(conn, jobs, {"name": name, **values}, "name"):
        conn.execute(jobs.update().where(jobs.c.name == name).values(**values))
