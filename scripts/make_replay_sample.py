"""Write producer/samples/finnhub-ws-sample.jsonl: a small recorded-format Finnhub WebSocket log (maintainers).

    python scripts/make_replay_sample.py

Synthetic, not real Finnhub data (Finnhub's terms do not allow redistributing its feed): trades from the seeded
simulator, shaped the way Finnhub's stream really looks (batched trade messages, pings before the open, the same
trade message delivered again), written by the WebSocket source's own Recorder, so it is exactly the format that
`--source finnhub-ws --record F` writes and `--source replay --file F` reads. Deterministic: re-running it
rewrites the same bytes.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from conf.settings import load_settings
from producer.finnhub_ws import Recorder
from producer.simulator import MarketSimulator, validate_symbols

OUT = Path(__file__).resolve().parents[1] / "producer" / "samples" / "finnhub-ws-sample.jsonl"
START_MS = 1_795_185_000_000   # 2026-11-20T14:30:00Z, Friday: the NYSE opens at 09:30 New York time
SYMBOLS = ["AAPL", "MSFT", "NVDA", "TSLA"]
TRADES = 1_200
RATE = 20.0                    # trades per second: a 60-second recording
BATCH_MS = 250                 # Finnhub batches trades into one message every few hundred milliseconds
REPEAT_RATIO = 0.05            # share of trade messages Finnhub delivers again


def main() -> None:
    settings = load_settings({})
    rng = random.Random(7)  # noqa: S311 - a reproducible sample recording, not cryptography
    simulator = MarketSimulator(validate_symbols(SYMBOLS, settings.simulator.symbols), rate=RATE, seed=7,
                                start_ms=START_MS, annual_drift=0.05, late_by_seconds=1800,
                                out_of_order_max_seconds=5, source="finnhub")
    trades = [json.loads(record.value) for record in simulator.take(TRADES)]
    now = [0]
    OUT.unlink(missing_ok=True)
    recorder = Recorder(OUT, wall_clock=lambda: now[0] / 1000)

    def receive(message: dict, at_ms: int) -> None:
        now[0] = at_ms
        recorder.write(json.dumps(message, separators=(",", ":")))

    for second in range(3):  # before the first trade: only pings, as while the market is closed
        receive({"type": "ping"}, START_MS - 3000 + second * 1000)
    batch: list[dict] = []
    for trade in trades:
        if batch and trade["trade_ts"] // BATCH_MS != batch[0]["t"] // BATCH_MS:
            message = {"data": batch, "type": "trade"}
            at = batch[-1]["t"] + rng.randint(20, 90)
            receive(message, at)
            if rng.random() < REPEAT_RATIO:
                receive(message, at + rng.randint(1, 40))
            batch = []
        batch.append({"c": trade["conditions"] or None, "p": trade["price"], "s": trade["symbol"],
                      "t": trade["trade_ts"], "v": trade["volume"]})
    receive({"data": batch, "type": "trade"}, batch[-1]["t"] + 50)
    receive({"type": "ping"}, batch[-1]["t"] + 1000)
    recorder.close()
    print(f"wrote {recorder.lines} messages ({TRADES} distinct trades) to {OUT}")


if __name__ == "__main__":
    main()
