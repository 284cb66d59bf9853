"""docker/compose.yaml without a Docker engine: valid Compose, and every reference in it real.

- The file validates against the Compose specification's JSON Schema (scripts/fetch_compose_schema.py, pinned by
  sha256), with the draft the schema declares; broken copies fail, each at the place that breaks.
- Images are pinned, and to the repository's own pins where they overlap (Kafka, MinIO, uv, Python).
- Build contexts, Dockerfiles, stages, COPY sources and bind-mounted paths exist in the repository.
- Commands run files and modules that exist, with flags the repository's own argument parsers accept.
- STOCKLAKE_* variables are real settings (conf.settings), and addresses in them point at services of the file.
- Secrets appear only as ${VAR} from docker/.env, every one documented in docker/.env.example and every one there
  used; docker/.env is git-ignored.
- Long-running services have health checks; depends_on names services that exist, with conditions they can meet.
- docker/create_topics.py and scripts/airflow_env.py container do what compose relies on (the topic script against the
  real local Kafka: tests/integration/test_stack_and_producer.py).
"""
from __future__ import annotations

import base64
import copy
import importlib.util
import json
import os
import re
import shlex
import stat
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import jsonschema
import pytest
import yaml

from conf.settings import NON_SETTING_ENV, env_name, load_settings

REPO = Path(__file__).resolve().parents[3]
DOCKER = REPO / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
# Where docker/Dockerfile puts the checkout, and so what container paths in compose.yaml are relative to.
IMAGE_REPO = "/opt/stocklake"
# Environment keys whose values are secrets: they may only be ${VAR} references.
SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|ACCESS_KEY|PRIVATE_KEY|ROOT_USER", re.I)
INTERPOLATION = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}|([A-Za-z_][A-Za-z0-9_]*))")
ONLY_A_REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(?::?[?-])[^}]*)?\}$")


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


fetch_compose_schema = load_module("fetch_compose_schema", REPO / "scripts" / "fetch_compose_schema.py")
create_topics = load_module("create_topics", DOCKER / "create_topics.py")
airflow_env = load_module("airflow_env", REPO / "scripts" / "airflow_env.py")


# -- helpers ---------------------------------------------------------------------------------------------------------

def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: not KEY=value: {line!r}"
            values[key.strip()] = value.strip()
    return values


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    return instructions


def dockerfile_stages(path: Path) -> dict[str, str]:
    """stage name -> base image of every `FROM image AS name`."""
    stages = {}
    for keyword, args in dockerfile_instructions(path):
        if keyword == "FROM":
            parts = args.split()
            if len(parts) == 3 and parts[1].upper() == "AS":
                stages[parts[2]] = parts[0]
    return stages


def dockerfile_values(path: Path, keyword: str) -> dict[str, str]:
    """ARG or ENV name -> value (the `NAME=value` forms)."""
    values = {}
    for kw, args in dockerfile_instructions(path):
        if kw == keyword:
            for token in shlex.split(args):
                name, sep, value = token.partition("=")
                if sep:
                    values[name] = value
    return values


def strings_in(node, path=()):
    """Every string of a loaded YAML document, with where it is."""
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings_in(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from strings_in(value, (*path, index))


def referenced_variables(text: str) -> set[str]:
    return {braced or bare for escaped, braced, bare in INTERPOLATION.findall(text) if not escaped}


def command_of(service: dict) -> list[str]:
    command = service.get("command")
    return shlex.split(command) if isinstance(command, str) else list(command or [])


def environment_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def stocklake_env(service: dict) -> dict[str, str]:
    return {k: v for k, v in environment_of(service).items() if k.startswith("STOCKLAKE_")}


def repo_path(container_path: str) -> Path:
    """A path as a container of our image sees it (relative to the checkout, or under it) -> the repository's."""
    if container_path.startswith(IMAGE_REPO + "/"):
        container_path = container_path[len(IMAGE_REPO) + 1:]
    assert not container_path.startswith("/"), f"{container_path}: not inside the checkout"
    return REPO / container_path


def service_dockerfile(service: dict) -> tuple[Path, Path, str | None]:
    build = service["build"]
    build = {"context": build} if isinstance(build, str) else build
    context = (DOCKER / build["context"]).resolve()
    return context, context / build.get("dockerfile", "Dockerfile"), build.get("target")


def depends_on(service: dict) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: spec["condition"] for name, spec in deps.items()}


def option(command: list[str], flag: str) -> str:
    assert flag in command, f"{flag} missing from {command}"
    return command[command.index(flag) + 1]


def is_one_shot(service: dict) -> bool:
    return service.get("restart") == "no"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(fetch_compose_schema.schema_path().read_text())


