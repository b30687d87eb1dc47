"""Throwaway certificates for RADIUS/TLS tests, made with the openssl command line.

One CA signs the gateway's certificate (localhost, 127.0.0.1) and switch
certificates; a second, unrelated CA signs a certificate the gateway must not trust.
EC P-256 keys: quick to make, and what a modern RadSec peer uses.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Certs:
    ca: Path  # the CA the gateway trusts (and the switches trust for the gateway)
    server: Pair  # CN=gateway, SAN DNS:localhost, IP:127.0.0.1
    folder: Path

    def client(self, name: str, *, untrusted: bool = False) -> Pair:
        """A switch certificate with CN=``name`` (and that DNS SAN), signed by the
        trusted CA, or by a stranger's CA with ``untrusted``."""
        ca = "stranger-ca" if untrusted else "ca"
        if untrusted and not (self.folder / "stranger-ca.pem").exists():
            _ca(self.folder, "stranger-ca")
        return _leaf(self.folder, f"{ca}-{name}", name, ca, f"DNS:{name}")


def _openssl(*args: str, cwd: Path) -> None:
    tool = shutil.which("openssl")
    if tool is None:
        pytest.fail("openssl is missing (Debian package openssl)")
    done = subprocess.run(
        [tool, *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr


def _ca(folder: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
        "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip


def _leaf(folder: Path, stem: str, cn: str, ca: str, san: str) -> Pair:
    (folder / f"{stem}.ext").write_text(
        f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n"
    )
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{stem}.key", "-out", f"{stem}.csr", "-subj", f"/CN={cn}",
        cwd=folder,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{stem}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-out", f"{stem}.pem", "-days", "2", "-extfile", f"{stem}.ext",
        cwd=folder,
    )  # fmt: skip
    return Pair(folder / f"{stem}.pem", folder / f"{stem}.key")


def make_certs(folder: Path) -> Certs:
    """A CA and the gateway's certificate under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    _ca(folder, "ca")
    server = _leaf(folder, "server", "gateway", "ca", "DNS:localhost,IP:127.0.0.1")
    return Certs(folder / "ca.pem", server, folder)
