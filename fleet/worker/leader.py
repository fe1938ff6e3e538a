"""Leader-run services, elected with a lease: whoever holds it runs them.

Job: on exactly one runner at a time, recover invocations of dead hosts and those a
live worker process does not hold (`recovery.recover_unheld`), release due
scheduled invocations and retries, tick the extensions (`on_lead`: cron triggers and
the recovery of their firings), republish pending invocations whose publish was
never confirmed (their deadline is still set, see `fleet._followup`), forget
heartbeat records older than `runner_retention`, and expire finished invocations older
than `retention` and large values nothing refers to any more.

Contract: every supervisor runs a `Leader` thread. Each tick (every
`schedule_interval` seconds) it tries to acquire or renew the lease
`<app name>:leader` for `lease_ttl` seconds; only the holder runs the services. A
holder that stops renewing (killed, partitioned) loses the lease at its expiry and the
next runner to try takes over, so the services are never starved and never run by two
at once (the individual moves are compare-and-sets as well, so even an overlap at the
lease boundary requeues nothing twice). Dead-runner and unheld recovery run every
`recovery_interval` (an unheld invocation is requeued when two passes in a row find it
so, see `recovery.recover_unheld`); due releases every tick. Holds shorter than a tick
(a sub-second retry backoff or countdown) are released at their due time by the
process that made them (`fleet._followup`); the tick is their fallback if that process
is gone. Expiry (`StateStore.expire`, at most `EXPIRE_BATCH` per call; `retention` 0
keeps everything) runs every `recovery_interval`, and every tick while it finds more
than a batch.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from fleet.worker import recovery

if TYPE_CHECKING:
    from fleet.app import Fleet

log = logging.getLogger(__name__)
EXPIRE_BATCH = 1000
"""Finished invocations (and unused large values) deleted per leader tick at most."""


class Leader:
    def __init__(self, app: Fleet, runner: str) -> None:
        self.app = app
        self.runner = runner
        self.lease = f"{app.settings.name}:leader"
        self.leading = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-leader", daemon=True)
        self._last_recovery = 0.0
        self._unheld: dict[str, tuple[str, float, float]] = {}
        """Suspects of the last `recover_unheld` pass (requeued when seen twice)."""
        self._expire_more = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self.leading:
            try:
                self.app.runtime().state.release(self.lease, self.runner)
            except Exception:
                log.debug("lease release failed", exc_info=True)

    def _run(self) -> None:
        settings = self.app.settings
        interval = min(settings.schedule_interval, settings.recovery_interval)
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("leader services failed; trying again in %.1fs", interval)
            self._stop.wait(interval)

    def tick(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        settings = self.app.settings
        state = self.app.runtime().state
        was = self.leading
        self.leading = state.lease(self.lease, self.runner, settings.lease_ttl)
        if self.leading != was:
            log.info(
                "runner %s %s the leader lease", self.runner, "acquired" if self.leading else "lost"
            )
        if not self.leading:
            return
        recovery.release_due(self.app, self.runner, now)
        # Extensions' timed work (cron triggers); their exceptions are logged there.
        self.app.dispatcher.on_lead(now)
        periodic = now - self._last_recovery >= settings.recovery_interval
        if periodic:
            self._last_recovery = now
            recovery.recover_orphans(self.app, self.runner, now)
            recovery.recover_unheld(self.app, self.runner, now, self._unheld)
            recovery.republish_stale(self.app, self.runner, now)
            state.forget_runners(now - settings.runner_retention)
        if settings.retention > 0 and (periodic or self._expire_more):
            # Bounded batches; while a batch comes back full, one more every tick.
            expired = state.expire(now - settings.retention, EXPIRE_BATCH)
            self._expire_more = max(expired.invocations, expired.blobs) >= EXPIRE_BATCH
            if expired.invocations or expired.blobs:
                log.info(
                    "expired %d finished invocation(s) and %d unused large value(s)",
                    expired.invocations,
                    expired.blobs,
                )
