"""Test-wide settings: every test gets its own LLMLEDGER_HOME and strict error handling."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from llmledger.runtime.ledger import shutdown

FIXTURES = Path(__file__).parent / "fixtures"
RECORDED = FIXTURES / "recorded"

# Runs in the previous-SDK environment of .ci/run: LiteLLM pins openai<3.
collect_ignore = [] if importlib.util.find_spec("litellm") else ["test_capture_litellm_real.py"]

# LiteLLM reads its bundled price map and Anthropic settings, never downloads them.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS"] = "True"


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


# -- ledger databases: SQLite always, PostgreSQL when LLMLEDGER_TEST_POSTGRES_URL is set ---------

POSTGRES_URL_ENV = "LLMLEDGER_TEST_POSTGRES_URL"


def _postgres_url() -> str | None:
    """The test server's URL; in CI a missing one is an error, never a silent skip."""
    import os

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
    """Run every test that asks for ``db_url`` once per backend."""
    if "db_url" in metafunc.fixturenames:
        names = backends()
        metafunc.parametrize("db_backend", names, ids=names, scope="function")


@contextmanager
def fresh_database(backend: str, folder: Path) -> Iterator[str]:
    """A fresh, empty database URL: a SQLite file in ``folder``, or a PostgreSQL schema.

    Each PostgreSQL database is a new schema (put first on ``search_path`` through
    the URL), dropped afterwards, so test runs sharing one server never meet.
    """
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'ledger.db'}"
        return
    import uuid

    import sqlalchemy as sa

    base = _postgres_url()
    assert base is not None
    schema = f"llmledger_test_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(base, poolclass=sa.pool.NullPool)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL at {POSTGRES_URL_ENV} is unreachable: {exc.orig}", pytrace=False)
    url = sa.engine.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def db_url(db_backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL (see :func:`fresh_database`), one per backend."""
    with fresh_database(db_backend, tmp_path) as url:
        yield url
