"""Renders a benchmark's results as Markdown and as one PNG chart.

The orchestrator (bench/run.py) fills the results dict:

    {"started_at": ISO 8601 str, "duration_seconds": float,
     "machine": {"cores": int, "memory_gib": float, "cpu": str, "os": str, "python": str, "spark": str,
                 "kafka": str, "delta": str},
     "settings": {"events": int, "symbols": int, "kafka_partitions": int, "trigger": str,
                  "max_offsets_per_trigger": int, "shuffle_partitions": int, "producer": str},
     "measures": [{"id": str, "name": str, "value": float, "unit": str,     # unit e.g. "events/s", "s", "ms"
                   "target": float | None, "higher_is_better": bool,
                   "settings": str}, ...],                                   # how this one was measured
     "stepped_rate": [{"offered_per_second": float, "processed_per_second": float, "lag_end": int}, ...],
     "holds": [{"rate": int, "seconds": float, "offered_per_second": float, "processed_per_second": float,
                "kept_pace": bool, "first_minute_lag_events": int, "last_minute_lag_events": int,
                "max_lag_events": int, "max_lag_seconds": float, ...}, ...],  # bench/sustained.py
     "latency_ms": {"p50": int, "p95": int, "p99": int, "count": int},
     "dashboard_latency_ms": {"p50": int, "p95": int, "p99": int, "count": int},  # to the dashboard's live tail
     "compaction": [{"partition": "date=2026-01-05/hour=14", "files_before": int, "files_after": int,
                     "bytes_before": int, "bytes_after": int}, ...],
     "query_seconds": {"before": float, "after": float},                     # a Silver query, before/after compaction
     "memory_mib": {role: float, ...},                                       # peak resident memory per process role
     "breakdown": {phase: {query: {...}}},                                   # bench/breakdown.batch_breakdown
     "delta_commit_ms": {table: {"commits": int, "median_ms": int, "max_ms": int}},
     "record_costs": [{"step": str, "records": int, "seconds": float, "records_per_second": int,
                       "core_us_per_record": float}, ...]}                   # bench/record_costs.py
"""
from __future__ import annotations

import math
from pathlib import Path

from bench.breakdown import HEADER, markdown_rows

MIB = 1024 * 1024


def format_value(value: float, unit: str) -> str:
    """'213,456 events/s', '1.8 s', '0.42 x': thousands separators; seconds with one decimal."""
    if unit == "s":
        text = f"{value:,.1f}"
    elif float(value).is_integer() or abs(value) >= 100:
        text = f"{value:,.0f}"
    else:
        text = f"{value:,.2f}"
    return f"{text} {unit}" if unit else text


def target_and_met(measure: dict) -> tuple[str, str]:
    target = measure.get("target")
    if target is None:
        return "", ""
    higher = measure["higher_is_better"]
    met = measure["value"] >= target if higher else measure["value"] <= target
    return f"{'>=' if higher else '<='} {format_value(target, measure['unit'])}", "yes" if met else "no"


def hold_means(hold: dict) -> str:
    if hold["first_minute_lag_events"] is None:
        return "no sample after the first minute"
    return f"{hold['first_minute_lag_events']:,} / {hold['last_minute_lag_events']:,} events"


def hold_lag(hold: dict) -> str:
    if hold["max_lag_events"] is None:
        return "not sampled"
    return f"{hold['max_lag_events']:,} events ({format_value(hold['max_lag_seconds'], 's')})"


def header(results: dict) -> list[str]:
    machine, run = results["machine"], results["settings"]
    return [
        f"# Benchmark: {machine['cores']} cores, {machine['memory_gib']:.1f} GiB, {machine['cpu']}",
        "",
        f"{run['events']:,} events, {run['symbols']} symbols, {run['kafka_partitions']} Kafka partitions, "
        f"trigger {run['trigger']}, maxOffsetsPerTrigger {run['max_offsets_per_trigger']:,}, "
        f"{run['shuffle_partitions']} shuffle partitions, producer {run['producer']}. "
        f"Started {results['started_at']}, took {format_value(results['duration_seconds'], 's')}. "
        f"{machine['os']}, Python {machine['python']}, Spark {machine['spark']}, Kafka {machine['kafka']}, "
        f"Delta {machine['delta']}.",
    ]


