"""Counting the state-store commands a process sends to MongoDB, for tests and benchmarks.

Job: register a `pymongo.monitoring.CommandListener` (before the process makes its
`MongoClient`) that counts every command by kind (`kind`: collection, command name
and, for updates of invocations, what they do: claim, commit, clear_due), in the
producer and inside real worker processes, and collect the counts of all of them.

Contract:
- `install()` registers one listener per process (idempotent) and returns it; call it
  before the state store's client is made (pymongo attaches global listeners to the
  clients made after registration). `Commands.take()` returns and resets the counts.
- `install_from_env()` does nothing unless `FLEET_TEST_MONGO_COMMANDS` names a
  directory; then it installs the listener and starts a daemon thread that writes this
  process's counts to `<dir>/<pid>.json` whenever `request(dir)` asks (it polls the
  request file every `POLL` seconds). Worker processes import the app module, so a
  task module calls it at import; a process killed or exited stops answering.
- `collect(dir, processes, timeout)` asks every process of `dir` for its counts and sums those
  that answered the request (counts since each process started): call it twice and
  subtract to count a window. `per_invocation(counts, n)` splits the hot path from the
  background (heartbeats, leases, schema setup, waiters' fallback reads).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pymongo import monitoring

ENV = "FLEET_TEST_MONGO_COMMANDS"
POLL = 0.05
SETUP = frozenset({"createIndexes", "listIndexes", "collMod", "create", "listCollections"})
CONNECTION = frozenset({"endSessions", "hello", "isMaster", "ismaster", "ping", "buildInfo"})
BACKGROUND_COLLECTIONS = frozenset({"runners", "leases", "triggers", "firings"})
"""Heartbeats, the leader's lease and its trigger scans (collection names end so)."""

_lock = threading.Lock()
_installed: Commands | None = None


def kind(name: str, command: Mapping[str, Any]) -> str:
    """`collection.command[.what]`, e.g. `invocations.update.claim` or `runners.update`."""
    target = command.get(name)
    collection = target if isinstance(target, str) else "-"
    if name in SETUP or name in CONNECTION:
        return f"{collection}.{name}"
    key = f"{collection}.{name}"
    if collection.endswith("invocations") and name == "update" and command.get("updates"):
        update = command["updates"][0].get("u")
        sets: Mapping[str, Any] = {}
        if isinstance(update, Mapping):
            sets = update.get("$set", {})
        elif isinstance(update, list) and update and isinstance(update[0], Mapping):
            sets = update[0].get("$set", {})
        status = sets.get("status") if isinstance(sets, Mapping) else None
        if status == "RUNNING":
            return f"{key}.claim"
        if status in ("SUCCESS", "FAILED", "RETRY", "CANCELLED"):
            return f"{key}.commit"
        if isinstance(sets, Mapping) and set(sets) == {"due"} and sets["due"] is None:
            return f"{key}.clear_due"
        return f"{key}.other"
    where = command.get("filter")
    if name == "find" and isinstance(where, Mapping):
        if "due" in where:
            return f"{key}.due"  # the leader: pending past their deadline, holds come due
        if "owner" in where:
            return f"{key}.owned"  # recovery: invocations of dead runners
        if "updated" in where or "stored" in where:
            return f"{key}.expire"  # retention: old final records, unused values
    return key


def is_background(key: str) -> bool:
    """Heartbeats, leases, the leader's periodic scans, schema setup and connection
    chatter: paced by the clock, not by invocations."""
    collection, _, rest = key.partition(".")
    name = rest.split(".")[0]
    background = any(collection.endswith(c) for c in BACKGROUND_COLLECTIONS)
    leader = key.endswith((".find.due", ".find.owned", ".find.expire"))  # once per tick
    return background or leader or name in SETUP or name in CONNECTION


def thread_kind(name: str, command: Mapping[str, Any], thread: str) -> str:
    """`kind`, with `.waiter` added for a caller's fallback read (one per second while
    it waits), told apart by the thread that sent it."""
    key = kind(name, command)
    return key + ".waiter" if thread.startswith("fleet-waiter") else key


class Commands(monitoring.CommandListener):
    """Counts the commands this process starts, by `classify(command name, command,
    sending thread's name)` (default `thread_kind`)."""

    def __init__(self, classify: Callable[[str, Any, str], str] = thread_kind) -> None:
        self._classify = classify
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        thread = threading.current_thread().name
        key = self._classify(event.command_name, event.command, thread)
        with self._lock:
            self._counts[key] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(self._counts)

    def take(self) -> Counter[str]:
        with self._lock:
            counts, self._counts = self._counts, Counter()
        return counts


def install() -> Commands:
    """The listener of this process, registered on first call."""
    global _installed
    with _lock:
        if _installed is None:
            _installed = Commands()
            monitoring.register(_installed)
        return _installed


def install_from_env() -> Commands | None:
    """Install and answer `request`s when `FLEET_TEST_MONGO_COMMANDS` names a directory."""
    folder = os.environ.get(ENV)
    if not folder:
        return None
    listener = install()
    thread = threading.Thread(
        target=_answer, args=(listener, Path(folder)), name="fleet-test-commands", daemon=True
    )
    thread.start()
    return listener


def _answer(listener: Commands, folder: Path) -> None:
    request = folder / "request"
    answered = ""
    while True:
        try:
            token = request.read_text()
        except OSError:
            token = ""
        if token and token != answered:
            out = folder / f"{os.getpid()}.json"
            tmp = folder / f".{os.getpid()}.tmp"
            tmp.write_text(json.dumps({"token": token, "counts": listener.counts()}))
            tmp.replace(out)
            answered = token
        time.sleep(POLL)


def request(folder: str | os.PathLike[str]) -> str:
    """Ask every process answering in `folder` for its counts; returns the token."""
    token = uuid.uuid4().hex
    path = Path(folder)
    tmp = path / ".request.tmp"
    tmp.write_text(token)
    tmp.replace(path / "request")
    return token


def collect(folder: str | os.PathLike[str], processes: int, timeout: float = 10.0) -> Counter[str]:
    """The summed counts of the processes answering in `folder` (at least `processes`,
    and every one that ever answered there)."""
    token = request(folder)
    deadline = time.monotonic() + timeout
    while True:
        answers = []
        for file in Path(folder).glob("*.json"):
            try:
                answer = json.loads(file.read_text())
            except (OSError, ValueError):
                continue
            if answer.get("token") == token:
                answers.append(answer["counts"])
        files = len(list(Path(folder).glob("*.json")))
        if len(answers) >= max(processes, files):
            total: Counter[str] = Counter()
            for counts in answers:
                total.update(counts)
            return total
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(answers)} of {processes} processes answered in {folder}")
        time.sleep(POLL)


def per_invocation(counts: Mapping[str, int], invocations: int) -> dict[str, float]:
    """Hot-path commands per invocation by kind, and their `total`; background apart."""
    hot = {k: v / invocations for k, v in sorted(counts.items()) if not is_background(k)}
    return {**hot, "total": sum(hot.values())}
