"""Fixtures that open every backend for the contract suites.

Job: run `test_broker_contract.py` against every `Broker` and `test_state_contract.py`
against every `StateStore`, each test on fresh queues and a fresh database.

Adding a backend (the extension point): append its name to `BROKERS` (or `STATES`) and
add a factory `(request, tmp_path) -> BrokerTarget` to `BROKER_FACTORIES` (or
`-> StateTarget` to `STATE_FACTORIES`). A factory that needs a service asks for its
fixture lazily, so other params never start it, and skips when it is missing, e.g.:

    def _rabbitmq(request, tmp_path):
        server = request.getfixturevalue("rabbitmq_server")  # from tests/conftest.py
        return BrokerTarget("rabbitmq", server.url, cross_process=True,
                            visibility_option=None)

    def _mongo(request, tmp_path):
        url = request.getfixturevalue("mongo_db_url")  # a database of this test's own
        return StateTarget("mongo", url, cross_process=True)

Tests get fresh queues from the `queue` fixture (unique names, so a shared server is
fine) and call `target.open()` for more instances on the same data.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fleet.broker import Broker, open_broker
from fleet.state import StateStore, open_state


@dataclass
class BrokerTarget:
    """One broker backend under test, and what it can do."""

    name: str
    url: str
    options: dict[str, Any] = field(default_factory=dict)
    cross_process: bool = False
    """Other processes opening `url` see the same queues (spawned-process tests)."""
    visibility_option: str | None = "visibility_timeout"
    """Option that sets when an unacked delivery is redelivered; None: not supported."""
    opened: list[Broker] = field(default_factory=list)

    def open(self, **options: Any) -> Broker:
        broker = open_broker(self.url, **{**self.options, **options})
        self.opened.append(broker)
        return broker


@dataclass
class StateTarget:
    """One state-store backend under test."""

    name: str
    url: str
    options: dict[str, Any] = field(default_factory=dict)
    cross_process: bool = False
    opened: list[StateStore] = field(default_factory=list)

    def open(self, **options: Any) -> StateStore:
        store = open_state(self.url, **{**self.options, **options})
        self.opened.append(store)
        return store


def _memory_broker(request: pytest.FixtureRequest, tmp_path: Path) -> BrokerTarget:
    from fleet.broker import memory

    name = f"contract-{uuid.uuid4().hex[:12]}"
    request.addfinalizer(lambda: memory.drop(name))
    return BrokerTarget("memory", f"memory://{name}")


def _sqlite_broker(request: pytest.FixtureRequest, tmp_path: Path) -> BrokerTarget:
    return BrokerTarget("sqlite", f"sqlite:///{tmp_path}/fleet.db", cross_process=True)


def _rabbitmq_broker(request: pytest.FixtureRequest, tmp_path: Path) -> BrokerTarget:
    server = request.getfixturevalue("rabbitmq")  # from tests/conftest.py
    return BrokerTarget("rabbitmq", server.url, cross_process=True, visibility_option=None)


def _memory_state(request: pytest.FixtureRequest, tmp_path: Path) -> StateTarget:
    from fleet.state import memory

    name = f"contract-{uuid.uuid4().hex[:12]}"
    request.addfinalizer(lambda: memory.drop(name))
    return StateTarget("memory", f"memory://{name}")


def _sqlite_state(request: pytest.FixtureRequest, tmp_path: Path) -> StateTarget:
    return StateTarget("sqlite", f"sqlite:///{tmp_path}/fleet.db", cross_process=True)


BROKERS = ["memory", "sqlite", "rabbitmq"]
BROKER_FACTORIES: dict[str, Callable[[pytest.FixtureRequest, Path], BrokerTarget]] = {
    "memory": _memory_broker,
    "sqlite": _sqlite_broker,
    "rabbitmq": _rabbitmq_broker,
}


def _mongo_state(request: pytest.FixtureRequest, tmp_path: Path) -> StateTarget:
    url = request.getfixturevalue("mongo_db_url")  # a database of this test's own
    return StateTarget("mongo", url, {"connect_timeout": 30.0}, cross_process=True)


STATES = ["memory", "sqlite", "mongo"]
STATE_FACTORIES: dict[str, Callable[[pytest.FixtureRequest, Path], StateTarget]] = {
    "memory": _memory_state,
    "sqlite": _sqlite_state,
    "mongo": _mongo_state,
}


@pytest.fixture(params=BROKERS)
def broker_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BrokerTarget]:
    target = BROKER_FACTORIES[request.param](request, tmp_path)
    yield target
    for broker in reversed(target.opened):
        broker.close()


@pytest.fixture
def broker(broker_target: BrokerTarget) -> Broker:
    return broker_target.open()


@pytest.fixture(params=STATES)
def state_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateTarget]:
    target = STATE_FACTORIES[request.param](request, tmp_path)
    yield target
    for store in reversed(target.opened):
        store.close()


@pytest.fixture
def state(state_target: StateTarget) -> StateStore:
    return state_target.open()


@pytest.fixture
def queue() -> str:
    """A queue name no other test uses."""
    return f"q-{uuid.uuid4().hex[:10]}"
