"""The worker runtime: supervisor, worker processes, recovery and leader services.

Layout: `supervisor` keeps worker processes alive on one host; `child` is the entry of
each spawned process; `process` is the receive-claim-ack-run loop of one process;
`executor` runs one invocation (and pauses it while it waits); `committer` commits
outcomes in batches; `slots` bounds concurrency; `limits` enforces time limits; `recovery` and
`leader` requeue the work of dead runners and release due invocations.
"""

from fleet.worker.process import WorkerProcess
from fleet.worker.supervisor import Supervisor

__all__ = ["Supervisor", "WorkerProcess"]
