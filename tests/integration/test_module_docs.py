"""Every module renders with ansible-doc and documents its examples and return values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

PROJECT_DIR = Path(__file__).resolve().parents[2]
MODULES = sorted(p.stem for p in (PROJECT_DIR / "plugins" / "modules").glob("*.py") if p.stem != "__init__")


def test_every_module_is_in_the_action_group():
    runtime = yaml.safe_load((PROJECT_DIR / "meta" / "runtime.yml").read_text())
    assert sorted(runtime["action_groups"]["all"]) == MODULES


@pytest.mark.parametrize("module", MODULES)
def test_module_renders_with_ansible_doc(module):
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-doc"), "--json", f"tracehub.deploy.{module}"],
        cwd=PROJECT_DIR,
        env=dict(os.environ, ANSIBLE_CONFIG=str(PROJECT_DIR / "ansible.cfg")),
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    doc = json.loads(completed.stdout)[f"tracehub.deploy.{module}"]
    assert doc["doc"]["short_description"] and not doc["doc"]["short_description"].endswith(".")
    assert doc["examples"].strip()
    assert doc["return"]
    for name, option in doc["doc"]["options"].items():
        assert option.get("description"), f"{module}: option {name} has no description"
        assert option.get("type"), f"{module}: option {name} has no type"
    assert doc["doc"]["attributes"]["check_mode"]["support"] in {"full", "partial"}
