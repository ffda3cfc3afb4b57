"""Settings that cannot work together are refused when read, with a message."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.settings import Settings


def test_grpc_needs_a_port_of_its_own() -> None:
    with pytest.raises(ValidationError, match="a port of its own"):
        Settings(_env_file=None, port=8000, grpc_port=8000)  # type: ignore[call-arg]
    assert Settings(_env_file=None, grpc_port=8001).grpc_port == 8001  # type: ignore[call-arg]
