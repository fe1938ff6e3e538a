"""The monitor's gate and pages in process (memory backends, the ASGI app through
httpx): authentication, the non-loopback refusal, CSRF on every action, no secret in
any page, /metrics in the Prometheus text format."""

from __future__ import annotations

import asyncio
import base64
import re
import uuid
from collections.abc import Iterator

import httpx
import pytest

from fleet import Fleet
from fleet.errors import ConfigError
from fleet.monitor import create_app
from fleet.monitor._auth import Auth, check_bind, is_loopback
from fleet.monitor._render import hide_secrets
from fleet.testing.worker import running_worker


def _double(x: int) -> int:
    return 2 * x


def _leak(url: str) -> None:
    raise RuntimeError(f"cannot reach {url}")


@pytest.fixture
def app() -> Iterator[Fleet]:
    url = f"memory://{uuid.uuid4().hex}"
    fleet = Fleet(broker_url=url, state_url=url)

    double = fleet.task(name="monitor.double")(_double)
    leak = fleet.task(name="monitor.leak")(_leak)

    with running_worker(fleet):
        assert double(21).result(timeout=30) == 42
        failed = leak("amqp://admin:hunter2@rabbit:5672/")
        with pytest.raises(Exception, match="cannot reach"):
            failed.result(timeout=30)
    fleet.failed_id = failed.id  # type: ignore[attr-defined]
    yield fleet
    fleet.close()


def call(app: Fleet, auth: Auth, method: str, path: str, **kw: object) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(app, auth))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.request(method, path, **kw)  # type: ignore[arg-type]

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.0.0.5", False),
        ("::", False),
        ("example.org", False),
    ],
)
def test_bind_without_auth_only_on_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    if loopback:
        check_bind(host, Auth())
    else:
        with pytest.raises(ConfigError, match="without authentication"):
            check_bind(host, Auth())
    check_bind(host, Auth(token="t"))  # with auth, anywhere


def test_auth_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET__MONITOR_AUTH", "ops:pw")
    assert Auth.from_settings(Fleet().settings) == Auth(user="ops", password="pw")
    monkeypatch.setenv("FLEET__MONITOR_AUTH", "no-colon")
    with pytest.raises(ConfigError, match="user:password"):
        Auth.from_settings(Fleet().settings)


def test_token_and_basic_auth_gate_every_path(app: Fleet) -> None:
    token = Auth(token="tok-123")
    for path in ("/", "/invocations", "/metrics", "/static/htmx.min.js", "/runners"):
        refused = call(app, token, "GET", path)
        assert refused.status_code == 401 and "fleet" not in refused.text.split(":")[0]
    assert call(app, token, "GET", "/", headers={"Authorization": "Bearer tok-123"}).is_success
    assert call(app, token, "GET", "/", headers={"Authorization": "Bearer nope"}).status_code == 401
    cookie = {"Cookie": "fleet_monitor=tok-123"}
    assert call(app, token, "GET", "/", headers=cookie).is_success
    visit = call(app, token, "GET", "/invocations?token=tok-123")
    assert visit.status_code == 303 and "token" not in visit.headers["location"]
    basic = Auth(user="ops", password="pw")
    good = base64.b64encode(b"ops:pw").decode()
    bad = base64.b64encode(b"ops:px").decode()
    assert call(app, basic, "GET", "/", headers={"Authorization": f"Basic {good}"}).is_success
    refused = call(app, basic, "GET", "/", headers={"Authorization": f"Basic {bad}"})
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")


def test_actions_need_post_and_the_csrf_token(app: Fleet) -> None:
    failed = app.failed_id  # type: ignore[attr-defined]
    auth = Auth()
    assert call(app, auth, "GET", f"/invocations/{failed}/retry").status_code in (400, 405)
    forged = call(app, auth, "POST", f"/invocations/{failed}/retry", data={"csrf": "x" * 64})
    assert forged.status_code == 403
    assert call(app, auth, "POST", "/queues/default/purge", data={}).status_code == 403
    assert app.runtime().state.get([failed])[0].status.value == "FAILED"  # untouched
    page = call(app, auth, "GET", f"/invocations/{failed}")
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert token is not None
    # The token belongs to this process's app instance: a new app has a new key.
    web = create_app(app, auth)

    async def with_token() -> tuple[int, int]:
        transport = httpx.ASGITransport(app=web)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            page = await client.get(f"/invocations/{failed}")
            mine = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
            assert mine is not None
            stale = await client.post(
                f"/invocations/{failed}/cancel", data={"csrf": token.group(1)}
            )
            done = await client.post(f"/invocations/{failed}/cancel", data={"csrf": mine[1]})
            return stale.status_code, done.status_code

    assert asyncio.run(with_token()) == (403, 303)


