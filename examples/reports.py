"""`make demo`: the sales-report job four ways, on the embedded default (SQLite).

1. the original sequential loop (plain Python, no fleet);
2. inline mode (FLEET__INLINE=true): the decorated code runs in the caller's thread;
3. caller threads against running workers: each thread blocks on its own call;
4. one call fanned out with parallel_func across the workers.

The demo starts its own workers (`fleet worker`) and stops them at the end. Every way
must produce the same report values; the timings show what distribution buys.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

WORKER_PROCESSES = 2
WORKER_THREADS = 4


def timed(
    label: str, run: Callable[[], list[dict[str, Any]]]
) -> tuple[float, list[dict[str, Any]]]:
    start = time.perf_counter()
    reports = run()
    elapsed = time.perf_counter() - start
    print(f"{label:<44} {len(reports)} reports in {elapsed:5.2f}s")
    return elapsed, reports


def show(reports: list[dict[str, Any]]) -> None:
    for r in reports:
        print(
            f"    {r['period']:<9} revenue=${r['revenue']:>9,}  orders={r['orders']:>5}"
            f"  AOV=${r['avg_order_value']:>8.2f}"
        )


def inline_phase() -> None:
    """Runs in a child process with FLEET__INLINE=true; prints its reports as JSON."""
    from examples.report_tasks import PERIODS, generate_report

    start = time.perf_counter()
    reports = [generate_report(p) for p in PERIODS]
    print(json.dumps({"elapsed": time.perf_counter() - start, "reports": reports}))


def start_workers() -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "fleet",
        "worker",
        "--app",
        "examples.report_tasks:app",
        "--processes",
        str(WORKER_PROCESSES),
        "--threads",
        str(WORKER_THREADS),
    ]
    env = {**os.environ, "FLEET__LOG_LEVEL": "WARNING"}
    return subprocess.Popen(command, env=env)


def wait_for_consumers(count: int, deadline: float) -> None:
    from examples.report_tasks import app

    broker = app.runtime().broker
    while broker.stats(app.settings.default_queue).consumers < count:
        if time.monotonic() > deadline:
            raise SystemExit("workers did not start within the deadline")
        time.sleep(0.05)


def main() -> None:
    if sys.argv[1:] == ["--inline-phase"]:
        inline_phase()
        return
    from examples import reports_original as original

    print("fleet demo: 5 sales reports, each taking 0.5 s of (simulated) I/O\n")
    t_orig, baseline = timed(
        "1. original sequential loop",
        lambda: [original.generate_report(p) for p in original.PERIODS],
    )
    show(baseline)

    env = {**os.environ, "FLEET__INLINE": "true"}
    out = subprocess.run(
        [sys.executable, "-m", "examples.reports", "--inline-phase"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    inline = json.loads(out)
    print(
        f"{'2. inline mode (FLEET__INLINE=true)':<44} {len(inline['reports'])} reports "
        f"in {inline['elapsed']:5.2f}s"
    )

    from examples.report_tasks import PERIODS, app, generate_report, generate_reports

    workers = start_workers()
    try:
        wait_for_consumers(WORKER_PROCESSES, time.monotonic() + 60)
        generate_report(PERIODS[0])  # warm-up: opens connections on both sides
        with ThreadPoolExecutor(max_workers=len(PERIODS)) as pool:
            t_threads, threaded = timed(
                "3. caller threads, workers running",
                lambda: list(pool.map(generate_report, PERIODS)),
            )
        t_fan, fanned = timed(
            "4. one call fanned out (parallel_func)", lambda: generate_reports(periods=PERIODS)
        )
    finally:
        workers.send_signal(signal.SIGTERM)
        workers.wait(timeout=60)
        app.close()

    same = baseline == inline["reports"] == threaded == fanned
    print(f"\nsame report values in all four runs: {'yes' if same else 'NO'}")
    print(
        f"speed-up over the original: threads {t_orig / t_threads:.1f}x, "
        f"fan-out {t_orig / t_fan:.1f}x"
    )
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
