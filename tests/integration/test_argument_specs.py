"""Every role declares its variables in meta/argument_specs.yml, and a wrong or missing one stops the play at once.

The first half reads the files: each role's ``main`` entry point lists exactly the variables of
defaults/main.yml, with identical defaults. The second half runs the real phase playbooks with a bad value
or a missing inventory variable and proves the run stops at the role's argument validation, naming the
variable, before any database is contacted or any file is written.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.integration.playbook_runs import db_inventory, run_playbook

PROJECT_DIR = Path(__file__).resolve().parents[2]
ROLES = sorted(p.name for p in (PROJECT_DIR / "roles").iterdir() if (p / "tasks" / "main.yml").is_file())


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def _main_options(role: str) -> dict:
    specs = _yaml(PROJECT_DIR / "roles" / role / "meta" / "argument_specs.yml")
    return (specs.get("argument_specs") or {}).get("main", {}).get("options") or {}


@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_role_has_main_entry_point(role):
    spec_file = PROJECT_DIR / "roles" / role / "meta" / "argument_specs.yml"

    assert spec_file.is_file(), f"roles/{role} has no meta/argument_specs.yml"
    main = (_yaml(spec_file).get("argument_specs") or {}).get("main")
    assert main, f"roles/{role}/meta/argument_specs.yml has no 'main' entry point"
    assert main.get("short_description"), f"roles/{role}: the main entry point needs a short_description"


@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_options_match_defaults_exactly(role):
    defaults_file = PROJECT_DIR / "roles" / role / "defaults" / "main.yml"
    defaults = _yaml(defaults_file) if defaults_file.is_file() else {}
    options = _main_options(role)

    assert sorted(set(defaults) - set(options)) == [], f"roles/{role}: in defaults but not in argument_specs"
    assert sorted(set(options) - set(defaults)) == [], f"roles/{role}: in argument_specs but not in defaults"
    different = {
        name: {"defaults/main.yml": defaults[name], "argument_specs.yml": options[name].get("default")}
        for name in defaults
        if options[name].get("default") != defaults[name]
    }
    assert different == {}, f"roles/{role}: defaults differ"


@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_options_are_prefixed_typed_and_described(role):
    options = _main_options(role)

    bad = {
        name: sorted(key for key in ("type", "description") if not spec.get(key))
        for name, spec in options.items()
        if not spec.get("type") or not spec.get("description")
    }
    unprefixed = [name for name in options if not name.startswith(f"{role}_")]

    assert bad == {}, f"roles/{role}: options without type or description"
    assert unprefixed == [], f"roles/{role}: public variables must start with {role}_"


@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_role_readme_documents_every_variable(role):
    readme = PROJECT_DIR / "roles" / role / "README.md"

    assert readme.is_file(), f"roles/{role} has no README.md"
    text = readme.read_text()
    sections = {line[3:].strip() for line in text.splitlines() if line.startswith("## ")}
    missing_sections = sorted({"Requirements", "Role Variables", "Example Playbook", "Hooks"} - sections)
    undocumented = [name for name in _main_options(role) if name not in text]

    assert missing_sections == [], f"roles/{role}/README.md lacks sections"
    assert undocumented == [], f"roles/{role}/README.md does not document these variables"


# --- real ansible-playbook runs --------------------------------------------------------------------------------


@pytest.fixture
def unreachable_inventory(tmp_path):
    """A db host whose database nobody listens for: a run that got past validation would fail connecting."""
    return db_inventory(
        tmp_path,
        tracehub_environment="staging",
        db_host="127.0.0.1",
        db_port=9,
        db_name="tracehub",
        db_user="tracehub",
        db_password="not:used@%",
        tracehub_backup_dir=str(tmp_path / "backups"),
        tracehub_records_dir=str(tmp_path / "runs"),
    )


def _run(inventory: Path, playbook: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_playbook(inventory, playbook, *extra, timeout=300)


def _failed_task(output: str) -> str:
    """The name of the task whose result was the first ``fatal:`` line."""
    task = ""
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line[len("TASK [") : line.rfind("]")]
        elif line.startswith("fatal:"):
            return task
    return ""


@pytest.mark.parametrize(
    ("playbook", "role", "extra_var", "expected"),
    [
        ("backup.yml", "backup", "backup_verify=maybe", "backup_verify"),
        ("backup.yml", "backup", "backup_async_timeout=soon", "backup_async_timeout"),
        ("migrate.yml", "migrate", "migrate_backup_max_age=an-hour", "migrate_backup_max_age"),
        ("validate.yml", "validate", "validate_db_ssl_mode=sometimes", "validate_db_ssl_mode"),
    ],
)
def test_argument_specs_wrong_value_fails_at_validation_naming_it(
    unreachable_inventory, tmp_path, playbook, role, extra_var, expected
):
    completed = _run(unreachable_inventory, playbook, "-e", extra_var)
    output = completed.stdout + completed.stderr

    assert completed.returncode != 0, output
    assert _failed_task(completed.stdout).startswith(f"tracehub.deploy.{role} : Validating arguments"), output
    assert "Validation of arguments failed" in output
    assert expected in output
    # Stopped before any work: nothing written, no database contacted.
    assert not (tmp_path / "backups").exists()
    assert not (tmp_path / "runs").exists()
    assert "127.0.0.1:9" not in output


@pytest.mark.parametrize(
    ("playbook", "role", "missing"),
    [
        ("backup.yml", "backup", "tracehub_backup_dir"),
        ("migrate.yml", "migrate", "tracehub_backup_dir"),
        ("backup.yml", "backup", "db_name"),
    ],
)
def test_argument_specs_missing_inventory_variable_fails_at_validation_naming_it(
    unreachable_inventory, tmp_path, playbook, role, missing
):
    hosts_file = unreachable_inventory / "hosts.yml"
    data = yaml.safe_load(hosts_file.read_text())
    del data["all"]["children"]["db"]["hosts"]["test-db"][missing]
    hosts_file.write_text(yaml.safe_dump(data))

    completed = _run(unreachable_inventory, playbook)
    output = completed.stdout + completed.stderr

    assert completed.returncode != 0, output
    assert _failed_task(completed.stdout).startswith(f"tracehub.deploy.{role} : Validating arguments"), output
    assert f"'{missing}' is undefined" in output
    assert not (tmp_path / "backups").exists()
