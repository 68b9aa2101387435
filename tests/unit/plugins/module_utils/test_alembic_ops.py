"""Pure helpers of alembic_ops: planning over a real ScriptDirectory (no database), messages, config."""

from __future__ import annotations

import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from ansible_collections.tracehub.deploy.plugins.module_utils import alembic_ops
from ansible_collections.tracehub.deploy.plugins.module_utils.alembic_ops import (
    AppliedStep,
    MigrationInfo,
    Plan,
    PlanStep,
)
from ansible_collections.tracehub.deploy.plugins.module_utils.errors import MigrationError

ENV_PY = "raise RuntimeError('env.py is never run by the planning tests')\n"


def _revision(versions: Path, rev: str, down: str | None, doc: str) -> None:
    (versions / f"{rev}_rev.py").write_text(
        textwrap.dedent(
            f'''\
            """{doc}

            Longer description that is not the message.
            """

            revision = {rev!r}
            down_revision = {down!r}
            branch_labels = None
            depends_on = None


            def upgrade():
                pass


            def downgrade():
                pass
            '''
        )
    )


def _scripts(tmp_path: Path, chain: list[tuple[str, str | None]]) -> str:
    location = tmp_path / "alembic"
    (location / "versions").mkdir(parents=True)
    (location / "env.py").write_text(ENV_PY)
    for rev, down in chain:
        _revision(location / "versions", rev, down, f"Revision {rev} message.")
    return str(location)


LINEAR = [("001", None), ("002", "001"), ("003", "002"), ("004", "003"), ("005", "004"), ("006", "005")]


@pytest.fixture
def linear(tmp_path):
    return alembic_ops.load_scripts(_scripts(tmp_path, LINEAR))


@pytest.mark.parametrize(
    ("current", "target", "direction", "revisions"),
    [
        ((), "head", "upgrade", ["001", "002", "003", "004", "005", "006"]),
        (("002",), "head", "upgrade", ["003", "004", "005", "006"]),
        (("002",), "heads", "upgrade", ["003", "004", "005", "006"]),
        (("002",), "004", "upgrade", ["003", "004"]),
        (("002",), "+1", "upgrade", ["003"]),
        (("006",), "head", "none", []),
        (("006",), "004", "downgrade", ["006", "005"]),
        (("006",), "-1", "downgrade", ["006"]),
        (("003",), "base", "downgrade", ["003", "002", "001"]),
        (("004",), "head-1", "upgrade", ["005"]),
        ((), "base", "none", []),
    ],
)
def test_plan_from_linear_scripts_orders_steps(linear, current, target, direction, revisions):
    plan = alembic_ops.plan_from(linear, current, target, "tracehub")
    assert plan.direction == direction
    assert [s.revision for s in plan.steps] == revisions


def test_plan_from_steps_carry_message_and_down_revision(linear):
    plan = alembic_ops.plan_from(linear, ("002",), "004")
    assert plan.steps[0] == PlanStep("003", "Revision 003 message.", "002")
    assert (plan.current, plan.target) == ("002", "004")


def test_plan_from_unique_prefix_resolves_full_id(tmp_path):
    scripts = alembic_ops.load_scripts(_scripts(tmp_path, [("a1b2c3", None), ("d4e5f6", "a1b2c3")]))
    assert alembic_ops.plan_from(scripts, ("a1b2c3",), "d4e").target == "d4e5f6"


def test_plan_from_unknown_target_lists_heads_and_known(linear):
    with pytest.raises(MigrationError, match="Target revision '999' is not among the scripts") as caught:
        alembic_ops.plan_from(linear, ("002",), "999")
    assert "heads: 006" in caught.value.msg
    assert "known revisions: 001, 002, 003, 004, 005, 006" in caught.value.msg


def test_plan_from_unknown_current_names_revision_and_causes(linear):
    with pytest.raises(MigrationError, match="is at Alembic revision 'abc123'") as caught:
        alembic_ops.plan_from(linear, ("abc123",), "head", "tracehub")
    assert "tracehub" in caught.value.msg
    assert "wrong directory" in caught.value.msg
    assert "newer application version" in caught.value.msg
    assert caught.value.details["revision"] == "abc123"


