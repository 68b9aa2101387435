"""Run one TraceHub instance as a local gunicorn process (the local inventory's process manager).

Real hosts run the same gunicorn command under systemd (see roles/app). Locally there is no init
system to lean on, so this small manager starts gunicorn in its own session, remembers what it started
(pid file plus a fingerprint of the configuration) and stops it gracefully. It prints one JSON
document: ``{"changed": bool, "state": "running"|"stopped", "pid": ..., "msg": ...}``; exit code 1
and ``"failed": true`` when the instance could not be started or stopped.

    python -m tracehub_app.ctl start  --dir .local/app/blue-1 --bind 127.0.0.1:18101 [--workers 2 --threads 4]
    python -m tracehub_app.ctl stop   --dir .local/app/blue-1
    python -m tracehub_app.ctl status --dir .local/app/blue-1

``--dir`` holds ``config.json`` (0600, written by the app role), ``gunicorn.pid``, ``app.log`` and
``fingerprint``. As root, workers drop to ``--user`` (default ``nobody``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent.parent


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    with contextlib.suppress(OSError):
        return b"gunicorn" in cmdline.read_bytes()
    return True


def _read_pid(state_dir: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        pid = int((state_dir / "gunicorn.pid").read_text().strip())
        return pid if _pid_alive(pid) else None
    return None


def _accepting(bind: str) -> bool:
    host, _colon, port = bind.rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host or "127.0.0.1", int(port))) == 0


def _fingerprint(args: argparse.Namespace) -> str:
    digest = hashlib.sha256((Path(args.dir) / "config.json").read_bytes())
    digest.update(json.dumps([args.bind, args.workers, args.threads, args.user, str(APP_DIR)]).encode())
    return digest.hexdigest()


def _log_tail(state_dir: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join((state_dir / "app.log").read_text(errors="replace").splitlines()[-lines:])
    return ""


def gunicorn_argv(args: argparse.Namespace, python: str = sys.executable) -> list[str]:
    """The gunicorn command line (identical in the systemd unit the app role writes for real hosts)."""
    argv = [
        python,
        "-m",
        "gunicorn",
        "tracehub_app.wsgi:create_app()",
        "--chdir",
        str(APP_DIR),
        "--bind",
        args.bind,
        "--worker-class",
        "gthread",
        "--workers",
        str(args.workers),
        "--threads",
        str(args.threads),
        # Loaded once in the master: v1.3 below 006 makes gunicorn exit at once instead of
        # respawning workers that fail to boot.
        "--preload",
        "--graceful-timeout",
        "30",
        "--timeout",
        "30",
        "--keep-alive",
        "5",
        "--pid",
        str(Path(args.dir) / "gunicorn.pid"),
        "--access-logfile",
        "-",
        "--error-logfile",
        "-",
    ]
    if worker_user(args, python) is not None:
        group = pwd.getpwnam(args.user).pw_gid
        argv += ["--user", args.user, "--group", str(group)]
    return argv


def _reachable_by_others(path: Path) -> bool:
    return all(parent.stat().st_mode & stat.S_IXOTH for parent in path.resolve().parents)


def worker_user(args: argparse.Namespace, python: str = sys.executable) -> str | None:
    """The user the workers drop to: ``--user`` when started by root and the interpreter is reachable.

    A Python installed under /root (pyenv) cannot be read by ``nobody``: the workers would fail on their
    first lazy import. Then they keep the caller's user, and ``start`` says so in its message.
    """
    if os.geteuid() != 0 or not args.user:
        return None
    if not (_reachable_by_others(Path(python)) and _reachable_by_others(APP_DIR / "tracehub_app")):
        return None
    return args.user


def start(args: argparse.Namespace) -> dict[str, object]:
    """Start the instance unless it already runs with the same configuration."""
    state_dir = Path(args.dir)
    fingerprint = _fingerprint(args)
    pid = _read_pid(state_dir)
    fp_file = state_dir / "fingerprint"
    if pid is not None:
        if fp_file.exists() and fp_file.read_text().strip() == fingerprint:
            return {"changed": False, "state": "running", "pid": pid, "msg": f"Already running as pid {pid}."}
        stop(args)
    if _accepting(args.bind):
        return {
            "failed": True,
            "changed": False,
            "state": "stopped",
            "msg": f"{args.bind} is taken by another process; stop it or choose another port.",
        }
    env = dict(os.environ, TRACEHUB_APP_CONFIG=str(state_dir / "config.json"), PYTHONUNBUFFERED="1")
    log = (state_dir / "app.log").open("ab")
    process = subprocess.Popen(
        gunicorn_argv(args),
        cwd=APP_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = _log_tail(state_dir)
            reason = next((line for line in reversed(tail.splitlines()) if "refuses to start" in line), tail)
            return {
                "failed": True,
                "changed": True,
                "state": "stopped",
                "rc": process.returncode,
                "msg": f"gunicorn exited with {process.returncode} while starting: {reason}",
            }
        if _accepting(args.bind) and _read_pid(state_dir) is not None:
            fp_file.write_text(fingerprint + "\n")
            return {
                "changed": True,
                "state": "running",
                "pid": process.pid,
                "msg": f"Started as pid {process.pid} on {args.bind}.",
            }
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    return {
        "failed": True,
        "changed": True,
        "state": "stopped",
        "msg": f"gunicorn did not listen on {args.bind} within {args.timeout} s: {_log_tail(state_dir, 5)}",
    }


def stop(args: argparse.Namespace) -> dict[str, object]:
    """Stop gracefully (SIGTERM: in-flight requests finish), SIGKILL after the timeout."""
    state_dir = Path(args.dir)
    pid = _read_pid(state_dir)
    if pid is None:
        return {"changed": False, "state": "stopped", "pid": None, "msg": "Not running."}
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.2)
    forced = _pid_alive(pid)
    if forced:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        (state_dir / "fingerprint").unlink()
    return {
        "changed": True,
        "state": "stopped",
        "pid": pid,
        "msg": f"Stopped pid {pid}{' (killed after the timeout)' if forced else ''}.",
    }


def status(args: argparse.Namespace) -> dict[str, object]:
    """Whether the instance runs."""
    pid = _read_pid(Path(args.dir))
    return {
        "changed": False,
        "state": "running" if pid else "stopped",
        "pid": pid,
        "msg": f"Running as pid {pid}." if pid else "Not running.",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--dir", required=True, help="instance directory holding config.json")
    parser.add_argument("--bind", default="127.0.0.1:8000")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--user", default="nobody", help="user the workers run as when started by root")
    parser.add_argument("--timeout", type=float, default=40.0)
    args = parser.parse_args(argv)
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    result = {"start": start, "stop": stop, "status": status}[args.action](args)
    print(json.dumps(result))
    return 1 if result.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
