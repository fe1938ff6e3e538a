"""The monitor's workflow pages in process (the ASGI app through httpx), over the memory
and the SQLite stores with a worker running a real workflow: the list and its filters,
a run's steps, data, signal and sub-workflow, the links from invocation pages, a 404
for what is not a run, and a history store that fails."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fleet import Fleet
from fleet import workflows as wf
from fleet.monitor import _events
from fleet.monitor._auth import Auth
from fleet.testing.worker import running_worker
from fleet.worker.leader import Leader
from fleet.workflows import Event
from tests.unit.test_monitor_web import call


@dataclass
class Stack:
    app: Fleet
    order: str
    sub: str
    step: str
    plain: str
    names: dict[str, str]


def _define(app: Fleet) -> dict[str, Any]:
    @app.task(name="shop.add")
    def add(a: int, b: int) -> int:
        return a + b

    @app.workflow(name="shop.check")
    def check(total: int) -> int:
        wf.set("checked", total)
        return total * 2

    @app.workflow(name="shop.order")
    def order(n: int) -> dict[str, Any]:
        wf.set("order", {"n": n, "note": "x" * 5000})  # cut on the page
        total = add(n, n).result()
        wf.version("pricing", 2)
        wf.now()
        approval = wf.wait_signal("approve", timeout=120)
        return {"total": total, "approval": approval, "checked": check(total).result()}

    return {"add": add, "order": order}


@pytest.fixture(scope="module", params=["memory", "sqlite"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    if request.param == "memory":
        url = f"memory://{uuid.uuid4().hex}"
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('wf') / 'fleet.db'}"
    app = Fleet(broker_url=url, state_url=url, schedule_interval=0.02, recovery_interval=0.02)
    tasks = _define(app)
    leader = Leader(app, "test-leader")  # releases a suspended workflow when due
    leader.start()
    try:
        with running_worker(app, threads=4):
            plain = tasks["add"](1, 1)
            run = tasks["order"](3)
            app.workflow_run(run.id).signal("approve", "yes")
            assert run.result(timeout=60) == {"total": 6, "approval": "yes", "checked": 12}
            assert plain.result(timeout=30) == 2
            ids = app.workflow_run(run.id).children
            step, sub = ids[0], ids[1]
            yield Stack(app, run.id, sub, step, plain.id, {"order": "shop.order"})
    finally:
        leader.stop()
        app.close()


def get(stack: Stack, path: str) -> Any:
    return call(stack.app, Auth(), "GET", path)


def run_ids(html: str) -> list[str]:
    return re.findall(r'<tr class="run"><td class="id"><a href="/workflows/([0-9a-f]+)">', html)


def test_the_list_shows_workflow_runs_newest_first(stack: Stack) -> None:
    page = get(stack, "/workflows")
    assert page.status_code == 200
    assert run_ids(page.text) == [stack.sub, stack.order]  # no plain task
    assert 'href="/workflows"' in get(stack, "/").text  # in the nav
    only = get(stack, "/workflows?workflow=shop.order")
    assert run_ids(only.text) == [stack.order]
    assert run_ids(get(stack, "/workflows?status=FAILED,RUNNING").text) == []
    assert run_ids(get(stack, "/workflows?workflow=shop.check&status=SUCCESS").text) == [stack.sub]
    first = get(stack, "/workflows?limit=1")
    assert run_ids(first.text) == [stack.sub]
    after = re.search(r'id="next" href="([^"]+)"', first.text)
    assert after is not None
    assert run_ids(get(stack, after.group(1).replace("&amp;", "&")).text) == [stack.order]
    bad = get(stack, "/workflows?workflow=shop.add")
    assert bad.status_code == 400 and "not a workflow" in bad.text


def test_a_run_page_shows_steps_data_signals_and_child_runs(stack: Stack) -> None:
    page = get(stack, f"/workflows/{stack.order}")
    assert page.status_code == 200
    text = page.text
    assert 'id="status">SUCCESS' in text
    assert f'href="/invocations/{stack.order}"' in text
    kinds = re.findall(r'<tr class="step (\w+)">', text)
    assert kinds == ["set", "call", "version", "value", "signal", "signal", "call"]
    assert "calls shop.add(3, 3)" in text
    assert f'href="/invocations/{stack.step}">{stack.step}</a> <span class="SUCCESS">' in text
    assert "version marker &#39;pricing&#39;: version 2" in text
    assert "now() = " in text
    assert "took signal &#39;approve&#39;: &#39;yes&#39;" in text
    assert re.search(r"<td><code>approve</code></td><td><code>&#39;yes&#39;</code>", text)
    assert "<code>checked</code></td><td><pre>6</pre>" in text  # the sub-workflow write
    assert f'href="/workflows/{stack.order}/data/order">show all</a>' in text
    assert "x" * 5000 not in text
    assert f'<a class="id" href="/workflows/{stack.sub}">{stack.sub}</a> shop.check' in text
    assert "&#39;approval&#39;: &#39;yes&#39;" in text  # the result
    full = get(stack, f"/workflows/{stack.order}/data/order")
    assert full.status_code == 200 and "x" * 5000 in full.text


def test_a_sub_workflow_shows_the_run_whose_data_it_shares(stack: Stack) -> None:
    text = get(stack, f"/workflows/{stack.sub}").text
    assert f'data of run</th><td><a class="id" href="/workflows/{stack.order}">' in text
    assert "<code>checked</code></td><td><pre>6</pre>" in text


def test_invocation_pages_link_to_their_runs(stack: Stack) -> None:
    own = get(stack, f"/invocations/{stack.order}").text
    assert f'id="run-page" href="/workflows/{stack.order}"' in own
    step = get(stack, f"/invocations/{stack.step}").text
    assert f'id="parent-run" href="/workflows/{stack.order}"' in step
    plain = get(stack, f"/invocations/{stack.plain}").text
    assert "run-page" not in plain and "parent-run" not in plain


def test_what_is_not_a_run_is_a_404_page(stack: Stack) -> None:
    unknown = get(stack, "/workflows/" + "f" * 32)
    assert unknown.status_code == 404
    assert "no workflow run" in unknown.text and "<nav>" in unknown.text
    plain = get(stack, f"/workflows/{stack.plain}")
    assert plain.status_code == 404 and "is not a workflow run" in plain.text
    assert get(stack, f"/workflows/{stack.order}/data/nope").status_code == 404


def test_a_history_store_that_fails_is_reported_on_the_page(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = stack.app.workflow_run(stack.order).ext.store()

    def broken(history: str) -> list[Event]:
        raise OSError("disk on fire")

    monkeypatch.setattr(store, "load", broken)
    page = get(stack, f"/workflows/{stack.order}")
    assert page.status_code == 200
    assert "cannot read this run&#39;s history: OSError: disk on fire" in page.text
    assert 'id="status">SUCCESS' in page.text


def test_odd_events_are_shown_as_such() -> None:
    odd = [
        Event(0, "call", "t", b"\xc1", ("a" * 32,)),
        Event(1, "version", "m", b"\xc1"),
        Event(2, "value", "now", b"\xc1"),
        Event(3, "signal", "s", b"\xc0"),  # a wait without timeout: None
        Event(4, "get", "k", b"\x92\xc2\xa0"),  # [False, ""]: absent
    ]
    steps = [_events.describe(e, "msgpack", {}) for e in odd]
    assert steps[0].text == "<1 bytes: not decoded>"
    assert steps[0].children[0].status == ""
    assert steps[1].text == "<1 bytes: not decoded>"
    assert steps[2].text.startswith("now() = <1 bytes, codec msgpack")
    assert steps[3].text == "waits for signal 's', no timeout"
    assert steps[4].text == "reads 'k': absent"
    assert _events.describe(Event(0, "value", "v", b"\x01"), "pickle", {}).text.startswith(
        "v() = <1 bytes, codec pickle: not decoded"
    )


def test_the_workflow_pages_need_no_workflow(tmp_path: Path) -> None:
    app = Fleet(broker_url=f"memory://{uuid.uuid4().hex}", state_url="memory://")
    page = call(app, Auth(), "GET", "/workflows")
    assert page.status_code == 200 and 'id="no-workflows"' in page.text
    app.close()
