"""Spark's view of the message contract, derived from the JSON Schemas in conf/schemas (never restated here).

Two things come out of a JSON Schema:
- struct_type(): the StructType of the typed event;
- violations(): one Column per rule, each null when the rule holds and the reason string when it is broken.
  The reasons are the vocabulary of conf/contracts/events.py, the producer's too: `malformed_json`, `<field>:required`, `<field>:type`,
  `<field>:<keyword>` (pattern, minimum, maximum, exclusiveMinimum, exclusiveMaximum, minLength, maxLength,
  maxItems, enum) and `additionalProperties`.

JSON types are judged on the JSON itself (parsed as a Spark VARIANT), not after Spark's lenient JSON-to-column
coercion, so {"price": "12"} is `price:type` here exactly as at the producer. Numbers too are read as the producer
reads them: an integer written 1.0 or 1.7676054E12 is an integer when integral, a number literal beyond a double
(1e400) is `malformed_json` wherever it sits.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (ArrayType, BooleanType, DataType, DoubleType, LongType, StringType, StructField,
                               StructType)

from conf.contracts.events import ADDITIONAL_PROPERTIES, MALFORMED_JSON, UNSUPPORTED_VERSION
from conf.contracts.schemas import CONTRACT_VERSIONS, VERSION_FIELD

# JSON Schema type -> Spark type of the typed column.
SPARK_TYPES: dict[str, DataType] = {
    "string": StringType(), "number": DoubleType(), "integer": LongType(), "boolean": BooleanType(),
}
# JSON Schema type -> regex over schema_of_variant() of the field's value.
VARIANT_TYPE_PATTERNS = {
    "string": r"^STRING$",
    "integer": r"^(TINYINT|SMALLINT|INT|BIGINT|DECIMAL\(\d+,0\))$",
    "number": r"^(TINYINT|SMALLINT|INT|BIGINT|DECIMAL\(\d+,\d+\)|FLOAT|DOUBLE)$",
    "boolean": r"^BOOLEAN$",
    "array": r"^ARRAY<",
    "object": r"^OBJECT<",
    "null": r"^VOID$",
}
# A number written with a fraction or an exponent that the variant does not hold as an exact integer: DOUBLE
# (1.7676054E12, 5e0) or a DECIMAL with a scale (1.5; 1.0 is DECIMAL(1,0) already). JSON Schema calls it an integer
# when its fractional part is zero, which the producer (Python) judges on its value as a double: so does the stream.
INEXACT_NUMBER_PATTERN = r"^(DOUBLE|DECIMAL\(\d+,[1-9]\d*\))$"
LONG_RANGE = (-2.0 ** 63, 2.0 ** 63)  # doubles in [min, max) fit a bigint (a cast would saturate at 2^63)
# A number literal with a fraction or an exponent, starting where a token starts: possessive, so the scan is linear.
FLOAT_LITERAL = r"(?<![0-9.])-?[0-9]++(?:\.[0-9]++(?:[eE][-+]?[0-9]++)?+|[eE][-+]?[0-9]++)"
COMPARISONS = {"minimum": "<", "maximum": ">", "exclusiveMinimum": "<=", "exclusiveMaximum": ">="}


def _types(spec: dict[str, Any]) -> list[str]:
    declared = spec.get("type", [])
    return [declared] if isinstance(declared, str) else list(declared)


def spark_type(spec: dict[str, Any]) -> DataType:
    non_null = [t for t in _types(spec) if t != "null"]
    if len(non_null) != 1:
        raise ValueError(f"cannot map JSON Schema type {spec.get('type')!r} to one Spark type")
    if non_null[0] == "array":
        return ArrayType(spark_type(spec.get("items", {"type": "string"})), containsNull=False)
    return SPARK_TYPES[non_null[0]]


def struct_type(schema: dict[str, Any]) -> StructType:
    required = set(schema.get("required", []))
    return StructType([
        StructField(name, spark_type(spec), nullable=name not in required or "null" in _types(spec))
        for name, spec in schema["properties"].items()
    ])


def ecma_pattern(pattern: str) -> str:
    """A JSON Schema (ECMA-262) pattern as a Java regex: an unescaped trailing `$` means end of input there,
    but in Java it also matches before a final newline, which would let "AAPL\\n" through."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        return pattern[:-1] + "\\z"
    return pattern


def field_type(variant: Column, name: str) -> Column:
    """The JSON type of top-level field `name` as schema_of_variant reports it (null when absent)."""
    return F.schema_of_variant(F.variant_get(variant, f"$['{name}']", "variant"))


