"""Helpers shared by the test modules (importable as `support`: pyproject's pytest
`pythonpath` puts tests/ on sys.path).

Nothing here is named test*, so pytest collects nothing from a module that imports it.
The modules with asserts are registered for pytest's assertion rewriting before anything
imports them, so their failures explain themselves like a test module's would.
"""

import pytest

pytest.register_assert_rewrite("support.runs")
