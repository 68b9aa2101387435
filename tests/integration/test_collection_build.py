"""The collection builds with ansible-galaxy and ships what Galaxy users need, nothing local."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_collection_build_ships_plugins_and_no_local_state(tmp_path):
    completed = subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path), str(PROJECT_DIR)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    (artifact,) = tmp_path.glob("tracehub-deploy-*.tar.gz")
    with tarfile.open(artifact) as archive:
        names = archive.getnames()
    assert "plugins/modules/run_record.py" in names
    assert "plugins/module_utils/pg.py" in names
    assert "roles/run_context/tasks/main.yml" in names
    assert "meta/runtime.yml" in names
    leaked = [n for n in names if n.split("/")[0] in {".venv", ".local", ".collections", ".git", "build"}]
    assert leaked == []
