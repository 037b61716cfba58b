"""A throw-away certificate for the TLS model leg, made at run time with the ``openssl`` CLI.

The fake model serves ``wss://127.0.0.1`` with a self-signed certificate for ``127.0.0.1`` and
``localhost`` (EC P-256, valid for a day, key never leaves the temporary directory); the relay
under test trusts it through ``SSL_CERT_FILE`` (Python) or ``NODE_EXTRA_CA_CERTS`` (Node), in a
bundle beside the system's own roots (:func:`trust_bundle`): a deployment trusts those, and
loading them is part of what a TLS connection can cost.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

from relay_sim.load.processes import HarnessError


def throwaway_certificate(directory: Path) -> tuple[Path, Path]:
    """Write ``cert.pem`` and ``key.pem`` into ``directory``; return their paths.

    Raises:
        HarnessError: no ``openssl`` on PATH, or it failed.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise HarnessError("--tls needs the openssl command to make a throw-away certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    done = subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise HarnessError(f"openssl could not make a certificate: {done.stderr.strip()[-500:]}")
    key.chmod(0o600)
    return cert, key


def trust_bundle(cert: Path, directory: Path) -> Path:
    """Write ``bundle.pem``: the system's CA bundle (where there is one) and then ``cert``."""
    paths = ssl.get_default_verify_paths()
    system = Path(paths.cafile or paths.openssl_cafile)
    bundle = directory / "bundle.pem"
    roots = system.read_bytes() if system.is_file() else b""
    bundle.write_bytes(roots + (b"" if roots.endswith(b"\n") or not roots else b"\n")
                       + cert.read_bytes())
    return bundle
