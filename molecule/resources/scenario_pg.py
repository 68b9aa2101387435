"""The PostgreSQL server of one Molecule scenario host: start it (seeded at 002) or remove it.

Each scenario keeps its servers under its own base directory (``.local/molecule/<scenario>/pg``) on its own
ports, so scenarios never share a server with each other, with the tests or with ``make up``.

    PGPASSWORD=... python molecule/resources/scenario_pg.py up --name staging --port 55442 \\
        --base-dir .local/molecule/default/pg --dbname tracehub --user tracehub [--scale 1]
    python molecule/resources/scenario_pg.py remove --name staging --port 55442 --base-dir ...

``up`` starts the server (a running one is left alone), creates the application role and database when
missing and seeds an empty database at revision 002 with tools.seed. It prints one JSON line:
``{"changed": bool, "started": bool, "seeded": {table: rows} | null, "bindir": str}``. ``remove`` stops the
server and deletes its data; it prints ``{"changed": bool}``. The password comes from ``PGPASSWORD`` only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]
for entry in (PROJECT_DIR, PROJECT_DIR / ".collections"):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

from ansible_collections.tracehub.deploy.plugins.module_utils.errors import DeployError  # noqa: E402
from ansible_collections.tracehub.deploy.plugins.module_utils.pg import ConnInfo, connect  # noqa: E402
from tools.localpg import LocalPgError, LocalServer, find_bindir, wait_until_accepting  # noqa: E402
from tools.seed import SeedError, seed  # noqa: E402


def _is_empty(conn: ConnInfo) -> bool:
    """True when the database has no table in the public schema."""
    connection = connect(conn)
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            return cur.fetchone()[0] == 0
    finally:
        connection.close()


def up(server: LocalServer, dbname: str, user: str, password: str, scale: int) -> dict[str, object]:
    """Start the server, ensure the application database and seed it at 002 when it is empty."""
    started = server.start()
    wait_until_accepting(server)
    bindir = str(find_bindir())
    # The scenario's backups use the client programs that match this server (backup_pg_bin_dir).
    (server.base_dir / "bindir").write_text(f"{bindir}\n")
    created = server.ensure_application_database(dbname, user, password)
    conn = ConnInfo(host="127.0.0.1", port=server.port, user=user, password=password, dbname=dbname, sslmode="disable")
    seeded = seed(conn, scale=scale) if _is_empty(conn) else None
    return {"changed": started or created or seeded is not None, "started": started, "seeded": seeded, "bindir": bindir}


def remove(server: LocalServer) -> dict[str, object]:
    """Stop the server and delete its data directory."""
    existed = server.state_dir.exists() or (server.base_dir / server.name).is_symlink()
    server.remove()
    return {"changed": existed}


def main(argv: list[str] | None = None) -> int:
    """Command line; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "remove"])
    parser.add_argument("--name", required=True, help="server name (its directory under --base-dir)")
    parser.add_argument("--port", type=int, required=True, help="loopback TCP port")
    parser.add_argument("--base-dir", required=True, type=Path, help="the scenario's server directory")
    parser.add_argument("--dbname", default="tracehub")
    parser.add_argument("--user", default="tracehub")
    parser.add_argument("--scale", type=int, default=1, help="tools.seed scale (1 = production figures)")
    args = parser.parse_args(argv)

    server = LocalServer(name=args.name, port=args.port, base_dir=args.base_dir.resolve())
    try:
        if args.action == "up":
            password = os.environ.get("PGPASSWORD")
            if not password:
                print("scenario_pg: set PGPASSWORD to the application role's password", file=sys.stderr)
                return 2
            result = up(server, args.dbname, args.user, password, args.scale)
        else:
            result = remove(server)
    except (LocalPgError, SeedError, DeployError, OSError) as exc:
        print(f"scenario_pg: {args.action} {args.name} on port {args.port} failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
