"""JWT verification and minting, principals' permissions, and where a request's token comes from."""

import base64
import hashlib
import hmac
import json
import time
import warnings

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from jobwire.auth import JwtAuth, Principal, Role, token_from
from jobwire.errors import ConfigError, Unauthorized

SECRET = "x" * 32
OTHER_SECRET = "y" * 32


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64json(obj) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def claims(**extra):
    """Valid claims for user `alice`, expiring in an hour; `extra` overrides or adds, and a
    value of `...` removes the claim."""
    base = {"sub": "alice", "exp": int(time.time()) + 3600}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not ...}


def hs256(payload, secret=SECRET):
    return jwt.encode(payload, secret, algorithm="HS256")


def pem_pair(private_key):
    private = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@pytest.fixture(scope="module")
def rsa_keys():
    return pem_pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def ec_keys():
    return pem_pair(ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture
def auth():
    return JwtAuth(secret=SECRET)


def refused(auth, token, message=None):
    with pytest.raises(Unauthorized) as info:
        auth.verify(token)
    assert info.value.http_status == 401
    assert info.value.code == "unauthorized"
    assert info.value.close_code == 4401
    if message is not None:
        assert info.value.message == message
    return info.value


# --- verify: accepted tokens -------------------------------------------------------------


@pytest.mark.parametrize("role", ["user", "admin", "publisher"])
def test_valid_token_gives_principal_with_its_role(auth, role):
    exp = int(time.time()) + 600
    principal = auth.verify(hs256(claims(role=role, exp=exp)))
    assert principal == Principal("alice", Role(role), float(exp))
    assert principal.role is Role(role)


def test_token_without_role_is_a_user(auth):
    principal = auth.verify(hs256(claims()))
    assert principal.user_id == "alice"
    assert principal.role is Role.USER


def test_fractional_exp_is_kept(auth):
    exp = time.time() + 600.5
    assert auth.verify(hs256(claims(exp=exp))).expires_at == exp


def test_nbf_in_the_past_is_accepted(auth):
    assert auth.verify(hs256(claims(nbf=int(time.time()) - 10))).user_id == "alice"


def test_unknown_claims_are_ignored(auth):
    token = hs256(claims(aud="someone-else", scope="everything", name="Alice"))
    assert auth.verify(token).user_id == "alice"


def test_leeway_accepts_a_token_that_just_expired():
    token = hs256(claims(exp=int(time.time()) - 5))
    assert JwtAuth(secret=SECRET, leeway=60).verify(token).user_id == "alice"
    refused(JwtAuth(secret=SECRET), token, "token expired")


# --- verify: refused tokens --------------------------------------------------------------


@pytest.mark.parametrize("token", [None, ""])
def test_missing_token_is_refused(auth, token):
    refused(auth, token, "a token is required")


def test_expired_token_says_so(auth):
    refused(auth, hs256(claims(exp=int(time.time()) - 10)), "token expired")


def test_token_minted_in_the_past_has_expired(auth):
    token = auth.mint("alice", ttl=60, now=time.time() - 3600)
    refused(auth, token, "token expired")


def test_nbf_in_the_future_is_refused(auth):
    refused(auth, hs256(claims(nbf=int(time.time()) + 600)), "invalid token")


def test_wrong_secret_is_refused(auth):
    refused(auth, hs256(claims(), secret=OTHER_SECRET), "invalid token")


def test_tampered_payload_is_refused(auth):
    header, _, signature = hs256(claims()).split(".")
    forged = b64json(claims(sub="mallory", role="admin"))
    refused(auth, f"{header}.{forged}.{signature}", "invalid token")


@pytest.mark.parametrize("signature", ["", "c2lnbmF0dXJl"])
def test_alg_none_is_refused(auth, signature):
    header = b64json({"alg": "none", "typ": "JWT"})
    payload = b64json(claims(role="admin"))
    refused(auth, f"{header}.{payload}.{signature}", "invalid token")


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_other_hmac_algorithm_with_the_right_secret_is_refused(alg):
    secret = "z" * 64  # long enough for HS512, so PyJWT signs without a key-length warning
    verifier = JwtAuth(secret=secret)
    refused(verifier, jwt.encode(claims(), secret, algorithm=alg), "invalid token")


@pytest.mark.parametrize("missing", ["sub", "exp"])
def test_required_claim_missing_is_refused(auth, missing):
    refused(auth, hs256(claims(**{missing: ...})), "invalid token")


@pytest.mark.parametrize("exp", ["tomorrow", None, [1]])
def test_exp_not_a_number_is_refused(auth, exp):
    refused(auth, hs256(claims(exp=exp)))


@pytest.mark.parametrize("role", ["root", "ADMIN", "", None, 1, ["admin"], {"role": "admin"}])
def test_invalid_role_is_refused(auth, role):
    refused(auth, hs256(claims(role=role)), "invalid token role")


@pytest.mark.parametrize(
    "sub",
    [
        "",
        "alice bob",
        "alice/bob",
        "alicé",
        "a" * 129,
        "alice\n",
        "\nalice",
        "alice\x00",
    ],
)
def test_subject_with_bad_characters_is_refused(auth, sub):
    refused(auth, hs256(claims(sub=sub)))


@pytest.mark.parametrize("sub", [5, None, ["alice"], {"id": "alice"}])
def test_subject_not_a_string_is_refused(auth, sub):
    refused(auth, hs256(claims(sub=sub)))


def test_subject_of_128_allowed_characters_is_accepted(auth):
    sub = ("Az09_.:-" * 16)[:128]
    assert auth.verify(hs256(claims(sub=sub))).user_id == sub


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "a.b", "....", "Bearer x.y.z"])
def test_malformed_token_is_refused(auth, token):
    refused(auth, token, "invalid token")


