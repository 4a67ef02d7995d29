"""The pause session's rules, against an in-memory admin client (no network).

The same rules are exercised over real gRPC against the test gate server in
tests/unit/test_window_grpc.py; here every failure mix is cheap to set up.
"""

from __future__ import annotations

import threading
import time

import pytest

from pausepoint.admin.client import AdminCallError, Reason
from pausepoint.errors import (
    NodeAlreadyPausedError,
    PauseError,
    PauseStillPausedError,
    PreflightError,
    UnpauseError,
    VerificationError,
)
from pausepoint.site import PauseSettings, Target
from pausepoint.window import PauseSession

T1, T2, T3 = (Target(host="127.0.0.1", port=p) for p in (50053, 50153, 40053))


class FakeAdmin:
    """Per-target paused flags and failure knobs; records every call."""

    def __init__(self):
        self.paused: dict[Target, bool] = {}
        self.pause_fail: dict[Target, Reason] = {}
        self.unpause_fail: dict[Target, int] = {}  # fail the next N unpause calls
        self.down: set[Target] = set()
        self.calls: list[tuple[str, Target]] = []
        self._lock = threading.Lock()

    def _err(self, t, method, reason, code="FAILED_PRECONDITION"):
        return AdminCallError(t, method, reason, code, "fake")

    def pause(self, target, *, wait_outstanding, max_pause_wait_ms, timeout_s):
        with self._lock:
            self.calls.append(("pause", target))
        if target in self.down:
            raise self._err(target, "Pause", Reason.UNAVAILABLE, "UNAVAILABLE")
        if target in self.pause_fail:
            reason = self.pause_fail[target]
            if reason in (Reason.DEADLINE,):
                self.paused[target] = True  # the pause landed after our deadline
            raise self._err(target, "Pause", reason)
        self.paused[target] = True

    def unpause(self, target, *, timeout_s):
        with self._lock:
            self.calls.append(("unpause", target))
            if self.unpause_fail.get(target, 0) > 0:
                self.unpause_fail[target] -= 1
                raise self._err(target, "Unpause", Reason.UNAVAILABLE, "UNAVAILABLE")
        self.paused[target] = False

    def check_paused(self, target, *, timeout_s):
        if target in self.down:
            raise self._err(target, "CheckPaused", Reason.UNAVAILABLE, "UNAVAILABLE")
        return self.paused.get(target, False)

    def close(self):
        pass

    def unpaused_targets(self):
        return [t for m, t in self.calls if m == "unpause"]


SETTINGS = PauseSettings(unpause_backoff_ms=1, call_timeout_ms=500)


def session(client, nodes=None, rediscover=None, settings=SETTINGS):
    nodes = nodes or {"ledger": [T1, T2], "auditor": [T3]}
    return PauseSession("demo", nodes, client, settings, rediscover=rediscover)


def full_cycle(s: PauseSession, hold_ms=0):
    s.preflight()
    s.pause_all()
    s.hold(hold_ms)
    s.verify()
    s.unpause_all()
    return s.record()


def test_session_happy_path_records_window_and_timeline():
    client = FakeAdmin()
    rec = full_cycle(session(client), hold_ms=20)
    assert not any(client.paused.values())
    assert rec.start <= rec.mid <= rec.end
    assert rec.length_ms >= 20
    assert rec.write_stall_ms >= rec.length_ms
    confirmed = [e for e in rec.timeline if e.event == "pause_confirmed"]
    assert {e.node for e in confirmed} == {str(T1), str(T2), str(T3)}
    # start is the LAST confirmation; end is before the FIRST unpause was sent
    assert rec.start == max(e.at for e in confirmed)
    first_unpause = min(e.at for e in rec.timeline if e.event == "unpause_sent")
    assert rec.end <= first_unpause


def test_preflight_node_already_paused_refuses_and_pauses_nothing():
    client = FakeAdmin()
    client.paused[T2] = True
    with pytest.raises(NodeAlreadyPausedError) as e:
        session(client).preflight()
    assert "ledger/127.0.0.1:50153 already report PAUSED" in str(e.value)
    assert "Nothing was paused" in str(e.value)
    assert client.calls == []


