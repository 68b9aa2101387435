from __future__ import annotations

import pytest

from ansible_collections.tracehub.deploy.plugins.module_utils.errors import ConnectionFailedError, LockHeldError
from ansible_collections.tracehub.deploy.plugins.module_utils.pg import connect, operation_lock, table_row_counts


def test_operation_lock_refuses_second_run_and_names_first(fresh_db):
    with operation_lock(fresh_db, "migrate"):
        with pytest.raises(LockHeldError) as caught:
            with operation_lock(fresh_db, "back up"):
                pass
    assert "tracehub.deploy migrate" in caught.value.msg
    assert "Cannot back up" in caught.value.msg


def test_operation_lock_waits_then_names_holder(fresh_db):
    with operation_lock(fresh_db, "migrate"):
        with pytest.raises(LockHeldError, match=r"tracehub\.deploy migrate"):
            with operation_lock(fresh_db, "restore", wait_seconds=0.3):
                pass


def test_operation_lock_released_after_use(fresh_db):
    with operation_lock(fresh_db, "migrate"):
        pass
    with operation_lock(fresh_db, "migrate"):
        pass


def test_connect_with_wrong_password_names_credentials(fresh_db):
    from dataclasses import replace

    with pytest.raises(ConnectionFailedError, match="rejected the credentials") as caught:
        connect(replace(fresh_db, password="wrong"))
    assert "wrong" not in caught.value.msg


def test_table_row_counts_exact(fresh_db):
    connection = connect(fresh_db)
    with connection.cursor() as cur:
        cur.execute("CREATE TABLE b (x int); CREATE TABLE a (x int); INSERT INTO b SELECT generate_series(1, 7)")
    connection.commit()
    assert table_row_counts(connection) == {"a": 0, "b": 7}
    connection.close()