def test_verifying_the_same_token_again_gives_the_same_principal(auth):
    token = auth.mint("alice", Role.PUBLISHER)
    assert auth.verify(token) == auth.verify(token) == auth.verify(token)


def test_a_verified_token_does_not_vouch_for_a_tampered_copy(auth):
    token = auth.mint("alice")
    auth.verify(token)
    header, _, signature = token.split(".")
    forged = b64json(claims(sub="alice", role="admin"))
    refused(auth, f"{header}.{forged}.{signature}", "invalid token")


def test_a_refused_token_stays_refused(auth):
    expired = hs256(claims(exp=int(time.time()) - 10))
    for _ in range(3):
        refused(auth, expired, "token expired")
    forged = hs256(claims(), secret=OTHER_SECRET)
    for _ in range(3):
        refused(auth, forged, "invalid token")


def test_a_token_verified_by_one_secret_is_still_refused_by_another(auth):
    token = auth.mint("alice")
    auth.verify(token)
    refused(JwtAuth(secret=OTHER_SECRET), token, "invalid token")


# --- algorithm confusion -----------------------------------------------------------------


def hmac_token_signed_with(key: bytes, payload: dict) -> str:
    """An HS256 token whose HMAC key is `key`, made by hand (PyJWT refuses PEM keys as secrets)."""
    signing_input = f"{b64json({'alg': 'HS256', 'typ': 'JWT'})}.{b64json(payload)}"
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


@pytest.mark.parametrize("algorithm,keys", [("RS256", "rsa_keys"), ("ES256", "ec_keys")])
def test_hs256_token_signed_with_the_public_key_is_refused(request, algorithm, keys):
    _, public = request.getfixturevalue(keys)
    verifier = JwtAuth(secret=None, algorithm=algorithm, public_key=public)
    token = hmac_token_signed_with(public.encode(), claims(role="admin"))
    refused(verifier, token, "invalid token")


def test_rs256_token_is_refused_by_an_hs256_verifier(auth, rsa_keys):
    private, _ = rsa_keys
    token = jwt.encode(claims(), private, algorithm="RS256")
    refused(auth, token, "invalid token")


def test_es256_token_is_refused_by_an_rs256_verifier(rsa_keys, ec_keys):
    _, rsa_public = rsa_keys
    ec_private, _ = ec_keys
    verifier = JwtAuth(secret=None, algorithm="RS256", public_key=rsa_public)
    refused(verifier, jwt.encode(claims(), ec_private, algorithm="ES256"), "invalid token")


def test_rs256_token_signed_by_another_key_is_refused(rsa_keys):
    _, public = rsa_keys
    other_private, _ = pem_pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    verifier = JwtAuth(secret=None, algorithm="RS256", public_key=public)
    refused(verifier, jwt.encode(claims(), other_private, algorithm="RS256"), "invalid token")


# --- asymmetric round trips --------------------------------------------------------------


@pytest.mark.parametrize("algorithm,keys", [("RS256", "rsa_keys"), ("ES256", "ec_keys")])
def test_asymmetric_round_trip(request, algorithm, keys):
    private, public = request.getfixturevalue(keys)
    signer = JwtAuth(secret=None, algorithm=algorithm, public_key=public, private_key=private)
    token = signer.mint("worker-3", Role.PUBLISHER, ttl=120)
    assert jwt.get_unverified_header(token)["alg"] == algorithm
    verifier = JwtAuth(secret=None, algorithm=algorithm, public_key=public)
    principal = verifier.verify(token)
    assert (principal.user_id, principal.role) == ("worker-3", Role.PUBLISHER)


@pytest.mark.parametrize("algorithm,keys", [("RS256", "rsa_keys"), ("ES256", "ec_keys")])
def test_mint_without_private_key_is_a_config_error(request, algorithm, keys):
    _, public = request.getfixturevalue(keys)
    with pytest.raises(ConfigError):
        JwtAuth(secret=None, algorithm=algorithm, public_key=public).mint("alice")


# --- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize("secret", [None, "", "s", "x" * 15])
@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
def test_missing_or_short_secret_is_a_config_error(secret, algorithm):
    with pytest.raises(ConfigError):
        JwtAuth(secret=secret, algorithm=algorithm)


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        JwtAuth(secret=None)


