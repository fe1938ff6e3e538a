"""Settings: layered sources, provenance, and errors that name key and source."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet import Fleet
from fleet.config import DEFAULT_DB, describe, load_settings
from fleet.errors import ConfigError


def test_defaults(tmp_path: Path) -> None:
    loaded = load_settings(environ={}, cwd=tmp_path)
    assert DEFAULT_DB == "sqlite:///.fleet/fleet.db"
    db = f"sqlite:///{tmp_path}/.fleet/fleet.db"  # no pyproject: the working directory
    assert loaded.settings.broker_url == db == loaded.settings.state_url
    assert loaded.settings.inline is False
    assert loaded.sources["broker_url"] == f"default; relative to {tmp_path}"


def test_layers_in_order(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.fleet]\nthreads = 2\nprocesses = 3\nname = "py"\nconfig = "fleet.yaml"\n'
        '[tool.fleet.tasks."m.f"]\nqueue = "a"\nmax_retries = 1\n'
    )
    (tmp_path / "fleet.yaml").write_text(
        "threads: 4\nname: yaml\ntasks:\n  m.f:\n    max_retries: 2\n"
    )
    loaded = load_settings(
        {"name": "kw"}, environ={"FLEET__THREADS": "8", "PATH": "/bin"}, cwd=tmp_path
    )
    s = loaded.settings
    assert (s.processes, s.threads, s.name) == (3, 8, "kw")
    assert s.tasks == {"m.f": {"queue": "a", "max_retries": 2}}
    assert loaded.sources["processes"].endswith("[tool.fleet]")
    assert loaded.sources["threads"] == "env FLEET__THREADS"
    assert loaded.sources["name"] == "Fleet(name=...)"
    assert "fleet.yaml" in loaded.sources["tasks"]
    text = describe(loaded)
    assert "env FLEET__THREADS" in text


def test_config_file_from_env(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("inline: yes\n")
    loaded = load_settings(environ={"FLEET__CONFIG": str(path)}, cwd=tmp_path)
    assert loaded.settings.inline is True
    assert "FLEET__CONFIG" in loaded.sources["inline"]


@pytest.mark.parametrize(
    ("environ", "overrides", "message"),
    [
        ({"FLEET__BROKR_URL": "x"}, {}, "unknown setting 'brokr_url' (from env FLEET__BROKR_URL)"),
        (
            {"FLEET__THREADS": "many"},
            {},
            "setting 'threads' (from env FLEET__THREADS): expected int",
        ),
        ({"FLEET__INLINE": "perhaps"}, {}, "setting 'inline' (from env FLEET__INLINE)"),
        ({}, {"codec": "xml"}, "setting 'codec' (from Fleet(codec=...)): must be one of"),
        ({}, {"threads": -1}, "must be >= 0"),
        ({}, {"heartbeat_interval": "soon"}, "expected float"),
    ],
)
def test_bad_values_name_key_and_source(
    tmp_path: Path, environ: dict[str, str], overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(overrides, environ=environ, cwd=tmp_path)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("environ", "overrides"),
    [({}, {"dead_after": 3}), ({"FLEET__HEARTBEAT_INTERVAL": "9"}, {}), ({}, {"dead_after": 0})],
)
def test_dead_after_must_exceed_the_heartbeat_interval(
    tmp_path: Path, environ: dict[str, str], overrides: dict[str, object]
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(overrides, environ=environ, cwd=tmp_path)
    message = str(info.value)
    assert "'dead_after'" in message and "'heartbeat_interval'" in message
    assert "must be greater" in message
    assert load_settings(environ={}, cwd=tmp_path).settings.dead_after == 9.0


def test_bad_yaml_names_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("threads: [1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml"):
        load_settings(environ={"FLEET__CONFIG": str(path)}, cwd=tmp_path)
    path.write_text("threads: two\n")
    with pytest.raises(ConfigError, match=r"setting 'threads' \(from config file .*bad.yaml"):
        load_settings(environ={"FLEET__CONFIG": str(path)}, cwd=tmp_path)


def test_bad_pyproject_key(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.fleet]\nthreds = 2\n")
    with pytest.raises(ConfigError, match=r"unknown setting 'threds' \(from .*pyproject.toml"):
        load_settings(environ={}, cwd=tmp_path)


def test_queues_file_found_in_configs(tmp_path: Path) -> None:
    assert load_settings(environ={}, cwd=tmp_path).settings.queues_file == ""
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "queues.yaml").write_text("queues: {}\n")
    loaded = load_settings(environ={}, cwd=tmp_path)
    assert loaded.settings.queues_file == str(tmp_path / "configs" / "queues.yaml")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    (tmp_path / "sub").mkdir()
    loaded = load_settings(environ={}, cwd=tmp_path / "sub")  # found from a subfolder too
    assert loaded.settings.queues_file == str(tmp_path / "configs" / "queues.yaml")


def _project(root: Path) -> None:
    """A project whose settings set relative paths from every kind of source."""
    (root / "conf").mkdir()
    (root / "deep" / "er").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        '[tool.fleet]\nstate_url = "sqlite:///data/state.db"\nconfig = "conf/fleet.yaml"\n'
    )
    (root / "conf" / "fleet.yaml").write_text("queues_file: queues.yaml\n")


def test_relative_paths_do_not_follow_the_working_directory(tmp_path: Path) -> None:
    _project(tmp_path)
    environ = {"FLEET__BROKER_URL": "sqlite:///env/broker.db"}
    seen = [
        load_settings({"name": "x"}, environ=environ, cwd=cwd)
        for cwd in (tmp_path, tmp_path / "deep", tmp_path / "deep" / "er")
    ]
    first = seen[0].settings
    assert all(loaded.settings == first for loaded in seen)
    # pyproject: relative to its folder; YAML: to the YAML's folder; env: project root.
    assert first.state_url == f"sqlite:///{tmp_path}/data/state.db"
    assert first.config == str(tmp_path / "conf" / "fleet.yaml")
    assert first.queues_file == str(tmp_path / "conf" / "queues.yaml")
    assert first.broker_url == f"sqlite:///{tmp_path}/env/broker.db"
    assert seen[1].sources["queues_file"].endswith(f"relative to {tmp_path / 'conf'}")
    text = describe(seen[2])
    assert f"sqlite:///{tmp_path}/data/state.db" in text


def test_keyword_and_absolute_paths(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "a").mkdir()
    loaded = load_settings(
        {"queues_file": "q.yaml", "state_url": "sqlite:////abs/s.db", "broker_url": "memory://x"},
        environ={},
        cwd=tmp_path / "a",
    )
    assert loaded.settings.queues_file == str(tmp_path / "q.yaml")
    assert loaded.settings.state_url == "sqlite:////abs/s.db"
    assert loaded.settings.broker_url == "memory://x"
    assert loaded.sources["state_url"] == "Fleet(state_url=...)"


project_app = Fleet(broker_url="memory://test-config-cli")  # state_url: the default


def test_worker_logs_the_absolute_database_path(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from fleet.cli import main
    from fleet.worker.supervisor import Supervisor

    monkeypatch.setattr(Supervisor, "run", lambda self: 0)  # never start processes here
    monkeypatch.setattr("fleet.cli.worker.setup_logging", lambda *a: None)  # leave handlers
    caplog.set_level("INFO", logger="fleet.cli.worker")
    assert main(["worker", "--app", f"{__name__}:project_app"]) == 0
    database = Path(__file__).parents[2] / ".fleet" / "fleet.db"  # the repository's root
    assert f"state store sqlite:///{database}" in caplog.text


def test_a_setting_read_from_a_file_named_by_env(tmp_path: Path) -> None:
    """Secrets mounted as files: FLEET__<KEY>_FILE names the file; the value is never in
    the environment, and `fleet config show` names the file, not the secret."""
    secret = tmp_path / "broker-url"
    secret.write_text("amqp://fleet:s3cr%2Ft@rabbit:5672/prod\n")
    environ = {"FLEET__BROKER_URL_FILE": str(secret), "FLEET__QUEUES_FILE": "q.yaml"}
    loaded = load_settings(environ=environ, cwd=tmp_path)
    assert loaded.settings.broker_url == "amqp://fleet:s3cr%2Ft@rabbit:5672/prod"
    assert loaded.sources["broker_url"] == f"file {secret} (env FLEET__BROKER_URL_FILE)"
    assert loaded.settings.queues_file == str(tmp_path / "q.yaml")  # a setting of its own
    shown = describe(loaded)
    assert "s3cr" not in shown and str(secret) in shown


def test_a_setting_file_that_cannot_be_read_or_is_set_twice(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    with pytest.raises(ConfigError, match=r"FLEET__STATE_URL_FILE: cannot read .*nope"):
        load_settings(environ={"FLEET__STATE_URL_FILE": missing}, cwd=tmp_path)
    (tmp_path / "url").write_text("memory://x")
    both = {"FLEET__STATE_URL_FILE": str(tmp_path / "url"), "FLEET__STATE_URL": "memory://y"}
    with pytest.raises(ConfigError, match="both FLEET__STATE_URL and FLEET__STATE_URL_FILE"):
        load_settings(environ=both, cwd=tmp_path)
