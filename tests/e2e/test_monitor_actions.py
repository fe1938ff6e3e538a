"""The monitor's actions that need a stack of their own, through a real browser: requeue
of a dead letter (run at last by a worker that knows the task), purge with
confirmation, and the gate on a non-loopback bind (refused without auth; with a token,
unauthenticated requests get 401).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from fleet import Status
from fleet.testing._procs import ManagedProcess, free_port
from tests.e2e.monitor_stack import APP, ROOT, MonitorStack, browser, monitor_stack, shot, status_of
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(180)


def test_requeue_end_to_end(tmp_path: Path) -> None:
    with monitor_stack(tmp_path) as stack, browser() as chromium:
        unaware = stack.worker(late=False)  # does not know `late`: dead-letters it
        _, base = stack.monitor()
        late = stack.tasks.late(4)
        wait_until(lambda: late.status is Status.FAILED, "the dead letter", 60)
        unaware.stop()
        stack.worker(late=True)
        page = chromium.new_page()
        page.goto(base + "/queues/default/dead")
        assert page.locator("#dead tr.letter").count() == 1
        assert late.id in page.locator("#dead").inner_text()
        page.check("#dead tr.letter input[type=checkbox]")  # this one, by its id
        page.click("#requeue")
        page.wait_for_selector("#message")
        assert "requeued 1" in page.locator("#message").inner_text()
        assert late.result(timeout=60) == 40
        page.goto(base + "/queues/default/dead")
        assert page.locator("#dead tr.letter").count() == 0
        # Purge: a second dead letter, an unconfirmed purge (kept), a confirmed one.
        stack.workers[-1].stop()
        stack.worker(late=False)
        again = stack.tasks.late(5)
        wait_until(lambda: again.status is Status.FAILED, "the second dead letter", 60)
        page.goto(base + "/queues/default/dead")
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#purge")
        page.wait_for_selector("#message")
        assert "not purged" in page.locator("#message").inner_text()
        assert page.locator("#dead tr.letter").count() == 1
        page.fill("#confirm", "default")
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#purge")
        page.wait_for_selector("#message")
        assert "purged 1" in page.locator("#message").inner_text()
        assert stack.app.runtime().broker.stats("default").dead == 0


def test_non_loopback_bind_refused_without_auth(tmp_path: Path) -> None:
    with monitor_stack(tmp_path) as stack, browser() as chromium:
        proc = _start_expecting_exit(stack)
        assert proc.returncode == 3
        assert "refusing to serve the monitor on '0.0.0.0'" in stack.log(proc)
        _, base = stack.monitor("0.0.0.0", FLEET__MONITOR_TOKEN="s3cret-token")
        page = chromium.new_page()
        assert page.goto(base + "/").status == 401
        assert "fleet_invocations" not in page.content()
        assert page.goto(base + "/?token=wrong").status == 401
        assert page.goto(base + "/?token=s3cret-token").status == 200
        assert "s3cret-token" not in page.content() and "?token" not in page.url
        assert page.goto(base + "/invocations").status == 200  # the cookie carries it
        page.goto(base + "/")
        shot(page, "overview-authenticated")


def _start_expecting_exit(stack: MonitorStack) -> ManagedProcess:
    port = free_port()
    argv = [sys.executable, "-m", "fleet", "monitor", "--app", APP, "--host", "0.0.0.0"]
    proc = ManagedProcess.start(
        "fleet monitor",
        [*argv, "--port", str(port)],
        log_path=stack.folder / "refused.log",
        env={**os.environ, **stack.env},
        cwd=ROOT,
    )
    stack.monitors.append(proc)
    wait_until(lambda: proc.returncode is not None, "the refusal", 60)
    assert status_of(f"http://127.0.0.1:{port}/") == 0  # nothing ever listened
    return proc