@pytest.mark.parametrize("algorithm", ["none", "None", "hs256", "PS256", "EdDSA", "", "HS1"])
def test_unsupported_algorithm_is_a_config_error(algorithm):
    with pytest.raises(ConfigError):
        JwtAuth(secret=SECRET, algorithm=algorithm)


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_asymmetric_algorithm_without_public_key_is_a_config_error(algorithm):
    with pytest.raises(ConfigError):
        JwtAuth(secret=SECRET, algorithm=algorithm)


@pytest.mark.parametrize("algorithm,length", [("HS256", 16), ("HS384", 32), ("HS512", 32)])
def test_an_accepted_secret_is_long_enough_for_its_algorithm(algorithm, length):
    """RFC 7518 §3.2: an HMAC key must be at least as long as the hash output. A secret the
    constructor accepts must then mint and verify cleanly (no InsecureKeyLengthWarning)."""
    try:
        auth = JwtAuth(secret="k" * length, algorithm=algorithm)
    except ConfigError:
        return  # refused up front: fine
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert auth.verify(auth.mint("alice")).user_id == "alice"


# --- mint --------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.USER, Role.ADMIN, Role.PUBLISHER, "admin", "publisher"])
def test_mint_round_trip(auth, role):
    principal = auth.verify(auth.mint("alice", role))
    assert principal.user_id == "alice"
    assert principal.role is Role(role)


def test_mint_sets_iat_and_exp_from_now_and_ttl(auth):
    now = time.time()
    token = auth.mint("alice", ttl=90, now=now)
    payload = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert payload == {"sub": "alice", "role": "user", "iat": int(now), "exp": int(now) + 90}
    assert auth.verify(token).expires_at == float(int(now) + 90)


def test_minted_token_is_refused_by_another_secret(auth):
    refused(JwtAuth(secret=OTHER_SECRET), auth.mint("alice"), "invalid token")


@pytest.mark.parametrize("user_id", ["", "a b", "a/b", "é", "a" * 129, "bob\n"])
def test_mint_refuses_bad_user_id(auth, user_id):
    with pytest.raises(ValueError):
        auth.mint(user_id)


@pytest.mark.parametrize("role", ["root", "ADMIN", ""])
def test_mint_refuses_bad_role(auth, role):
    with pytest.raises(ValueError):
        auth.mint("alice", role)


# --- principals --------------------------------------------------------------------------

USER = Principal("alice", Role.USER)
ADMIN = Principal("root", Role.ADMIN)
PUBLISHER = Principal("worker", Role.PUBLISHER)


@pytest.mark.parametrize(
    "principal,owner,expected",
    [
        (USER, "alice", True),
        (USER, "bob", False),
        (USER, None, False),
        (USER, "", False),
        (USER, "Alice", False),
        (ADMIN, "alice", True),
        (ADMIN, "root", True),
        (ADMIN, None, True),
        (PUBLISHER, "worker", False),
        (PUBLISHER, "alice", False),
        (PUBLISHER, None, False),
    ],
)
def test_may_see(principal, owner, expected):
    assert principal.may_see(owner) is expected


@pytest.mark.parametrize(
    "principal,can_read,can_publish,is_admin",
    [
        (USER, True, False, False),
        (ADMIN, True, True, True),
        (PUBLISHER, False, True, False),
    ],
)
def test_role_permissions(principal, can_read, can_publish, is_admin):
    assert principal.can_read is can_read
    assert principal.can_publish is can_publish
    assert principal.is_admin is is_admin


# --- token_from --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers,query,cookies,expected",
    [
        ({"authorization": "Bearer h"}, {"token": "q"}, {"jobwire_token": "c"}, "h"),
        ({"authorization": "bearer h"}, {}, {}, "h"),
        ({"authorization": "BEARER h"}, {}, {}, "h"),
        ({"authorization": "Bearer   h  "}, {}, {}, "h"),
        ({}, {"token": "q"}, {"jobwire_token": "c"}, "q"),
        ({}, {}, {"jobwire_token": "c"}, "c"),
        ({}, {}, {}, None),
        # A scheme other than Bearer is ignored, and the next source is used.
        ({"authorization": "Basic dXNlcjpwYXNz"}, {"token": "q"}, {}, "q"),
        ({"authorization": "Token h"}, {}, {"jobwire_token": "c"}, "c"),
        ({"authorization": "Basic dXNlcjpwYXNz"}, {}, {}, None),
        # A bare or empty Bearer is no token.
        ({"authorization": "Bearer"}, {"token": "q"}, {}, "q"),
        ({"authorization": "Bearer    "}, {}, {"jobwire_token": "c"}, "c"),
        ({"authorization": ""}, {}, {}, None),
        # Empty values fall through to the next source.
        ({}, {"token": ""}, {"jobwire_token": "c"}, "c"),
        ({}, {"token": ""}, {"jobwire_token": ""}, None),
        # Other query keys and cookies are not tokens.
        ({}, {"access_token": "q", "jobIds": "a"}, {"session": "c"}, None),
    ],
)
def test_token_from(headers, query, cookies, expected):
    assert token_from(headers, query, cookies) == expected


def test_token_from_feeds_verify(auth):
    token = auth.mint("alice", Role.ADMIN)
    found = token_from({"authorization": f"Bearer {token}"}, {}, {})
    assert auth.verify(found).role is Role.ADMIN
