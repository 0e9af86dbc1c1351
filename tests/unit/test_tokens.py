"""jobwire.tokens: what an application mints is what the server accepts, and bad requests
for a token are refused before anything is signed."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from jobwire import tokens as tokens_module
from jobwire.auth import JwtAuth, Principal, Role
from jobwire.errors import ConfigError, Unauthorized
from jobwire.tokens import Tokens

SECRET = "s" * 32


def test_round_trip_with_role_lifetime_and_claims_of_your_own():
    tokens = Tokens(SECRET)
    token = tokens.mint("42", role="admin", ttl=600, claims={"tenant": "acme", "n": 3})
    principal = tokens.verify(token)
    assert principal.user_id == "42" and principal.role is Role.ADMIN
    assert 590 < principal.expires_at - time.time() <= 600
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["tenant"] == "acme" and claims["n"] == 3
    # What the server verifies with its own settings.
    assert JwtAuth(secret=SECRET).verify(token) == principal


@pytest.mark.parametrize(("kwargs", "complaint"), [
    ({"user_id": "has space"}, "user id"),
    ({"user_id": ""}, "user id"),
    ({"user_id": "x" * 129}, "user id"),
    ({"user_id": 42}, "user id"),
    ({"role": "root"}, "role 'root' must be one of user, admin, publisher"),
    ({"claims": {"sub": "someone-else"}}, "claim sub is set by jobwire itself"),
    ({"claims": {"role": "admin", "exp": 1}}, "claims exp, role are set by jobwire itself"),
])
def test_bad_requests_are_refused_before_signing(kwargs, complaint):
    with pytest.raises(ValueError, match=complaint):
        Tokens(SECRET).mint(**{"user_id": "alice", **kwargs})


def test_verify_refuses_other_keys_expiry_and_garbage():
    tokens = Tokens(SECRET)
    with pytest.raises(Unauthorized, match="invalid token"):
        tokens.verify(Tokens("o" * 32).mint("alice"))
    with pytest.raises(Unauthorized, match="token expired"):
        tokens.verify(tokens.mint("alice", ttl=-5))
    with pytest.raises(Unauthorized, match="invalid token"):
        tokens.verify("not-a-token")


def test_from_env_uses_the_servers_key_settings():
    tokens = Tokens.from_env({"JOBWIRE_SECRET": "l" * 48, "JOBWIRE_JWT_ALGORITHM": "HS384"})
    token = tokens.mint("alice")
    assert jwt.get_unverified_header(token)["alg"] == "HS384"
    assert tokens.verify(token).user_id == "alice"
    with pytest.raises(ConfigError, match="at least 48 bytes"):
        Tokens.from_env({"JOBWIRE_SECRET": SECRET, "JOBWIRE_JWT_ALGORITHM": "HS384"})
    with pytest.raises(ConfigError, match="JOBWIRE_SECRET is required"):
        Tokens.from_env({})


def test_asymmetric_keys_mint_with_the_private_and_verify_with_the_public_key():
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    token = Tokens(algorithm="ES256", private_key=private, public_key=public).mint("alice")
    verifier = Tokens(algorithm="ES256", public_key=public)
    assert verifier.verify(token).user_id == "alice"
    with pytest.raises(ConfigError, match="private key"):
        verifier.mint("alice")


def test_module_functions_with_a_secret_or_the_environment(monkeypatch):
    token = tokens_module.mint("alice", role="publisher", secret=SECRET)
    assert tokens_module.verify(token, secret=SECRET) == Principal(
        "alice", Role.PUBLISHER, tokens_module.verify(token, secret=SECRET).expires_at)
    monkeypatch.setenv("JOBWIRE_SECRET", SECRET)
    assert tokens_module.verify(tokens_module.mint("bob")).user_id == "bob"
