from __future__ import annotations

import os
import stat

import psycopg2
import pytest

from ansible_collections.tracehub.deploy.plugins.module_utils.errors import ConnectionFailedError
from ansible_collections.tracehub.deploy.plugins.module_utils.pg import (
    ConnInfo,
    count_differences,
    explain_connection_error,
    pgpass_file,
)

CONN = ConnInfo(host="db.example", port=5433, user="app", password="p%ss@w:rd", dbname="tracehub")


def test_describe_never_shows_password():
    assert CONN.describe() == "app@db.example:5433/tracehub"
    assert "p%ss" not in CONN.describe()


def test_sqlalchemy_url_round_trips_special_characters():
    url = CONN.sqlalchemy_url()
    assert url.password == "p%ss@w:rd"
    assert "p%ss@w:rd" not in str(url)
    from sqlalchemy.engine import make_url

    assert make_url(url.render_as_string(hide_password=False)).password == "p%ss@w:rd"


def test_pgpass_file_is_private_escaped_and_removed():
    with pgpass_file(CONN) as path:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert open(path).read() == "db.example:5433:*:app:p%ss@w\\:rd\n"
    assert not os.path.exists(path)


def test_pgpass_file_without_password_yields_none():
    with pgpass_file(ConnInfo()) as path:
        assert path is None


@pytest.mark.parametrize(
    ("driver_text", "expected"),
    [
        ('FATAL:  password authentication failed for user "app"', "rejected the credentials"),
        ('connection to server at "db.example" failed: Connection refused', "no PostgreSQL server answered"),
        ('FATAL:  database "tracehub" does not exist', "does not exist"),
        ('could not translate host name "db.example" to address', "does not resolve"),
    ],
)
def test_explain_connection_error_names_cause(driver_text, expected):
    error = explain_connection_error(CONN, psycopg2.OperationalError(driver_text))
    assert isinstance(error, ConnectionFailedError)
    assert expected in error.msg
    assert "p%ss@w:rd" not in error.msg


def test_count_differences_names_each_table_and_a_missing_side():
    assert count_differences({"a": 1, "b": 2, "d": 4}, {"a": 1, "b": 3, "c": 0}) == {
        "b": {"expected": 2, "restored": 3},
        "c": {"expected": None, "restored": 0},
        "d": {"expected": 4, "restored": None},
    }
