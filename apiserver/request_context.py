"""The user of the request being served, for the code under the servicer (admission plugins,
TokenRequest): a context variable, set once per call by the servicer, so the API's methods keep
their signatures. Unset (None) in-process and on an insecure server: no user, no checks that
need one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from kubelite.auth.user import UserInfo

_current_user: ContextVar[UserInfo | None] = ContextVar("kubelite_request_user", default=None)


def request_user() -> UserInfo | None:
    """Who the current request comes from; None outside an authenticated request."""
    return _current_user.get()


@contextmanager
def acting_as(user: UserInfo | None) -> Iterator[None]:
    """Runs the block as ``user``'s request (the servicer, and tests of admission)."""
    token = _current_user.set(user)
    try:
        yield
    finally:
        _current_user.reset(token)
