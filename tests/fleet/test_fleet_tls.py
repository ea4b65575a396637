"""The exporter over mutual TLS with a user and password, against a real nats-server:
what the settings promise (tls_ca, tls_cert, tls_key, user, password) is what connects."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import socket
import subprocess

from conftest import free_port, wait_for

from spyderd.fleet import messages as m
from spyderd.fleet.bus import BusConfig
from spyderd.fleet.exporter import Exporter
from spyderd.fleet.outbox import Outbox
from spyderd.graph import Store
from spyderd.model import Node


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_pki(d) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
            "/CN=spyderd test CA", "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.pem")
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"),
                      ("client", "extendedKeyUsage=clientAuth")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout",
                f"{d}/{name}.key", "-out", f"{d}/{name}.csr")
        (d / f"{name}.ext").write_text(ext + "\n")
        openssl("x509", "-req", "-in", f"{d}/{name}.csr", "-CA", f"{d}/ca.pem", "-CAkey",
                f"{d}/ca.key", "-CAcreateserial", "-days", "1", "-extfile", f"{d}/{name}.ext",
                "-out", f"{d}/{name}.pem")
    return {k: str(d / v) for k, v in (("ca", "ca.pem"), ("cert", "client.pem"),
                                        ("key", "client.key"))}


async def stream_messages(bus: BusConfig) -> int:
    import nats

    nc = await nats.connect(**bus.connect_options())
    try:
        return (await nc.jetstream().stream_info(m.STREAM)).state.messages
    finally:
        await nc.close()


def test_exporter_over_mutual_tls_with_credentials(tmp_path):
    pki = make_pki(tmp_path)
    port = free_port()
    exe = shutil.which("nats-server") or "/usr/sbin/nats-server"
    server = subprocess.Popen([exe, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd",
                               str(tmp_path / "js"), "--tlsverify", "--tlscert",
                               str(tmp_path / "server.pem"), "--tlskey",
                               str(tmp_path / "server.key"), "--tlscacert", pki["ca"],
                               "--user", "host-a", "--pass", "s3cret"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = Store(tmp_path / "state")
    try:
        url = f"tls://127.0.0.1:{port}"
        good = BusConfig(url=url, name="host-a", user="host-a", password="s3cret",
                         tls_ca=pki["ca"], tls_cert=pki["cert"], tls_key=pki["key"])
        box = Outbox(store, "host-a", "boot")
        node = Node(id="proc:boot:1:1", kind="process", start=1, pid=1)
        store.write_batch([node], [], [], [], {}, extra=box.stage([node], [], []))
        assert wait_for(lambda: port_open(port), 15)
        wrong = Exporter(dataclasses.replace(good, password="wrong"), box, lambda r: {})
        wrong.start()
        assert wait_for(lambda: "uthorization" in wrong.stats["last_error"], 20), wrong.stats
        wrong.close()
        assert box.status()["queued"] == 1  # nothing left the outbox without the broker
        ex = Exporter(good, box, lambda r: {})
        ex.start()
        assert wait_for(lambda: box.status()["queued"] == 0, 30), ex.status()
        ex.close()
        assert ex.stats["published"] == 1
        assert asyncio.run(stream_messages(good)) == 1
    finally:
        store.close()
        server.terminate()
        server.wait(10)


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False
