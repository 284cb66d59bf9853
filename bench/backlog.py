"""The benchmark's events: one simulated trading day of trades, generated once and cached, published to Kafka.

    python -m bench.backlog generate --events N --seed S          # prints the cached file's path
    python -m bench.backlog publish --file F --topic T [--first K] [--count N] [--rate R] --summary-json J

Generation runs the project's own MarketSimulator (producer/simulator.py), one worker process per core, each on its
own symbols and seed, spread over one regular session (6.5 h) so a day's partitions fill as they would live; the
workers' records are merged by simulated clock, so event time rises through the file as it does in a real feed.
The file is cached under $STOCKLAKE_CACHE/bench, keyed by the arguments and a hash of the simulator's code and
settings: a fresh clone on the same machine reuses it.

Publishing goes through producer.kafka_sink.KafkaPublisher, the path every source shares (idempotent, acks=all,
the producer settings' linger/batch/compression), and counts deliveries: a record counts once Kafka acknowledged
it. `--rate` paces sends in 10 ms slices (the stepped-rate run); without it records go out as fast as possible.

File format: per record, a 7-byte header (key length u16, value length u32, kind u8), then key and value.
"""
from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import os
import struct
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]
HEADER = struct.Struct("<HIB")
KIND_CODES = {"trade": 0, "duplicate": 1, "late": 2, "out_of_order": 3, "malformed": 4}
KIND_NAMES = {code: kind for kind, code in KIND_CODES.items()}
SESSION_START = "2026-01-05T14:30:00Z"   # a regular NYSE session: 09:30-16:00 New York
SESSION_SECONDS = 6.5 * 3600
# A realistic share of the faults the stream handles: re-deliveries, small reordering, broken payloads.
RATIOS = {"duplicate_ratio": 0.01, "out_of_order_ratio": 0.02, "malformed_ratio": 0.001, "late_ratio": 0.0}
PACING_SLICE_SECONDS = 0.01


def cache_dir() -> Path:
    return Path(os.environ.get("STOCKLAKE_CACHE", Path.home() / ".cache" / "stocklake")) / "bench"


def _code_hash() -> str:
    from conf.settings import load_settings

    digest = hashlib.sha256()
    # The code that makes the records: the simulator and the event contract it encodes with.
    for path in ("producer/simulator.py", "conf/contracts/events.py"):
        digest.update((REPO / path).read_bytes())
    digest.update((REPO / "conf" / "schemas" / "trade.v1.json").read_bytes())
    digest.update(json.dumps(load_settings().simulator, sort_keys=True, default=str).encode())
    digest.update(json.dumps(RATIOS, sort_keys=True).encode())
    return digest.hexdigest()[:12]


def backlog_path(events: int, seed: int) -> Path:
    return cache_dir() / f"backlog-{events}-seed{seed}-{_code_hash()}.bin"


def _worker(job: tuple[list[str], int, int, float, Path]) -> dict[str, int]:
    """Simulate `count` records of `symbols` and write them in clock order to `part` (header + clock u64)."""
    from conf.settings import load_settings
    from producer.arguments import parse_start_time
    from producer.simulator import MarketSimulator, validate_symbols

    symbols, seed, count, rate, part = job
    sim_settings = load_settings().simulator
    simulator = MarketSimulator(validate_symbols(symbols, sim_settings.symbols), rate=rate, seed=seed,
                                start_ms=parse_start_time(SESSION_START), annual_drift=sim_settings.annual_drift,
                                late_by_seconds=sim_settings.late_by_seconds,
                                out_of_order_max_seconds=sim_settings.out_of_order_max_seconds,
                                source="simulator", **RATIOS)
    kinds: Counter[str] = Counter()
    with part.open("wb") as out:
        for record in simulator.take(count):
            kinds[record.kind] += 1
            out.write(struct.pack("<Q", record.clock_ms))
            out.write(HEADER.pack(len(record.key), len(record.value), KIND_CODES[record.kind]))
            out.write(record.key)
            out.write(record.value)
    return dict(kinds)


def _read_part(path: Path) -> Iterator[tuple[int, bytes]]:
    """(clock_ms, record bytes in the backlog format) of a worker's part file."""
    with path.open("rb") as part:
        while head := part.read(8 + HEADER.size):
            clock_ms = struct.unpack_from("<Q", head)[0]
            key_len, value_len, _kind = HEADER.unpack_from(head, 8)
            yield clock_ms, head[8:] + part.read(key_len + value_len)


