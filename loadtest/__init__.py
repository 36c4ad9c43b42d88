"""Load tests and serving energy per 1k requests: Locust client, load models, orchestrator,
metrics (docs/loadtest.md)."""
