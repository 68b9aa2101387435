# SPDX-License-Identifier: GPL-3.0-or-later
"""The only Ansible-aware util: argument-spec builders and adapters from AnsibleModule to the library."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ansible_collections.tracehub.deploy.plugins.module_utils.pg import ConnInfo
from ansible_collections.tracehub.deploy.plugins.module_utils.runner import BASE_ENV, CommandResult, Run


def pg_connection_spec() -> dict[str, dict[str, Any]]:
    """Connection options shared by every database module (documented by the ``postgres`` doc fragment)."""
    return {
        "login_host": {"type": "str", "default": "localhost", "aliases": ["host"]},
        "login_port": {"type": "int", "default": 5432, "aliases": ["port"]},
        "login_user": {"type": "str", "default": "postgres", "aliases": ["login"]},
        "login_password": {"type": "str", "no_log": True},
        "login_db": {"type": "str", "required": True, "aliases": ["db", "database"]},
        "ssl_mode": {
            "type": "str",
            "default": "prefer",
            "choices": ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"],
        },
        "connect_timeout": {"type": "int", "default": 10},
    }


def conn_info_from(params: Mapping[str, Any], application_name: str = "tracehub.deploy") -> ConnInfo:
    """The ConnInfo that the module's connection options describe."""
    return ConnInfo(
        host=params["login_host"],
        port=int(params["login_port"]),
        user=params["login_user"],
        password=params.get("login_password"),
        dbname=params["login_db"],
        sslmode=params["ssl_mode"],
        connect_timeout=int(params["connect_timeout"]),
        application_name=application_name,
    )


def runner_for(module: Any) -> Run:
    """A ``Run`` backed by ``module.run_command``: argv lists, no shell, ``LC_ALL=C``."""

    def run(argv: Sequence[str], extra_env: Mapping[str, str]) -> CommandResult:
        rc, out, err = module.run_command(list(argv), environ_update=dict(BASE_ENV) | dict(extra_env), check_rc=False)
        return CommandResult(tuple(argv), rc, out, err)

    return run