def test_preflight_unreachable_node_refuses_with_node_named():
    client = FakeAdmin()
    client.down.add(T3)
    with pytest.raises(PreflightError) as e:
        session(client).preflight()
    assert "auditor/127.0.0.1:40053" in str(e.value)
    assert "Nothing was paused" in str(e.value)


def test_pause_one_node_unreachable_rolls_back_exactly_the_paused_ones():
    client = FakeAdmin()
    s = session(client)
    s.preflight()
    client.down.add(T2)  # dies between preflight and pause
    with pytest.raises(PauseError) as e:
        s.pause_all()
    assert "ledger/127.0.0.1:50153: UNAVAILABLE" in str(e.value)
    s.unpause_all()
    assert sorted(client.unpaused_targets(), key=str) == sorted([T1, T3], key=str)
    assert not any(client.paused.values())


def test_pause_timed_out_still_paused_never_unpauses_that_node():
    client = FakeAdmin()
    client.pause_fail[T1] = Reason.TIMED_OUT_STILL_PAUSED
    client.paused[T1] = False
    s = session(client)
    with pytest.raises(PauseStillPausedError) as e:
        s.pause_all()
    msg = str(e.value)
    assert "ledger/127.0.0.1:50053 stay paused under an EARLIER pause" in msg
    assert "did not unpause them" in msg
    s.unpause_all()
    assert T1 not in client.unpaused_targets()
    assert set(client.unpaused_targets()) == {T2, T3}


def test_pause_deadline_passed_unpauses_that_node_too():
    client = FakeAdmin()
    client.pause_fail[T3] = Reason.DEADLINE
    s = session(client)
    with pytest.raises(PauseError):
        s.pause_all()
    s.unpause_all()
    assert T3 in client.unpaused_targets()
    assert not any(client.paused.values())


@pytest.mark.parametrize("reason", [Reason.TIMED_OUT, Reason.PAUSE_IN_PROGRESS])
def test_pause_failed_without_our_gate_leaves_that_node_alone(reason):
    client = FakeAdmin()
    client.pause_fail[T1] = reason
    s = session(client)
    with pytest.raises(PauseError, match=str(reason)):
        s.pause_all()
    s.unpause_all()
    assert T1 not in client.unpaused_targets()


def test_verify_node_restarted_unpaused_fails_verification():
    client = FakeAdmin()
    s = session(client)
    s.pause_all()
    client.paused[T2] = False  # restarted: came back unpaused
    with pytest.raises(VerificationError) as e:
        s.verify()
    assert "ledger/127.0.0.1:50153 reports UNPAUSED" in str(e.value)
    assert "backup is discarded" in str(e.value)
    s.unpause_all()


def test_verify_node_set_changed_fails_verification():
    client = FakeAdmin()
    extra = Target(host="127.0.0.1", port=50253)
    s = session(client, rediscover=lambda: {"ledger": [T1, T2, extra], "auditor": [T3]})
    s.pause_all()
    with pytest.raises(VerificationError, match=r"node set changed.*50253"):
        s.verify()


def test_unpause_transient_failures_retried_then_succeed():
    client = FakeAdmin()
    client.unpause_fail[T1] = 2
    s = session(client, settings=PauseSettings(unpause_attempts=3, unpause_backoff_ms=1))
    s.pause_all()
    s.unpause_all()
    assert client.unpaused_targets().count(T1) == 3
    assert not client.paused[T1]


def test_unpause_exhausted_raises_unpause_error_naming_node_and_fix():
    client = FakeAdmin()
    client.unpause_fail[T3] = 10
    s = session(client, settings=PauseSettings(unpause_attempts=3, unpause_backoff_ms=1))
    s.pause_all()
    with pytest.raises(UnpauseError) as e:
        s.unpause_all()
    msg = str(e.value)
    assert "auditor/127.0.0.1:40053 may still be PAUSED after 3 unpause attempts" in msg
    assert "pausepoint unpause" in msg
    assert client.unpaused_targets().count(T3) == 3
    assert not client.paused[T1] and not client.paused[T2]


def test_hold_counts_time_already_spent_in_window():
    client = FakeAdmin()
    s = session(client)
    s.pause_all()
    time.sleep(0.05)
    t0 = time.monotonic()
    s.hold(60)
    waited = (time.monotonic() - t0) * 1000
    assert waited < 40  # only the remainder of the 60 ms
    assert s.elapsed_ms() >= 60
    s.unpause_all()
