"""Events are announcements: failing to send one never changes a run's outcome."""

from __future__ import annotations


def test_an_event_that_cannot_be_sent_does_not_raise(monkeypatch):
    import tasks.events as events

    def broken(**_):
        raise RuntimeError("events client down")

    monkeypatch.setattr(events, "emit_event", broken)
    assert events.backup_failed("s", ValueError("the real error"), None) is None