@pytest.fixture(scope="module")
def validator_class(schema):
    """The validator of the draft the schema declares ($schema), matched by URI, scheme and trailing # aside."""
    def normal(uri: str) -> str:
        return re.sub(r"^https?://", "", uri).rstrip("#")

    declared = normal(schema["$schema"])
    known = [jsonschema.Draft4Validator, jsonschema.Draft6Validator, jsonschema.Draft7Validator,
             jsonschema.Draft201909Validator, jsonschema.Draft202012Validator]
    matches = [cls for cls in known if normal(cls.META_SCHEMA.get("$schema") or cls.META_SCHEMA["id"]) == declared]
    assert len(matches) == 1, f"no jsonschema validator for $schema {schema['$schema']!r}"
    return matches[0]


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def app_dockerfile() -> Path:
    return DOCKER / "Dockerfile"


# -- the Compose specification ---------------------------------------------------------------------------------------

def test_schema_is_the_pinned_compose_spec_and_declares_draft_7(schema, validator_class):
    assert schema["title"] == "Compose Specification"
    assert validator_class is jsonschema.Draft7Validator
    validator_class.check_schema(schema)
    # Current spec: it knows keys added in 2025, so the check is not against an outdated schema.
    assert {"models", "provider", "use_api_socket", "develop"} <= (
        set(schema["properties"]) | set(schema["definitions"]["service"]["properties"]))


def test_compose_file_validates_against_the_compose_spec(compose, schema, validator_class):
    errors = sorted(validator_class(schema).iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors] == []


def _set(document: dict, path: tuple, value) -> None:
    for key in path[:-1]:
        document = document[key]
    document[path[-1]] = value


@pytest.mark.parametrize("path, value, error_at", [
    (("servics",), {}, ()),                                                           # unknown top-level key
    (("services", "producer", "comand"), ["python"], ("services", "producer")),        # unknown service key
    (("services", "stream", "depends_on", "topic-init", "condition"), "service_ready",
     ("services", "stream", "depends_on")),                                           # no such condition
    (("services", "minio", "healthcheck", "tset"), ["CMD", "true"], ("services", "minio", "healthcheck")),
    (("volumes",), ["minio-data"], ("volumes",)),                                       # a list, not a mapping
    (("services", "kafka-1", "ports"), "127.0.0.1:29092:9094", ("services", "kafka-1", "ports")),  # not a list
])
def test_broken_copies_fail_validation_where_they_break(compose, schema, validator_class, path, value, error_at):
    broken = copy.deepcopy(compose)
    _set(broken, path, value)
    errors = list(validator_class(schema).iter_errors(broken))
    assert len(errors) == 1, [e.message for e in errors]
    assert tuple(errors[0].absolute_path) == error_at


# -- images and builds -------------------------------------------------------------------------------------------------

def test_every_image_is_pinned_to_a_version(services):
    for name, service in services.items():
        image = service.get("image")
        assert image, f"{name}: no image name"
        assert re.fullmatch(r"[a-z0-9][a-z0-9._/-]*:[A-Za-z0-9][A-Za-z0-9._-]*", image), f"{name}: {image} has no tag"
        assert not image.endswith(":latest"), f"{name}: {image}"


def test_every_base_image_of_our_dockerfiles_is_pinned(services):
    dockerfiles = {service_dockerfile(s)[1] for s in services.values() if "build" in s}
    assert dockerfiles == {DOCKER / "Dockerfile", DOCKER / "minio" / "Dockerfile"}
    for dockerfile in dockerfiles:
        stages = set()
        for keyword, args in dockerfile_instructions(dockerfile):
            if keyword == "FROM":
                base, *rest = args.split()
                if base not in stages:
                    assert re.fullmatch(r"[a-z0-9./-]+:\d[A-Za-z0-9._-]*", base), f"{dockerfile}: {base} not pinned"
                if rest:
                    stages.add(rest[-1])


def test_built_images_are_tagged_with_the_project_version(services):
    version = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    built = {service["image"] for service in services.values() if "build" in service}
    assert built == {f"stocklake:{version}", f"stocklake-airflow:{version}", f"stocklake-minio:{version}"}