def type_matches(variant_type: Column, spec: dict[str, Any]) -> Column:
    checks = [variant_type.rlike(VARIANT_TYPE_PATTERNS[t]) for t in _types(spec)]
    matched = checks[0]
    for check in checks[1:]:
        matched = matched | check
    if "array" in _types(spec) and "items" in spec:
        # Element type: every item must be of the items' type; an empty array reports ARRAY<VOID>.
        item_pattern = VARIANT_TYPE_PATTERNS[_types(spec["items"])[0]].strip("^$")
        elements_ok = variant_type.rlike(rf"^ARRAY<({item_pattern}|VOID)>$")
        matched = matched & elements_ok
    return matched


def integral_number(variant_type: Column, as_double: Column) -> Column:
    """An integer field's inexact number (INEXACT_NUMBER_PATTERN) whose value as a double is integral. An infinite
    one can only be an integer literal of over 308 digits here (float_overflow made 1e400 malformed_json): an
    integer beyond any range, `<field>:maximum` or `minimum` as at the producer."""
    return variant_type.rlike(INEXACT_NUMBER_PATTERN) & (F.rint(as_double) == as_double)


def integer_value(json: Column, name: str, variant_type: Column, as_double: Column) -> Column:
    """An integer field's value as a bigint: exact for an exact integer, else its double cast when it fits (null
    beyond a bigint, which the out-of-range rule reports)."""
    low, high = LONG_RANGE
    return F.when(variant_type.rlike(VARIANT_TYPE_PATTERNS["integer"]),
                  F.try_variant_get(json, f"$['{name}']", "bigint")).otherwise(
        F.when((as_double >= low) & (as_double < high), as_double.cast("bigint")))


def float_overflow(text: Column, json: Column) -> Column:
    """True when the JSON text (parsed as `json`) holds a number literal with a fraction or an exponent beyond a
    double's range (1e400), anywhere: malformed_json, as at the producer (RFC 8259 section 6: not interoperable).
    The variant holds it as an infinite DOUBLE, but so it holds an integer literal of over 308 digits, which is an
    integer to JSON Schema (out of range): so the literals are read from the text, escapes then strings taken out
    first (no backtracking: a megabyte of escaped quotes must not blow the stack). Only records whose variant
    holds a DOUBLE can have one, so only they pay for the regexes: schema_of_variant names it, or says VARIANT
    where it merged a DOUBLE with a type of another kind (in an array)."""
    bare = F.regexp_replace(F.regexp_replace(text, r"(?s)\\.", ""), r'"[^"]*+"', "")
    values = F.regexp_extract_all(bare, F.lit(FLOAT_LITERAL), 0).try_cast("array<double>")
    infinite = F.array_contains(values, F.lit(float("inf"))) | F.array_contains(values, F.lit(float("-inf")))
    return F.when(F.schema_of_variant(json).rlike("DOUBLE|VARIANT"), infinite).otherwise(F.lit(False))


def item_rules(spec: dict[str, Any], value: Column) -> dict[str, Column]:
    """The rules on an array's items, each true when some item breaks it. They need lambdas, which Spark only
    interprets (no generated code), so parse_json computes them in a projection of their own."""
    items = spec.get("items", {})
    rules = {}
    if "items" in spec:
        # ["1", null] has the element type STRING and from_json keeps the null: the item is not of the items' type.
        rules["type"] = F.exists(value, lambda item: item.isNull())
    if "maxLength" in items:
        rules["maxLength"] = F.exists(value, lambda item: F.length(item) > items["maxLength"])
    if "pattern" in items:
        rules["pattern"] = F.exists(value, lambda item: ~item.rlike(ecma_pattern(items["pattern"])))
    return rules


def _constraint_violations(name: str, spec: dict[str, Any], value: Column,
                           items_broken: dict[str, Column]) -> list[Column]:
    """Rules of one field checked on its typed value (which is null when absent, null or ill-typed);
    `items_broken` holds item_rules' results for this field."""
    rules: list[tuple[str, Column]] = []
    for keyword, op in COMPARISONS.items():
        if keyword in spec:
            limit = F.lit(spec[keyword])
            broken = {"<": value < limit, ">": value > limit, "<=": value <= limit, ">=": value >= limit}[op]
            rules.append((keyword, broken))
    if "pattern" in spec:
        rules.append(("pattern", ~value.rlike(ecma_pattern(spec["pattern"]))))
    if "minLength" in spec:
        rules.append(("minLength", F.length(value) < spec["minLength"]))
    if "maxLength" in spec:
        rules.append(("maxLength", F.length(value) > spec["maxLength"]))
    if "enum" in spec:
        rules.append(("enum", ~value.isin(*spec["enum"])))
    if "maxItems" in spec:
        rules.append(("maxItems", F.size(value) > spec["maxItems"]))
    rules.extend(items_broken.items())
    return [F.when(broken, F.lit(f"{name}:{keyword}")) for keyword, broken in rules]


