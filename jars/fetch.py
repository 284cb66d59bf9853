#!/usr/bin/env python3
"""Download the jars pinned in jars/<set>.lock from Maven Central and verify their sha256.

Jars are cached outside the clone, in $STOCKLAKE_CACHE/maven (default ~/.cache/stocklake/maven), laid out like a
Maven repository, so every clone on the machine shares one download. A jar whose checksum does not match the
lock is deleted and the run fails: nothing unverified ever reaches a classpath.

Usage:
  python3 jars/fetch.py SET [SET ...] [--classpath-file PATH] [--spark-defaults PATH]

  --classpath-file PATH   write the verified jar paths of the set(s), one a line
  --spark-defaults PATH   write a spark-defaults.conf for SPARK_CONF_DIR: conf/spark/spark-defaults.conf (settings
                          the JVM needs at start) plus the jars on the driver's and the executors' class path

Standard library only: it runs before the Python environment exists.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

JARS_DIR = Path(__file__).resolve().parent
SPARK_DEFAULTS = JARS_DIR.parent / "conf" / "spark" / "spark-defaults.conf"
# Why a class path and not spark.jars, said in the generated file; a SIGKILLed driver also left its copy behind.
CLASS_PATH_WHY = (
    "\n# The pinned jars, read in place by the driver and the executors (the same path on every node: this machine, "
    "make spark-cluster,\n# the image): spark.jars would copy all of them, the 686 MB AWS SDK bundle included, into "
    "each executor's scratch folder.\n")
MAVEN_CENTRAL = os.environ.get("STOCKLAKE_MAVEN_REPO", "https://repo1.maven.org/maven2")


def cache_dir() -> Path:
    return Path(os.environ.get("STOCKLAKE_CACHE", Path.home() / ".cache" / "stocklake")).expanduser()


def read_lock(name: str) -> list[tuple[str, str]]:
    lock = JARS_DIR / f"{name}.lock"
    if not lock.is_file():
        raise SystemExit(f"fetch: no lock file {lock} (known: {', '.join(p.stem for p in JARS_DIR.glob('*.lock'))})")
    entries = []
    for number, line in enumerate(lock.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            coord, sha = line.split()
        except ValueError:
            raise SystemExit(f"fetch: {lock}:{number}: expected 'group:artifact:version sha256'") from None
        entries.append((coord, sha.lower()))
    return entries


def relative_path(coord: str) -> Path:
    parts = coord.split(":")
    if len(parts) not in (3, 4):
        raise SystemExit(f"fetch: bad coordinate {coord!r}")
    group, artifact, version = parts[:3]
    classifier = f"-{parts[3]}" if len(parts) == 4 else ""
    return Path(*group.split("."), artifact, version, f"{artifact}-{version}{classifier}.jar")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, dest: Path, attempts: int = 4) -> None:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise SystemExit(f"fetch: not an http(s) URL: {url} (check STOCKLAKE_MAVEN_REPO)")
    tmp = dest.with_name(dest.name + ".part")
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(url, timeout=120) as resp, tmp.open("wb") as out:  # noqa: S310 - checked
                total = int(resp.headers.get("Content-Length") or 0)
                done, last_report = 0, time.monotonic()
                for chunk in iter(lambda: resp.read(1 << 20), b""):
                    out.write(chunk)
                    done += len(chunk)
                    if total > 50 << 20 and time.monotonic() - last_report > 5:
                        print(f"  {dest.name}: {done >> 20} / {total >> 20} MiB", file=sys.stderr)
                        last_report = time.monotonic()
            tmp.replace(dest)
            return
        except (urllib.error.URLError, OSError) as exc:
            tmp.unlink(missing_ok=True)
            if attempt == attempts:
                raise SystemExit(f"fetch: could not download {url}: {exc}") from None
            time.sleep(2 ** attempt)


def fetch(name: str) -> list[Path]:
    repo = cache_dir() / "maven"
    paths = []
    for coord, sha in read_lock(name):
        dest = repo / relative_path(coord)
        if not (dest.is_file() and sha256_of(dest) == sha):
            dest.parent.mkdir(parents=True, exist_ok=True)
            print(f"fetch: downloading {coord}", file=sys.stderr)
            download(f"{MAVEN_CENTRAL}/{relative_path(coord).as_posix()}", dest)
            actual = sha256_of(dest)
            if actual != sha:
                dest.unlink()
                raise SystemExit(f"fetch: checksum mismatch for {coord}: expected {sha}, got {actual}")
        paths.append(dest)
    print(f"fetch: {name}: {len(paths)} jars verified in {repo}", file=sys.stderr)
    return paths


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="+", help="jar set names (jars/<set>.lock)")
    parser.add_argument("--classpath-file", type=Path)
    parser.add_argument("--spark-defaults", type=Path)
    args = parser.parse_args(argv)
    paths = [p for name in args.sets for p in fetch(name)]
    if args.classpath_file:
        args.classpath_file.parent.mkdir(parents=True, exist_ok=True)
        args.classpath_file.write_text("".join(f"{p}\n" for p in paths))
    if args.spark_defaults:
        classpath = os.pathsep.join(str(p) for p in paths)
        args.spark_defaults.parent.mkdir(parents=True, exist_ok=True)
        args.spark_defaults.write_text(
            "# Generated by jars/fetch.py from conf/spark/spark-defaults.conf and the pinned jar locks; regenerated by "
            "`make setup`.\n"
            f"{SPARK_DEFAULTS.read_text()}\n"
            f"{CLASS_PATH_WHY}"
            f"spark.driver.extraClassPath {classpath}\n"
            f"spark.executor.extraClassPath {classpath}\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
