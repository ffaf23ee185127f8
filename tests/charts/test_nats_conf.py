"""The NATS release's rendered nats.conf, run by a real nats-server: TLS for clients and routes.

The official chart (vendored) renders charts/nats-values.yaml into a ConfigMap; here its
``nats.conf`` runs as it would in the pod, with only what a pod gives differently changed: the
mounted Secrets' paths point at certificates made for the test, the ports are free loopback
ports, and the route URLs (``tls://nats-N.nats-headless:6222``) point at the other test servers.
Two servers form a cluster over mutually authenticated TLS routes; a server whose certificate
another CA signed is refused; a client needs TLS and its password.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import re
import signal
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats
import nats.errors
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.charts.nats_release import render_nats
from tests.charts.rendering import REPO
from tests.support.waiting import wait_until
from tidings.dev.embedded import nats_server_binary, wait_for_port
from tidings.ports import free_port

PROD = [REPO / "charts" / "nats-values.yaml"]
PASSWORD = f"gateway-{os.getpid()}"


@dataclass
class Pki:
    ca: Path
    dir: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0] if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def make_pki(root: Path) -> Pki:
    """A CA (the Secret ``nats-ca``) and one server certificate for loopback, signed by it."""
    root.mkdir(parents=True)
    ca_key = _key()
    ca = _cert("test-ca", ca_key, None, ca=True)
    key = _key()
    cert = _cert("nats", key, (ca.subject, ca_key), ca=False)
    (root / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (root / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (root / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Pki(root / "ca.crt", root)


def rendered_conf() -> str:
    (configmap,) = render_nats(PROD).of_kind("ConfigMap")
    return str(configmap["data"]["nats.conf"])


@dataclass
class Server:
    index: int
    port: int
    cluster_port: int
    monitor_port: int
    log: Path

    def peers(self) -> set[str]:
        """Servers this one has routes to (2.10+ pools several connections per peer)."""
        routez = httpx.get(f"http://127.0.0.1:{self.monitor_port}/routez", timeout=2).json()
        return {str(r["remote_name"]) for r in routez.get("routes") or []}

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def localize(
    conf: str, *, index: int, ports: list[tuple[int, int, int]], root: Path, pki: Pki
) -> str:
    """The pod's view mapped to this machine: mounts to directories, ports to free ones."""
    port, cluster_port, monitor_port = ports[index]
    replacements = {
        "/etc/nats-ca-cert/ca.crt": str(pki.ca),
        "/etc/nats-certs/nats/": f"{pki.dir}/",
        "/etc/nats-certs/cluster/": f"{pki.dir}/",
        '"/data"': f'"{root / "data"}"',
        "/var/run/nats/nats.pid": str(root / "nats.pid"),
        '"port": 4222': f'"port": {port}',
        '"port": 6222': f'"port": {cluster_port}',
        '"http_port": 8222': f'"http_port": {monitor_port}',
    }
    for old, new in replacements.items():
        assert old in conf, f"the rendered nats.conf has no {old!r}"
        conf = conf.replace(old, new)

    # Route N (the headless Service's DNS name of pod nats-N) is test server N.
    def route(match: re.Match[str]) -> str:
        n = int(match.group(1))
        return f"tls://127.0.0.1:{ports[n][1]}" if n < len(ports) else match.group(0)

    conf = re.sub(r"tls://nats-(\d+)\.nats-headless:6222", route, conf)
    return conf.replace('"port":', '"host": "127.0.0.1", "port":', 1)


@contextlib.contextmanager
def servers(tmp_path: Path, pkis: list[Pki]) -> Iterator[list[Server]]:
    conf = rendered_conf()
    ports = [(free_port(), free_port(), free_port()) for _ in pkis]
    procs: list[subprocess.Popen[bytes]] = []
    out: list[Server] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env.update(
        {
            f"TIDINGS_{u}_PASSWORD": PASSWORD
            for u in ("ADMIN", "GATEWAY", "PUBLISHER", "BROADCASTER", "INBOX")
        }
    )
    try:
        for i, pki in enumerate(pkis):
            root = tmp_path / f"nats-{i}"
            root.mkdir()
            (root / "nats.conf").write_text(
                localize(conf, index=i, ports=ports, root=root, pki=pki)
            )
            log = root / "nats.log"
            with log.open("wb") as sink:
                procs.append(
                    subprocess.Popen(
                        [str(nats_server_binary()), "-c", str(root / "nats.conf")],
                        env={**env, "SERVER_NAME": f"nats-{i}"},
                        stdout=sink,
                        stderr=subprocess.STDOUT,
                    )
                )
            out.append(Server(i, *ports[i], log))
        for server in out:
            wait_for_port(server.port, timeout=15)
        yield out
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


async def test_clients_need_tls_and_routes_authenticate_with_the_ca(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    rogue = make_pki(tmp_path / "rogue")  # a valid certificate, from another CA
    with servers(tmp_path, [pki, pki, rogue]) as (first, second, intruder):
        # The two servers with certificates from the cluster's CA form routes over TLS.
        wait_until(
            lambda: first.peers() == {"nats-1"} and second.peers() == {"nats-0"},
            timeout=30,
            what="a TLS route between the two servers",
        )
        # The third one's certificate is refused by both (mutual TLS), and it never joins.
        wait_until(
            lambda: "TLS route handshake error" in first.log_text(),
            timeout=30,
            what=f"server 0 refusing the rogue route\n{first.log_text()[-2000:]}",
        )
        assert intruder.peers() == set()
        assert first.peers() == {"nats-1"}

        tls = ssl.create_default_context(cafile=str(pki.ca))
        nc = await nats.connect(
            f"tls://127.0.0.1:{first.port}",
            tls=tls,
            user="tidings-gateway",
            password=PASSWORD,
            allow_reconnect=False,
            connect_timeout=5,
        )
        try:
            assert nc.is_connected
            sub = await nc.subscribe("live.acme.>")
            await nc.flush()
            assert sub is not None
        finally:
            await nc.close()

        # A client without the CA (nats-py then upgrades to TLS with the system's CAs) or with
        # another CA cannot verify the server; one with a wrong password is refused by NATS.
        refusals: list[tuple[str, ssl.SSLContext | None, str, type[Exception], str]] = [
            ("nats", None, PASSWORD, ssl.SSLCertVerificationError, "unable to get local issuer"),
            (
                "tls",
                ssl.create_default_context(cafile=str(rogue.ca)),
                PASSWORD,
                ssl.SSLCertVerificationError,
                "certificate signature failure",
            ),
            ("tls", tls, "wrong", nats.errors.Error, "Authorization Violation"),
        ]
        for scheme, context, password, error, message in refusals:
            with pytest.raises(error, match=message):
                await nats.connect(
                    f"{scheme}://127.0.0.1:{first.port}",
                    tls=context,
                    user="tidings-gateway",
                    password=password,
                    allow_reconnect=False,
                    connect_timeout=3,
                    max_reconnect_attempts=0,
                )
