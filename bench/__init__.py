"""Building blocks of `make bench`: Kafka ceiling, per-message baseline, latency, peak memory, report."""
