from __future__ import annotations

from app import errors


def test_every_serve_error_has_a_row() -> None:
    def subclasses(cls: type[errors.ServeError]) -> list[type[errors.ServeError]]:
        return [cls, *(s for sub in cls.__subclasses__() for s in subclasses(sub))]

    for cls in subclasses(errors.ServeError)[1:]:
        status, kind = errors.status_and_type(cls("x"))
        assert 400 <= status < 600, cls
        assert kind.islower(), cls


def test_codes_follow_the_contract() -> None:
    expected = {
        errors.InvalidInput: 422,
        errors.UnsupportedLanguagePair: 422,
        errors.Unauthorized: 401,
        errors.ModelNotFound: 404,
        errors.PayloadTooLarge: 413,
        errors.QueueFull: 429,
        errors.NotReady: 503,
        errors.ServerBusy: 503,
        errors.RequestTimeout: 408,
        errors.InvalidHTTPRequest: 400,
        errors.DeadlineExceeded: 504,
        errors.InferenceFailed: 500,
    }
    for cls, status in expected.items():
        assert errors.status_and_type(cls("x"))[0] == status
    assert errors.error_body("t", "m") == {"error": {"type": "t", "message": "m"}}
