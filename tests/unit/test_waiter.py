"""The waiter: who drives the listener (a waiting caller, or the listener thread), and
when the listener thread may let notifications gather."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from fleet import _context
from fleet._envelope import Outcome, pack_outcome
from fleet._waiter import LINGER, Waiter
from fleet.broker import Listener
from fleet.broker.memory import MemoryBroker
from fleet.state.memory import MemoryStateStore
from fleet.status import Status
from tests.waiting import wait_until


class FakeListener(Listener):
    """Hands out what the test puts in, one payload per `receive`, and records which
    thread received each payload; `receive` must never run in two threads at once."""

    def __init__(self, patient: bool) -> None:
        self.address = "fake"
        self.patient = patient
        self.inbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.receivers: list[int] = []
        self.entered: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.overlaps = 0
        self._busy = threading.Lock()

    def receive(self, timeout: float | None) -> list[bytes]:
        if not self._busy.acquire(blocking=False):
            self.overlaps += 1  # two threads drive the listener: checked by the fixture
            self._busy.acquire()
        try:
            self.entered.put(threading.get_ident())
            try:
                item = self.inbox.get(timeout=timeout)
            except queue.Empty:
                return []
            if item is None:
                return []
            self.receivers.append(threading.get_ident())
            return [item]
        finally:
            self._busy.release()

    def entered_by(self, ident: int) -> None:
        """Block until thread `ident` calls `receive`."""
        while self.entered.get(timeout=10) != ident:
            pass

    def wakeup(self) -> None:
        self.inbox.put(None)

    def close(self) -> None:
        self.inbox.put(None)


class Broker(MemoryBroker):
    def __init__(self, listener: FakeListener) -> None:
        super().__init__(f"memory://{uuid.uuid4().hex}")
        self.fake = listener

    def listener(self) -> Listener:
        return self.fake


class RecordingEvent:
    """Stands in for the waiter's linger event and records the pauses taken."""

    def __init__(self) -> None:
        self.pauses: list[float | None] = []
        self.paused = threading.Event()
        self._event = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.pauses.append(timeout)
        self.paused.set()
        return self._event.wait(timeout)

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()


def note(invocation_id: str) -> bytes:
    return pack_outcome(Outcome(invocation_id, Status.SUCCESS, b"\x01"))


@pytest.fixture(params=[False, True], ids=["impatient", "patient"])
def waiter(request: pytest.FixtureRequest) -> Iterator[tuple[Waiter, FakeListener, RecordingEvent]]:
    listener = FakeListener(patient=request.param)
    waiter = Waiter(Broker(listener), MemoryStateStore(f"memory://{uuid.uuid4().hex}"))
    linger = RecordingEvent()
    waiter._linger = linger  # type: ignore[assignment]
    yield waiter, listener, linger
    waiter.close()
    assert listener.overlaps == 0


def wait_all(waiter: Waiter, ids: Sequence[str]) -> dict[str, Outcome]:
    return waiter.wait(ids, timeout=10)


def test_outcomes_nobody_waits_for_yet_are_kept(
    waiter: tuple[Waiter, FakeListener, RecordingEvent],
) -> None:
    hub, listener, _ = waiter
    ids = [uuid.uuid4().hex for _ in range(3)]
    hub.watch(ids)
    for i in ids:
        listener.inbox.put(note(i))
    found = wait_all(hub, ids)
    assert sorted(found) == sorted(ids)
    assert all(o.status is Status.SUCCESS for o in found.values())


def test_only_a_patient_listener_lets_notifications_gather(
    waiter: tuple[Waiter, FakeListener, RecordingEvent],
) -> None:
    """An embedded doorbell drops what is not read in time: its listener is never made
    to pause. RabbitMQ keeps notifications in the listener's queue: the listener thread
    pauses after some arrived while nobody waits, and a thread that starts waiting ends
    the pause."""
    hub, listener, linger = waiter
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    hub.watch([first, second])
    listener.inbox.put(note(first))
    if listener.patient:
        assert linger.paused.wait(10), "the listener thread did not pause"
        assert linger.pauses == [LINGER]
        listener.inbox.put(note(second))
        assert sorted(wait_all(hub, [first, second])) == sorted([first, second])
    else:
        assert sorted(wait_all(hub, [first])) == [first]
        listener.inbox.put(note(second))
        assert sorted(wait_all(hub, [second])) == [second]
        assert linger.pauses == []


class Pauser:
    def pause_for(self, execution: object, ids: Sequence[str], timeout: float | None) -> Any:
        raise AssertionError("not used")


