"""docker/constraints.txt pins every runtime dependency at the version the tests ran
with (scripts/lock.py --check), and pika at a release the fast confirm path knows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fleet.broker._amqp_connection import TESTED_PIKA

ROOT = Path(__file__).resolve().parents[2]


def test_constraints_are_up_to_date() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "lock.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_the_image_gets_a_pika_the_fast_path_was_tested_with() -> None:
    pins = dict(
        line.split("==")
        for line in (ROOT / "docker" / "constraints.txt").read_text().splitlines()
        if "==" in line
    )
    assert {"pika", "aio-pika", "pymongo", "msgpack", "pyyaml", "croniter"} <= set(pins)
    assert ".".join(pins["pika"].split(".")[:2]) in TESTED_PIKA
