"""Queue definitions: strict parsing, and queues as a checked contract."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from fleet import Fleet
from fleet.broker import QueueStats
from fleet.cli import main
from fleet.cli.queues import queue_notes, unacked
from fleet.errors import ConfigError, TaskDefinitionError
from fleet.queues import MAX_TTL, QueueTable, parse_queues
from fleet.worker.process import WorkerProcess

QUEUES = """\
queues:
  default: {}
  cpu: {}
  reports:
    tasks: ["*.reports.*"]
"""


def write_queues(folder: Path, text: str = QUEUES) -> str:
    path = folder / "queues.yaml"
    path.write_text(text)
    return str(path)


def memory_app(folder: Path, **settings: Any) -> Fleet:
    url = f"memory://{uuid.uuid4().hex}"
    return Fleet(broker_url=url, state_url=url, queues_file=write_queues(folder), **settings)


# -- issue 10 item 12: values that used to pass -------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('dead_letter: "no"', "dead_letter must be true or false (a YAML boolean, unquoted)"),
        ("dead_letter: 0", "dead_letter must be true or false"),
        ("delivery_limit: true", "delivery_limit must be a positive integer, got True"),
        ("max_length: true", "max_length must be a positive integer, got True"),
        ("prefetch: false", "prefetch must be an integer >= 0, got False"),
        ("tasks: [1, null]", "tasks must be a list of task-name patterns (non-empty strings)"),
        ('tasks: [""]', "tasks must be a list of task-name patterns"),
        ("tasks: a.b", "tasks must be a list of task-name patterns"),
        ("message_ttl: 4294968", f"message_ttl must be seconds > 0 and at most {MAX_TTL}"),
        ("message_ttl: .inf", "message_ttl must be seconds > 0"),
        ("message_ttl: true", "message_ttl must be seconds > 0"),
        (
            "{max_length: 5, overflow: reject-publish-dlx}",
            "overflow 'reject-publish-dlx' needs type: classic",
        ),
        ("{type: classic, max_priority: 256}", "max_priority must be at most 255"),
    ],
)
def test_bad_queue_values_name_file_queue_key_and_what_is_allowed(
    body: str, message: str, tmp_path: Path
) -> None:
    import yaml

    text = "queues:\n  jobs: " + body if body.startswith("{") else f"queues:\n  jobs:\n    {body}\n"
    with pytest.raises(ConfigError) as info:
        parse_queues(yaml.safe_load(text), "queues file 'q.yaml'")
    assert "queues file 'q.yaml'" in str(info.value)
    assert "queue 'jobs'" in str(info.value)
    assert message in str(info.value)


def test_good_values_still_pass() -> None:
    table = parse_queues(
        {
            "queues": {
                "a": {"dead_letter": False, "delivery_limit": 3, "message_ttl": MAX_TTL},
                "b": {"type": "classic", "overflow": "reject-publish-dlx", "max_length": 2},
                "c": {"tasks": ["x.*", "*.y"]},
            }
        },
        "test",
    )
    assert table.get("a").dead_letter is False
    assert table.get("c").tasks == ("x.*", "*.y")


def test_default_must_be_a_name() -> None:
    with pytest.raises(ConfigError, match="'default' must be a queue name, got None"):
        parse_queues({"default": None, "queues": {}}, "test")


def test_worker_queues_typo_is_refused(tmp_path: Path) -> None:
    table = parse_queues({"queues": {"reports": {}}}, "test")
    with pytest.raises(ConfigError) as info:
        table.worker_queues(["reprots"], [], what="--queues")
    text = str(info.value)
    assert "--queues: queue 'reprots' is not defined" in text
    assert "['default', 'reports']" in text and "did you mean 'reports'?" in text


app = Fleet(broker_url="memory://test-queues-cli", state_url="memory://test-queues-cli")


def test_fleet_worker_with_an_undefined_queue_exits_before_starting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fleet.worker.supervisor import Supervisor

    monkeypatch.setattr(Supervisor, "run", lambda self: 99)  # never start processes here
    monkeypatch.setattr("fleet.cli.worker.setup_logging", lambda *a: None)  # leave handlers
    assert main(["worker", "--app", f"{__name__}:app", "--queues", "default,reprots"]) == 3
    assert "queue 'reprots' is not defined" in capsys.readouterr().err


def test_worker_help_says_app_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["worker", "--help"])
    assert "(required)" in " ".join(capsys.readouterr().out.split())


# -- issue 17 item 1: queues are a checked contract -----------------------------------------


def _noop() -> None: ...


def test_task_on_an_undefined_queue_fails_at_decoration(tmp_path: Path) -> None:
    fleet = memory_app(tmp_path)
    with pytest.raises(TaskDefinitionError) as info:
        fleet.task(queue="cpuu")(_noop)
    text = str(info.value)
    assert "queue='cpuu'" in text and "['default', 'cpu', 'reports']" in text
    assert "did you mean 'cpu'?" in text
    fleet.task(queue="cpu")(_noop)  # a defined one is fine


def test_without_a_queues_file_only_the_default_queue_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no configs/queues.yaml here
    url = f"memory://{uuid.uuid4().hex}"
    fleet = Fleet(broker_url=url, state_url=url, default_queue="main")
    assert fleet.settings.queues_file == ""
    assert fleet.queues.names() == ["main"]
    with pytest.raises(TaskDefinitionError, match=r"defined queues: \['main'\]"):
        fleet.task(queue="cpu")(_noop)
    assert fleet.task(queue="main")(_noop).options.queue == "main"


def test_queue_from_the_settings_tasks_section_is_checked_too(tmp_path: Path) -> None:
    name = f"{__name__}._noop"
    fleet = memory_app(tmp_path, tasks={name: {"queue": "gpu"}})
    with pytest.raises(TaskDefinitionError, match="queue 'gpu' is not defined"):
        fleet.task(_noop)


def test_undefined_queues_are_never_declared(tmp_path: Path) -> None:
    table = parse_queues({"queues": {"cpu": {"delivery_limit": 2}}}, "test")
    assert [s.name for s in table.declarable(["cpu", "cpuu", "default"])] == ["cpu", "default"]
    fleet = memory_app(tmp_path)
    declared: list[str] = []
    runtime = fleet.runtime()
    real = runtime.broker.declare
    runtime.broker.declare = lambda specs: (  # type: ignore[method-assign]  # spy
        declared.extend(s.name for s in specs),
        real(specs),
    )[-1]
    runtime.declare(["cpu", "cpuu", "cpuu.urgent"])
    assert declared == ["cpu"]
    fleet.close()


class _Task:
    def __init__(self, name: str, queue: str | None = None) -> None:
        self.name = name
        self.options = type("Options", (), {"queue": queue})()


def test_a_worker_given_no_queues_consumes_where_its_tasks_route(tmp_path: Path) -> None:
    table = parse_queues(
        {"queues": {"default": {}, "cpu": {}, "reports": {"tasks": ["*.reports.*"]}}}, "t"
    )
    tasks = [_Task("shop.reports.daily"), _Task("shop.x", "cpu")]
    assert table.worker_queues((), tasks) == ["default", "cpu", "reports"]
    assert table.worker_queues((), [_Task("shop.x", "cpu")]) == ["default", "cpu"]
    assert table.worker_queues((), [_Task("shop.y")]) == ["default"]
    assert table.worker_queues((), []) == ["default", "cpu", "reports"]  # no tasks: all
    assert table.worker_queues(["cpu"], tasks) == ["cpu"]

    fleet = memory_app(tmp_path)
    fleet.task(queue="cpu")(_noop)
    assert WorkerProcess(fleet).queues == ["default", "cpu"]
    fleet.close()


def test_status_shows_queues_holding_pending_invocations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import dataclasses

    fleet = memory_app(tmp_path)
    task = fleet.task(queue="cpu")(_noop)
    task()
    # An invocation recorded before its queue left the queues file.
    records, _ = fleet.prepare(task, [task.bind((), {})])
    fleet.runtime().state.register([dataclasses.replace(records[0], queue="ghost")])
    monkeypatch.setattr("fleet.cli.load", lambda path: fleet)
    assert main(["status"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "pending 1" in lines["cpu"] and "NO CONSUMERS for 1 waiting" in lines["cpu"]
    assert "pending 1" in lines["ghost"] and "NOT DEFINED" in lines["ghost"]
    assert "pending 0" in lines["default"]


def test_queue_notes_and_unknown_unacked() -> None:
    stats = QueueStats("q", 0, -1, 0, 0, declared=False)
    assert unacked(stats) == "-"
    notes = queue_notes(stats, defined=True)
    assert "not declared on the broker (fleet queues declare)" in notes
    assert "no consumers" in notes
    assert queue_notes(QueueStats("q", 3, 0, 1, 0), defined=True) == []


def test_table_without_file_has_the_default_queue() -> None:
    assert QueueTable((), "main").names() == ["main"]
