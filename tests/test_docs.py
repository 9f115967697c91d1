"""The examples in the module docstrings run and print what they say."""

import doctest

import pytest

import frx.dedup
import frx.graph
import frx.refusal


@pytest.mark.parametrize("module", [frx.dedup, frx.refusal, frx.graph])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