def test_pins_match_the_repository_pins(services, app_dockerfile):
    # Kafka: the broker image is the release whose jars the local stack runs (jars/kafka.lock).
    kafka_version = re.search(r"^org\.apache\.kafka:kafka_2\.13:(\S+) ", (REPO / "jars" / "kafka.lock").read_text(),
                              re.M).group(1)
    brokers = {name: s for name, s in services.items() if s["image"].startswith("apache/kafka:")}
    assert {s["image"] for s in brokers.values()} == {f"apache/kafka:{kafka_version}"}
    # MinIO: the module version scripts/build_minio.sh builds for the local stack.
    local_minio = re.search(r'MINIO_MODULE_VERSION="\$\{MINIO_MODULE_VERSION:-([^}]+)\}"',
                            (REPO / "scripts" / "build_minio.sh").read_text()).group(1)
    minio_args = dockerfile_values(DOCKER / "minio" / "Dockerfile", "ARG")
    assert minio_args["MINIO_MODULE_VERSION"] == local_minio
    assert re.fullmatch(r"v0\.0\.0-\d{14}-[0-9a-f]{12}", minio_args["MC_MODULE_VERSION"])
    # uv: the Makefile's version.
    make_uv = re.search(r"^UV_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.M).group(1)
    assert dockerfile_values(app_dockerfile, "ARG")["UV_VERSION"] == make_uv
    # Python 3.11 (pyproject's requires-python) and Java 17.
    assert dockerfile_stages(app_dockerfile)["app"].startswith("python:3.11.")
    assert 'requires-python = ">=3.11,<3.12"' in (REPO / "pyproject.toml").read_text()
    run_lines = [args for keyword, args in dockerfile_instructions(app_dockerfile) if keyword == "RUN"]
    assert any("openjdk-17-jre-headless" in line for line in run_lines)


def test_app_image_installs_the_locked_environments_and_the_pinned_jars(app_dockerfile):
    runs = [args for keyword, args in dockerfile_instructions(app_dockerfile) if keyword == "RUN"]
    env = dockerfile_values(app_dockerfile, "ENV")
    syncs = [shlex.split(line.split("uv sync", 1)[1]) for line in runs if "uv sync" in line]
    assert len(syncs) == 3 and all("--frozen" in args for args in syncs)
    # The dependencies first, then the project itself (installed, so no PYTHONPATH), then Airflow's environment.
    assert "--no-dev" in syncs[0] and "--no-install-project" in syncs[0] and "--project" not in syncs[0]
    assert "--no-dev" in syncs[1] and "--no-install-project" not in syncs[1] and "--project" not in syncs[1]
    assert option(syncs[2], "--project") == "airflow"
    assert env["UV_PROJECT_ENVIRONMENT"] == f"{IMAGE_REPO}/.venv"
    assert any(f"UV_PROJECT_ENVIRONMENT={IMAGE_REPO}/.venv-airflow" in line for line in runs)
    # The jars: jars/fetch.py with a set that has a lock, writing spark-defaults.conf into SPARK_CONF_DIR.
    fetch = [shlex.split(line) for line in runs if "jars/fetch.py" in line]
    assert len(fetch) == 1
    args = fetch[0][fetch[0].index("jars/fetch.py") + 1:]
    assert args[0] == "spark" and (REPO / "jars" / "spark.lock").is_file()
    assert option(args, "--spark-defaults") == f"{env['SPARK_CONF_DIR']}/spark-defaults.conf"
    # SPARK_HOME is the job environment's pyspark, as scripts/airflow_env.py computes it for the checkout.
    computed = airflow_env.airflow_environment(repo=Path(IMAGE_REPO), base={"PATH": "/usr/bin"})
    assert env["SPARK_HOME"] == computed["SPARK_HOME"]
    assert env["PYSPARK_PYTHON"] == computed["PYSPARK_PYTHON"]
    assert "PYTHONPATH" not in env
    assert env["STOCKLAKE_CACHE"] and "STOCKLAKE_CACHE" in NON_SETTING_ENV


def test_build_contexts_dockerfiles_and_targets_exist(services):
    built = {name: s for name, s in services.items() if "build" in s}
    assert set(services) - set(built) == {"kafka-1", "kafka-2", "kafka-3", "kafka-ui", "prometheus",
                                          "pushgateway"}  # released images
    for name, service in built.items():
        context, dockerfile, target = service_dockerfile(service)
        assert context.is_dir(), f"{name}: no build context {context}"
        assert dockerfile.is_file(), f"{name}: no Dockerfile {dockerfile}"
        if target is not None:
            assert target in dockerfile_stages(dockerfile), f"{name}: no stage {target} in {dockerfile}"


def test_dockerfile_copy_sources_exist(services):
    for service in services.values():
        if "build" not in service:
            continue
        context, dockerfile, _ = service_dockerfile(service)
        for keyword, args in dockerfile_instructions(dockerfile):
            if keyword != "COPY":
                continue
            tokens = [t for t in shlex.split(args) if not t.startswith("--chmod") and not t.startswith("--chown")]
            if any(t.startswith("--from") for t in tokens):
                continue
            for source in tokens[:-1]:
                assert (context / source).exists(), f"{dockerfile}: COPY {source}: not in {context}"


def test_build_context_ignores_local_state_and_secrets():
    ignored = [line.strip() for line in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert {".git", ".venv", ".venv-airflow", ".lake", "docker/.env"} <= set(ignored)


# -- mounts and commands -------------------------------------------------------------------------------------------

def test_bind_mounts_exist_and_named_volumes_are_declared(compose, services):
    declared, used, binds = set(compose.get("volumes") or {}), set(), []
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            if source.startswith((".", "/")):
                host = (DOCKER / source).resolve()
                assert host.exists(), f"{name}: bind mount {source} does not exist"
                assert host.is_relative_to(REPO), f"{name}: bind mount {source} is outside the repository"
                binds.append(host)
            else:
                assert source in declared, f"{name}: volume {source} not declared"
                used.add(source)
    assert used == declared
    assert sorted(binds) == [REPO / "airflow" / "dags", REPO / "airflow" / "plugins",
                             REPO / "conf" / "prometheus" / "prometheus.yml", REPO / "conf" / "prometheus" / "rules",
                             REPO / "docker" / "prometheus" / "targets"]


def test_airflow_dags_are_where_airflow_looks_for_them(services):
    computed = airflow_env.airflow_environment(repo=Path(IMAGE_REPO), base={"PATH": "/usr/bin"})
    targets = {volume.split(":")[1] for volume in services["airflow"]["volumes"] if volume.startswith("../")}
    assert targets == {computed["AIRFLOW__CORE__DAGS_FOLDER"], computed["AIRFLOW__CORE__PLUGINS_FOLDER"]}


def test_commands_run_files_and_modules_of_the_repository(services):
    executables = {"python", "spark-submit", "spark-class", "streamlit", f"{IMAGE_REPO}/.venv-airflow/bin/python"}
    checked = set()
    for name, service in services.items():
        command = command_of(service)
        if not service["image"].startswith("stocklake:") and not service["image"].startswith("stocklake-airflow:"):
            continue
        assert command and command[0] in executables, f"{name}: {command}"
        for index, token in enumerate(command):
            if token.endswith((".py", ".sh")):
                assert repo_path(token).is_file(), f"{name}: {token} does not exist"
                checked.add(token)
            if token == "-m":
                module = command[index + 1]
                package = repo_path(module.replace(".", "/"))
                assert (package / "__main__.py").is_file() or package.with_suffix(".py").is_file(), module
                checked.add(f"-m {module}")
    assert checked == {"docker/create_topics.py", "spark_jobs/stream.py", "-m producer", "dashboard/app.py",
                       "scripts/airflow_env.py"}
    # The executables come from the job environment that uv.lock installs (the same as the local .venv).
    for tool in ("spark-submit", "spark-class", "streamlit"):
        assert (REPO / ".venv" / "bin" / tool).is_file(), tool


def test_spark_cluster_commands_name_real_classes_and_addresses(services):
    import pyspark

    core_jar = next((Path(pyspark.__file__).parent / "jars").glob("spark-core_*.jar"))
    classes = set(zipfile.ZipFile(core_jar).namelist())
    master, worker = command_of(services["spark-master"]), command_of(services["spark-worker"])
    for command in (master, worker):
        assert command[0] == "spark-class"
        assert command[1].replace(".", "/") + ".class" in classes, command[1]
    assert master[1].endswith(".master.Master") and worker[1].endswith(".worker.Worker")
    master_url = f"spark://{option(master, '--host')}:{option(master, '--port')}"
    assert option(master, "--host") in services
    assert worker[2] == master_url
    assert option(command_of(services["stream"]), "--master") == master_url
    airflow_conn = json.loads(environment_of(services["airflow"])["AIRFLOW_CONN_SPARK_DEFAULT"])
    assert airflow_conn == {"conn_type": "spark", "host": master_url}
    # The drivers name themselves by their service, so the executors on the worker reach them.
    for name in ("stream", "airflow"):
        assert environment_of(services[name])["SPARK_LOCAL_HOSTNAME"] == services[name]["hostname"] == name


def spark_usage(command: list[str]) -> set[str]:
    """The long options Spark's own usage text lists for a spark-class main class or spark-submit."""
    import pyspark

    env = {**os.environ, "SPARK_HOME": str(Path(pyspark.__file__).parent)}
    tool = REPO / ".venv" / "bin" / command[0]
    result = subprocess.run([str(tool), *command[1:], "--help"], env=env, capture_output=True, text=True,
                            timeout=300)
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", result.stdout + result.stderr))


def test_spark_commands_use_options_spark_accepts(services):
    for name in ("spark-master", "spark-worker", "stream"):
        command = command_of(services[name])
        program = command[:2] if command[0] == "spark-class" else command[:1]
        if command[0] == "spark-submit":  # spark-submit's own options come before the application file
            command = command[:next(i for i, token in enumerate(command) if token.endswith(".py"))]
        flags = {token for token in command if token.startswith("--")}
        accepted = spark_usage(program)
        assert flags and flags <= accepted, f"{name}: {sorted(flags - accepted)} not in Spark's usage"


def test_producer_commands_parse_with_the_producer_cli(services):
    from producer.arguments import parse_args

    producers = {name: s for name, s in services.items() if command_of(s)[:3] == ["python", "-m", "producer"]}
    assert set(producers) == {"producer", "producer-finnhub-ws", "producer-finnhub-rest"}
    parsed = {name: parse_args(command_of(s)[3:], load_settings(stocklake_env(s))) for name, s in producers.items()}
    simulator = parsed["producer"]
    assert (simulator.source, simulator.rate, simulator.duration, simulator.malformed_target) == (
        "simulator", 200.0, 86400.0, "topic")
    assert (simulator.duplicate_ratio, simulator.late_ratio, simulator.out_of_order_ratio,
            simulator.malformed_ratio) == (0.01, 0.005, 0.01, 0.002)
    assert parsed["producer-finnhub-ws"].source == "finnhub-ws"
    assert parsed["producer-finnhub-rest"].source == "finnhub-rest"
    for name, args in parsed.items():
        # The health check polls the metrics port the command opens.
        port = args.metrics_port
        assert services[name]["healthcheck"]["test"][-1] == f"http://localhost:{port}/metrics", name
    for name in ("producer-finnhub-ws", "producer-finnhub-rest"):
        assert services[name]["profiles"] == ["finnhub"]
        assert environment_of(services[name])["FINNHUB_API_KEY"] == "${FINNHUB_API_KEY:-}"


def test_stream_command_parses_with_the_stream_cli(services):
    from spark_jobs.stream import parse_args
    from spark_jobs.lib.transforms import ENTITIES

    command = command_of(services["stream"])
    args = parse_args(command[command.index("spark_jobs/stream.py") + 1:])
    assert args.trigger == {"processingTime": None}  # the default: conf's stream.trigger_interval
    assert [entity.name for entity in args.entities] == list(ENTITIES)


def test_dashboard_command_serves_the_app_on_8501(services):
    command = command_of(services["dashboard"])
    assert command[:3] == ["streamlit", "run", "dashboard/app.py"]
    assert (option(command, "--server.port"), option(command, "--server.address")) == ("8501", "0.0.0.0")
    assert services["dashboard"]["ports"] == ["127.0.0.1:8501:8501"]
    # It reads the DuckDB file gold_dbt writes in airflow: the same path on the same volume.
    path = environment_of(services["dashboard"])["DBT_DUCKDB_PATH"]
    assert path == environment_of(services["airflow"])["DBT_DUCKDB_PATH"]
    mounts = {name: [v for v in services[name]["volumes"] if v.startswith("warehouse:")]
              for name in ("airflow", "dashboard")}
    assert mounts == {"airflow": ["warehouse:/var/lib/stocklake/warehouse"],
                      "dashboard": ["warehouse:/var/lib/stocklake/warehouse:ro"]}
    assert path.startswith("/var/lib/stocklake/warehouse/")


def test_minio_init_gets_every_variable_its_script_needs(services):
    script = (DOCKER / "minio" / "init.sh").read_text()
    required = set(re.findall(r'\$\{([A-Z_][A-Z0-9_]*):\?', script))
    assert required == {"STOCKLAKE_LAKE_S3_ENDPOINT", "STOCKLAKE_LAKE_BUCKET", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD",
                        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert required <= set(environment_of(services["minio-init"]))
    copies = [args for keyword, args in dockerfile_instructions(DOCKER / "minio" / "Dockerfile") if keyword == "COPY"]
    assert "--chmod=0755 init.sh /usr/local/bin/" + services["minio-init"]["entrypoint"][0] in copies
    subprocess.run(["sh", "-n", str(DOCKER / "minio" / "init.sh")], check=True)


# -- settings ----------------------------------------------------------------------------------------------------------

def test_stocklake_variables_are_settings(services, app_dockerfile):
    known = {env_name(section, key) for section, values in load_settings({}).as_dict().items() for key in values}
    seen = set()
    for name, service in services.items():
        env = stocklake_env(service)
        unknown = set(env) - known - NON_SETTING_ENV
        assert not unknown, f"{name}: not settings: {sorted(unknown)}"
        load_settings(env)  # types and ranges: raises ConfigError naming the setting
        seen |= set(env)
    assert seen == {"STOCKLAKE_KAFKA_BOOTSTRAP_SERVERS", "STOCKLAKE_KAFKA_REPLICATION_FACTOR",
                    "STOCKLAKE_LAKE_S3_ENDPOINT", "STOCKLAKE_LAKE_BUCKET", "STOCKLAKE_PRODUCER_METRICS_HOST",
                    "STOCKLAKE_STREAM_METRICS_HOST", "STOCKLAKE_STREAM_METRICS_PORT",
                    "STOCKLAKE_MONITORING_PUSHGATEWAY_URL", "STOCKLAKE_MONITORING_PROMETHEUS_URL",
                    "STOCKLAKE_WAREHOUSE_QUOTES_ENABLED"}
    image_env = {k for k in dockerfile_values(app_dockerfile, "ENV") if k.startswith("STOCKLAKE_")}
    assert image_env <= NON_SETTING_ENV


def test_gold_reads_quotes_because_the_stream_writes_them(services):
    """The stream runs its default entities (every one: silver/quotes exists), so the Gold DAG's dbt reads quotes."""
    assert "--entity" not in services["stream"]["command"]
    assert load_settings(stocklake_env(services["airflow"])).warehouse.quotes_enabled is True


def test_settings_point_at_services_of_the_stack(services):
    kafka_users = {name for name, s in services.items() if "STOCKLAKE_KAFKA_BOOTSTRAP_SERVERS" in stocklake_env(s)}
    lake_users = {name for name, s in services.items() if "STOCKLAKE_LAKE_S3_ENDPOINT" in stocklake_env(s)}
    assert kafka_users == {"topic-init", "stream", "producer", "producer-finnhub-ws", "producer-finnhub-rest",
                           "airflow"}
    assert lake_users == {"minio-init", "stream", "airflow", "dashboard"}  # the dashboard: its live tail
    brokers = sorted(name for name, s in services.items() if s["image"].startswith("apache/kafka:"))
    for name in kafka_users:
        settings = load_settings(stocklake_env(services[name]))
        servers = settings.kafka.bootstrap_servers.split(",")
        assert servers == [f"{broker}:9092" for broker in brokers], name
        assert settings.kafka.replication_factor == len(brokers) == 3
    minio_address = option(command_of(services["minio"]), "--address")
    for name in lake_users:
        settings = load_settings(stocklake_env(services[name]))
        endpoint = urlparse(settings.lake.s3_endpoint)
        assert (endpoint.scheme, endpoint.hostname, f":{endpoint.port}") == ("http", "minio", minio_address), name
        assert settings.lake.bucket == load_settings({}).lake.bucket


# -- Kafka -------------------------------------------------------------------------------------------------------------

def test_kafka_is_three_combined_kraft_nodes_with_replication_3_and_min_isr_2(services, env_example):
    brokers = {name: environment_of(s) for name, s in services.items() if s["image"].startswith("apache/kafka:")}
    assert sorted(brokers) == ["kafka-1", "kafka-2", "kafka-3"]
    voters = ",".join(f"{env['KAFKA_NODE_ID']}@{name}:9093" for name, env in sorted(brokers.items()))
    for name, env in brokers.items():
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == voters
        assert env["CLUSTER_ID"].startswith("${KAFKA_CLUSTER_ID:?")
        assert env["KAFKA_ADVERTISED_LISTENERS"].startswith(f"PLAINTEXT://{name}:9092,")
        assert services[name]["hostname"] == name
        assert (env["KAFKA_DEFAULT_REPLICATION_FACTOR"], env["KAFKA_MIN_INSYNC_REPLICAS"],
                env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"], env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"],
                env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"], env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]) == (
            "3", "2", "3", "3", "2", "false")
    assert sorted(env["KAFKA_NODE_ID"] for env in brokers.values()) == ["1", "2", "3"]
    # Kafka formats storage with the cluster id: a base64url UUID (16 bytes).
    assert len(base64.urlsafe_b64decode(env_example["KAFKA_CLUSTER_ID"] + "==")) == 16


def test_kafka_ui_shows_the_compose_cluster_read_only_once_every_broker_is_healthy(services):
    ui = services["kafka-ui"]
    assert re.fullmatch(r"ghcr\.io/kafbat/kafka-ui:v\d+\.\d+\.\d+", ui["image"]), ui["image"]
    env = environment_of(ui)
    brokers = sorted(name for name, s in services.items() if s["image"].startswith("apache/kafka:"))
    # Each broker's internal listener (the first advertised one), as the pipeline's services reach them.
    internal = [environment_of(services[name])["KAFKA_ADVERTISED_LISTENERS"].split(",")[0] for name in brokers]
    assert internal == [f"PLAINTEXT://{name}:9092" for name in brokers]
    assert env["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"].split(",") == [f"{name}:9092" for name in brokers]
    assert env["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"] == \
        stocklake_env(services["stream"])["STOCKLAKE_KAFKA_BOOTSTRAP_SERVERS"]
    # One cluster, read-only (the UI has no login), configured by environment only: no credentials to hold.
    assert env == {"KAFKA_CLUSTERS_0_NAME": "stocklake",
                   "KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS": "kafka-1:9092,kafka-2:9092,kafka-3:9092",
                   "KAFKA_CLUSTERS_0_READONLY": "true", "DYNAMIC_CONFIG_ENABLED": "false", "JAVA_OPTS": "-Xmx256m"}
    assert depends_on(ui) == {name: "service_healthy" for name in brokers}
    # The UI's port 8080, on the host's loopback only, and the health check asks the same port.
    assert ui["ports"] == ["127.0.0.1:8088:8080"]
    assert ui["healthcheck"]["test"] == ["CMD", "wget", "-q", "-O", "/dev/null",
                                         "http://localhost:8080/actuator/health"]
    assert ui["restart"] == "unless-stopped" and "volumes" not in ui


def test_topic_init_creates_the_configured_topics(services):
    specs = create_topics.topic_specs(load_settings(stocklake_env(services["topic-init"])))
    assert specs == [
        {"name": name, "partitions": 6, "replication_factor": 3,
         "config": {"retention.ms": "604800000", "min.insync.replicas": "2"}}
        for name in ("market.trades.v1", "market.quotes.v1", "market.dlq.v1")]
    # Single-broker local settings: min.insync.replicas never exceeds what one replica can meet.
    assert {s["config"]["min.insync.replicas"] for s in create_topics.topic_specs(load_settings({}))} == {"1"}


# -- secrets -----------------------------------------------------------------------------------------------------------

def test_interpolated_variables_are_exactly_those_of_env_example(compose, env_example):
    used = set()
    for _, text in strings_in(compose):
        used |= referenced_variables(text)
    assert used == set(env_example)


def test_secrets_come_only_from_env_interpolation(compose, services, env_example):
    secret_keys = 0
    for name, service in services.items():
        for key, value in environment_of(service).items():
            if SECRET_KEY.search(key):
                secret_keys += 1
                match = ONLY_A_REFERENCE.match(value)
                assert match and match.group(1) == key, f"{name}: {key} must be ${{{key}...}}, not a literal"
            if key.startswith("AIRFLOW_CONN_"):
                connection = json.loads(value)
                assert not {"password", "login", "extra"} & set(connection), f"{name}: {key} holds credentials"
    assert secret_keys == 15
    # No value of the example file (a placeholder that could become a real secret by copy-paste) is in compose.yaml.
    text = COMPOSE_FILE.read_text()
    for key, value in env_example.items():
        assert value not in text, f"{key}'s example value appears in compose.yaml"
    # Required secrets fail `docker compose` up front when unset; only the optional Finnhub key may be empty.
    optional = {key for _, value in strings_in(compose) for key in re.findall(r"\$\{(\w+):-", value)}
    assert optional == {"FINNHUB_API_KEY"}


def test_env_example_holds_placeholders_and_env_is_never_committed(env_example):
    assert set(env_example) == {"KAFKA_CLUSTER_ID", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "AWS_ACCESS_KEY_ID",
                                "AWS_SECRET_ACCESS_KEY", "AIRFLOW_ADMIN_PASSWORD", "FINNHUB_API_KEY"}
    for key, value in env_example.items():
        if key != "KAFKA_CLUSTER_ID":  # an identifier, not a secret
            assert value.startswith("change-me-"), f"{key}: not a placeholder"
    assert len(env_example["MINIO_ROOT_PASSWORD"]) >= 8  # MinIO refuses shorter ones, even in a trial run
    assert env_example["AWS_ACCESS_KEY_ID"] != env_example["MINIO_ROOT_USER"]
    assert "docker/.env" in (REPO / ".gitignore").read_text().splitlines()


def test_host_ports_listen_on_loopback_only(services):
    published = [port for service in services.values() for port in service.get("ports") or []]
    assert len(published) == 10
    assert all(port.startswith("127.0.0.1:") for port in published), published


# -- health and dependencies -------------------------------------------------------------------------------------------

def test_every_long_running_service_has_a_health_check(services):
    one_shots = {name for name, s in services.items() if is_one_shot(s)}
    assert one_shots == {"topic-init", "minio-init"}
    for name, service in services.items():
        if name in one_shots:
            assert "healthcheck" not in service
            continue
        assert service.get("restart") == "unless-stopped", name
        test = service["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
        for key in ("interval", "timeout", "retries", "start_period"):
            assert key in service["healthcheck"], f"{name}: healthcheck.{key}"


def test_depends_on_targets_exist_with_conditions_they_can_meet(services):
    graph = {}
    for name, service in services.items():
        graph[name] = depends_on(service)
        for target, condition in graph[name].items():
            assert target in services, f"{name} depends on unknown {target}"
            assert "profiles" not in services[target], f"{name} depends on {target}, which is behind a profile"
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name}: {target} has no health check"
            elif condition == "service_completed_successfully":
                assert is_one_shot(services[target]), f"{name}: {target} is not a one-shot job"
            else:
                assert condition == "service_started" and name == "dashboard", f"{name} -> {target}: {condition}"
    visiting, done = set(), set()

    def visit(node):
        assert node not in visiting, f"depends_on cycle through {node}"
        if node not in done:
            visiting.add(node)
            for target in graph[node]:
                visit(target)
            visiting.discard(node)
            done.add(node)

    for node in graph:
        visit(node)
    # What each pipeline service waits for.
    assert graph["stream"] == {"topic-init": "service_completed_successfully",
                               "minio-init": "service_completed_successfully", "spark-worker": "service_healthy"}
    assert graph["topic-init"] == {f"kafka-{i}": "service_healthy" for i in (1, 2, 3)}


# -- Airflow's start script --------------------------------------------------------------------------------------------

def test_airflow_container_environment(tmp_path):
    base = {"PATH": "/usr/bin", "AIRFLOW_ADMIN_PASSWORD": "pw-from-env",  # pragma: allowlist secret
            "AIRFLOW_CONN_SPARK_DEFAULT": '{"conn_type": "spark", "host": "spark://spark-master:7077"}'}
    env = airflow_env.container_environment(base, tmp_path)
    assert env["AIRFLOW__API__HOST"] == "0.0.0.0"
    assert "SPARK_LOCAL_IP" not in env and "AIRFLOW_ADMIN_PASSWORD" not in env
    assert env["AIRFLOW_CONN_SPARK_DEFAULT"] == base["AIRFLOW_CONN_SPARK_DEFAULT"]
    assert env["AIRFLOW_HOME"] == str(tmp_path.resolve())
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(REPO / "airflow" / "dags")
    pinned = airflow_env.container_environment({**base, "SPARK_LOCAL_IP": "10.1.2.3"}, tmp_path)
    assert pinned["SPARK_LOCAL_IP"] == "10.1.2.3"


def test_airflow_password_file_is_private_and_follows_env(tmp_path):
    path = airflow_env.write_password_file(tmp_path, "first-password")
    assert path.name == "simple_auth_manager_passwords.json.generated"
    assert json.loads(path.read_text()) == {"admin": "first-password"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    airflow_env.write_password_file(tmp_path, "second-password")
    assert json.loads(path.read_text()) == {"admin": "second-password"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_airflow_start_refuses_without_a_password(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW_ADMIN_PASSWORD"}
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "airflow_env.py"), "container"],
                            env={**env, "AIRFLOW_HOME": str(tmp_path)}, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (
        2, "airflow_env: AIRFLOW_ADMIN_PASSWORD must be set (docker/.env)\n")
    assert list(tmp_path.iterdir()) == []


# -- Prometheus --------------------------------------------------------------------------------------------------------

def test_prometheus_scrapes_the_compose_services_with_the_repository_files(services):
    """Compose runs conf/prometheus as the local stack does; only the targets differ: the compose names and the
    ports the services serve their metrics on."""
    import json

    prometheus, pushgateway = services["prometheus"], services["pushgateway"]
    # The releases Debian's packages hold, which make monitoring-up and the tests run.
    assert (prometheus["image"], pushgateway["image"]) == ("prom/prometheus:v2.42.0", "prom/pushgateway:v1.5.1")
    targets = {path.stem: json.loads(path.read_text()) for path in (DOCKER / "prometheus" / "targets").glob("*.json")}
    stream = load_settings(stocklake_env(services["stream"]))
    producer_port = option(command_of(services["producer"]), "--metrics-port")
    pushgateway_port = option(command_of(pushgateway), "--web.listen-address").rsplit(":", 1)[1]
    assert targets == {"stream": [{"targets": [f"stream:{stream.stream.metrics_port}"]}],
                       "producer": [{"targets": [f"producer:{producer_port}"]}],
                       "pushgateway": [{"targets": [f"pushgateway:{pushgateway_port}"]}]}
    assert stream.stream.metrics_host == "0.0.0.0"  # noqa: S104 (the compose network, no host port)
    pushed_to = load_settings(stocklake_env(services["airflow"])).monitoring.pushgateway_url
    assert pushed_to == f"http://pushgateway:{pushgateway_port}"
    # The dashboard's health page reads this Prometheus.
    (listen,) = [arg for arg in command_of(prometheus) if arg.startswith("--web.listen-address=")]
    prometheus_port = listen.rsplit(":", 1)[1]
    health_from = load_settings(stocklake_env(services["dashboard"])).monitoring.prometheus_url
    assert health_from == f"http://prometheus:{prometheus_port}"
