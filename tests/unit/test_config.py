"""Settings: layered sources, provenance, and errors that name key and source."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.config import DEFAULT_DB, describe, load_settings
from fleet.errors import ConfigError


def test_defaults(tmp_path: Path) -> None:
    loaded = load_settings(environ={}, cwd=tmp_path)
    assert loaded.settings.broker_url == DEFAULT_DB == loaded.settings.state_url
    assert loaded.settings.inline is False
    assert loaded.sources["broker_url"] == "default"


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