def test_no_secret_is_rendered(app: Fleet) -> None:
    failed = app.failed_id  # type: ignore[attr-defined]
    for path in (f"/invocations/{failed}", "/invocations", "/"):
        text = call(app, Auth(), "GET", path).text
        assert "hunter2" not in text, path
    assert "admin:***@rabbit" in call(app, Auth(), "GET", f"/invocations/{failed}").text
    assert (
        hide_secrets("x mongodb://u:p4ss@h/db?password=zz y")
        == "x mongodb://u:***@h/db?password=*** y"
    )
    assert hide_secrets("token=abc&a=1 secret=s") == "token=***&a=1 secret=***"


def test_metrics_text_format(app: Fleet) -> None:
    text = call(app, Auth(), "GET", "/metrics").text
    samples = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.fullmatch(r"# (HELP \w+ .+|TYPE \w+ gauge)", line), line
            continue
        name, value = line.rsplit(" ", 1)
        assert re.fullmatch(r'\w+(\{(\w+="[^"]*",?)+\})?', name), line
        samples[name] = float(value)
    assert samples['fleet_invocations{status="SUCCESS"}'] == 1
    assert samples['fleet_invocations{status="FAILED"}'] == 1
    assert samples['fleet_queue_ready_messages{queue="default"}'] == 0


def test_bad_filters_are_named(app: Fleet) -> None:
    response = call(app, Auth(), "GET", "/invocations?status=BOGUS")
    assert response.status_code == 400 and "BOGUS" in response.text
    response = call(app, Auth(), "GET", "/invocations?since=yesterdayish")
    assert response.status_code == 400 and "since" in response.text
    response = call(app, Auth(), "GET", "/invocations/" + "0" * 32)
    assert response.status_code == 400 and "no invocation" in response.text


def test_large_values_are_cut_with_a_link_to_all_of_them() -> None:
    url = f"memory://{uuid.uuid4().hex}"
    fleet = Fleet(broker_url=url, state_url=url, large_value_threshold=5000)
    double = fleet.task(name="monitor.double")(_double)
    big = "x" * 9000 + "THE-END"
    with running_worker(fleet):
        done = double(big)
        assert done.result(timeout=30) == big * 2
    stored = fleet.runtime().state.get([done.id])[0]
    assert stored.args.startswith(b"\xc1fleet-blob:")  # kept as a blob: read through it
    page = call(fleet, Auth(), "GET", f"/invocations/{done.id}").text
    assert "xxxx" in page and "THE-END" not in page
    assert f'href="/invocations/{done.id}/args">show all' in page
    assert f'href="/invocations/{done.id}/result">show all' in page
    assert "THE-END" in call(fleet, Auth(), "GET", f"/invocations/{done.id}/args").text
    fleet.close()


def test_ids_in_text_become_links_and_the_rest_stays_text() -> None:
    from fleet.monitor._render import id_links

    one = "0123456789abcdef0123456789abcdef"
    html = str(id_links(f"<script>x</script> from {one} via amqp://u:pw@h/"))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert f'<a class="id" href="/invocations/{one}">{one}</a>' in html
    assert "pw@" not in html


def test_config_show_never_prints_the_monitor_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    from fleet.config import describe, load_settings

    monkeypatch.setenv("FLEET__MONITOR_TOKEN", "tok-secret-1")
    monkeypatch.setenv("FLEET__MONITOR_AUTH", "ops:pw-secret-2")
    text = describe(load_settings())
    assert "tok-secret-1" not in text and "pw-secret-2" not in text
    assert "monitor_token" in text and "'***'" in text