def markdown(results: dict) -> str:
    lines = header(results)
    lines += ["", "| Measure | Result | Target | Met | Settings |", "|---|---:|---:|:---:|---|"]
    for measure in results["measures"]:
        target, met = target_and_met(measure)
        lines.append(f"| {measure['name']} | {format_value(measure['value'], measure['unit'])} | {target} | {met} "
                     f"| {measure['settings']} |")
    if results.get("stepped_rate"):
        lines += ["", "| Offered | Processed | Lag at end |", "|---:|---:|---:|"]
        lines += [f"| {format_value(step['offered_per_second'], 'events/s')} "
                  f"| {format_value(step['processed_per_second'], 'events/s')} | {step['lag_end']:,} |"
                  for step in results["stepped_rate"]]
    if results.get("holds"):
        lines += ["", "| Held | For | Offered | Processed | Lag, first judged / last minute (mean) "
                      "| Most behind after the first minute | Kept pace |",
                  "|---:|---:|---:|---:|---:|---:|:---:|"]
        lines += [f"| {format_value(hold['rate'], 'events/s')} | {format_value(hold['seconds'], 's')} "
                  f"| {format_value(hold['offered_per_second'], 'events/s')} "
                  f"| {format_value(hold['processed_per_second'], 'events/s')} "
                  f"| {hold_means(hold)} | {hold_lag(hold)} | {'yes' if hold['kept_pace'] else 'no'} |"
                  for hold in results["holds"]]
    if results.get("compaction"):
        lines += ["", "| Partition | Files | MiB |", "|---|---:|---:|"]
        lines += [f"| {part['partition']} | {part['files_before']:,} -> {part['files_after']:,} "
                  f"| {part['bytes_before'] / MIB:,.1f} -> {part['bytes_after'] / MIB:,.1f} |"
                  for part in results["compaction"]]
    if results.get("breakdown"):
        lines += ["", "Where a batch's time goes: mean ms per data batch (bench/breakdown.py).", "", *HEADER]
        for phase, breakdown in results["breakdown"].items():
            lines += markdown_rows(phase, breakdown)
    if results.get("delta_commit_ms"):
        lines += ["", "| Table (catch-up) | Commits | Delta commit after the batch's files, median ms | max ms |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {table} | {row['commits']:,} | {row['median_ms']} | {row['max_ms']} |"
                  for table, row in results["delta_commit_ms"].items()]
    if results.get("record_costs"):
        costs = results["record_costs"]
        lines += ["", f"Where a record's time goes: each step of the stream on the same {costs[0]['records']:,} "
                      "records, cached, in one warm session; median of 3 (bench/record_costs.py). Core-us = wall "
                      "time x cores / records.", "",
                  "| Step | Records/s | Core-us per record |", "|---|---:|---:|"]
        lines += [f"| {row['step']} | {row['records_per_second']:,} | {row['core_us_per_record']:.1f} |"
                  for row in costs]
    if results.get("memory_mib"):
        lines += ["", "| Process | Peak MiB |", "|---|---:|"]
        lines += [f"| {role} | {mib:,.1f} |" for role, mib in results["memory_mib"].items()]
    return "\n".join(lines) + "\n"


def chart(results: dict, path: Path) -> None:
    """One 1400x900 PNG: throughput bars (log scale), stepped rate offered vs processed, latency percentiles."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    cores, events = results["machine"]["cores"], results["settings"]["events"]
    figure = plt.figure(figsize=(14, 9), dpi=100)
    grid = figure.add_gridspec(2, 2)
    figure.suptitle(f"stocklake benchmark: {cores} cores, {events:,} events")

    throughput = figure.add_subplot(grid[0, :])
    # A log axis cannot show zero: a rate of 0 (a step that did not run) is left out of the bars.
    rates = [m for m in results["measures"] if m["unit"] == "events/s" and m["value"] > 0]
    bars = throughput.barh([m["name"] for m in rates], [m["value"] for m in rates], color="tab:blue")
    throughput.bar_label(bars, labels=[format_value(m["value"], "events/s") for m in rates], padding=4)
    if rates:
        throughput.set_xscale("log")
        # On a log axis bars start at the left limit: the decade below the smallest keeps every bar visible;
        # 0.7 decade past the largest leaves room for its label.
        low, high = min(m["value"] for m in rates), max(m["value"] for m in rates)
        throughput.set_xlim(10 ** math.floor(math.log10(low)), 10 ** (math.log10(high) + 0.7))
    throughput.invert_yaxis()
    throughput.set_title(f"Throughput, events/s (log scale; {cores} cores, {events:,} events)")

    stepped = figure.add_subplot(grid[1, 0])
    steps = results.get("stepped_rate") or []
    offered = [s["offered_per_second"] for s in steps]
    # Markers on both lines: a run with one step is one point each, which a line alone would not show.
    stepped.plot(offered, offered, "x--", color="gray", label="offered")
    stepped.plot(offered, [s["processed_per_second"] for s in steps], "o-", color="tab:orange", label="processed")
    stepped.set_xlim(left=0)
    stepped.set_ylim(bottom=0)
    thousands = FuncFormatter(lambda value, _: f"{value:,.0f}")
    stepped.xaxis.set_major_formatter(thousands)
    stepped.yaxis.set_major_formatter(thousands)
    stepped.set_xlabel("offered events/s")
    stepped.set_ylabel("events/s")
    stepped.legend()
    stepped.set_title(f"Stepped rate: offered vs processed ({cores} cores)")

    latency = figure.add_subplot(grid[1, 1])
    latency_ms = results.get("latency_ms") or {}
    names = [key for key in ("p50", "p95", "p99") if key in latency_ms]
    bars = latency.bar(names, [latency_ms[key] for key in names], color="tab:green")
    latency.bar_label(bars, labels=[format_value(latency_ms[key], "ms") for key in names], padding=3)
    latency.margins(y=0.12)
    latency.yaxis.set_major_formatter(thousands)
    latency.set_ylabel("ms")
    latency.set_title(f"Latency to Silver ({latency_ms.get('count', 0):,} rows; {cores} cores)")

    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
