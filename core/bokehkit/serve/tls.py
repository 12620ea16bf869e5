"""TLS for `bokehkit serve --tcp --tls`: a self-signed certificate that clients pin.

No certificate authority is involved, as with SSH host keys: the engine makes its own key
and certificate on first run (kept in the user config folder, the key readable by its owner
only) and prints the certificate's SHA-256 fingerprint; clients are given that fingerprint
and refuse any other certificate (plugin/bokehkit_plugin/remote.py).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import ssl
from pathlib import Path

from ..errors import BokehkitError

KEY_NAME = "engine-key.pem"
CERT_NAME = "engine-cert.pem"
#: A certificate nobody verifies against a CA: its lifetime only has to outlast the engine.
VALID_DAYS = 3650


def tls_folder() -> Path:
    from platformdirs import user_config_dir

    return Path(os.environ.get("BOKEHKIT_TLS_DIR") or Path(user_config_dir("bokehkit")) / "tls")


def fingerprint_of(der: bytes) -> str:
    """`SHA256:` and the hex SHA-256 of a DER certificate (what clients pin)."""
    return "SHA256:" + hashlib.sha256(der).hexdigest()


def certificate_fingerprint(cert_path: Path) -> str:
    pem = cert_path.read_text(encoding="ascii")
    return fingerprint_of(ssl.PEM_cert_to_DER_cert(pem))


def ensure_certificate(folder: Path | None = None) -> tuple[Path, Path]:
    """The engine's (certificate, key), made on first use; the key is mode 0600."""
    folder = folder or tls_folder()
    cert_path, key_path = folder / CERT_NAME, folder / KEY_NAME
    if cert_path.is_file() and key_path.is_file():
        if key_path.stat().st_mode & 0o077 and os.name != "nt":
            raise BokehkitError(
                f"{key_path}: the TLS key is readable by others; run: chmod 600 {key_path}"
            )
        return cert_path, key_path
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        raise BokehkitError(
            "--tls makes its certificate with the 'cryptography' package: install "
            "requirements/remote.txt into the engine"
        ) from None
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise BokehkitError(f"{folder}: cannot make the TLS folder ({exc.strerror})") from None
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bokehkit engine")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # The key is created 0600 from the start, never world-readable for a moment.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_path, key_path)
    except (OSError, ssl.SSLError) as exc:
        raise BokehkitError(f"{cert_path}: cannot load the TLS certificate ({exc})") from None
    return context
