"""conf/prometheus: the Prometheus configuration, its alert rules and their promtool unit tests.

- `promtool check config` accepts conf/prometheus/prometheus.yml (and the rule files it loads), `promtool check
  rules` the rules, and `promtool test rules` passes conf/prometheus/tests/stocklake.rules.test.yml.
- Every alert has a severity (warning or critical), a summary, a description and a runbook link to its README
  anchor, and the unit tests have a case where it fires and one where it stays silent: no rule goes untested.
- Thresholds that mirror a conf/pipeline.yaml setting still equal it.
- Each scrape job reads its targets from a file, which scripts/services.py writes from the settings.

promtool comes from Debian's prometheus package (2.42); without it these tests fail, they do not skip.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conf.settings import ConfigError, load_settings
from scripts.services import Prometheus, scrape_targets

REPO = Path(__file__).resolve().parents[3]
PROMETHEUS = REPO / "conf" / "prometheus"
CONFIG = PROMETHEUS / "prometheus.yml"
RULES = PROMETHEUS / "rules" / "stocklake.rules.yml"
RULE_TESTS = PROMETHEUS / "tests" / "stocklake.rules.test.yml"
PIPELINE = REPO / "conf" / "pipeline.yaml"

# Alert -> (conf/pipeline.yaml setting, the comparison in its expression that mirrors it).
MIRRORED = {
    "StreamLagRecordsHigh": ("watchdog.max_consumer_lag", "stocklake_watchdog_lag_records > {}"),
    "StreamBatchStale": ("watchdog.max_batch_age_seconds", "stocklake_watchdog_batch_age_seconds > {}"),
}
# Scrape job -> its file_sd targets file (written by scripts/services.py, mounted by compose).
TARGET_FILES = {"stocklake_stream": "targets/stream.json", "stocklake_producer": "targets/producer.json",
                "stocklake_pushgateway": "targets/pushgateway.json"}


def promtool() -> str:
    """promtool's path; a missing promtool fails the test (reported FAILED, not an error of a fixture or a skip)."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found on PATH: install Debian's prometheus package, which provides it "
                    "(apt-get install prometheus prometheus-pushgateway)")
    return path


