"""TLS on either listener (PRODUCT §10, issue 13): `[server]` / `[ingest]` `tls_cert` + `tls_key`.

Certificates are made per test run with the machine's `openssl` (self-signed, for 127.0.0.1)."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from oceand.config import Config, ConfigError, validate_config
from oceand.ctl.client import SERVER, Client, CtlError, resolve
from tests.conftest import DaemonFactory

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def make_cert(where: Path, name: str) -> tuple[Path, Path]:
    cert, key = where / f"{name}.crt", where / f"{name}.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("certs")
    cert, key = make_cert(d, "a")
    other_cert, other_key = make_cert(d, "b")
    junk = d / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    return {"cert": cert, "key": key, "other_key": other_key, "other_cert": other_cert, "junk": junk}


def check(tmp_path: Path, **data: Any) -> Config:
    return validate_config(data, file="oceand.toml", base_dir=tmp_path, path=None)


@pytest.mark.parametrize(
    ("table", "files", "key", "fragment"),
    [
        pytest.param("server", ("cert", "other_key"), "server.tls_key", "not the private key", id="mismatch"),
        pytest.param("server", ("missing", "key"), "server.tls_cert", "cannot read", id="no cert file"),
        pytest.param("server", ("cert", "missing"), "server.tls_key", "cannot read", id="no key file"),
        pytest.param("server", ("junk", "key"), "server.tls_cert", "not a PEM certificate", id="junk cert"),
        pytest.param("server", ("cert", "junk"), "server.tls_key", "not an unencrypted PEM", id="junk key"),
        pytest.param("server", ("cert", None), "server.tls_key", "go together", id="cert alone"),
        pytest.param("server", (None, "key"), "server.tls_cert", "go together", id="key alone"),
        pytest.param("ingest", ("cert", "other_key"), "ingest.tls_key", "not the private key", id="ingest"),
        pytest.param(
            "ingest-shared", ("cert", "key"), "ingest.tls_cert", "needs [ingest] listen", id="shared"
        ),
    ],
)
def test_tls_config_refusals(
    tmp_path: Path,
    certs: dict[str, Path],
    table: str,
    files: tuple[str | None, str | None],
    key: str,
    fragment: str,
) -> None:
    tls = {}
    for name, which in zip(("tls_cert", "tls_key"), files, strict=True):
        if which is not None:
            tls[name] = str(certs[which]) if which != "missing" else str(tmp_path / "nope.pem")
    data: dict[str, Any] = {}
    if table == "server":
        data["server"] = tls
    else:
        data["ingest"] = tls | ({"listen": "127.0.0.1:9999"} if table == "ingest" else {})
    with pytest.raises(ConfigError) as e:
        check(tmp_path, **data)
    assert e.value.key == key and fragment in e.value.message, str(e.value)
    assert "PRIVATE KEY" not in str(e.value)


def test_tls_paths_relative_to_the_config(tmp_path: Path, certs: dict[str, Path]) -> None:
    shutil.copy(certs["cert"], tmp_path / "c.pem")
    shutil.copy(certs["key"], tmp_path / "k.pem")
    server = check(tmp_path, server={"tls_cert": "c.pem", "tls_key": "k.pem"}).server
    assert (server.tls_cert, server.tls_key) == (str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))
    assert server.ssl_context() is not None


def client_tls(certs: dict[str, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certs["cert"]))


async def test_https_on_both_listeners(
    start_daemon: DaemonFactory, certs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tls = {"tls_cert": str(certs["cert"]), "tls_key": str(certs["key"])}
    d, _ = await start_daemon(server={"listen": "127.0.0.1:0"} | tls, ingest={"listen": "127.0.0.1:0"} | tls)
    assert d.url is not None and d.url.startswith("https://127.0.0.1:")
    assert d.ingest_url is not None and d.ingest_url.startswith("https://127.0.0.1:")
    push = [{"endpoint": "h", "metric": "m", "timestamp": 1, "step": 60, "value": 1, "counterType": "GAUGE"}]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_tls(certs))) as s:
        async with s.get(d.url + "/api/v1/jobs") as r:
            assert r.status == 200 and (await r.json())["jobs"] == []
        async with s.post(d.ingest_url + "/v1/push", json=push) as r:
            assert r.status == 200, await r.text()

    async with aiohttp.ClientSession() as s:
        # plain HTTP on the TLS port: the connection is closed, nothing is answered in clear text
        for base in (d.url, d.ingest_url):
            with pytest.raises(aiohttp.ClientError):
                async with s.get(base.replace("https://", "http://") + "/healthz") as r:
                    await r.read()
        # a client that does not trust the certificate refuses it
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with s.get(d.url + "/healthz") as r:
                await r.read()

    connector = aiohttp.TCPConnector(ssl=client_tls(certs))
    async with aiohttp.ClientSession(connector=connector) as s, s.get(d.url + "/healthz") as r:
        assert r.status == 200  # still serving after the bad connections

    # oceanctl (urllib): with --cacert it talks to the daemon, without it the certificate is refused
    for var in ("OCEAND_URL", "OCEAND_TOKEN", "OCEAND_CACERT", "OCEANCTL_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    good = Client(resolve(d.url, None, str(certs["cert"])))
    assert (await asyncio.to_thread(good.call, "GET", "/api/v1/jobs"))["jobs"] == []
    wrong = Client(resolve(d.url, None, str(certs["other_cert"])))
    with pytest.raises(CtlError) as e:
        await asyncio.to_thread(wrong.call, "GET", "/api/v1/jobs")
    assert e.value.code == SERVER and "CERTIFICATE_VERIFY_FAILED" in e.value.message


async def _peer_cert(url: str, cafile: Path) -> bytes:
    """The DER certificate a new TLS connection to `url` is served."""
    host, port = url.removeprefix("https://").rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(cafile))
    _, writer = await asyncio.open_connection(host, int(port), ssl=ctx)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        assert der is not None
        return bytes(der)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_sighup_reloads_the_certificates(certs: dict[str, Path], tmp_path: Path) -> None:
    """A renewed certificate written over the configured files is served to new connections after a
    reload (SIGHUP), on both listeners, without a restart; a broken file on reload keeps the old one."""
    from oceand.config import load_config
    from oceand.daemon import Daemon

    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    shutil.copy(certs["cert"], cert)
    shutil.copy(certs["key"], key)
    tls = 'tls_cert = "c.pem"\ntls_key = "k.pem"\n'
    conf = tmp_path / "oceand.toml"
    conf.write_text(
        f'[server]\nlisten = "127.0.0.1:0"\n{tls}[ingest]\nlisten = "127.0.0.1:0"\n{tls}'
        '[store]\nurl = "sqlite:///oceand.db"\n'
    )
    d = Daemon(load_config(conf))
    await d.start()
    try:
        assert d.url is not None and d.ingest_url is not None
        a = ssl.PEM_cert_to_DER_cert(certs["cert"].read_text())
        b = ssl.PEM_cert_to_DER_cert(certs["other_cert"].read_text())
        for url in (d.url, d.ingest_url):
            assert await _peer_cert(url, certs["cert"]) == a
        shutil.copy(certs["other_cert"], cert)
        shutil.copy(certs["other_key"], key)
        assert await d.reload()
        for url in (d.url, d.ingest_url):
            assert await _peer_cert(url, certs["other_cert"]) == b
        # a key that does not match: the reload is refused, the served certificate stays
        shutil.copy(certs["key"], key)
        assert not await d.reload()
        assert await _peer_cert(d.url, certs["other_cert"]) == b
    finally:
        await d.stop()
