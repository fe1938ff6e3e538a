"""Prometheus metrics of a small fleet, scraped from a real worker.

    fleet worker --app examples.observability:app --metrics-port 9100 &
    python -m examples.observability --scrape http://127.0.0.1:9100/metrics

The worker's supervisor serves `/metrics` for itself and its worker processes. `main`
submits a batch of thumbnails (some fail and are retried once), waits for them, then
reads `/metrics` with prometheus_client's parser and prints, per task, what the
workers counted: started, succeeded, retried and failed invocations, and the run time
and queue wait histograms. This process has metrics on as well (`Fleet(metrics=True)`):
it stamps the publish time on each message, which the worker turns into the queue wait.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.request
from collections import defaultdict

from fleet import Fleet

app = Fleet(metrics=True)
COUNTERS = ("started", "succeeded", "retried", "failed")


@app.task
def thumbnail(image: int) -> str:
    return f"thumb-{image}.png"


@app.task(max_retries=1, retry_backoff=0.01)
def corrupt(image: int) -> str:
    raise ValueError(f"image {image} is corrupt")


def scrape(url: str) -> dict[str, dict[str, float]]:
    """Per task: counters and histogram counts/sums from the `/metrics` at `url`."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    found: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            task = sample.labels.get("task")
            if task is not None and sample.name.startswith("fleet_"):
                found[task.rsplit(".", 1)[-1]][sample.name] += sample.value
    return found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scrape", default="", help="the worker's /metrics URL")
    parser.add_argument("--images", type=int, default=10)
    args = parser.parse_args(argv)
    good = [thumbnail(i) for i in range(args.images)]
    bad = [corrupt(i) for i in range(2)]
    print(f"{len([h.result(timeout=60) for h in good])} thumbnails made")
    for handle in bad:
        try:
            handle.result(timeout=60)
        except ValueError as exc:
            print(f"failed after a retry: {exc}")
    if not args.scrape:
        return 0
    deadline = time.monotonic() + 30  # the last commits may trail the results a little
    while True:
        found = scrape(args.scrape)
        done = found["thumbnail"]["fleet_invocations_succeeded_total"] >= args.images
        if (done and found["corrupt"]["fleet_invocations_failed_total"] >= 2) or (
            time.monotonic() > deadline
        ):
            break
        time.sleep(0.2)
    for task in ("thumbnail", "corrupt"):
        numbers = found[task]
        counts = " ".join(
            f"{what}={numbers[f'fleet_invocations_{what}_total']:g}" for what in COUNTERS
        )
        runs = numbers["fleet_invocation_duration_seconds_count"]
        mean = numbers["fleet_invocation_duration_seconds_sum"] / runs if runs else 0.0
        waits = numbers["fleet_invocation_queue_wait_seconds_count"]
        print(f"{task}: {counts} runs={runs:g} mean_run={1000 * mean:.2f}ms waits={waits:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
