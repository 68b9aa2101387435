# SPDX-License-Identifier: GPL-3.0-or-later
"""How the library runs external commands (pg_dump, pg_restore, ...).

The library never spawns processes itself: it receives a ``Run`` callable. Modules build one from
``AnsibleModule.run_command`` (see ``common.runner_for``); plain-Python callers and tests use
``subprocess_runner``. Commands are argv lists, never shell strings, and run with ``LC_ALL=C`` so
that their messages can be parsed.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a finished command left behind."""

    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        """True when the command exited 0."""
        return self.rc == 0


Run = Callable[[Sequence[str], Mapping[str, str]], CommandResult]
"""run(argv, extra_env) -> CommandResult. ``extra_env`` is added to the inherited environment."""

BASE_ENV = {"LC_ALL": "C", "LANG": "C"}


def subprocess_runner(argv: Sequence[str], extra_env: Mapping[str, str]) -> CommandResult:
    """Run argv with the inherited environment plus ``extra_env``; for use outside Ansible."""
    env = dict(os.environ) | BASE_ENV | dict(extra_env)
    completed = subprocess.run(list(argv), env=env, capture_output=True, text=True, check=False)
    return CommandResult(tuple(argv), completed.returncode, completed.stdout, completed.stderr)
