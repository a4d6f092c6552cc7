"""store-node over TLS with redis-py (ssl) and redis-cli --tls, with and without client
certificates, and a certificate replaced on disk while a client runs. Certificates come from
the test_certs example (TEST_CERTS_BIN), generated per run."""

import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.request

import pytest
import redis

PASSWORD = "tls-secret"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("certs")
    subprocess.run([os.environ["TEST_CERTS_BIN"], str(directory)], check=True, capture_output=True)
    # The files the node reads, replaced later as Kubernetes replaces a mounted Secret.
    shutil.copy(directory / "node.crt", directory / "tls.crt")
    shutil.copy(directory / "node.key", directory / "tls.key")
    return directory


def start_node(certs, auth_clients, tmp_path):
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    resp_port, tls_port, http_port = free_port(), free_port(), free_port()
    process = subprocess.Popen(
        [
            os.environ["STORE_NODE_BIN"],
            "--bind", "127.0.0.1",
            "--resp-port", str(resp_port),
            "--tls-port", str(tls_port),
            "--http-port", str(http_port),
            "--tls-cert-file", str(certs / "tls.crt"),
            "--tls-key-file", str(certs / "tls.key"),
            "--tls-ca-cert-file", str(certs / "ca.crt"),
            "--tls-auth-clients", auth_clients,
            "--reload-interval-ms", "200",
            "--node-name", "py-tls-0",
            "--password-file", str(password_file),
            "--log-level", "warn",
        ]
    )
    deadline = time.time() + 20
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=1) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if time.time() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError("store-node did not become ready")
        time.sleep(0.05)
    return process, tls_port


def stop_node(process):
    process.terminate()
    assert process.wait(timeout=25) == 0, "store-node must exit 0 on SIGTERM"


@pytest.fixture
def node_requiring_certificates(certs, tmp_path):
    process, port = start_node(certs, "yes", tmp_path)
    yield port
    stop_node(process)


@pytest.fixture
def node_without_client_auth(certs, tmp_path):
    process, port = start_node(certs, "no", tmp_path)
    yield port
    stop_node(process)


def tls_client(port, certs, client=True):
    extra = {}
    if client:
        extra = {"ssl_certfile": str(certs / "client.crt"), "ssl_keyfile": str(certs / "client.key")}
    return redis.Redis(
        host="localhost",
        port=port,
        password=PASSWORD,
        ssl=True,
        ssl_ca_certs=str(certs / "ca.crt"),
        decode_responses=True,
        socket_timeout=10,
        **extra,
    )


def redis_cli(port, certs, *args, client=True):
    command = ["redis-cli", "--tls", "-h", "localhost", "-p", str(port), "--cacert", str(certs / "ca.crt"),
               "--no-auth-warning", "-a", PASSWORD]
    if client:
        command += ["--cert", str(certs / "client.crt"), "--key", str(certs / "client.key")]
    result = subprocess.run(command + list(args), capture_output=True, text=True, timeout=30)
    return (result.stdout + result.stderr).strip()


def test_redis_py_with_a_client_certificate(node_requiring_certificates, certs):
    client = tls_client(node_requiring_certificates, certs)
    assert client.set("py:tls", "secret session")
    assert client.get("py:tls") == "secret session"
    assert str(client.client_info()["resp"]) == "3"
    client.close()


def test_redis_py_without_a_client_certificate_is_refused(node_requiring_certificates, certs):
    client = tls_client(node_requiring_certificates, certs, client=False)
    with pytest.raises(redis.exceptions.ConnectionError):
        client.ping()


def test_redis_cli_tls(node_requiring_certificates, certs):
    assert redis_cli(node_requiring_certificates, certs, "SET", "cli:tls", "v") == "OK"
    assert redis_cli(node_requiring_certificates, certs, "GET", "cli:tls") == "v"
    refused = redis_cli(node_requiring_certificates, certs, "PING", client=False)
    assert "PONG" not in refused, refused


def test_without_client_auth_any_tls_client_connects(node_without_client_auth, certs):
    client = tls_client(node_without_client_auth, certs, client=False)
    assert client.ping() is True
    client.close()
    assert redis_cli(node_without_client_auth, certs, "PING", client=False) == "PONG"


def served_serial(port, certs):
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as wrapped:
            return wrapped.getpeercert()["serialNumber"]


def test_a_replaced_certificate_reaches_new_connections_without_a_client_error(node_without_client_auth, certs):
    port = node_without_client_auth
    assert served_serial(port, certs) == "01"
    errors, operations = [], [0]
    stop = threading.Event()

    def work():
        long_lived = tls_client(port, certs, client=False)
        while not stop.is_set():
            try:
                fresh = tls_client(port, certs, client=False)
                fresh.set("reload:fresh", operations[0])
                fresh.close()
                long_lived.set("reload:long", operations[0])
                operations[0] += 2
            except Exception as error:  # noqa: BLE001 - every failure is the test's failure
                errors.append(repr(error))
                return
        long_lived.close()

    worker = threading.Thread(target=work)
    worker.start()
    try:
        time.sleep(0.3)
        # Kubernetes swaps a Secret's files atomically: write beside, rename over.
        for name in ("key", "crt"):
            shutil.copy(certs / f"node2.{name}", certs / f"tls.{name}.new")
            os.rename(certs / f"tls.{name}.new", certs / f"tls.{name}")
        deadline = time.time() + 20
        while served_serial(port, certs) != "02":
            assert time.time() < deadline, "the new certificate was not served within 20 s"
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        stop.set()
        worker.join(timeout=30)
        # Leave the fixture's files as they were for the other tests.
        for name in ("key", "crt"):
            shutil.copy(certs / f"node.{name}", certs / f"tls.{name}")
    assert errors == []
    assert operations[0] > 2
