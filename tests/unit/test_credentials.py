"""URLs composed from separate user name and password settings (operator Secrets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.config import describe, load_settings
from fleet.errors import ConfigError


def test_user_and_password_files_go_into_the_url_encoded(tmp_path: Path) -> None:
    (tmp_path / "user").write_text("fleet@prod\n")
    (tmp_path / "password").write_text("p/ss:w@rd?\n")
    environ = {
        "FLEET__BROKER_URL": "amqp://rabbitmq.mq.svc:5672/%2F",
        "FLEET__BROKER_USERNAME_FILE": str(tmp_path / "user"),
        "FLEET__BROKER_PASSWORD_FILE": str(tmp_path / "password"),
        "FLEET__STATE_URL": "mongodb://root:old@m1:27017,m2:27017/fleet?replicaSet=rs0",
        "FLEET__STATE_PASSWORD_FILE": str(tmp_path / "password"),
    }
    loaded = load_settings(environ=environ)
    settings = loaded.settings
    assert settings.broker_url == "amqp://fleet%40prod:p%2Fss%3Aw%40rd%3F@rabbitmq.mq.svc:5672/%2F"
    assert settings.state_url == (
        "mongodb://root:p%2Fss%3Aw%40rd%3F@m1:27017,m2:27017/fleet?replicaSet=rs0"
    )
    shown = describe(loaded)
    assert "p/ss" not in shown and "p%2Fss" not in shown
    assert "credentials from broker_username / broker_password" in shown


def test_credentials_for_a_url_without_host_are_refused() -> None:
    with pytest.raises(ConfigError, match="broker_username / broker_password given, but"):
        load_settings({"broker_password": "x"}, environ={})
    with pytest.raises(ConfigError, match="state_password given without a user name"):
        load_settings({"state_url": "mongodb://db/f", "state_password": "x"}, environ={})