# Helper columns of the parse stages (dropped again by parse_json).
TEXT_COLUMN = "_text"                 # the record as text, null unless valid UTF-8
FAST_COLUMN = "_fast"                 # from_json of the text into the typed struct
CANONICAL_COLUMN = "_canonical"       # the text is exactly that struct written back as JSON
PARSED_COLUMN = "_parsed"             # the text parsed as VARIANT (other records only)
JSON_COLUMN = "_json"                 # the same, null when it holds a number literal beyond a double (float_overflow)
JSON_KEYS_COLUMN = "_json_keys"       # its top-level keys (other records only)
SINGLE_COLUMN = "_single_value"       # the text is one JSON value, nothing after it (other records only)
JSON_TYPE_PREFIX = "_json_type_"      # each top-level field's JSON type
AS_DOUBLE_PREFIX = "_as_double_"      # each integer field's value as a double
TYPED_PREFIX = "_typed_"              # each field's typed value
ITEMS_PREFIX = "_items_"              # item rules of array fields


def parse_json(df: DataFrame, raw_column: str, schema: dict[str, Any], event_column: str = "event",
               violations_column: str = "_violations") -> DataFrame:
    """Parse the raw Kafka bytes in `raw_column` against a JSON Schema: adds `event_column`, a struct of the typed
    fields (a field is null where it is absent or ill-typed), and `violations_column`, the array of rule results
    in contract order (null where a rule holds; the first non-null one is the record's quarantine reason).

    Two paths, one answer:
    - Fast: from_json into the typed struct, and to_json back. When that gives exactly the text (compact JSON,
      the contract's field order, numbers as Spark writes them: what the producer sends) the record holds only
      contract fields, each of its JSON type, no duplicates, no NaN/Infinity; only `required` and the value rules
      remain to check, on the typed values.
    - Exact: every other record is judged on the JSON itself, parsed as VARIANT (types from schema_of_variant,
      keys from json_object_keys), so {"price": "12"} is `price:type` exactly as at the producer. About five
      times the cost per record, so only records that need it pay it.

    Built in stacked projections on purpose: the parsed JSON and each field's JSON type are read by many rules, and
    Spark re-evaluates an expression at every use when it is inlined into conditional branches (one projection
    held the JSON parse about forty times and ran ~150x slower). As columns of their own, each is computed once:
    Spark never collapses a projection into one that uses an expensive expression more than once.

    A versioned contract (conf.contracts.schemas.load_contract: every version of a schema family in one) adds two rules:
    a `schema_version` newer than the newest known is `schema_version:unsupported` (first after malformed_json),
    and a field added in a later version than the record's is an unknown field there (`additionalProperties`, as
    the producer's validator of that version says), its own rules not applied.

    The stages' columns are built once per contract and reused for every DataFrame (parse_stages): building them
    takes some 6,000 calls into the JVM, about a second, which the stream's Bronze query paid on every micro-batch.
    """
    for stage in parse_stages(schema, raw_column, event_column, violations_column):
        df = df.withColumns(stage) if isinstance(stage, dict) else df.drop(*stage)
    return df


# parse_json's stages by contract and column names. Columns name what they read, so one set serves any DataFrame
# (and any session: they live in the JVM every session of the process shares, or in Python under Spark Connect).
_STAGES: dict[tuple[str, str, str, str], list[dict[str, Column] | list[str]]] = {}


def parse_stages(schema: dict[str, Any], raw_column: str, event_column: str,
                 violations_column: str) -> list[dict[str, Column] | list[str]]:
    """parse_json's stacked projections, in order: columns to add, or (the last) the helper columns to drop."""
    key = (json.dumps(schema, default=str), raw_column, event_column, violations_column)  # key order: contract order
    if key not in _STAGES:
        _STAGES[key] = _build_stages(schema, raw_column, event_column, violations_column)
    return _STAGES[key]


