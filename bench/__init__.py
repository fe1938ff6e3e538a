"""Benchmarks of fleet against raw RabbitMQ (pika) and Dramatiq, measured in one run.

`make bench` (or `python -m bench`, see `bench.__main__`) measures throughput (W1),
round-trip latency (W2), I/O fan-out (W3), recursive fan-out (W4), idle CPU and state
round trips per invocation, for fleet's configurations and the baselines, and writes
`bench/results/<date>.md`. Modules: `configs` (what is measured), `workloads` (fleet),
`baselines` (raw pika, Dramatiq), `tasks` / `dramatiq_tasks` / `pika_worker` (what the
workers run), `measure`, `procs`, `child`, `machine`, `report`.
"""
