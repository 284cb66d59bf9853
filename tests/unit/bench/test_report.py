"""bench/report.py: the Markdown lines and the PNG chart of a benchmark's results."""
from __future__ import annotations

from bench.report import chart, markdown

RESULTS = {
    "started_at": "2026-01-05T14:00:00+00:00", "duration_seconds": 612.34,
    "machine": {"cores": 2, "memory_gib": 23.4, "cpu": "Example CPU @ 2.0GHz", "os": "Linux 6.8",
                "python": "3.11.9", "spark": "4.0.0", "kafka": "4.3.1", "delta": "4.0.0"},
    "settings": {"events": 1_000_000, "symbols": 8, "kafka_partitions": 6, "trigger": "2 seconds",
                 "max_offsets_per_trigger": 200_000, "shuffle_partitions": 2, "producer": "simulator --no-pacing"},
    "measures": [
        {"id": "silver_throughput", "name": "Silver throughput", "value": 213456.4, "unit": "events/s",
         "target": 200000, "higher_is_better": True, "settings": "backlog, trigger availableNow"},
        {"id": "latency_p99", "name": "Latency p99", "value": 3412, "unit": "ms", "target": 3000,
         "higher_is_better": False, "settings": "5,000 events/s offered"},
        {"id": "query_after", "name": "Query after compaction", "value": 1.84, "unit": "s", "target": None,
         "higher_is_better": False, "settings": "one hour, all symbols"},
        {"id": "kafka_ceiling", "name": "Kafka consume ceiling", "value": 1_850_000, "unit": "events/s",
         "target": None, "higher_is_better": True, "settings": "librdkafka, 1 consumer"},
        {"id": "baseline", "name": "Per-message to S3", "value": 212.5, "unit": "events/s",
         "target": None, "higher_is_better": True, "settings": "poll, put_object, commit"},
    ],
    "stepped_rate": [{"offered_per_second": 1000, "processed_per_second": 1000, "lag_end": 0},
                     {"offered_per_second": 10000, "processed_per_second": 9800.4, "lag_end": 1200}],
    "holds": [{"rate": 10000, "seconds": 300.0, "offered_per_second": 9999.6, "processed_per_second": 8123.4,
               "kept_pace": False, "first_minute_lag_events": 180_000, "last_minute_lag_events": 490_000,
               "max_lag_events": 523_000, "max_lag_seconds": 52.3, "tolerance_events": 50_000},
              {"rate": 5000, "seconds": 300.0, "offered_per_second": 4999.9, "processed_per_second": 4950.0,
               "kept_pace": True, "first_minute_lag_events": 20_000, "last_minute_lag_events": 18_500,
               "max_lag_events": 31_000, "max_lag_seconds": 6.2, "tolerance_events": 25_000}],
    "latency_ms": {"p50": 1800, "p95": 2900, "p99": 3412, "count": 120000},
    "compaction": [{"partition": "date=2026-01-05/hour=14", "files_before": 1200, "files_after": 3,
                    "bytes_before": 52_428_800, "bytes_after": 47_185_920}],
    "query_seconds": {"before": 9.6, "after": 1.84},
    "memory_mib": {"spark driver": 1534.25, "producer": 88.0},
    "record_costs": [{"step": "Contract check (parse_events)", "records": 500_000, "seconds": 3.71,
                      "records_per_second": 134_771, "core_us_per_record": 14.84}],
}


def test_markdown_formats_values_targets_and_met():
    lines = markdown(RESULTS).splitlines()
    assert lines[0] == "# Benchmark: 2 cores, 23.4 GiB, Example CPU @ 2.0GHz"
    assert lines[2].startswith("1,000,000 events, 8 symbols, 6 Kafka partitions, trigger 2 seconds, "
                               "maxOffsetsPerTrigger 200,000, 2 shuffle partitions, producer simulator --no-pacing.")
    assert "| Silver throughput | 213,456 events/s | >= 200,000 events/s | yes | backlog, trigger availableNow |" \
        in lines
    assert "| Latency p99 | 3,412 ms | <= 3,000 ms | no | 5,000 events/s offered |" in lines
    assert "| Query after compaction | 1.8 s |  |  | one hour, all symbols |" in lines
    assert "| Per-message to S3 | 212 events/s |  |  | poll, put_object, commit |" in lines
    assert "| 10,000 events/s | 9,800 events/s | 1,200 |" in lines
    assert ("| 10,000 events/s | 300.0 s | 10,000 events/s | 8,123 events/s | 180,000 / 490,000 events "
            "| 523,000 events (52.3 s) | no |") in lines
    assert ("| 5,000 events/s | 300.0 s | 5,000 events/s | 4,950 events/s | 20,000 / 18,500 events "
            "| 31,000 events (6.2 s) | yes |") in lines
    assert "| date=2026-01-05/hour=14 | 1,200 -> 3 | 50.0 -> 45.0 |" in lines
    assert "| spark driver | 1,534.2 |" in lines
    assert "| Contract check (parse_events) | 134,771 | 14.8 |" in lines
    assert any(line.startswith("Where a record's time goes: each step of the stream on the same 500,000 records")
               for line in lines)


def test_chart_writes_a_png(tmp_path):
    path = tmp_path / "bench.png"
    chart(RESULTS, path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000
