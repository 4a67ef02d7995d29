"""Test-only helpers: private database servers, builders. Never imported by pausepoint."""
