"""Test-wide settings: each test's own LLMLEDGER_HOME, strict error handling, ledger databases."""

from __future__ import annotations

import gc
import importlib.util
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from llmledger.runtime.ledger import shutdown

if TYPE_CHECKING:
    from llmledger.store import SqlStore

FIXTURES = Path(__file__).parent / "fixtures"
RECORDED = FIXTURES / "recorded"

# Runs in the previous-SDK environment of .ci/run: LiteLLM pins openai<3.
collect_ignore = [] if importlib.util.find_spec("litellm") else ["test_capture_litellm_real.py"]

# LiteLLM reads its bundled price map and Anthropic settings, never downloads them.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS"] = "True"


@pytest.fixture(scope="module", autouse=True)
def frozen_gc() -> None:
    """Put what is alive when a test module starts out of the garbage collector's reach.

    Tests call ``gc.collect()`` to finalise streams dropped unread; each call would
    otherwise walk the hundreds of thousands of objects the SDKs, the price catalog and
    the test modules made, a good part of a second every time. Garbage is collected
    first, so nothing that is already unreachable is kept.
    """
    gc.collect()
    gc.freeze()


@pytest.fixture
def unfrozen_gc() -> Iterator[None]:
    """The garbage collector as a process starts with it, nothing frozen (then frozen again)."""
    gc.unfreeze()
    yield
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def ledger_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point all local state at a temporary folder and re-raise internal errors."""
    home = tmp_path / "home"
    monkeypatch.setenv("LLMLEDGER_HOME", str(home))
    monkeypatch.setenv("LLMLEDGER_STRICT", "true")
    for name in (
        "LLMLEDGER_DATABASE_URL",
        "LLMLEDGER_PRICE_FILES",
        "LLMLEDGER_FEATURES",
        "LLMLEDGER_URL",
        "LLMLEDGER_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    shutdown()
    yield home
    shutdown()


@pytest.fixture
def prices_loaded(ledger_home: Path) -> None:
    """The process ledger's prices loaded, so ``record()`` returns priced events.

    The prices load in the background; until they are, events come back with their
    price status ``pending`` (tests/test_price_cache.py tests that on purpose).
    """
    from llmledger.runtime.ledger import get_ledger

    assert get_ledger().prices.wait(timeout=120)


# -- ledger databases: SQLite always, PostgreSQL when LLMLEDGER_TEST_POSTGRES_URL is set ---------
#
# Migrations run once per test run and backend, into a template; each test that asks for
# ``db_url`` gets a copy of its own (a file copy on SQLite; on PostgreSQL a new schema into
# which the template's recorded statements are replayed). A test marked ``unmigrated`` gets
# an empty database instead: the tests of the migrations themselves.

POSTGRES_URL_ENV = "LLMLEDGER_TEST_POSTGRES_URL"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "unmigrated: db_url is an empty database, never migrated")


def _postgres_url() -> str | None:
    """The test server's URL; in CI a missing one is an error, never a silent skip."""
    url = os.environ.get(POSTGRES_URL_ENV) or None
    if url is None and os.environ.get("CI") == "true":
        raise pytest.UsageError(
            f"CI=true but {POSTGRES_URL_ENV} is not set: "
            "the store suite must run on PostgreSQL in CI"
        )
    return url


