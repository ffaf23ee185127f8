"""Verification keys and the algorithms they may verify: the checks settings run at start-up.

A leaf (nothing of tidings is imported), so :mod:`tidings.settings` can check a key file and
the ``alg`` allow-list while it loads, and the verifier can rely on what it was given.

Keys are kept per algorithm family and chosen by the token's ``alg`` only after the allow-list
admitted it: an HMAC secret is never an RSA/EC key and the reverse, so a token "signed" with
the RS256 public key as an HS256 secret (algorithm confusion) cannot verify.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

MIN_RSA_BITS = 2048
MIN_SECRET_BYTES = 32  # an HS256 key as long as the hash (RFC 7518 §3.2)

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
JWK_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
OKP_ALGORITHMS = frozenset({"EdDSA"})
SUPPORTED_ALGORITHMS = HMAC_ALGORITHMS | RSA_ALGORITHMS | frozenset(EC_CURVES) | OKP_ALGORITHMS
JWKS_DEFAULT_ALGORITHMS = ("RS256", "ES256")

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


def check_secret(secret: str) -> str:
    """An HMAC secret long enough not to be guessed, and not a key pasted in the wrong place."""
    size = len(secret.encode())
    if size < MIN_SECRET_BYTES:
        raise ValueError(f"is {size} bytes; at least {MIN_SECRET_BYTES} are required")
    if secret.lstrip().startswith(("-----BEGIN", "ssh-")):
        raise ValueError("looks like a key; put public keys in TIDINGS_AUTH_JWT_PUBLIC_KEY_FILE")
    return secret


def load_public_key(path: Path) -> PublicKey:
    """The verification key in a PEM file (a public key or a certificate); refuse weak ones."""
    try:
        data = path.read_bytes()
    except OSError:
        raise ValueError(f"{str(path)!r} is not a readable file") from None
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key: object = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise ValueError(f"{str(path)!r} holds no PEM public key or certificate ({exc})") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"the RSA key has {key.key_size} bits; at least {MIN_RSA_BITS}")
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in EC_CURVES.values():
            raise ValueError(f"EC curve {key.curve.name} is not one of P-256, P-384, P-521")
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ed448.Ed448PublicKey):
        raise ValueError("Ed448 keys are not supported; use Ed25519, EC or RSA")
    raise ValueError(f"unsupported key type {type(key).__name__}; use RSA, EC or Ed25519")


def key_algorithms(key: PublicKey) -> frozenset[str]:
    """Every algorithm ``key`` can verify."""
    if isinstance(key, rsa.RSAPublicKey):
        return RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey):
        return frozenset(a for a, c in EC_CURVES.items() if c == key.curve.name)
    return OKP_ALGORITHMS


def default_algorithms(key: PublicKey) -> list[str]:
    """The one algorithm assumed for a PEM key when none are configured."""
    if isinstance(key, rsa.RSAPublicKey):
        return ["RS256"]
    return sorted(key_algorithms(key))


def check_algorithms(
    algorithms: Sequence[str], *, secret: bool, public_key: PublicKey | None, jwks: bool
) -> list[str]:
    """The allow-list, or the default derived from the key sources; raise on a bad entry."""
    if not algorithms:
        derived: list[str] = ["HS256"] if secret else []
        if public_key is not None:
            derived += default_algorithms(public_key)
        if jwks:
            derived += [a for a in JWKS_DEFAULT_ALGORITHMS if a not in derived]
        return derived
    checked: list[str] = []
    for name in algorithms:
        if name.lower() == "none":
            raise ValueError("'none' is never allowed: tokens must be signed")
        if name not in SUPPORTED_ALGORITHMS:
            raise ValueError(f"{name!r} is not one of {', '.join(sorted(SUPPORTED_ALGORITHMS))}")
        if name in HMAC_ALGORITHMS:
            usable = secret
        else:
            usable = jwks or (public_key is not None and name in key_algorithms(public_key))
        if not usable:
            raise ValueError(f"{name} is allowed but no configured key can verify it")
        if name not in checked:
            checked.append(name)
    return checked
