"""Slow file (1.5 s): the nightly digest job, three runs of 0.5 s."""

import time


def test_collects_yesterdays_orders() -> None:
    time.sleep(0.5)
    assert [day for day in ["mon", "tue"] if day == "mon"] == ["mon"]


def test_skips_users_who_opted_out() -> None:
    time.sleep(0.5)
    assert {"ada", "grace"} - {"grace"} == {"ada"}


def test_sends_one_mail_per_user() -> None:
    time.sleep(0.5)
    assert len({"ada": 3, "grace": 1}) == 2
