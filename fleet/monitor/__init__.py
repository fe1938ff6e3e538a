"""fleet's monitor: Prometheus metrics (`fleet.monitor.metrics`), OpenTelemetry tracing
(`fleet.monitor.tracing`) and the web monitor; each imported on its own, with its extra.
"""
