"""Which unit holds a test: files, rspec example (group) ids and pytest node ids. Pure.

A unit is a file (`spec/a_spec.rb`, `tests/test_a.py`) or an id inside one; a test is an
id its framework reports (models.py). A unit holds a test when the test is the unit, is in
the unit's file and the unit is that file, or lies under the unit's id:

- rspec: `spec/a_spec.rb[1:2]` holds `spec/a_spec.rb[1:2]` and `spec/a_spec.rb[1:2:3]`;
- pytest: `tests/t.py::TestX` holds `tests/t.py::TestX::test_y`, and `tests/t.py::test_p`
  holds its parameters `tests/t.py::test_p[1]`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from shardrun.plan.timings import file_of_unit


def holds(unit: str, test_id: str) -> bool:
    """Whether running `unit` runs the test `test_id`."""
    if unit == test_id:
        return True
    if unit == file_of_unit(unit):  # a whole file
        return file_of_unit(test_id) == unit
    if unit.endswith("]") and "::" not in unit:  # an rspec id: [1:2] holds [1:2:3]
        return test_id.startswith(unit[:-1] + ":")
    return test_id.startswith((unit + "::", unit + "["))


class UnitIndex:
    """Finds the unit of a test among many units without scanning them all."""

    def __init__(self, units: Iterable[str]) -> None:
        self.units = tuple(dict.fromkeys(units))
        self._exact = set(self.units)
        self._by_file: dict[str, list[str]] = defaultdict(list)
        for unit in self.units:
            self._by_file[file_of_unit(unit)].append(unit)

    def unit_of(self, test_id: str) -> str | None:
        """The unit that holds `test_id` (the closest, when a file and an id inside it are
        both units), or None."""
        if test_id in self._exact:
            return test_id
        candidates = [unit for unit in self._by_file.get(file_of_unit(test_id), ())
                      if holds(unit, test_id)]
        return max(candidates, key=len, default=None)

    def of_file(self, file: str) -> list[str]:
        """The units in `file`, in the order given."""
        return list(self._by_file.get(file, ()))
