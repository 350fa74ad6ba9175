"""Slowest file (2.0 s), class-based: the planner should give it a shard of its own."""

import re
import time


class TestUser:
    def test_validates_email(self) -> None:
        time.sleep(0.5)
        assert re.fullmatch(r"[^@\s]+@[^@\s]+", "ada@example.com")

    def test_rejects_blank_name(self) -> None:
        time.sleep(0.5)
        assert not "".strip()

    def test_display_name(self) -> None:
        time.sleep(1.0)
        assert " ".join(["Ada", "Lovelace"]) == "Ada Lovelace"