def generate(events: int, seed: int, workers: int | None = None) -> Path:
    """Create the cached backlog file (if missing) and return its path; its summary sits beside it (.json)."""
    from conf.settings import load_settings

    path = backlog_path(events, seed)
    if path.exists() and path.with_suffix(".json").exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    symbols = list(load_settings().simulator.symbols)
    workers = max(1, min(workers or os.cpu_count() or 1, len(symbols)))
    groups = [symbols[i::workers] for i in range(workers)]
    counts = [events // workers + (1 if i < events % workers else 0) for i in range(workers)]
    # Each worker's share of the day's events at its own rate, so every worker spans the whole session.
    jobs = [(group, seed + i, counts[i], counts[i] / SESSION_SECONDS, path.with_suffix(f".part{i}"))
            for i, group in enumerate(groups)]
    started = time.monotonic()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        kinds_per_worker = list(pool.map(_worker, jobs))
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as out:
        for _clock, record in heapq.merge(*[_read_part(job[4]) for job in jobs], key=lambda item: item[0]):
            out.write(record)
    for job in jobs:
        job[4].unlink()
    kinds = sum((Counter(k) for k in kinds_per_worker), Counter())
    summary = {"events": events, "seed": seed, "symbols": len(symbols), "session_start": SESSION_START,
               "by_kind": dict(sorted(kinds.items())), "ratios": RATIOS,
               "generation_seconds": round(time.monotonic() - started, 1)}
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    return path


def read_records(path: Path, first: int = 0, count: int | None = None) -> Iterator[tuple[bytes, bytes, str]]:
    """(key, value, kind) of the backlog's records first .. first+count-1."""
    with path.open("rb", buffering=1 << 20) as backlog:
        index = 0
        while head := backlog.read(HEADER.size):
            key_len, value_len, kind = HEADER.unpack(head)
            body = backlog.read(key_len + value_len)
            if index >= first:
                if count is not None and index >= first + count:
                    return
                yield body[:key_len], body[key_len:], KIND_NAMES[kind]
            index += 1


def publish(path: Path, topic: str, first: int = 0, count: int | None = None,
            rate: float | None = None) -> dict:
    """Publish backlog records through KafkaPublisher; returns counts and the delivered rate."""
    from conf.settings import load_settings
    from producer.kafka_sink import KafkaPublisher

    settings = load_settings()
    publisher = KafkaPublisher(settings, trades_topic=topic, client_id="stocklake-bench")
    sent = 0
    kinds: Counter[str] = Counter()
    started = time.monotonic()
    for key, value, kind in read_records(path, first, count):
        publisher.publish(topic, key, value)
        sent += 1
        kinds[kind] += 1
        if rate is not None and sent % max(1, int(rate * PACING_SLICE_SECONDS)) == 0:
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                publisher.poll(0)
                time.sleep(ahead)
    undelivered = publisher.flush(settings.producer.delivery_timeout_ms / 1000 + 30)
    seconds = time.monotonic() - started
    return {"topic": topic, "first": first, "sent": sent, "delivered": publisher.delivered_total,
            "failed": publisher.failed_total, "undelivered": undelivered, "seconds": round(seconds, 3),
            "events_per_second": round(publisher.delivered_total / seconds, 1) if seconds > 0 else 0.0,
            "by_kind": dict(sorted(kinds.items())), "errors": publisher.errors}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backlog", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="create (or reuse) the cached backlog file; prints its path")
    gen.add_argument("--events", type=int, required=True)
    gen.add_argument("--seed", type=int, default=7)
    pub = commands.add_parser("publish", help="publish backlog records to a topic")
    pub.add_argument("--file", type=Path, required=True)
    pub.add_argument("--topic", required=True)
    pub.add_argument("--first", type=int, default=0)
    pub.add_argument("--count", type=int)
    pub.add_argument("--rate", type=float, help="events per second (default: as fast as possible)")
    pub.add_argument("--summary-json", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "generate":
        if args.events <= 0:
            parser.error("--events must be positive")
        print(generate(args.events, args.seed))
        return 0
    if not args.file.exists():
        parser.error(f"--file {args.file}: no such backlog (run `python -m bench.backlog generate` first)")
    summary = publish(args.file, args.topic, args.first, args.count, args.rate)
    args.summary_json.write_text(json.dumps(summary, indent=2))
    return 0 if summary["failed"] == 0 and summary["undelivered"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