def run_promtool(*args: str) -> None:
    # From the repository's root: the test file names its rule files relative to itself, not to the cwd.
    result = subprocess.run([promtool(), *args], cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, (f"promtool {' '.join(args)} exited {result.returncode}\n"
                                    f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}")
    return result.stdout + result.stderr


def alerts() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def rule_test_cases() -> list[dict]:
    return [case for group in yaml.safe_load(RULE_TESTS.read_text())["tests"]
            for case in group.get("alert_rule_test", [])]


def setting(path: str):
    value = yaml.safe_load(PIPELINE.read_text())
    for key in path.split("."):
        value = value[key]
    return value


def test_prometheus_config_as_rendered_is_valid(tmp_path):
    # As scripts/services.py lays it out: the config, the rules and the targets from the settings, which
    # promtool checks too (a missing or malformed targets file is a warning or an error).
    Prometheus(load_settings({"STOCKLAKE_STREAM_METRICS_PORT": "19109"}), home=tmp_path).render()
    output = run_promtool("check", "config", str(tmp_path / "prometheus" / "prometheus.yml"))
    assert "WARNING" not in output, output


def test_rules_are_valid():
    run_promtool("check", "rules", str(RULES.relative_to(REPO)))


def test_rule_unit_tests_pass():
    run_promtool("test", "rules", str(RULE_TESTS.relative_to(REPO)))


def test_rules_are_one_group_of_alerts():
    groups = yaml.safe_load(RULES.read_text())["groups"]
    assert [group["name"] for group in groups] == ["stocklake"]
    names = [rule["alert"] for rule in alerts()]
    assert len(names) == len(set(names)), f"duplicate alert names: {names}"
    assert set(names) >= {"StreamLagRecordsHigh", "StreamLagSecondsHigh", "StreamBatchStale", "StreamDown",
                          "ProducerHeartbeatMissing", "DlqRateHigh", "QuarantineRateHigh", "SilverStale",
                          "WatchdogNotRunning"}


def test_every_alert_has_severity_summary_description_and_runbook():
    problems = []
    for rule in alerts():
        name = rule["alert"]
        if rule.get("labels", {}).get("severity") not in ("warning", "critical"):
            problems.append(f"{name}: labels.severity must be warning or critical, got "
                            f"{rule.get('labels', {}).get('severity')!r}")
        annotations = rule.get("annotations", {})
        for key in ("summary", "description"):
            if not str(annotations.get(key, "")).strip():
                problems.append(f"{name}: no {key} annotation")
        if annotations.get("runbook") != f"README.md#alert-{name.lower()}":
            problems.append(f"{name}: runbook must be README.md#alert-{name.lower()}, got "
                            f"{annotations.get('runbook')!r}")
    assert not problems, "\n".join(problems)


def test_every_alert_is_tested_firing_and_silent():
    cases = rule_test_cases()
    firing = {case["alertname"] for case in cases if case.get("exp_alerts")}
    silent = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    names = {rule["alert"] for rule in alerts()}
    assert not names - firing, f"alerts without a test case where they fire: {sorted(names - firing)}"
    assert not names - silent, f"alerts without a test case where they stay silent: {sorted(names - silent)}"
    assert not {case["alertname"] for case in cases} - names, "test cases for alerts the rules do not define"


def test_thresholds_mirror_pipeline_settings():
    expressions = {rule["alert"]: " ".join(rule["expr"].split()) for rule in alerts()}
    for name, (path, comparison) in MIRRORED.items():
        value = setting(path)
        # 120.0 in the YAML is written 120 in PromQL.
        expected = comparison.format(int(value) if float(value).is_integer() else value)
        assert expected in expressions[name], (f"{name}: expected `{expected}` (conf/pipeline.yaml {path}) in "
                                               f"its expression: {expressions[name]}")


def test_scrape_config_reads_each_jobs_targets_from_its_file():
    config = yaml.safe_load(CONFIG.read_text())
    assert config["global"]["scrape_interval"] == "5s"
    assert config["global"]["evaluation_interval"] == "5s"
    assert config["rule_files"] == ["rules/*.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {name: job["file_sd_configs"] for name, job in jobs.items()} == {
        name: [{"files": [path]}] for name, path in TARGET_FILES.items()}
    assert not any("static_configs" in job for job in jobs.values()), "addresses belong in the targets files"
    assert jobs["stocklake_pushgateway"].get("honor_labels") is True


def test_scrape_targets_come_from_the_settings():
    assert scrape_targets(load_settings({})) == {"stream": [], "producer": [], "pushgateway": ["127.0.0.1:19091"]}
    settings = load_settings({"STOCKLAKE_STREAM_METRICS_PORT": "19109", "STOCKLAKE_PRODUCER_METRICS_PORT": "19108",
                              "STOCKLAKE_PRODUCER_METRICS_HOST": "producer.internal",
                              "STOCKLAKE_MONITORING_PUSHGATEWAY_PORT": "29091"})
    assert scrape_targets(settings) == {"stream": ["127.0.0.1:19109"], "producer": ["producer.internal:19108"],
                                        "pushgateway": ["127.0.0.1:29091"]}


def test_render_lays_out_config_rules_and_targets(tmp_path):
    prometheus = Prometheus(load_settings({"STOCKLAKE_STREAM_METRICS_PORT": "19109"}), home=tmp_path)
    prometheus.render()
    folder = tmp_path / "prometheus"
    assert (folder / "prometheus.yml").read_text() == CONFIG.read_text()
    assert (folder / "rules" / RULES.name).read_text() == RULES.read_text()
    targets = {path.name: json.loads(path.read_text()) for path in (folder / "targets").glob("*.json")}
    assert targets == {"stream.json": [{"targets": ["127.0.0.1:19109"]}], "producer.json": [],
                       "pushgateway.json": [{"targets": ["127.0.0.1:19091"]}]}
    assert not list(folder.rglob("*.partial"))


def test_monitoring_ports_are_checked():
    with pytest.raises(ConfigError, match="monitoring.prometheus_port"):
        load_settings({"STOCKLAKE_MONITORING_PROMETHEUS_PORT": "0"})
    with pytest.raises(ConfigError, match="monitoring.pushgateway_url"):
        load_settings({"STOCKLAKE_MONITORING_PUSHGATEWAY_URL": "127.0.0.1:19091"})
