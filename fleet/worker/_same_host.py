"""Same-host recovery: a starting worker requeues at once the work of dead workers of its host.

Job: when a whole worker (supervisor and children) is SIGKILLed and a new one starts on
the same host (a restarted pod keeps its node, a systemd unit restarts), its invocations
need not wait `dead_after` for the leader: the new supervisor can see for itself that
their owners are gone, because it can look at the host's process table.

Contract:
- Every runner's heartbeat `info` carries `host_id` (the setting `host_id`, else
  hostname + kernel boot id + pid-namespace inode: two runners with the same identity
  see the same pids) and `pid_start` (its process's start time in clock ticks since
  boot, field 22 of `/proc/PID/stat`). Without `/proc` (not Linux) both are absent and
  nothing here acts.
- `recover_dead(app, me)`, called by a supervisor as it starts, reads the heartbeat
  records (`StateStore.runners`, so any state store works) of runners not stopped,
  not `me`, with its own `host_id`. Such a runner is dead when its pid is gone, is a
  zombie, or runs a process with another start time (the pid was reused). The
  invocations the dead ones own are requeued at once (`recovery.recover_owned`, a
  compare-and-set: two workers starting together requeue each once) and their records
  are marked stopped. A runner on another host, or of an older fleet without these
  fields, is left to the leader's `dead_after`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import socket
from typing import TYPE_CHECKING

from fleet.state import RunnerRecord
from fleet.worker import recovery

if TYPE_CHECKING:
    from fleet.app import Fleet

log = logging.getLogger(__name__)
NOTE = "owner found dead on its host by a starting worker"


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            return file.read()
    except OSError:
        return None


@functools.cache
def _machine() -> str | None:
    """hostname/boot id/pid-namespace inode, or None where there is no /proc."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    if boot is None:
        return None
    return f"{socket.gethostname()}/{boot.strip()}/{namespace}"


def host_id(override: str = "") -> str | None:
    """This host's identity: `override` (the setting `host_id`) if set, else the
    machine's (None when it cannot be told: no /proc)."""
    return override or _machine()


def process_state(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of process `pid`, None if there is none."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])  # fields 3 (state) and 22 (starttime)
    except (IndexError, ValueError):
        return None


def info(override: str = "") -> dict[str, object]:
    """What a heartbeat carries for same-host recovery (empty where /proc is missing)."""
    identity = host_id(override)
    mine = process_state(os.getpid())
    if identity is None or mine is None:
        return {}
    return {"host_id": identity, "pid_start": mine[1]}


def is_dead(record: RunnerRecord) -> bool:
    """Whether the process of `record` (of this host) is gone, a zombie, or reused."""
    found = process_state(record.pid)
    if found is None:
        return True
    state, start = found
    return state in ("Z", "X", "x") or start != record.info.get("pid_start")


def dead_here(runners: list[RunnerRecord], me: str, override: str = "") -> list[RunnerRecord]:
    """Those of `runners` that ran on this host and are dead (not stopped, not `me`)."""
    identity = host_id(override)
    if identity is None:
        return []
    return [
        r
        for r in runners
        if not r.stopped
        and r.id != me
        and r.info.get("host_id") == identity
        and "pid_start" in r.info
        and is_dead(r)
    ]


def recover_dead(app: Fleet, me: str) -> int:
    """Requeue what dead runners of this host owned and mark them stopped; return how
    many invocations were published again. Failures are logged: the leader's dead-runner
    recovery remains the fallback."""
    try:
        state = app.runtime().state
        dead = dead_here(state.runners(), me, app.settings.host_id)
        if not dead:
            return 0
        ids = [r.id for r in dead]
        moved = recovery.recover_owned(app, ids, me, NOTE)
        state.beat(
            [
                dataclasses.replace(r, stopped=True, info={**r.info, "found_dead_by": me})
                for r in dead
            ]
        )
    except Exception:
        log.exception("same-host recovery failed; the leader recovers after dead_after")
        return 0
    log.warning(
        "%d runner(s) of this host found dead (%s); requeued %d invocation(s)",
        len(ids),
        ", ".join(ids),
        moved,
    )
    return moved
