"""Slow file (3.0 s): sign-up in a browser, one second per page."""

import time


def test_signs_up_with_email() -> None:
    time.sleep(1.0)
    assert "ada@example.com".partition("@")[2] == "example.com"


def test_confirms_the_email_address() -> None:
    time.sleep(1.0)
    assert len(bytes.fromhex("3f9a2c")) == 3  # the confirmation token


def test_rejects_a_taken_username() -> None:
    time.sleep(1.0)
    assert "ada" in {"ada", "grace"}
