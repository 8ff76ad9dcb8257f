"""The session read's own connection (mcp_asgi/redis_wire.py) against a real redis-server.

Redis loses its scripts, kills the connection, is asked many reads at once, wants a password,
a user, a database of the URL, a unix socket: every read still gives the right record.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp_asgi import SessionRecord
from mcp_asgi.bus import LocalBus
from mcp_asgi.protocol.jsonrpc import MCPError
from mcp_asgi.redis import RedisBackend, RedisSessionStore
from mcp_asgi.redis_wire import RedisWire, WireSettings, _Incomplete, parse, settings_of
from tests.redis_server import RedisServer


def backend_for(url: str, **options: Any) -> RedisBackend:
    return RedisBackend(url, prefix=f"test-{uuid.uuid4().hex[:8]}:", bus=LocalBus(), **options)


@pytest.fixture
async def observer(redis_url: str) -> AsyncIterator[Any]:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


def wire_of(backend: RedisBackend) -> RedisWire:
    wire = backend.sessions._wire
    assert wire is not None, "the session read is not on its own connection"
    return wire


async def test_a_read_after_redis_lost_its_scripts_loads_the_script_again(redis_url: str, observer: Any) -> None:
    backend = backend_for(redis_url)
    await backend.start()
    try:
        await backend.sessions.create(SessionRecord("s1", principal="user:alice"))
        assert (await backend.sessions.get("s1")).principal == "user:alice"
        wire_of(backend)
        await observer.script_flush()
        assert (await backend.sessions.get("s1", principal="user:alice")).session_id == "s1"
        from mcp_asgi.redis import _GET_WIRE

        assert await observer.script_exists(_GET_WIRE.sha) == [True]  # EVAL put it back: the next read is EVALSHA
        assert (await backend.sessions.get("s1")).session_id == "s1"
    finally:
        await backend.close()


async def test_a_read_after_redis_killed_the_connection_reconnects_at_once(redis_url: str, observer: Any) -> None:
    backend = backend_for(redis_url, timeout=5.0)
    await backend.start()
    try:
        await backend.sessions.create(SessionRecord("s1"))
        await backend.sessions.get("s1")
        before = wire_of(backend)._connection
        killed = await observer.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        assert killed >= 1
        started = time.monotonic()
        assert (await backend.sessions.get("s1")).session_id == "s1"
        assert time.monotonic() - started < 1.0  # one reconnect, not a timeout
        assert wire_of(backend)._connection is not before
    finally:
        await backend.close()


async def test_reads_in_flight_when_the_connection_breaks_are_sent_again(redis_url: str) -> None:
    backend = backend_for(redis_url, timeout=5.0)
    await backend.start()
    try:
        await backend.sessions.create(SessionRecord("s1"))
        await backend.sessions.get("s1")
        reads = [asyncio.ensure_future(backend.sessions.get("s1")) for _ in range(50)]
        await asyncio.sleep(0)  # every read has written its command and waits for its reply
        connection = wire_of(backend)._connection
        assert connection is not None and len(connection._waiters) == 50
        connection.transport.abort()  # as a reset from the network would
        found = await asyncio.gather(*reads)
        assert all(record.session_id == "s1" for record in found)
        assert wire_of(backend)._connection is not connection
    finally:
        await backend.close()


async def test_many_concurrent_reads_each_get_their_own_record(redis_url: str) -> None:
    backend = backend_for(redis_url)
    await backend.start()
    try:
        for index in range(20):
            info = {"name": f"client-{index}", "version": "é" * index}  # replies of many sizes
            await backend.sessions.create(SessionRecord(f"s{index}", principal=f"user:{index}", client_info=info))
        await backend.sessions.subscribe("s3", "data://three")
        wanted = [index % 23 for index in range(500)]  # 20, 21, 22: no such session
        found = await asyncio.gather(*(backend.sessions.get(f"s{index}") for index in wanted))
        for index, record in zip(wanted, found, strict=True):
            if index >= 20:
                assert record is None
                continue
            assert (record.session_id, record.principal) == (f"s{index}", f"user:{index}")
            assert record.client_info == {"name": f"client-{index}", "version": "é" * index}
            assert record.subscriptions == ({"data://three"} if index == 3 else set())
        # Another principal's session reads as missing, on the wire as through redis-py.
        assert await backend.sessions.get("s1", principal="user:2") is None
    finally:
        await backend.close()


async def test_a_hung_redis_drops_the_connection_and_the_next_read_works(redis_server: RedisServer) -> None:
    backend = backend_for(redis_server.url, timeout=0.5)
    await backend.start()
    try:
        await backend.sessions.create(SessionRecord("s1"))
        await backend.sessions.get("s1")
        before = wire_of(backend)._connection
        redis_server.pause()
        try:
            # Many reads waiting on one connection: each fails within the timeout, none hangs.
            started = time.monotonic()
            with anyio.fail_after(3):
                failed = await asyncio.gather(*(backend.sessions.get("s1") for _ in range(20)), return_exceptions=True)
            assert time.monotonic() - started < 1.0
            assert all(isinstance(error, MCPError) and error.http_status == 503 for error in failed)
            assert "no answer within 0.5 s" in failed[0].message
        finally:
            redis_server.resume()
        assert before is not None and before.lost  # dropped: the next read opens another connection
        assert (await backend.sessions.get("s1")).session_id == "s1"
    finally:
        await backend.close()


async def test_password_user_and_database_of_the_url(redis_server: RedisServer) -> None:
    import redis.asyncio

    admin = redis.asyncio.Redis(port=redis_server.port, decode_responses=True)
    await admin.execute_command("ACL", "SETUSER", "alice", "on", ">alice-pw", "~*", "&*", "+@all")
    await admin.config_set("requirepass", "default-pw")
    await admin.aclose()
    admin = redis.asyncio.Redis(port=redis_server.port, password="default-pw", db=3, decode_responses=True)
    try:
        for url, db in (
            (f"redis://:default-pw@127.0.0.1:{redis_server.port}/3", 3),
            (f"redis://alice:alice-pw@127.0.0.1:{redis_server.port}/3", 3),
            (f"redis://:default-pw@127.0.0.1:{redis_server.port}/0?db=3", 3),
        ):
            backend = backend_for(url)
            await backend.start()
            try:
                assert settings_of(backend._client).db == db
                await backend.sessions.create(SessionRecord("s1", principal="user:bob"))
                assert (await backend.sessions.get("s1")).principal == "user:bob"
                wire_of(backend)
                assert await admin.exists(backend.prefix + "session:s1") == 1  # in database 3
            finally:
                await backend.close()
        # A wrong password is a 503 at once, never a hang; the pool and the wire agree.
        backend = backend_for(f"redis://:wrong@127.0.0.1:{redis_server.port}/0", timeout=2.0)
        await backend.start()
        try:
            started = time.monotonic()
            with pytest.raises(MCPError) as raised:
                await backend.sessions.get("s1")
            assert raised.value.http_status == 503 and time.monotonic() - started < 1.5
        finally:
            await backend.close()
    finally:
        await admin.aclose()


@pytest.fixture
def unix_redis() -> Iterator[Path]:
    """A redis-server listening on a unix socket only."""
    workdir = Path(tempfile.mkdtemp(prefix="mcp-asgi-redis-unix-"))
    socket_path = workdir / "redis.sock"
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server is not installed; run scripts/bootstrap"
    process = subprocess.Popen(
        [
            binary,
            "--port",
            "0",
            "--unixsocket",
            str(socket_path),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not socket_path.exists():
            assert process.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)
        yield socket_path
    finally:
        process.terminate()
        process.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)


async def test_a_unix_socket_url_with_a_database(unix_redis: Path) -> None:
    backend = backend_for(f"unix://{unix_redis}?db=2")
    await backend.start()
    try:
        settings = settings_of(backend._client)
        assert (settings.path, settings.db) == (str(unix_redis), 2)
        await backend.sessions.create(SessionRecord("s1", principal="user:bob"))
        assert (await backend.sessions.get("s1")).principal == "user:bob"
        wire_of(backend)
    finally:
        await backend.close()


async def test_a_pool_the_wire_cannot_mirror_stays_on_redis_py(redis_server: RedisServer) -> None:
    import redis.asyncio
    from redis.credentials import UsernamePasswordCredentialProvider

    admin = redis.asyncio.Redis(port=redis_server.port)
    await admin.config_set("requirepass", "provided-pw")
    await admin.aclose()
    provider = UsernamePasswordCredentialProvider(password="provided-pw")
    client = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True, credential_provider=provider)
    store = RedisSessionStore(client, prefix=f"test-{uuid.uuid4().hex[:8]}:")
    try:
        assert store._wire is None  # credentials asked of a provider on each connect: redis-py's business
        await store.create(SessionRecord("s1", principal="user:bob"))
        assert (await store.get("s1")).principal == "user:bob"
    finally:
        store.bind(None)
        await client.aclose()


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@pytest.fixture
def tls_redis() -> Iterator[tuple[int, Path]]:
    """A redis-server speaking TLS only, on a free port; its port and the certificate to trust."""
    workdir = Path(tempfile.mkdtemp(prefix="mcp-asgi-redis-tls-"))
    cert_file, key_file = self_signed(workdir)
    port = RedisServer().port
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server is not installed; run scripts/bootstrap"
    command = [
        binary,
        "--port",
        "0",
        "--tls-port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    command += [
        "--tls-cert-file",
        str(cert_file),
        "--tls-key-file",
        str(key_file),
        "--tls-ca-cert-file",
        str(cert_file),
    ]
    command += ["--tls-auth-clients", "no", "--dir", str(workdir), "--requirepass", "tls-pw"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert process.poll() is None and time.monotonic() < deadline, "redis-server (TLS) did not start"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        yield port, cert_file
    finally:
        process.terminate()
        process.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)


async def test_a_rediss_url_reads_over_tls_checking_the_certificate(tls_redis: tuple[int, Path]) -> None:
    port, cert_file = tls_redis
    backend = backend_for(f"rediss://:tls-pw@127.0.0.1:{port}/4?ssl_ca_certs={cert_file}")
    await backend.start()
    try:
        settings = settings_of(backend._client)
        assert settings.ssl is not None and settings.ssl.verify_mode == ssl.CERT_REQUIRED and settings.db == 4
        await backend.sessions.create(SessionRecord("s1", principal="user:bob"))
        assert (await backend.sessions.get("s1")).principal == "user:bob"
        wire_of(backend)
    finally:
        await backend.close()
    # A certificate nobody said to trust: a 503, as redis-py's own connections give.
    backend = backend_for(f"rediss://:tls-pw@127.0.0.1:{port}/4")
    await backend.start()
    try:
        with pytest.raises(MCPError) as raised:
            await backend.sessions.get("s1")
        assert raised.value.http_status == 503
    finally:
        await backend.close()


def test_tls_settings_come_from_the_pool() -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url("rediss://redis.example:6390/1", ssl_cert_reqs="none")
    settings = settings_of(client)
    assert isinstance(settings, WireSettings) and isinstance(settings.ssl, ssl.SSLContext)
    assert (settings.host, settings.port, settings.db) == ("redis.example", 6390, 1)
    assert settings.server_hostname == "redis.example" and settings.ssl.verify_mode == ssl.CERT_NONE
    assert settings_of(redis.asyncio.Redis.from_url("redis://h:1/0")).ssl is None


def test_replies_are_parsed_only_when_whole() -> None:
    reply = b'*2\r\n*4\r\n$9\r\nprincipal\r\n$7\r\n"caf\xc3\xa9"\r\n$-1\r\n:5\r\n*1\r\n$4\r\nd://\r\n'
    assert parse(reply, 0) == ([["principal", '"café"', None, 5], ["d://"]], len(reply))
    for cut in range(len(reply)):
        with pytest.raises(_Incomplete):
            parse(reply[:cut], 0)
    error, end = parse(b"-NOSCRIPT No matching script\r\n", 0)
    assert str(error) == "NOSCRIPT No matching script" and end == 30
