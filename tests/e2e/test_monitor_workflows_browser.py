"""The Workflows pages through a real browser: Chromium (Playwright) against a real
`fleet monitor` process over a SQLite store filled by a real `fleet worker` running
the example's `checkout` workflow: the list shows the run, the filter narrows it, the
run page shows its steps and data (screenshots saved with the other browser tests')."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.monitor_stack import browser, monitor_stack, shot

pytestmark = pytest.mark.timeout(180)


def test_workflows_page_and_run_page(tmp_path: Path) -> None:
    with monitor_stack(tmp_path) as stack, browser() as chromium:
        stack.worker()
        _, base = stack.monitor()
        run = stack.tasks.checkout(4)
        assert run.result(timeout=60) == 8
        plain = stack.tasks.add(1, 1)
        assert plain.result(timeout=60) == 2
        page = chromium.new_context(viewport={"width": 1400, "height": 900}).new_page()
        page.set_default_timeout(20_000)
        page.goto(base + "/")
        page.click("nav a[href='/workflows']")
        page.wait_for_selector("#runs")
        shown = {a.inner_text() for a in page.locator("#runs tr.run td.id a").all()}
        assert shown == {run.id}
        shot(page, "workflows")
        page.select_option("#workflow-filter", "examples.monitor_tasks.checkout")
        page.fill("input[name=status]", "FAILED")
        page.click("#filters button[type=submit]")
        page.wait_for_url("**status=FAILED*")
        assert page.locator("#runs tr.run").count() == 0
        page.fill("input[name=status]", "SUCCESS")
        page.click("#filters button[type=submit]")
        page.wait_for_url("**status=SUCCESS*")
        page.click(f"#runs a[href='/workflows/{run.id}']")
        page.wait_for_selector("#steps")
        assert page.locator("#status").inner_text() == "SUCCESS"
        steps = page.locator("#steps").inner_text()
        assert "calls examples.monitor_tasks.add(4, 4)" in steps and "now() =" in steps
        assert page.locator("#steps a.child").count() == 1
        data = page.locator("#data").inner_text()
        assert "items" in data and "total" in data and "8" in data
        shot(page, "workflow-run")
        page.click("#invocation")
        page.wait_for_selector("#run-page")
        page.goto(base + "/workflows/" + "0" * 32)
        assert "no workflow run" in page.locator("#missing").inner_text()
