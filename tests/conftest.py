"""Shared fixtures: real RabbitMQ and MongoDB-wire servers, started by the tests themselves.

Each pytest process (each xdist worker) starts its own servers on reserved loopback
ports the first time a test asks for them, and stops them at the end of its session,
whether tests passed or not. When a server cannot be started the test is skipped on a
laptop and fails under CI (`CI=true`), with the reason and the server's log path.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
from hypothesis import Phase, settings

from fleet.testing.mongo import MongoServer, drop_database, with_database
from fleet.testing.rabbitmq import RabbitMQServer, ServiceError
from tests.services import unavailable

# Hypothesis's explain phase re-runs a failing example under a line tracer, which on a
# URL fuzz case ran for over an hour in CI, out of pytest-timeout's reach (seen: the
# suite hung at 99%). A failure is still shrunk and reported without it.
settings.register_profile("fleet", phases=[p for p in Phase if p is not Phase.explain])
settings.load_profile("fleet")


@pytest.fixture(scope="session")
def rabbitmq_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQServer]:
    """A RabbitMQ node for this test process; its folder is kept for the logs."""
    server = RabbitMQServer(base_dir=tmp_path_factory.mktemp("rabbitmq"))
    try:
        try:
            server.start()
        except ServiceError as exc:
            unavailable("RabbitMQ", exc)
        yield server
    finally:
        server.close()


@pytest.fixture
def rabbitmq(rabbitmq_server: RabbitMQServer) -> RabbitMQServer:
    """The session's RabbitMQ node, started again if an earlier test killed or stopped it."""
    if not rabbitmq_server.is_running():
        try:
            rabbitmq_server.start()
        except ServiceError as exc:
            unavailable("RabbitMQ (restart after an earlier test)", exc)
    return rabbitmq_server


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Make queue/exchange names no other test uses: `unique_name("jobs")`."""
    test = request.node.name.replace("[", "-").replace("]", "")[:60]

    def make(prefix: str = "q") -> str:
        return f"{prefix}.{test}.{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    """A MongoDB-wire server (FLEET_TEST_MONGO_URL, Docker mongo:7, or SecantusDB)."""
    external = os.environ.get("FLEET_TEST_MONGO_URL") or None
    server = MongoServer(external_url=external, base_dir=tmp_path_factory.mktemp("mongo"))
    try:
        try:
            server.start()
        except ServiceError as exc:
            unavailable("MongoDB", exc)
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def mongo_url(mongo_server: MongoServer) -> str:
    """A mongodb:// URL whose default database belongs to this test session alone."""
    return mongo_server.url


@pytest.fixture
def mongo_db_url(mongo_server: MongoServer) -> Iterator[str]:
    """A mongodb:// URL naming a database for this test alone, dropped afterwards."""
    url = with_database(mongo_server.url, f"fleet_test_{uuid.uuid4().hex[:12]}")
    yield url
    drop_database(url)
