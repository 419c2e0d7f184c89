"""Secrets and certificates of the local services, kept in ``<state_dir>/secrets/`` (directory 0700, files 0600).

- :func:`secret` generates a random password once and reads it back afterwards (``down`` then ``up`` keeps
  them, so a reused Postgres cluster or MLflow user store still accepts them).
- :func:`dask_tls` writes a private CA and two certificates signed by it: ``server`` (the scheduler and the
  workers, which also dial each other) and ``client`` (sweeps, flows, monitors). Both carry the server and
  client purposes; Dask checks the chain, not host names, so the CA is what admits a peer.
- :func:`dask_tls_env` is the ``DASK_DISTRIBUTED__COMM__*`` configuration a client needs for ``tls://``.

The MLflow *admin* password never goes to these helpers' callers' workers: only the pipeline user's.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets as _random
import socket
from pathlib import Path

SECRETS_DIR = "secrets"
_TLS_FILES = ("ca.pem", "ca-key.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem")


def secrets_dir(state_dir: Path) -> Path:
    """``<state_dir>/secrets``, created 0700."""
    path = Path(state_dir) / SECRETS_DIR
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_private(path: Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` with mode 0600 from the first byte (never world-readable, even briefly)."""
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(raw)
    os.chmod(path, 0o600)
    return path


def secret(state_dir: Path, name: str, create: bool = True) -> str | None:
    """The secret ``name`` of this state directory; generated (URL-safe, 24 bytes) on first use.

    Returns None when it does not exist and ``create`` is False.
    """
    path = secrets_dir(state_dir) / name
    if path.exists():
        return path.read_text().strip()
    if not create:
        return None
    value = _random.token_urlsafe(24)
    write_private(path, value + "\n")
    return value


def _names(hosts: list[str]) -> list:
    from cryptography import x509

    out, seen = [], set()
    for host in [*hosts, "127.0.0.1", "localhost", socket.gethostname()]:
        if not host or host in seen or host in ("0.0.0.0", "::"):
            continue
        seen.add(host)
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            out.append(x509.DNSName(host))
    return out


def _cert(subject: str, key, issuer_name, issuer_key, *, ca: bool, alt_names: list | None = None):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name or name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                                        critical=True)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names or []), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def _pem(cert=None, key=None) -> bytes:
    from cryptography.hazmat.primitives import serialization

    if cert is not None:
        return cert.public_bytes(serialization.Encoding.PEM)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def dask_tls(state_dir: Path, hosts: list[str]) -> dict[str, str]:
    """CA, server and client certificates for Dask under ``secrets/dask/`` (made once); their paths.

    ``hosts`` are the addresses the scheduler is reached at (names and IPs go into the server certificate's
    subjectAltName, for clients that do check host names).
    """
    from cryptography.hazmat.primitives.asymmetric import ec

    folder = secrets_dir(state_dir) / "dask"
    folder.mkdir(exist_ok=True)
    folder.chmod(0o700)
    paths = {name: folder / name for name in _TLS_FILES}
    if not all(p.exists() for p in paths.values()):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _cert("sweepnet local Dask CA", ca_key, None, None, ca=True)
        write_private(paths["ca.pem"], _pem(cert=ca))
        write_private(paths["ca-key.pem"], _pem(key=ca_key))
        for role in ("server", "client"):
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _cert(f"sweepnet-dask-{role}", key, ca.subject, ca_key, ca=False, alt_names=_names(hosts))
            write_private(paths[f"{role}.pem"], _pem(cert=cert))
            write_private(paths[f"{role}-key.pem"], _pem(key=key))
    return {name.removesuffix(".pem"): str(p.resolve()) for name, p in paths.items()}


def dask_tls_env(tls: dict[str, str]) -> dict[str, str]:
    """Dask configuration, as environment variables, for a client of a ``tls://`` scheduler.

    ``distributed.Client(address)`` and Prefect's ``DaskTaskRunner`` read it through ``Security()``:
    ``sweepnet sweep --dask-address tls://...`` needs nothing else.
    """
    return {"DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
            "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": tls["ca"],
            "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": tls["client"],
            "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": tls["client-key"]}
