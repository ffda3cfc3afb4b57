"""What a Ray Serve replica refuses to start with (no Ray cluster needed)."""

from __future__ import annotations

import pytest

from app.auth import AnonymousExposureError
from app.ray_serve import check_replica_settings
from app.settings import Settings


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


def test_a_replica_refuses_a_grpc_port_and_anonymous_exposure() -> None:
    check_replica_settings(settings())
    check_replica_settings(settings(host="0.0.0.0", api_keys=["k"]))
    with pytest.raises(ValueError, match="NLP_SERVE_GRPC_PORT"):
        check_replica_settings(settings(grpc_port=8001))
    with pytest.raises(AnonymousExposureError):
        check_replica_settings(settings(host="0.0.0.0"))
