"""`oceanctl cluster` (GET /api/v1/cluster, docs/cluster.md): a daemon outside a cluster says so; two
daemons in one cluster on the real MariaDB (in this process) are listed with the shards each holds."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from oceand.cluster import assign
from oceand.config import validate_config
from oceand.ctl.main import cli
from oceand.daemon import Daemon
from oceand.store.base import MySQLURL
from tests.cli.conftest import Ctl
from tests.cluster.conftest import migrated, mysql_db  # noqa: F401
from tests.cluster.test_engine_gate import CLUSTER
from tests.cluster.test_forward_daemons import free_port
from tests.store.conftest import mysql_server  # noqa: F401


def test_a_daemon_outside_a_cluster_says_so(ctl: Ctl) -> None:
    r = ctl("cluster")
    assert (r.exit_code, r.stdout) == (0, "this daemon is not in a cluster ([cluster] enabled = false)\n")
    r = ctl("cluster", "-o", "json")
    assert (r.exit_code, json.loads(r.stdout)) == (0, {"enabled": False})


def _ctl(url: str, home: Path, *args: str) -> Result:
    env = {"OCEAND_URL": url, "OCEAND_TOKEN": None, "OCEANCTL_CONFIG": None, "XDG_CONFIG_HOME": str(home)}
    env |= {"NO_COLOR": "1", "COLUMNS": "200"}
    return CliRunner().invoke(cli, list(args), env=env, prog_name="oceanctl", catch_exceptions=False)


@pytest.mark.mysql
async def test_members_and_their_shards(migrated: MySQLURL, tmp_path: Path) -> None:  # noqa: F811
    daemons: list[Daemon] = []
    try:
        for k in range(2):
            port = free_port()
            data: dict[str, Any] = {
                "server": {"listen": f"127.0.0.1:{port}"},
                "store": {"url": f"mysql://root@127.0.0.1:3306/{migrated.database}?timeout=10"},
                "cluster": dict(CLUSTER, advertise=f"127.0.0.1:{port}"),
            }
            work = tmp_path / f"d{k}"
            work.mkdir()
            d = Daemon(validate_config(data, file=str(work / "oceand.toml"), base_dir=work, path=None))
            await d.start()
            daemons.append(d)
        url = daemons[0].url
        assert url is not None

        addrs = [d.config.cluster.advertise for d in daemons]
        want = assign.load(assign.desired_owners(addrs, 16))  # stable id (the address) -> shards

        async def settled() -> dict[str, Any]:  # both members hold their rendezvous shares: no more moves
            view: dict[str, Any] = {}
            async with asyncio.timeout(20):
                while True:
                    r = await asyncio.to_thread(_ctl, url, tmp_path, "cluster", "-o", "json")
                    assert r.exit_code == 0, r.output
                    view = json.loads(r.stdout)
                    held = {m["stable_id"]: m["shards_held"] for m in view["members"]}
                    if view["unowned"] == 0 and held == want:
                        return view
                    await asyncio.sleep(0.2)

        view = await settled()
        me = view["this_daemon"]
        r = await asyncio.to_thread(_ctl, url, tmp_path, "cluster", "--leases")
        assert r.exit_code == 0, r.output
        lines = r.stdout.splitlines()
        assert lines[0] == f"cluster gate: 16 shards, 0 unowned; this daemon is {me}"
        assert lines[1].split() == ["MEMBER", "STABLE", "ID", "ADDRESS", "SHARDS"]
        members = {line.split()[0]: line.split() for line in lines[2:4]}
        assert set(members) == {m["instance_id"] for m in view["members"]}
        for m in view["members"]:
            row = members[m["instance_id"]]
            assert row[1:4] == [m["stable_id"], m["addr"], str(m["shards_held"])]
            assert (row[4:] == ["this", "daemon"]) is (m["instance_id"] == me)
        assert lines[4].split() == ["SHARD", "OWNER", "EPOCH", "VALID"]
        shards = [line.split() for line in lines[5:]]
        assert [int(s[0]) for s in shards] == list(range(16))
        assert {s[1] for s in shards} == set(members) and {s[3] for s in shards} == {"yes"}
    finally:
        for d in reversed(daemons):
            await d.stop()
