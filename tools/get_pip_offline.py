"""Stand-in for the get-pip bootstrap script that ansible-test downloads from a host this machine cannot reach.

ansible-test runs this file as ``__main__`` inside each fresh sanity virtualenv with pip's install arguments
(``pip==X`` and friends). pip is bootstrapped from the interpreter's own bundled wheel (ensurepip), then asked
to install exactly what ansible-test wanted, from the package index.
"""

from __future__ import annotations

import ensurepip
import os
import ssl
import subprocess
import sys

UNSUPPORTED_BY_PIP = {"--no-setuptools", "--no-wheel"}

ensurepip.bootstrap(upgrade=True)
arguments = [arg for arg in sys.argv[1:] if arg not in UNSUPPORTED_BY_PIP]
# ansible-test hides pip's configuration (PIP_CONFIG_FILE=/dev/null), and the bundled pip trusts only its own
# CA bundle: point it at the system's, which a TLS-inspecting proxy's CA is added to. The pip it installs
# (24.2+) uses the system trust store by itself.
system_cafile = ssl.get_default_verify_paths().openssl_cafile
if os.path.exists(system_cafile):
    arguments = ["--cert", system_cafile, *arguments]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *arguments]))
