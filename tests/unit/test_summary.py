"""The demo's summary, rendered from run records built in the test."""

from __future__ import annotations

from tools.summary import render_summary

COUNTS = {"users": 45, "shipments": 23}


def _backup_phase(path: str, changed: bool, pre_migration: bool, created_at: str) -> dict:
    manifest = {
        "path": path,
        "size_bytes": 2048,
        "sha256": "ab" * 32,
        "alembic_revision": "006",
        "verified": True,
        "verification": {"restored_row_counts_match": True},
        "pre_migration": pre_migration,
        "created_at": created_at,
        "row_counts": COUNTS,
    }
    return {
        "phase": "backup",
        "status": "ok",
        "host": "staging-db",
        "environment": "staging",
        "database": "tracehub",
        "changed": changed,
        "duration_s": 1.0,
        "data": manifest,
    }


def _record(*phases: dict) -> dict:
    return {"run_id": "demo-1", "user": "ops", "controller": "vm", "git_commit": "abc", "phases": list(phases)}


def test_summary_second_run_names_the_reused_backup_by_its_own_kind():
    # Regression: a second demo labelled the first run's post-migration backup as its pre-migration backup.
    reused = _backup_phase("/b/staging-1.dump", changed=False, pre_migration=False, created_at="2026-12-03T23:30:12Z")
    text = render_summary(_record(reused, dict(reused)))

    lines = [line for line in text.splitlines() if " backup: " in line]
    note = "(no change: reused the post-migration backup of 2026-12-03T23:30:12Z)"
    assert lines == [
        f"  pre-migration backup: /b/staging-1.dump {note}",
        f"  post-migration backup: /b/staging-1.dump {note}",
    ]


def test_summary_first_run_labels_new_backups_without_a_note():
    before = _backup_phase("/b/pre.dump", changed=True, pre_migration=True, created_at="2026-12-03T23:00:00Z")
    after = _backup_phase("/b/post.dump", changed=True, pre_migration=False, created_at="2026-12-03T23:05:00Z")
    text = render_summary(_record(before, after))

    assert "  pre-migration backup: /b/pre.dump\n" in text
    assert "  post-migration backup: /b/post.dump\n" in text
    assert "verified: pg_restore --list ok, test restore row counts equal" in text