def backends() -> list[str]:
    """The databases the suite runs on: SQLite, and PostgreSQL when a server is given."""
    return ["sqlite", "postgres"] if _postgres_url() is not None else ["sqlite"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test that asks for a ledger database once per backend."""
    if {"db_url", "shared_ledgers"} & set(metafunc.fixturenames):
        names = backends()
        metafunc.parametrize("db_backend", names, ids=names, scope="function")


def schema_url(base: str, schema: str) -> str:
    """``base`` with ``schema`` first on the search path, so unqualified names land there."""
    import sqlalchemy as sa

    url = sa.engine.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


class PostgresSchemas:
    """Schemas of their own on the test server, each dropped when the test (or run) ends.

    The template is migrated once; its statements are recorded as they run and replayed
    into each new schema in one transaction, which costs a fraction of running Alembic.
    """

    def __init__(self, base: str) -> None:
        import sqlalchemy as sa

        self.base = base
        self.admin = sa.create_engine(base, pool_size=1, max_overflow=2)
        self._template: list[tuple[str, Any]] | None = None
        self._template_schema: str | None = None

    def create(self) -> str:
        """A new, empty schema's name."""
        import uuid

        import sqlalchemy as sa

        schema = f"llmledger_test_{uuid.uuid4().hex[:16]}"
        try:
            with self.admin.begin() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        except sa.exc.OperationalError as exc:
            pytest.fail(
                f"PostgreSQL at {POSTGRES_URL_ENV} is unreachable: {exc.orig}", pytrace=False
            )
        return schema

    def drop(self, schema: str) -> None:
        with self.admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    def migrated_copy(self) -> str:
        """A new schema holding what migrating an empty one leaves."""
        statements = self._template_statements()
        schema = self.create()
        with self.admin.begin() as conn:
            conn.exec_driver_sql(f'SET LOCAL search_path TO "{schema}"')
            for statement, parameters in statements:
                conn.exec_driver_sql(statement, parameters)
        return schema

    def _template_statements(self) -> list[tuple[str, Any]]:
        if self._template is not None:
            return self._template
        import sqlalchemy as sa

        from llmledger.store import SqlStore

        recorded: list[tuple[str, Any]] = []

        def record(
            _conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, _many: bool
        ) -> None:
            # What the migrations read (catalog look-ups, the migration lock) changes nothing.
            if not statement.lstrip().upper().startswith("SELECT"):
                recorded.append((statement, parameters or None))

        self._template_schema = schema = self.create()
        store = SqlStore(schema_url(self.base, schema))
        sa.event.listen(store.engine, "before_cursor_execute", record)
        try:
            store.migrate()
        finally:
            sa.event.remove(store.engine, "before_cursor_execute", record)
            store.close()
        for statement, _ in recorded:
            if schema in statement:
                raise AssertionError(
                    f"a migration names its schema, so it cannot be replayed: {statement[:200]}"
                )
        self._template = recorded
        return recorded

    def close(self) -> None:
        if self._template_schema is not None:
            self.drop(self._template_schema)
        self.admin.dispose()


class LedgerTemplates:
    """Per run: a migrated SQLite file and the PostgreSQL template, each made when first used."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._sqlite: Path | None = None
        self._postgres: PostgresSchemas | None = None

    def sqlite_copy(self, dest: Path) -> str:
        """A copy of the migrated SQLite template at ``dest``, as a URL."""
        if self._sqlite is None:
            from llmledger.store import migrate

            template = self.folder / "template.db"
            migrate(f"sqlite:///{template}")
            # Closing the last connection checkpoints the WAL into the file, so one copy
            # of the file is the whole database.
            assert not template.with_name("template.db-wal").exists()
            self._sqlite = template
        shutil.copyfile(self._sqlite, dest)
        return f"sqlite:///{dest}"

    @property
    def postgres(self) -> PostgresSchemas:
        if self._postgres is None:
            base = _postgres_url()
            assert base is not None
            self._postgres = PostgresSchemas(base)
        return self._postgres

    def close(self) -> None:
        if self._postgres is not None:
            self._postgres.close()


@contextmanager
def fresh_database(backend: str, folder: Path) -> Iterator[str]:
    """A fresh, empty database URL: a SQLite file in ``folder``, or a PostgreSQL schema of
    its own, dropped afterwards (for what lives outside one test, such as a module's app)."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'ledger.db'}"
        return
    base = _postgres_url()
    assert base is not None
    postgres = PostgresSchemas(base)
    schema = postgres.create()
    try:
        yield schema_url(base, schema)
    finally:
        postgres.drop(schema)
        postgres.close()


@pytest.fixture(scope="session")
def ledger_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LedgerTemplates]:
    """The run's migrated templates, made on first use (a run of pure tests makes none)."""
    templates = LedgerTemplates(tmp_path_factory.mktemp("ledger-templates"))
    yield templates
    templates.close()


@pytest.fixture
def db_url(
    db_backend: str,
    tmp_path: Path,
    ledger_templates: LedgerTemplates,
    request: pytest.FixtureRequest,
) -> Iterator[str]:
    """A ledger database of the test's own at the newest schema (empty when the test is
    marked ``unmigrated``): a SQLite file, or a PostgreSQL schema, put first on
    ``search_path`` through the URL and dropped afterwards, so runs sharing one server
    never meet."""
    migrated = request.node.get_closest_marker("unmigrated") is None
    if db_backend == "sqlite":
        path = tmp_path / "ledger.db"
        yield ledger_templates.sqlite_copy(path) if migrated else f"sqlite:///{path}"
        return
    postgres = ledger_templates.postgres
    schema = postgres.migrated_copy() if migrated else postgres.create()
    try:
        yield schema_url(postgres.base, schema)
    finally:
        postgres.drop(schema)


class SharedLedgers:
    """Ledgers that several tests of one module read and none writes, each filled once."""

    def __init__(self, templates: LedgerTemplates, folder: Path) -> None:
        self.templates = templates
        self.folder = folder
        self._stores: dict[tuple[str, str], SqlStore] = {}
        self._schemas: list[str] = []

    def store(self, backend: str, name: str, fill: Callable[[SqlStore], object]) -> SqlStore:
        """The open store called ``name`` on ``backend``, made and filled on first use."""
        key = (backend, name)
        if key not in self._stores:
            from llmledger.store import open_store

            if backend == "sqlite":
                url = self.templates.sqlite_copy(self.folder / f"shared-{len(self._stores)}.db")
            else:
                schema = self.templates.postgres.migrated_copy()
                self._schemas.append(schema)
                url = schema_url(self.templates.postgres.base, schema)
            store = open_store(url)
            fill(store)
            self._stores[key] = store
        return self._stores[key]

    def close(self) -> None:
        for store in self._stores.values():
            store.close()
        for schema in self._schemas:
            self.templates.postgres.drop(schema)


@pytest.fixture(scope="module")
def shared_ledgers(
    ledger_templates: LedgerTemplates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedLedgers]:
    """Ledgers filled once for a whole module, for tests that only read them."""
    shared = SharedLedgers(ledger_templates, tmp_path_factory.mktemp("shared-ledgers"))
    yield shared
    shared.close()
