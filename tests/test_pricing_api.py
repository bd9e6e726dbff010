"""The pricing package's public surface: exports, docstring examples, the docs page."""

from __future__ import annotations

import doctest
import importlib
import inspect
import re
from pathlib import Path

import pytest
import yaml

import llmledger.pricing as pricing
from llmledger.pricing import PriceBook

MODULES = ["model", "compiled", "catalog", "files", "fx", "resolver", "supplement"]
DOCS = Path(__file__).parents[1] / "docs" / "prices.md"


def test_exports_are_complete() -> None:
    assert sorted(pricing.__all__) == sorted(set(pricing.__all__))
    for name in pricing.__all__:
        assert hasattr(pricing, name), name
    public = {
        name
        for module in MODULES
        for name in importlib.import_module(f"llmledger.pricing.{module}").__all__
    }
    # Everything a caller needs is reachable from the package itself.
    for name in (
        "PriceResolver",
        "Price",
        "PriceResult",
        "Tier",
        "PriceBook",
        "ExchangeRates",
        "Rate",
        "Catalog",
        "to_nano",
        "NANO_USD",
    ):
        assert name in pricing.__all__
        assert name in public


def test_public_callables_have_docstrings_with_examples() -> None:
    for name in pricing.__all__:
        obj = getattr(pricing, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__ and "Example" in obj.__doc__, name


@pytest.mark.parametrize("module", ["", *MODULES])
def test_docstring_examples_run(module: str) -> None:
    name = "llmledger.pricing" + (f".{module}" if module else "")
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0


def test_docs_yaml_examples_are_valid() -> None:
    text = DOCS.read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    assert blocks
    for block in blocks:
        PriceBook.from_mapping(yaml.safe_load(block), name="docs")


def test_docs_example_file_is_the_fixture() -> None:
    block = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(encoding="utf-8"), flags=re.S)[0]
    fixture = Path(__file__).parent / "fixtures" / "prices" / "prices.yaml"
    assert block == fixture.read_text(encoding="utf-8")


def test_docs_python_example_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    # The example reads "prices.yaml" from the working folder: the fixture is that file.
    monkeypatch.chdir(Path(__file__).parent / "fixtures" / "prices")
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(DOCS), "exec"), {})


def test_docs_cover_every_rate_field() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for field in (
        *pricing.RATE_FIELDS,
        "per_request",
        "tiers",
        "discount",
        "from",
        "checked",
        "service_tier",
        "exchange_rates",
    ):
        assert f"`{field}`" in text, field
