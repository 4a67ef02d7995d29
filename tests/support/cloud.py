"""Tests of cloud credentials: the machine's own cloud settings out of the way."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def keep_cloud_away(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every AWS and Azure setting of the machine out of the way (env vars, AWS config files);
    never the instance metadata endpoint."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "AZURE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
