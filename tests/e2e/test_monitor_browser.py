"""The monitor through a real browser: Chromium (Playwright) against a real `fleet
monitor` process over a real SQLite store filled by a real `fleet worker`.

Each page renders (and is saved as a screenshot), filters narrow the list, a failed
invocation shows its traceback, cancel and requeue act end to end, the list shows a
new invocation without a reload, and the gate refuses what it must.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from fleet import Status
from tests.e2e.monitor_stack import MonitorStack, browser, monitor_stack, shot
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(180)


class Shared:
    stack: MonitorStack
    base: str
    chromium: Any
    ok: str
    failed: str
    family: str


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    with monitor_stack(tmp_path_factory.mktemp("monitor")) as stack, browser() as chromium:
        stack.worker()
        s = Shared()
        s.stack, s.chromium = stack, chromium
        _, s.base = stack.monitor()
        t = stack.tasks
        t.main()  # the example's own run: a sum, a fan-out, a failure
        assert t.add(20, 22).result(timeout=60) == 42
        ok = t.add(1, 2)
        assert ok.result(timeout=60) == 3
        family = t.fan_out(3)
        assert family.result(timeout=60) == 6
        failed = t.explode("on purpose")
        wait_until(lambda: failed.status is Status.FAILED, "the failure", 60)
        s.ok, s.failed, s.family = ok.id, failed.id, family.id
        yield s


@pytest.fixture
def page(shared: Shared) -> Iterator[Any]:
    context = shared.chromium.new_context(viewport={"width": 1400, "height": 900})
    p = context.new_page()
    p.set_default_timeout(20_000)
    try:
        yield p
    finally:
        context.close()


def test_every_page_renders(shared: Shared, page: Any) -> None:
    pages = {
        "overview": ("/", "#counts"),
        "invocations": ("/invocations", "#invocations"),
        "invocation": (f"/invocations/{shared.family}", "#children"),
        "timeline": ("/timeline?window=600", "#timeline rect.bar"),
        "runners": ("/runners", "#runners"),
        "queues": ("/queues", "#queues"),
        "dead-letters": ("/queues/default/dead", "#dead"),
        "triggers": ("/triggers", "#triggers"),
        "logs": ("/logs", "#log-text"),
    }
    for name, (path, selector) in pages.items():
        response = page.goto(shared.base + path)
        assert response.status == 200, (path, response.text()[:300])
        page.wait_for_selector(selector, state="attached")
        shot(page, name)
    page.goto(shared.base + "/")
    assert page.locator("#counts td[data-status=SUCCESS]").inner_text() != "0"
    assert page.locator("#live-runners tr").count() >= 2  # header + the live process
    page.goto(shared.base + f"/invocations/{shared.family}")
    assert page.locator("#children li").count() == 3
    assert page.locator("#attempts td.SUCCESS").count() == 1  # paused, resumed: one attempt
    page.goto(shared.base + "/runners")
    assert "alive" in page.locator("#runners").inner_text()
    page.goto(shared.base + "/triggers")
    assert "exception" in page.locator("#triggers").inner_text()
    fired = page.locator("#triggers a.started").first
    fired.wait_for()
    fired.click()  # the invocation the firing started
    page.wait_for_selector("#status")
    assert "examples.monitor_tasks.alert" in page.locator("h1").inner_text()


def ids_shown(page: Any) -> set[str]:
    return {a.inner_text() for a in page.locator("#invocations tr.inv td.id a").all()}


def test_filters(shared: Shared, page: Any) -> None:
    task = "examples.monitor_tasks.explode"
    page.goto(shared.base + "/invocations")
    page.fill("input[name=task]", task)
    page.click("#filters button[type=submit]")
    page.wait_for_url("**task=*")
    assert shared.failed in ids_shown(page) and shared.ok not in ids_shown(page)
    tasks = {t.inner_text() for t in page.locator("#invocations tr.inv td:nth-child(2)").all()}
    assert tasks == {task}
    page.goto(shared.base + "/invocations?status=SUCCESS")
    shown = ids_shown(page)
    assert shared.ok in shown and shared.failed not in shown
    page.goto(shared.base + f"/invocations?parent={shared.family}")
    assert len(ids_shown(page)) == 3 and shared.family not in ids_shown(page)
    page.goto(shared.base + "/invocations?arg=" + urllib.parse.quote('"on purpose"'))
    assert ids_shown(page) == {shared.failed}
    page.goto(shared.base + "/invocations?since=1d&until=2000-01-01T00:00:00")
    assert ids_shown(page) == set()
    page.goto(shared.base + "/invocations?limit=2")
    first = ids_shown(page)
    page.click("#next")
    page.wait_for_url("**after=*")
    assert len(first) == 2 and not first & ids_shown(page)


def test_failed_detail_shows_traceback(shared: Shared, page: Any) -> None:
    page.goto(shared.base + f"/invocations/{shared.failed}")
    assert page.locator("#status").inner_text() == "FAILED"
    assert "ValueError" in page.locator("#error").inner_text()
    trace = page.locator("#traceback").inner_text()
    assert "Traceback (most recent call last)" in trace and "exploded on purpose" in trace
    assert page.locator("#args").inner_text() == "('on purpose')"
    assert page.locator("#retry").count() == 1 and page.locator("#cancel").count() == 0
    shot(page, "invocation-failed")


def test_cancel_end_to_end(shared: Shared, page: Any) -> None:
    slow = shared.stack.tasks.sleepy(120)
    wait_until(lambda: slow.status is Status.RUNNING, "the slow task to run", 60)
    page.goto(shared.base + f"/invocations/{slow.id}")
    page.click("#cancel")
    page.wait_for_selector("#message")
    assert page.locator("#status").inner_text() == "CANCELLED"
    assert slow.status is Status.CANCELLED


def test_live_update_shows_new_invocation(shared: Shared, page: Any) -> None:
    page.goto(shared.base + "/invocations")
    page.evaluate("window.__notReloaded = true")
    fresh = shared.stack.tasks.add(100, 1)
    page.wait_for_selector(f"#invocations a[href='/invocations/{fresh.id}']")
    assert page.evaluate("window.__notReloaded") is True


def test_csrf_and_secrets(shared: Shared) -> None:
    url = shared.base + f"/invocations/{shared.ok}/cancel"
    request = urllib.request.Request(url, data=b"csrf=forged", method="POST")
    assert status_of_request(request) == 403
    text = urllib.request.urlopen(shared.base + "/").read().decode()
    assert "fleet.db" in text  # the store is named...
    metrics = urllib.request.urlopen(shared.base + "/metrics").read().decode()
    assert 'fleet_invocations{status="FAILED"} 2' in metrics  # the example's and ours


def status_of_request(request: urllib.request.Request) -> int:
    try:
        with urllib.request.urlopen(request) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_timeline_zooms(shared: Shared, page: Any) -> None:
    page.goto(shared.base + "/timeline?window=3600")
    page.click("#fit")
    page.wait_for_url("**end=*")
    bars = page.locator("#timeline rect.bar")
    assert bars.count() >= 7  # every invocation ran at least once in the fitted window
    assert page.locator("#timeline rect.RUNNING").count() >= 7
    window = float(urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)["window"][0])
    page.click("#zoom-in")
    page.wait_for_url(f"**window={window / 2}*")
    page.goto(shared.base + "/timeline?window=3600")
    box = page.locator("#timeline").bounding_box()
    page.mouse.click(box["x"] + 250 + 500, box["y"] + 5)  # the chart's middle
    page.wait_for_url("**window=1800*")


def test_log_explorer_links_ids(shared: Shared, page: Any) -> None:
    page.goto(shared.base + "/logs")
    unknown = "f" * 32
    text = f"INFO run {shared.failed} failed\nINFO other {unknown} amqp://u:hunter2@h/v"
    page.fill("#log-text", text)
    page.click("#resolve")
    resolved = page.locator("#resolved")
    resolved.wait_for()
    assert page.locator(f"#resolved a[href='/invocations/{shared.failed}']").count() == 1
    assert "examples.monitor_tasks.explode FAILED" in resolved.inner_text()
    assert "[unknown]" in resolved.inner_text()
    assert "hunter2" not in page.content()
    shot(page, "logs-resolved")
