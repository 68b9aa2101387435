# SPDX-License-Identifier: GPL-3.0-or-later
"""Connection options shared by the collection's database modules."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Host name or IP address of the PostgreSQL server.
    type: str
    default: localhost
    aliases: [host]
  login_port:
    description:
      - TCP port of the PostgreSQL server.
    type: int
    default: 5432
    aliases: [port]
  login_user:
    description:
      - Role to connect as.
    type: str
    default: postgres
    aliases: [login]
  login_password:
    description:
      - Password of O(login_user). Never logged, never put on a command line; command-line clients
        receive it through a temporary pgpass file readable only by the module's user.
      - Characters such as V(%), V(@) and V(:) need no escaping.
    type: str
  login_db:
    description:
      - Database to work on.
    type: str
    required: true
    aliases: [db, database]
  ssl_mode:
    description:
      - libpq C(sslmode) for the connection.
    type: str
    default: prefer
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  connect_timeout:
    description:
      - Seconds to wait for the server to answer before failing.
    type: int
    default: 10
requirements:
  - psycopg2 (psycopg2-binary)
"""
