"""Progress lines of a bench run: minutes since the run started, then the text."""

from __future__ import annotations

import time

T0 = time.monotonic()  # when the bench module was first imported: the run's start


def say(text: str) -> None:
    print(f"[{(time.monotonic() - T0) / 60:5.1f} min] {text}", flush=True)
