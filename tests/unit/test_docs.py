"""docs/configuration.md documents every setting."""

from __future__ import annotations

from pathlib import Path

from app.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_setting_is_documented() -> None:
    text = DOC.read_text()
    missing = [n for n in Settings.model_fields if f"`NLP_SERVE_{n.upper()}`" not in text]
    assert not missing, f"document these settings in docs/configuration.md: {missing}"