def test_plan_from_multiple_heads_names_them_and_suggests_merge(tmp_path):
    scripts = alembic_ops.load_scripts(_scripts(tmp_path, [("001", None), ("002a", "001"), ("002b", "001")]))
    with pytest.raises(MigrationError, match=r"several heads \(002a, 002b\)") as caught:
        alembic_ops.plan_from(scripts, ("001",), "head")
    assert "alembic merge" in caught.value.msg
    assert caught.value.details["heads"] == ["002a", "002b"]


def test_plan_from_other_branch_target_refused(tmp_path):
    scripts = alembic_ops.load_scripts(_scripts(tmp_path, [("001", None), ("002a", "001"), ("002b", "001")]))
    with pytest.raises(MigrationError, match="another branch"):
        alembic_ops.plan_from(scripts, ("002a",), "002b")


@pytest.mark.parametrize(("current", "target", "match"), [(("006",), "+1", "goes past the head"), ((), "-1", "below")])
def test_plan_from_relative_beyond_the_ends_refused(linear, current, target, match):
    with pytest.raises(MigrationError, match=match):
        alembic_ops.plan_from(linear, current, target)


def test_plan_from_several_current_heads_refused(linear):
    with pytest.raises(MigrationError, match="several Alembic heads"):
        alembic_ops.plan_from(linear, ("002", "003"), "head")


def test_load_scripts_missing_directory_names_it(tmp_path):
    with pytest.raises(MigrationError, match="is not a directory"):
        alembic_ops.load_scripts(str(tmp_path / "nope"))


def test_load_scripts_without_env_py_names_it(tmp_path):
    (tmp_path / "versions").mkdir()
    with pytest.raises(MigrationError, match=r"has no env\.py"):
        alembic_ops.load_scripts(str(tmp_path))


def test_load_scripts_broken_revision_reports_first_line(tmp_path):
    location = _scripts(tmp_path, [("001", None)])
    (Path(location) / "versions" / "002_bad.py").write_text("revision = '002'\ndown_revision = '999'\n")
    with pytest.raises(MigrationError, match="Reading the Alembic scripts in") as caught:
        alembic_ops.load_scripts(location)
    assert "999" in caught.value.msg
    assert "Traceback" not in caught.value.msg


def test_known_revisions_oldest_first(linear):
    assert alembic_ops.known_revisions(linear) == ["001", "002", "003", "004", "005", "006"]


def test_make_config_keeps_url_out_of_options_and_escapes_percent():
    url = object()
    cfg = alembic_ops.make_config("/srv/a%b/alembic", url=url, on_version_apply=print)
    assert cfg.get_main_option("script_location") == "/srv/a%b/alembic"
    assert cfg.attributes["url"] is url
    assert cfg.attributes["on_version_apply"] is print
    assert "connection" not in cfg.attributes
    assert cfg.get_main_option("sqlalchemy.url") is None
    assert cfg.config_file_name is None


@pytest.mark.parametrize(
    ("doc", "expected"),
    [("Add tenancy tables.\n\nMore.", "Add tenancy tables."), ("\n  Strip me  \n", "Strip me"), ("", "")],
)
def test_doc_line_first_nonblank_line(doc, expected):
    assert alembic_ops.doc_line(doc) == expected


def test_first_line_prefers_driver_error():
    exc = RuntimeError("wrapper text")
    exc.orig = ValueError('relation "x" does not exist\nLINE 1: ...')
    assert alembic_ops.first_line(exc) == 'relation "x" does not exist'
    assert alembic_ops.first_line(KeyError()) == "KeyError"


def _plan(direction="upgrade"):
    steps = (PlanStep("004", "Add organization_id.", "003"), PlanStep("005", "Assign VIBOTAJ.", "004"))
    if direction == "downgrade":
        return Plan("006", "004", direction, (PlanStep("006", "Constraints.", "005"), PlanStep("005", "x", "004")))
    return Plan("003", "005", direction, steps)


def test_plan_previous_of_each_step():
    assert [_plan().previous_of(i) for i in range(2)] == ["003", "004"]
    assert [_plan("downgrade").previous_of(i) for i in range(2)] == ["006", "005"]


def test_step_failure_message_names_revision_cause_and_position():
    msg = alembic_ops.step_failure_message("tracehub", _plan(), 1, "deadlock detected", ("004",), "/a")
    assert msg.startswith("Upgrading tracehub: revision 005 (Assign VIBOTAJ.) failed: deadlock detected.")
    assert "left at the previous revision 004" in msg
    assert "(004) stay applied" in msg
    assert "autocommit_block" not in msg


