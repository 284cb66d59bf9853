"""The static security checks `make test` runs, and proof that each of them can fail.

- ruff's security rules (flake8-bandit, "S", selected by ruff.toml) over the whole tree: no finding. Real findings
  are fixed; false positives carry a narrow `# noqa: S###` with the reason (ruff.toml says how).
- detect-secrets over the git-tracked files: no secret that .secrets.baseline does not already list (every entry
  there is audited as a false positive). Test fakes carry `# pragma: allowlist secret` instead. Untracked runtime
  folders (.lake, the environments) are never scanned: the file list is `git ls-files`.

To refresh the baseline after auditing a new false positive (from the repo root):
    git ls-files -z | xargs -0 .venv/bin/detect-secrets scan --baseline .secrets.baseline
then set "is_secret": false on the new entry (or `detect-secrets audit .secrets.baseline`).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUFF_CONFIG = REPO / "ruff.toml"
BASELINE = REPO / ".secrets.baseline"
SECRETS_HOOK = Path(sys.executable).parent / "detect-secrets-hook"
# What the scanner must report in a planted file. Built from pieces so that this file itself holds no literal key
# or key header for any scanner to find.
PLANTED_AWS_VALUE = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
PLANTED_KEY_HEADER = "-----BEGIN RSA " + "PRIVATE KEY-----"


# ---------------------------------------------------------------------------------------------------------- ruff

def ruff(*args: str) -> subprocess.CompletedProcess:
    """`ruff check` of the project environment with ruff.toml, run from the repo root; no cache written."""
    return subprocess.run([sys.executable, "-m", "ruff", "check", "--config", str(RUFF_CONFIG), "--no-cache", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def test_ruff_security_rules_find_nothing_in_the_tree():
    result = ruff("--output-format", "concise", ".")
    assert result.returncode == 0, (
        f"ruff's security rules (ruff.toml) report findings: fix them, or for a false positive add "
        f"`# noqa: S###` with the reason on that line\n{result.stdout}{result.stderr}")


def test_ruff_security_rules_catch_shell_injection_and_eval(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('import subprocess\n\n\ndef run(x):\n    subprocess.call("ls " + x, shell=True)\n'
                   '    return eval(input())\n')
    result = ruff("--output-format", "json", str(bad))
    assert result.returncode == 1, result.stdout + result.stderr
    codes = {finding["code"] for finding in json.loads(result.stdout)}
    assert {"S602", "S307"} <= codes, codes


# -------------------------------------------------------------------------------------------------- detect-secrets

def tracked_files() -> list[str]:
    """The git-tracked files that exist in the working tree, relative to the repo root (the baseline's own)."""
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the secret scan covers the git-tracked files")
    listed = subprocess.run([git, "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60).stdout
    files = [name for name in listed.decode().split("\0")
             if name and name != BASELINE.name and (REPO / name).is_file()]
    assert files and not any(name.startswith((".lake/", ".venv/", ".venv-airflow/")) for name in files)
    return files


def secrets_hook(files: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """detect-secrets-hook against a copy of the baseline: exit 1 when a file holds a secret the baseline does not
    list, 3 when only the baseline's line numbers are stale (the hook rewrites its baseline then: hence the copy,
    so the test never edits the tree), 0 otherwise. The copy keeps the name, which the scanner always skips."""
    baseline = tmp_path / "baseline" / BASELINE.name
    baseline.parent.mkdir()
    shutil.copyfile(BASELINE, baseline)
    return subprocess.run([str(SECRETS_HOOK), "--baseline", str(baseline), *files], cwd=REPO, capture_output=True,
                          text=True, timeout=600)


def test_the_baseline_lists_only_audited_false_positives():
    baseline = json.loads(BASELINE.read_text())
    unaudited = [f"{name}:{item['line_number']} {item['type']}" for name, items in baseline["results"].items()
                 for item in items if item.get("is_secret") is not False]
    assert unaudited == [], "audit these (a real secret must be removed and rotated, not baselined)"
    assert not any(name.startswith(".lake/") for name in baseline["results"])


def test_no_secret_in_the_tracked_files_beyond_the_baseline(tmp_path):
    result = secrets_hook(tracked_files(), tmp_path)
    assert result.returncode in (0, 3), (
        f"detect-secrets found secrets that .secrets.baseline does not list (exit {result.returncode}): remove "
        f"real ones; mark a test fake with `# pragma: allowlist secret`\n{result.stdout}{result.stderr}")


def test_the_secret_scan_reports_a_planted_aws_key_and_private_key(tmp_path):
    planted = tmp_path / "settings_local.py"
    planted.write_text(f'aws_secret_access_key = "{PLANTED_AWS_VALUE}"\n'
                       f'PRIVATE_KEY = """{PLANTED_KEY_HEADER}\nMIIEowIBAAKCAQEA\n"""\n')
    result = secrets_hook([str(planted)], tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "AWS Access Key" in result.stdout and "Private Key" in result.stdout, result.stdout
