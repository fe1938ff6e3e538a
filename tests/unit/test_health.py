"""Health files (fleet.worker.health): what `fleet probe live|ready` decide from them."""

from __future__ import annotations

from pathlib import Path

from fleet.cli import main
from fleet.worker import health


def _supervisor(folder: Path, beat: float, children: list[int], **more: object) -> None:
    data = {"beat": beat, "pid": 1, "children": children, "processes": len(children)}
    health.write(str(folder), health.SUPERVISOR, data | more)


def _process(folder: Path, pid: int, beat: float, consuming: bool, error: str = "") -> None:
    data = {"beat": beat, "consuming": consuming, "failures": 0 if consuming else 3}
    health.write(str(folder), health.process_file(pid), data | {"error": error})


def test_live_follows_the_supervisor_heartbeat_only(tmp_path: Path) -> None:
    assert "no readable" in health.live(str(tmp_path), 30, now=100)[0]
    _supervisor(tmp_path, 100.0, [7])  # its child never reported: still alive
    assert health.live(str(tmp_path), 30, now=120) == []
    assert health.live(str(tmp_path), 30, now=131) == [
        "supervisor (pid 1) last beat 31.0s ago (> 30s)"
    ]


def test_ready_needs_every_current_child_consuming(tmp_path: Path) -> None:
    _supervisor(tmp_path, 100.0, [7, 8])
    _process(tmp_path, 7, 99.0, True)
    assert health.ready(str(tmp_path), 30, now=100) == ["worker process 8 has not reported yet"]
    _process(tmp_path, 8, 99.0, False, "LinkError: connection refused")
    assert health.ready(str(tmp_path), 30, now=100) == [
        "worker process 8 is not consuming (3 failure(s) in a row: LinkError: connection refused)"
    ]
    _process(tmp_path, 8, 99.5, True)
    _process(tmp_path, 9, 0.0, False)  # a replaced child's old file: not listed, not judged
    assert health.ready(str(tmp_path), 30, now=100) == []
    assert health.ready(str(tmp_path), 30, now=129.2) == [
        "worker process 7 last reported 30.2s ago"
    ]
    _supervisor(tmp_path, 100.0, [7, 8], stopping=True)
    assert health.ready(str(tmp_path), 30, now=100) == ["the supervisor is shutting down"]


def test_process_health_scrubs_passwords_and_resets_on_success(tmp_path: Path) -> None:
    reporter = health.ProcessHealth(str(tmp_path), ("s3cret",))
    reporter.consuming()
    reporter.failed(ConnectionError("amqp://u:s3cret@host refused"))
    reporter.write()
    text = (tmp_path / reporter.name).read_text()
    assert "s3cret" not in text and '"consuming": false' in text and "***" in text
    reporter.consuming()
    reporter.write(connected=False)
    assert "reconnecting" in (tmp_path / reporter.name).read_text()
    reporter.write()
    assert '"consuming": true' in (tmp_path / reporter.name).read_text()


def test_probe_without_a_health_folder_is_a_configuration_error() -> None:
    assert main(["probe", "live", "--max-age", "5"]) == 3
