"""A stand-in for Snowflake's service, for clients we do not control (the Airflow Snowflake provider's hook): fakesnow's
server (fakesnow.server.app: Snowflake's login and query REST API over DuckDB) on 127.0.0.1 over HTTPS, recording the
text of every statement it is sent.

    with SnowflakeStandIn(tmp_path) as snowflake:
        env["REQUESTS_CA_BUNDLE"] = str(snowflake.ca_bundle)     # the client trusts the stand-in's certificate
        env["AIRFLOW_CONN_SNOWFLAKE_DEFAULT"] = json.dumps(snowflake.airflow_connection())
        ...
        snowflake.statements()                                 # every SQL text received, in order

HTTPS because the Snowflake connector speaks nothing else when a host is given: a self-signed certificate for
127.0.0.1 is made per stand-in. fakesnow cannot parse ALTER EXTERNAL TABLE or GRANT; the connection asks its server
(session parameter nop_regexes) to answer those with an empty success, and records them here all the same. The
password is the stand-in's own, never a real one.
"""
from __future__ import annotations

import gzip
import importlib
import ipaddress
import json
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

STANDIN_USER = "standin"
STANDIN_PASSWORD = "standin-password"  # noqa: S105  # pragma: allowlist secret
STANDIN_ACCOUNT = "standin"
# What fakesnow answers with an empty success instead of parsing (it implements neither).
NOP_STATEMENTS = ["^ALTER EXTERNAL TABLE .*", "^GRANT .*"]
START_TIMEOUT_SECONDS = 30


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A key and a certificate for 127.0.0.1 (subject alternative name IP:127.0.0.1), valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                               x509.DNSName("localhost")]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = folder / "standin-key.pem", folder / "standin-cert.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


class SnowflakeStandIn:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._statements: list[str] = []
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.ca_bundle = self.folder / "standin-cert.pem"

    def statements(self) -> list[str]:
        with self._lock:
            return list(self._statements)

    def airflow_connection(self, database: str = "STOCKLAKE") -> dict[str, Any]:
        """An Airflow connection (conn_type snowflake) to this stand-in."""
        return {"conn_type": "snowflake", "login": STANDIN_USER, "password": STANDIN_PASSWORD,
                "extra": {"account": STANDIN_ACCOUNT, "host": "127.0.0.1", "port": self.port, "insecure_mode": True,
                          "database": database,
                          "session_parameters": {"nop_regexes": NOP_STATEMENTS,
                                                 "CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False}}}

    def _app(self):
        # The module, by its full name: the package's `server` attribute is a function of the same name.
        server = importlib.import_module("fakesnow.server")
        from starlette.applications import Starlette
        from starlette.routing import Route

        async def recorded_query(request):
            # Starlette keeps the body it read, so fakesnow's handler reads the same bytes again.
            body = await request.body()
            if request.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            with self._lock:
                self._statements.append(json.loads(body)["sqlText"])
            return await server.query_request(request)

        routes = [Route(route.path, recorded_query, methods=["POST"]) if route.path == "/queries/v1/query-request"
                  else route for route in server.routes]
        return Starlette(routes=routes)

    def __enter__(self) -> SnowflakeStandIn:
        import uvicorn

        key, _ = self_signed_certificate(self.folder)
        # The server gets its socket already bound to a free port: no other process can take the port meanwhile.
        listening = socket.socket()
        listening.bind(("127.0.0.1", 0))
        self.port = listening.getsockname()[1]
        config = uvicorn.Config(self._app(), log_level="warning", ssl_keyfile=str(key),
                                ssl_certfile=str(self.ca_bundle))
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [listening]},
                                        name="snowflake-standin", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the Snowflake stand-in did not start on port {self.port}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        assert self._thread is not None
        self._thread.join(timeout=10)
