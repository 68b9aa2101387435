#!/usr/bin/python
# Copyright: (c) 2026, tracehub.deploy developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
---
module: nginx_upstream
short_description: Switch an nginx upstream to the blue or green application instances, verified
description:
  - Renders the C(upstream) block that sends traffic to one colour's instances and compares it with the file
    in place; unchanged when identical.
  - Otherwise writes it atomically, validates the whole configuration with C(nginx -t), reloads gracefully
    (C(nginx -s reload), so in-flight requests finish on the old workers), then proves through the load
    balancer (O(verify_url)) that new requests reach the target colour (response header C(X-TraceHub-Colour)).
  - If validation, the reload or the proof fails, the previous file is put back (and reloaded when the
    new one had been), and the task fails; traffic is unchanged.
  - Records the active colour and a switch history in a JSON state file on the load balancer host (O(state_path)).
  - The load balancer dialect sits behind a driver boundary in C(module_utils/nginx_upstream.py); nginx is
    the only driver today.
version_added: 1.1.0
options:
  name:
    description: Name of the nginx upstream (the main configuration's C(proxy_pass http://<name>)).
    type: str
    default: tracehub
  colour:
    description: Colour to send traffic to (V(blue), V(green), or any label the instances report).
    type: str
    required: true
  servers:
    description: Addresses (C(host:port)) of the target colour's instances.
    type: list
    elements: str
    required: true
  path:
    description: The upstream file the main nginx configuration includes inside C(http {}).
    type: path
    required: true
  state_path:
    description: JSON file recording the active colour and the switch history; not written when omitted.
    type: path
  run_id:
    description: Id of the deployment run, written into the switch history.
    type: str
  max_fails:
    description: nginx C(max_fails) of each server (failures before a server is taken out for O(fail_timeout)).
    type: int
    default: 1
  fail_timeout:
    description: nginx C(fail_timeout) of each server, in seconds.
    type: int
    default: 5
  keepalive:
    description:
      - Idle keepalive connections to the upstream per nginx worker; V(0) opens a connection per request.
      - Only useful when the main configuration sets C(proxy_http_version 1.1) and clears C(Connection).
    type: int
    default: 0
  nginx_binary:
    description: The nginx program.
    type: str
    default: nginx
  nginx_conf:
    description: Main configuration file given to nginx with C(-c); the compiled-in default when omitted.
    type: path
  nginx_prefix:
    description: Prefix directory given to nginx with C(-p).
    type: path
  nginx_error_log:
    description: Error log given to nginx with C(-e), so that C(nginx -t) never touches the system's log.
    type: path
  reload:
    description:
      - Reload the running load balancer after a change. V(false) only writes and validates the file (first
        install, before nginx starts); nothing is verified then.
    type: bool
    default: true
  reload_command:
    description: Command that reloads nginx instead of C(nginx -s reload), e.g. V([systemctl, reload, nginx]).
    type: list
    elements: str
  verify_url:
    description: URL through the load balancer that proves the switch (e.g. its C(/health)); no proof when omitted.
    type: str
  verify_requests:
    description: Consecutive answers from O(colour) that count as proof.
    type: int
    default: 5
  verify_timeout:
    description: Seconds to wait for the proof before restoring the previous upstream.
    type: float
    default: 30
  verify_headers:
    description: Extra request headers for the proof (e.g. C(Host)).
    type: dict
    default: {}
attributes:
  check_mode:
    support: full
    details: Renders and compares only; reports the commands it would run. Nothing is written, validated or reloaded.
  diff_mode:
    support: full
extends_documentation_fragment:
  - tracehub.deploy.attributes
notes:
  - Run it on the load balancer host. For several load balancers use C(serial) so that one is switched and
    proven before the next.
  - Keep the previous colour's instances running until the switch is proven; the reload lets in-flight
    requests finish on them.
seealso:
  - module: tracehub.deploy.upstream_watch
author:
  - tracehub.deploy developers (@tracehub)
"""

EXAMPLES = r"""
- name: Switch the load balancer to green
  tracehub.deploy.nginx_upstream:
    colour: green
    servers: [10.0.1.21:8000, 10.0.1.22:8000]
    path: /etc/nginx/tracehub/upstream.conf
    state_path: /var/lib/tracehub-deploy/lb-state.json
    reload_command: [systemctl, reload, nginx]
    verify_url: http://127.0.0.1/health
    run_id: "{{ hostvars['localhost']['tracehub_run_id'] | default('adhoc') }}"

- name: Switch a project-local nginx back to blue
  tracehub.deploy.nginx_upstream:
    colour: blue
    servers: [127.0.0.1:18101, 127.0.0.1:18102]
    path: "{{ playbook_dir }}/../.local/nginx/lb-1/conf/upstream.conf"
    nginx_conf: "{{ playbook_dir }}/../.local/nginx/lb-1/conf/nginx.conf"
    nginx_prefix: "{{ playbook_dir }}/../.local/nginx/lb-1"
    verify_url: http://127.0.0.1:18080/health
"""

RETURN = r"""
upstream:
  description: What the switch did.
  returned: always
  type: dict
  sample:
    kind: nginx
    name: tracehub
    path: /etc/nginx/tracehub/upstream.conf
    colour: green
    previous_colour: blue
    servers: [10.0.1.21:8000, 10.0.1.22:8000]
    verified: true
    verified_requests: 5
    state_path: /var/lib/tracehub-deploy/lb-state.json
    history_entry: {at: "2026-12-03T19:30:00Z", from: blue, to: green, verified_requests: 5}
commands:
  description: Commands run (in check mode, the ones that would run), including those of a restore.
  returned: always
  type: list
  elements: list
  sample: [[nginx, -t, -q], [nginx, -s, reload]]
diff:
  description: The upstream file before and after (diff mode).
  returned: when diff mode is on
  type: dict
  sample: {before: "upstream tracehub {\n    server 10.0.1.11:8000;\n}\n", after: "..."}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tracehub.deploy.plugins.module_utils.common import runner_for
from ansible_collections.tracehub.deploy.plugins.module_utils.errors import DeployError
from ansible_collections.tracehub.deploy.plugins.module_utils.nginx_upstream import (
    NginxDriver,
    Upstream,
    VerifySpec,
    switch,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "default": "tracehub"},
            "colour": {"type": "str", "required": True},
            "servers": {"type": "list", "elements": "str", "required": True},
            "path": {"type": "path", "required": True},
            "state_path": {"type": "path"},
            "run_id": {"type": "str"},
            "max_fails": {"type": "int", "default": 1},
            "fail_timeout": {"type": "int", "default": 5},
            "keepalive": {"type": "int", "default": 0},
            "nginx_binary": {"type": "str", "default": "nginx"},
            "nginx_conf": {"type": "path"},
            "nginx_prefix": {"type": "path"},
            "nginx_error_log": {"type": "path"},
            "reload": {"type": "bool", "default": True},
            "reload_command": {"type": "list", "elements": "str"},
            "verify_url": {"type": "str"},
            "verify_requests": {"type": "int", "default": 5},
            "verify_timeout": {"type": "float", "default": 30},
            "verify_headers": {"type": "dict", "default": {}},
        },
        supports_check_mode=True,
    )
    p = module.params
    driver = NginxDriver(
        binary=p["nginx_binary"],
        conf=p["nginx_conf"],
        prefix=p["nginx_prefix"],
        error_log=p["nginx_error_log"],
        reload_command=tuple(p["reload_command"] or ()),
    )
    upstream = Upstream(
        name=p["name"],
        colour=p["colour"],
        servers=tuple(p["servers"]),
        max_fails=p["max_fails"],
        fail_timeout=p["fail_timeout"],
        keepalive=p["keepalive"],
    )
    verify = None
    if p["verify_url"]:
        verify = VerifySpec(
            url=p["verify_url"],
            colour=p["colour"],
            requests=p["verify_requests"],
            timeout=p["verify_timeout"],
            headers={str(k): str(v) for k, v in p["verify_headers"].items()},
        )
    try:
        result = switch(
            p["path"],
            upstream,
            driver,
            runner_for(module),
            verify=verify,
            state_path=p["state_path"],
            run_id=p["run_id"],
            dry_run=module.check_mode,
            reload=p["reload"],
        )
    except DeployError as exc:
        module.fail_json(msg=str(exc), **exc.details)
    output = {
        "changed": result.changed,
        "msg": result.msg,
        "upstream": result.as_dict(),
        "commands": result.commands,
    }
    output["upstream"].pop("commands")
    if module._diff:
        output["diff"] = {"before": result.before, "after": result.after}
    module.exit_json(**output)


if __name__ == "__main__":
    main()
