"""Every example in the docstrings runs, with the test's own LLMLEDGER_HOME."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import llmledger

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(llmledger.__path__, prefix="llmledger.")
    if ".migrations." not in info.name
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
