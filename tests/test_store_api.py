"""The store package's public surface stays small, complete and documented."""

from __future__ import annotations

import inspect

import llmledger.store as store_package
from llmledger.core.errors import StoreError


def test_every_exported_name_exists_and_public_callables_have_examples() -> None:
    assert {"SqlStore", "open_store", "migrate"} <= set(store_package.__all__)
    for name in store_package.__all__:
        value = getattr(store_package, name)
        if inspect.isfunction(value) or inspect.isclass(value):
            doc = inspect.getdoc(value) or ""
            assert doc, f"{name} has no docstring"
            if inspect.isfunction(value) or name == "SqlStore":
                assert "Example:" in doc, f"{name} has no example"


def test_public_methods_of_sql_store_are_documented() -> None:
    for name, member in inspect.getmembers(store_package.SqlStore):
        if not name.startswith("_") and (
            inspect.isfunction(member) or isinstance(member, property)
        ):
            assert inspect.getdoc(member), f"SqlStore.{name} has no docstring"


def test_store_errors_are_ledger_errors() -> None:
    assert issubclass(store_package.InvalidQueryError, StoreError)
    assert issubclass(store_package.InvalidQueryError, ValueError)
    assert issubclass(store_package.WriteError, StoreError)
