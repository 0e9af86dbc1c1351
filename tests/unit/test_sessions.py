"""Session JSON → principal, pure."""

import pytest

from jobwire.auth import Role
from jobwire.errors import Unauthorized
from jobwire.sessions import principal_from_session


def test_valid_session_and_its_ttl():
    p = principal_from_session(b'{"userId": "u1", "role": "admin"}', 5000, now=100.0)
    assert (p.user_id, p.role, p.expires_at) == ("u1", Role.ADMIN, 105.0)
    assert principal_from_session('{"userId": "u1"}', -1, now=0).expires_at is None


@pytest.mark.parametrize("raw", [None, b"", b"nope", b"[]", b'{"role": "user"}',
                                 b'{"userId": "bad id"}', b'{"userId": 5}',
                                 b'{"userId": "u", "role": "root"}'])
def test_bad_sessions_are_unauthorized(raw):
    with pytest.raises(Unauthorized):
        principal_from_session(raw, 1000, now=0)
