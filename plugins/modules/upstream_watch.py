#!/usr/bin/python
# Copyright: (c) 2026, tracehub.deploy developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
---
module: upstream_watch
short_description: Watch health and error rate through a load balancer for a monitoring window
description:
  - Sends GET requests to O(urls) round robin for O(duration) seconds and counts failures (non-2xx answers,
    connection errors, and answers from a colour other than O(expect_colour)).
  - Reports the error rate, latency percentiles, the colours seen and the first failed samples.
  - With O(fail_on_breach) (default) the task fails when the error rate exceeds O(max_error_rate) or
    O(max_consecutive_failures) failures come in a row, so that a C(rescue) can switch traffic back.
  - Read-only; C(changed) is always false.
version_added: 1.1.0
options:
  urls:
    description: URLs through the load balancer (e.g. C(/health) and a read-only API path).
    type: list
    elements: str
    required: true
  duration:
    description: Length of the monitoring window in seconds.
    type: float
    default: 60
  interval:
    description: Seconds between requests.
    type: float
    default: 0.5
  max_error_rate:
    description: Highest acceptable share of failed requests (V(0.01) is 1 %).
    type: float
    default: 0.01
  max_consecutive_failures:
    description: Stop the window early, breached, after this many failures in a row.
    type: int
    default: 5
  expect_colour:
    description: Colour every answer must come from (response header C(X-TraceHub-Colour)); any when omitted.
    type: str
  headers:
    description: Request headers (e.g. C(X-TraceHub-User) for tenancy-aware endpoints).
    type: dict
    default: {}
  request_timeout:
    description: Seconds to wait for each answer.
    type: float
    default: 5
  fail_on_breach:
    description: Fail the task when the window is breached (the result still carries the evidence).
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details: Read-only; it sends the same requests in check mode.
  diff_mode:
    support: none
extends_documentation_fragment:
  - tracehub.deploy.attributes
seealso:
  - module: tracehub.deploy.nginx_upstream
author:
  - tracehub.deploy developers (@tracehub)
"""

EXAMPLES = r"""
- name: Watch green through the load balancer for five minutes
  tracehub.deploy.upstream_watch:
    urls:
      - http://127.0.0.1/health
      - http://127.0.0.1/api/shipments?limit=5
    headers:
      X-TraceHub-User: "{{ cutover_smoke_user }}"
    duration: 300
    max_error_rate: 0.01
    expect_colour: green
"""

RETURN = r"""
watch:
  description: What the monitoring window saw.
  returned: always
  type: dict
  sample:
    requests: 120
    failures: 0
    error_rate: 0.0
    breached: false
    reason: error rate 0.00% within the threshold 1.00%
    duration_seconds: 60.2
    latency_ms_p50: 4.1
    latency_ms_p95: 9.8
    colours: {green: 120}
    failed_samples: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tracehub.deploy.plugins.module_utils.errors import DeployError
from ansible_collections.tracehub.deploy.plugins.module_utils.nginx_upstream import WatchSpec, watch


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "urls": {"type": "list", "elements": "str", "required": True},
            "duration": {"type": "float", "default": 60},
            "interval": {"type": "float", "default": 0.5},
            "max_error_rate": {"type": "float", "default": 0.01},
            "max_consecutive_failures": {"type": "int", "default": 5},
            "expect_colour": {"type": "str"},
            "headers": {"type": "dict", "default": {}},
            "request_timeout": {"type": "float", "default": 5},
            "fail_on_breach": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    p = module.params
    spec = WatchSpec(
        urls=tuple(p["urls"]),
        duration=p["duration"],
        interval=p["interval"],
        max_error_rate=p["max_error_rate"],
        max_consecutive_failures=p["max_consecutive_failures"],
        expect_colour=p["expect_colour"],
        request_timeout=p["request_timeout"],
        headers={str(k): str(v) for k, v in p["headers"].items()},
    )
    try:
        result = watch(spec)
    except DeployError as exc:
        module.fail_json(msg=str(exc), **exc.details)
    msg = (
        f"Watched {', '.join(spec.urls)} for {result.duration_seconds:g} s: {result.requests} requests, "
        f"{result.failures} failed ({result.reason})."
    )
    if result.breached and p["fail_on_breach"]:
        module.fail_json(msg=f"Monitoring window breached: {msg}", changed=False, watch=result.as_dict())
    module.exit_json(changed=False, msg=msg, watch=result.as_dict())


if __name__ == "__main__":
    main()