def test_step_failure_message_unexpected_position_says_so():
    msg = alembic_ops.step_failure_message("tracehub", _plan(), 0, "boom", ("002",), "/a")
    assert "now at revision 002 (expected 003)" in msg


def test_step_failure_message_concurrent_index_suggests_autocommit_block():
    cause = "CREATE INDEX CONCURRENTLY cannot run inside a transaction block"
    msg = alembic_ops.step_failure_message("tracehub", _plan(), 0, cause, ("003",), "/srv/alembic")
    assert "Revision 004 creates or drops an index CONCURRENTLY" in msg
    assert "with op.get_context().autocommit_block():" in msg
    assert "upgrade()" in msg


def test_failed_index_from_position_left_at():
    assert alembic_ops.failed_index(_plan(), ("004",), 0) == 1
    assert alembic_ops.failed_index(_plan(), ("zzz",), 1) == 1
    assert alembic_ops.failed_index(_plan(), ("zzz",), 7) == 1


def test_downgrade_refusal_names_revisions_undone():
    exc = alembic_ops.downgrade_refusal(_plan("downgrade"), "tracehub")
    assert "Refusing to downgrade tracehub from 006 to 004" in exc.msg
    assert "006 (Constraints.), 005 (x)" in exc.msg
    assert "Nothing was changed" in exc.msg
    # Operators run playbooks, where allow_downgrade is no variable: the message names the playbook way too.
    assert "playbooks/rollback.yml -e rollback_level=1 -e rollback_target_revision=004" in exc.msg
    assert exc.details["would_undo"] == ["006", "005"]


@pytest.mark.parametrize(
    ("plan", "dry_run", "expected"),
    [
        (
            Plan("002", "006", "upgrade", (PlanStep("003", "", "002"),) * 4),
            False,
            "Upgraded tracehub from 002 to 006 (4 revisions).",
        ),
        (
            Plan(None, "001", "upgrade", (PlanStep("001", "", None),)),
            True,
            "Would upgrade tracehub from base to 001 (1 revision).",
        ),
        (
            Plan("003", "002", "downgrade", (PlanStep("003", "", "002"),)),
            False,
            "Downgraded tracehub from 003 to 002 (1 revision).",
        ),
        (Plan("006", "006", "none"), False, "tracehub is already at revision 006; nothing to do."),
    ],
)
def test_describe_move_sentences(plan, dry_run, expected):
    assert alembic_ops.describe_move("tracehub", plan, dry_run) == expected


def test_describe_state_pending_and_at_head():
    pending = (PlanStep("003", "", "002"), PlanStep("004", "", "003"))
    behind = MigrationInfo("tracehub", ("002",), ("004",), pending, False, "/a")
    assert alembic_ops.describe_state(behind) == "tracehub is at 002; 2 revisions pending up to 004."
    at_head = MigrationInfo("tracehub", ("004",), ("004",), (), True, "/a")
    assert "nothing pending" in alembic_ops.describe_state(at_head)
    empty = MigrationInfo("tracehub", (), ("004",), pending, False, "/a")
    assert alembic_ops.describe_state(empty).startswith("tracehub is at base;")


def test_collector_times_each_step_and_reports_progress():
    ticks = iter([10.0, 10.5, 12.0])
    events = []
    collector = alembic_ops._Collector("upgrade", lambda *e: events.append(e), clock=lambda: next(ticks))
    collector.start()
    for rev in ("004", "005"):
        script = SimpleNamespace(doc=f"Revision {rev}.\n\nmore")
        step = SimpleNamespace(up_revision_ids=(rev,), up_revisions=(script,), is_upgrade=True)
        collector(ctx=None, step=step, heads={rev}, run_args={})
    assert collector.applied == [AppliedStep("004", "Revision 004.", 0.5), AppliedStep("005", "Revision 005.", 1.5)]
    assert events == [("004", "Revision 004.", 0.5), ("005", "Revision 005.", 1.5)]


def test_migration_result_as_dict_rounds_durations():
    result = alembic_ops.MigrationResult(
        "tracehub",
        "003",
        "004",
        "upgrade",
        (PlanStep("004", "m", "003"),),
        (AppliedStep("004", "m", 0.123456),),
        True,
        False,
    )
    data = result.as_dict()
    assert data["applied"] == [{"revision": "004", "message": "m", "duration_s": 0.123}]
    assert data["pending"] == [{"revision": "004", "message": "m", "down_revision": "003"}]
    assert data["sql"] == []