def _build_stages(schema: dict[str, Any], raw_column: str, event_column: str,
                  violations_column: str) -> list[dict[str, Column] | list[str]]:
    properties: dict[str, dict[str, Any]] = schema["properties"]
    raw = F.col(raw_column)
    stages: list[dict[str, Column] | list[str]] = [
        {TEXT_COLUMN: F.when(F.is_valid_utf8(raw), raw.cast("string"))},
        {FAST_COLUMN: F.from_json(F.col(TEXT_COLUMN), struct_type(schema))}]
    fast = {name: F.col(FAST_COLUMN)[name] for name in properties}
    canonical = F.coalesce(F.to_json(F.col(FAST_COLUMN)) == F.col(TEXT_COLUMN), F.lit(False))
    for name, spec in properties.items():
        if isinstance(spark_type(spec), DoubleType):  # from_json takes NaN/Infinity, which JSON has not
            canonical = canonical & (fast[name].isNull() | (~F.isnan(fast[name]) &
                                                            (F.abs(fast[name]) != F.lit(float("inf")))))
    stages.append({CANONICAL_COLUMN: canonical})
    is_canonical = F.col(CANONICAL_COLUMN)

    exact_text = F.when(~is_canonical, F.col(TEXT_COLUMN))
    # Spark's JSON parsers stop after the first value, so `{...}x` or two objects back to back would parse. Wrapped
    # as [text, "<sha256 of text>"], a single value gives exactly those two elements; trailing content cannot
    # (it would have to contain the hash of itself).
    digest = F.sha2(exact_text, 256)
    wrapped = F.try_parse_json(F.concat(F.lit("["), exact_text, F.lit(',"'), digest, F.lit('"]')))
    single = F.coalesce((F.size(F.try_variant_get(wrapped, "$", "array<variant>")) == 2)
                        & (F.try_variant_get(wrapped, "$[1]", "string") == digest), F.lit(False))
    stages.append({PARSED_COLUMN: F.try_parse_json(exact_text),
                   JSON_KEYS_COLUMN: F.json_object_keys(exact_text),  # null unless an object
                   SINGLE_COLUMN: single})
    parsed = F.col(PARSED_COLUMN)
    stages.append({JSON_COLUMN: F.when(~float_overflow(F.col(TEXT_COLUMN), parsed), parsed)})
    typing_stages, type_ok = _exact_typing(properties, is_canonical, fast)
    stages += typing_stages
    typed = {name: F.col(f"{TYPED_PREFIX}{name}") for name in properties}
    rules_per_field = {name: item_rules(spec, typed[name]) for name, spec in properties.items()}
    item_columns = {f"{ITEMS_PREFIX}{name}_{keyword}": rule for name, rules in rules_per_field.items()
                    for keyword, rule in rules.items()}
    stages.append(item_columns)
    items_broken = {name: {keyword: F.col(f"{ITEMS_PREFIX}{name}_{keyword}") for keyword in rules}
                    for name, rules in rules_per_field.items()}
    event = F.struct(*[typed[name].alias(name) for name in properties])
    versions = version_rules(schema, typed)

    keys = F.col(JSON_KEYS_COLUMN)
    exact = _violations(schema, F.col(JSON_COLUMN).isNull() | keys.isNull() | ~F.col(SINGLE_COLUMN),
                        lambda name: F.array_contains(keys, name), type_ok, typed, items_broken,
                        F.size(F.array_except(keys, F.array(*[F.lit(name) for name in properties]))) > 0,
                        versions,
                        lambda name: F.coalesce(F.col(f"{JSON_TYPE_PREFIX}{name}") == "VOID", F.lit(False)),
                        lambda name: F.col(f"{AS_DOUBLE_PREFIX}{name}") < 0)
    # A canonical record: present = non-null (to_json leaves nulls out), every type right, no unknown key.
    checked = _violations(schema, F.lit(False), lambda name: typed[name].isNotNull(),
                          {name: F.lit(True) for name in properties}, typed, items_broken, F.lit(False), versions)
    violations = F.when(is_canonical, F.array(*checked)).otherwise(F.array(*exact))
    helpers = [TEXT_COLUMN, FAST_COLUMN, CANONICAL_COLUMN, PARSED_COLUMN, JSON_COLUMN, JSON_KEYS_COLUMN,
               SINGLE_COLUMN, *[f"{prefix}{name}" for prefix in (JSON_TYPE_PREFIX, TYPED_PREFIX) for name in properties],
               *[f"{AS_DOUBLE_PREFIX}{name}" for name, spec in properties.items() if "integer" in _types(spec)],
               *item_columns]
    return [*stages, {event_column: event, violations_column: violations}, helpers]


