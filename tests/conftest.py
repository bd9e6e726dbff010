"""Test-wide settings: every test gets its own LLMLEDGER_HOME and strict error handling."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
RECORDED = FIXTURES / "recorded"


@pytest.fixture(autouse=True)
def ledger_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point all local state at a temporary folder and re-raise internal errors."""
    home = tmp_path / "home"
    monkeypatch.setenv("LLMLEDGER_HOME", str(home))
    monkeypatch.setenv("LLMLEDGER_STRICT", "true")
    for name in ("LLMLEDGER_DATABASE_URL", "LLMLEDGER_PRICE_FILES", "LLMLEDGER_FEATURES",
                 "LLMLEDGER_URL", "LLMLEDGER_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    yield home
