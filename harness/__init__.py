"""Test and demo harnesses that run real third-party servers locally (not part of pausepoint)."""
