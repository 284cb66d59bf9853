"""Trade-event producer: builds, validates and publishes trade events (conf/schemas/trade.v1.json) to Kafka.

Modules:
    events      -- event construction, deterministic ids, encoding and contract validation (reason strings).
    simulator   -- a seeded, reproducible market simulator with duplicates, late, out-of-order and malformed records.
    kafka_sink  -- a thin confluent-kafka publisher (idempotent, acks=all) with delivery accounting and a DLQ.
    cli         -- `python -m producer ...`.
"""
