"""The error priority table, every mix of failures (like buildException_00000.._11111)."""

from __future__ import annotations

import itertools

import pytest

from pausepoint.errors import (
    CaptureError,
    PauseError,
    PausepointError,
    UnpauseError,
    VerificationError,
    most_severe,
)

KINDS = [UnpauseError, PauseError, VerificationError, CaptureError, PausepointError]


@pytest.mark.parametrize("mask", list(itertools.product([0, 1], repeat=len(KINDS))))
def test_most_severe_every_mix_picks_highest_and_keeps_others_as_notes(mask):
    raised = [kind(f"{kind.__name__} happened") for kind, on in zip(KINDS, mask, strict=True) if on]
    worst = most_severe(list(reversed(raised)))  # order of arrival must not matter
    if not raised:
        assert worst is None
        return
    expected = raised[0]  # KINDS is ordered from most to least severe
    assert worst is expected
    notes = getattr(worst, "__notes__", [])
    assert len(notes) == len(raised) - 1
    for other in raised[1:]:
        assert any(f"{type(other).__name__}: {other}" in n for n in notes)


def test_most_severe_plain_exception_ranks_below_pausepoint_errors():
    plain = ValueError("boom")
    pause = PauseError("pause failed")
    assert most_severe([plain, pause]) is pause
