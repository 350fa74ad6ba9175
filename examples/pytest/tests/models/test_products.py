"""Medium file (1.0 s)."""

import time


def test_formats_price_in_cents() -> None:
    time.sleep(1.0)
    assert f"{1999 / 100:.2f}" == "19.99"
