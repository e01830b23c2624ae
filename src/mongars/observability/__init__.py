"""Metrics (Prometheus), traces (OpenTelemetry, off by default) and structured logs."""