def _exact_typing(properties: dict[str, dict[str, Any]], is_canonical: Column,
                  fast: dict[str, Column]) -> tuple[list[dict[str, Column]], dict[str, Column]]:
    """The stages that give each field its JSON type and its typed value (a canonical record's from the fast path),
    and each field's type check on the exact path."""
    json = F.col(JSON_COLUMN)
    integers = [name for name, spec in properties.items() if "integer" in _types(spec)]
    types_stage = {f"{JSON_TYPE_PREFIX}{name}": F.when(~is_canonical, field_type(json, name)) for name in properties}
    types_stage.update({f"{AS_DOUBLE_PREFIX}{name}": F.when(~is_canonical, F.try_variant_get(
        json, f"$['{name}']", "double")) for name in integers})
    type_ok, values = {}, {}
    for name, spec in properties.items():
        json_type = F.col(f"{JSON_TYPE_PREFIX}{name}")
        type_ok[name] = type_matches(json_type, spec)
        values[name] = F.try_variant_get(json, f"$['{name}']", spark_type(spec).simpleString())
        if name in integers:
            as_double = F.col(f"{AS_DOUBLE_PREFIX}{name}")
            type_ok[name] = type_ok[name] | integral_number(json_type, as_double)
            values[name] = integer_value(json, name, json_type, as_double)
    typed_stage = {f"{TYPED_PREFIX}{name}": F.when(is_canonical, fast[name]).otherwise(
        F.when(type_ok[name], values[name])) for name in properties}
    return [types_stage, typed_stage], type_ok


@dataclass(frozen=True)
class VersionRules:
    unsupported: Column                 # the record's schema_version is newer than the contract knows
    too_early: dict[str, Column]        # per field added in a later version: the record's version predates it


def version_rules(schema: dict[str, Any], typed: dict[str, Column]) -> VersionRules:
    """The rules a versioned contract adds (none for a single schema version). A record whose version is absent
    or ill-typed is judged by the newest version, as the producer judges it."""
    versions = schema.get(CONTRACT_VERSIONS)
    if not versions:
        return VersionRules(F.lit(False), {})
    version = typed[VERSION_FIELD]
    return VersionRules(
        F.coalesce(version > F.lit(versions["latest"]), F.lit(False)),
        {name: F.coalesce(version < F.lit(since), F.lit(False)) for name, since in versions["since"].items()})


def _violations(schema: dict[str, Any], malformed: Column, present, type_ok: dict[str, Column],
                typed: dict[str, Column], items_broken: dict[str, dict[str, Column]],
                unknown_keys: Column, versions: VersionRules, json_null=lambda name: F.lit(False),
                negative=lambda name: F.lit(False)) -> list[Column]:
    """One column per rule of the contract, in contract order: null where it holds, else the reason.
    `present(name)` says whether the record has the field; `unknown_keys` whether it has fields the contract lacks."""
    properties: dict[str, dict[str, Any]] = schema["properties"]

    violations = [F.when(malformed, F.lit(MALFORMED_JSON)),
                  F.when(versions.unsupported, F.lit(UNSUPPORTED_VERSION))]
    for name in schema.get("required", []):
        violations.append(F.when(~present(name), F.lit(f"{name}:required")))
    for name, spec in properties.items():
        rules = [F.when(present(name) & ~type_ok[name], F.lit(f"{name}:type"))]
        if "integer" in _types(spec):
            # An integer of the right JSON type that does not fit a bigint (beyond 2^63 - 1): its typed value is
            # null, so the value rules below would pass it. It is out of any range the contract can mean.
            out_of_range = present(name) & type_ok[name] & typed[name].isNull() & ~json_null(name)
            too_low = F.coalesce(negative(name), F.lit(False))
            rules.append(F.when(out_of_range, F.when(too_low, F.lit(f"{name}:minimum"))
                                .otherwise(F.lit(f"{name}:maximum"))))
        rules.extend(_constraint_violations(name, spec, typed[name], items_broken[name]))
        too_early = versions.too_early.get(name)
        if too_early is not None:
            # Not a field of the record's version: when present it is an unknown field there, not judged by the
            # rules it has in later versions.
            unknown_keys = unknown_keys | (present(name) & too_early)
            rules = [F.when(~too_early, rule) for rule in rules]
        violations.extend(rules)
    if schema.get("additionalProperties") is False:
        violations.append(F.when(unknown_keys, F.lit(ADDITIONAL_PROPERTIES)))
    return violations
