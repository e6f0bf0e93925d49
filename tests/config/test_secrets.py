"""Secrets in config errors, check-config and reload logs (issue 18 item 6)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from oceand.config import ConfigError, load_config
from oceand.daemon import Daemon

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-Pa55"

# Each config puts SECRET where an operator might (wrongly) write it; the error must name the key and
# never echo the secret.
LEAKY = [
    pytest.param(
        f'[marathon.lg]\nurls = ["http://ocean:{SECRET}@10.0.0.1:8080"]\n',
        "marathon.lg.urls[0]",
        "credentials",
        id="marathon url user:pass@",
    ),
    pytest.param(
        f'[marathon.lg]\nurls = ["http://10.0.0.1:8080", "ftp://ocean:{SECRET}@m2"]\n',
        "marathon.lg.urls[1]",
        "not an http(s) URL",
        id="bad scheme with user:pass@",
    ),
    pytest.param(
        f'[marathon.lg]\nurls = ["http://10.0.0.1:8080/?token={SECRET}"]\n',
        "marathon.lg.urls[0]",
        "query",
        id="marathon url with a token query",
    ),
    pytest.param(
        f'[marathon.lg]\nurls = "http://ocean:{SECRET}@10.0.0.1:8080"\n',
        "marathon.lg.urls",
        "expected an array",
        id="urls as a string (type error echoes the input)",
    ),
    pytest.param(
        f'[notify]\nsms = "http://ocean:{SECRET}@sender:6066/api"\n',
        "notify.sms",
        "credentials",
        id="notify.sms user:pass@",
    ),
    pytest.param(
        f'[notify]\nmail = "http://sender:6066/api?access_token={SECRET}#frag"\n',
        "notify.mail",
        "fragment",
        id="notify.mail token query",
    ),
    pytest.param(
        f'[lb]\nnginx_status_url = "http://u:{SECRET}@127.0.0.1/status"\n',
        "lb.nginx_status_url",
        "credentials",
        id="nginx status url user:pass@",
    ),
]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "oceand.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "key", "fragment"), LEAKY)
def test_config_errors_do_not_echo_secrets(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    assert info.value.key == key, str(info.value)
    assert fragment in info.value.message, str(info.value)
    assert SECRET not in str(info.value)
    assert SECRET not in info.value.message and "***" in str(info.value)


def test_check_config_does_not_print_the_password(tmp_path: Path) -> None:
    conf = _write(tmp_path, f'[marathon.lg]\nurls = ["http://ocean:{SECRET}@10.0.0.1:8080"]\n')
    p = subprocess.run(
        [sys.executable, "-m", "oceand", "check-config", "--config", str(conf)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert p.returncode == 2, p.stderr
    assert "marathon.lg.urls[0]" in p.stderr and "http://***@10.0.0.1:8080" in p.stderr, p.stderr
    assert SECRET not in p.stdout + p.stderr


async def test_reload_rejected_log_does_not_carry_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    conf = _write(tmp_path, '[server]\nlisten = "127.0.0.1:0"\n[store]\nurl = "sqlite:///oceand.db"\n')
    daemon = Daemon(load_config(conf))
    await daemon.start()
    try:
        conf.write_text(conf.read_text() + f'[marathon.lg]\nurls = ["http://ocean:{SECRET}@10.0.0.1:8080"]\n')
        with caplog.at_level(logging.INFO):
            assert await daemon.reload() is False
        (rec,) = [r for r in caplog.records if getattr(r, "event", None) == "reload_rejected"]
        assert "marathon.lg.urls[0]" in rec.getMessage()
        assert SECRET not in rec.getMessage()
    finally:
        await daemon.stop()
