"""The message schemas of conf/schemas: one version, every version of a family, and a reader's contract (every
version as one JSON Schema; a version may only add optional fields)."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from conf.settings import ConfigError

SCHEMAS_DIR = Path(__file__).resolve().parents[1] / "schemas"


def load_schema(name: str) -> dict[str, Any]:
    """A message schema from conf/schemas, e.g. load_schema('trade.v1')."""
    path = SCHEMAS_DIR / f"{name}.json"
    if not path.is_file():
        raise ConfigError(f"no message schema {name!r} in {path.parent}")
    return json.loads(path.read_text())


VERSION_FIELD = "schema_version"


# Key of load_contract()'s result that says which versions it reads (not a JSON Schema keyword).
CONTRACT_VERSIONS = "x-stocklake-versions"


SCHEMA_FILE = re.compile(r"^(?P<family>[a-z][a-z0-9_]*)\.v(?P<version>[1-9][0-9]{0,3})\.json$")


def schema_versions(family: str) -> dict[int, dict[str, Any]]:
    """Every version of a message schema, by version number: {1: trade.v1, 2: trade.v2} for 'trade'."""
    versions = {}
    for path in SCHEMAS_DIR.glob(f"{family}.v*.json"):
        match = SCHEMA_FILE.match(path.name)
        if match and match["family"] == family:
            versions[int(match["version"])] = json.loads(path.read_text())
    if not versions:
        raise ConfigError(f"no message schema {family}.v<N> in {SCHEMAS_DIR}")
    return dict(sorted(versions.items()))


def load_contract(family: str) -> dict[str, Any]:
    """What a reader of a topic accepts: every version of the family's schema, as one JSON Schema.

    It is the newest version's schema, with `schema_version` allowed from the oldest version up (a newer, unknown
    version is the reader's `schema_version:unsupported`), plus, under CONTRACT_VERSIONS, the newest version and
    the version each later-added field appeared in (such a field in an older version's event is an unknown field).
    Versions may only add optional fields: anything else would change what an older event means, so it is refused.
    """
    versions = schema_versions(family)
    oldest, latest = min(versions), max(versions)
    since: dict[str, int] = {}
    previous: dict[str, Any] | None = None
    for version, schema in versions.items():
        problem = None
        version_rule = schema["properties"].get(VERSION_FIELD, {})
        if version_rule.get("minimum") != version or version_rule.get("maximum") != version:
            problem = f"its {VERSION_FIELD} must be exactly {version} (minimum and maximum)"
        elif previous is not None:
            earlier = previous["properties"]
            if set(schema.get("required", [])) != set(previous.get("required", [])):
                problem = "it changes the required fields (a new field must be optional)"
            elif list(schema["properties"])[:len(earlier)] != list(earlier):
                problem = "it does not keep the previous version's fields first, in their order"
            elif schema.get("additionalProperties") != previous.get("additionalProperties"):
                problem = "it changes additionalProperties"
            else:
                changed = [name for name, spec in earlier.items()
                           if name != VERSION_FIELD and schema["properties"][name] != spec]
                if changed:
                    problem = f"it changes the rules of {', '.join(changed)}"
        if problem:
            raise ConfigError(f"message schema {family}.v{version}: {problem}; a new version may only add "
                              f"optional fields at the end")
        for name in schema["properties"]:
            since.setdefault(name, version)
        previous = schema
    contract = json.loads(json.dumps(versions[latest]))
    version_rule = {key: value for key, value in contract["properties"][VERSION_FIELD].items() if key != "maximum"}
    contract["properties"][VERSION_FIELD] = {**version_rule, "minimum": oldest}
    contract[CONTRACT_VERSIONS] = {"latest": latest,
                                   "since": {name: version for name, version in since.items() if version > oldest}}
    return contract