def in_thread(
    target: Callable[[], object], task: bool = False
) -> tuple[threading.Thread, list[object]]:
    """Run `target` in a new thread (as a worker's task thread when `task`)."""
    box: list[object] = []

    def run() -> None:
        if task:
            _context.enter(_context.Execution("parent", "t", 1, Pauser()))
        box.append(target())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def test_a_waiting_caller_receives_its_own_result(
    waiter: tuple[Waiter, FakeListener, RecordingEvent],
) -> None:
    """No hand-off between threads: the caller drives the listener while it waits; the
    listener thread takes over again once nobody waits."""
    hub, listener, _ = waiter
    mine, later = uuid.uuid4().hex, uuid.uuid4().hex
    hub.watch([mine, later])
    caller, box = in_thread(lambda: wait_all(hub, [mine]))
    assert caller.ident is not None
    listener.entered_by(caller.ident)
    listener.inbox.put(note(mine))
    caller.join(10)
    assert [sorted(found) for found in box] == [[mine]]  # type: ignore[call-overload]
    assert listener.receivers == [caller.ident]
    listener.inbox.put(note(later))  # nobody waits: the listener thread takes it
    wait_until(lambda: hub.peek(later) is not None, "the listener thread to resume", 10)
    assert listener.receivers[1:] == [hub._thread.ident]


def test_a_task_thread_does_not_drive_the_listener(
    waiter: tuple[Waiter, FakeListener, RecordingEvent],
) -> None:
    """A paused invocation's thread may be interrupted by a cancel request the listener
    hands to its worker: it lets the listener thread deliver its results."""
    hub, listener, _ = waiter
    child = uuid.uuid4().hex
    task, box = in_thread(lambda: wait_all(hub, [child]), task=True)
    listener.entered_by(hub._thread.ident or 0)  # the listener thread keeps driving
    listener.inbox.put(note(child))
    task.join(10)
    assert len(box) == 1
    assert listener.receivers == [hub._thread.ident]


def test_an_outcome_learned_in_this_process_wakes_the_driving_caller(
    waiter: tuple[Waiter, FakeListener, RecordingEvent],
) -> None:
    hub, listener, _ = waiter
    mine = uuid.uuid4().hex
    caller, box = in_thread(lambda: wait_all(hub, [mine]))
    assert caller.ident is not None
    listener.entered_by(caller.ident)
    hub.deliver([Outcome(mine, Status.SUCCESS, b"\x02")])
    caller.join(10)
    assert not caller.is_alive()
    assert len(box) == 1


def test_callers_take_turns_driving(
    waiter: tuple[Waiter, FakeListener, RecordingEvent],
) -> None:
    hub, listener, _ = waiter
    ids = [uuid.uuid4().hex for _ in range(4)]
    hub.watch(ids)
    callers = [in_thread(lambda i=i: wait_all(hub, [i])) for i in ids]
    for i in ids:
        listener.inbox.put(note(i))
    for thread, _ in callers:
        thread.join(10)
    assert all(len(box) == 1 for _, box in callers)
    assert set(listener.receivers) <= {t.ident for t, _ in callers} | {hub._thread.ident}


def test_a_caller_that_waits_again_at_once_keeps_driving(
    waiter: tuple[Waiter, FakeListener, RecordingEvent],
) -> None:
    """A caller that calls and waits in a loop drives every wait, and the listener
    thread stays parked in between: it takes the listener back only `LINGER` seconds
    after the last wait, instead of taking over and parking again around every call."""
    hub, listener, _ = waiter
    ids = [uuid.uuid4().hex for _ in range(40)]
    later = uuid.uuid4().hex
    hub.watch([*ids, later])

    def calls() -> None:
        for i in ids:
            time.sleep(LINGER / 20)  # the caller's own work between calls: a submit
            listener.inbox.put(note(i))
            wait_all(hub, [i])

    caller, _ = in_thread(calls)
    caller.join(10)
    assert not caller.is_alive()
    listener.inbox.put(note(later))  # nobody waits now: the listener thread takes it
    wait_until(lambda: hub.peek(later) is not None, "the listener thread to take over", 10)
    assert listener.receivers[-1] == hub._thread.ident
    entered = []
    while not listener.entered.empty():
        entered.append(listener.entered.get())
    # A parked thread that ran late (a loaded machine) may take over a few times.
    assert entered.count(hub._thread.ident) <= 10, entered.count(hub._thread.ident)
