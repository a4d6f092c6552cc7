"""Fixtures of the redis-py tests: a store-node binary (STORE_NODE_BIN) started once per test
module on free loopback ports, with a password, and a RESP3 client of it whose keyspace is
emptied before each test."""

import os
import socket
import subprocess
import time
import urllib.request

import pytest
import redis

PASSWORD = "py-secret"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    binary = os.environ["STORE_NODE_BIN"]
    password_file = tmp_path_factory.mktemp("auth") / "password"
    password_file.write_text(PASSWORD + "\n")
    resp_port, http_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            binary,
            "--bind", "127.0.0.1",
            "--resp-port", str(resp_port),
            "--http-port", str(http_port),
            "--node-name", "py-0",
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
    yield {"resp": resp_port, "http": http_port, "password": PASSWORD}
    process.terminate()
    assert process.wait(timeout=25) == 0, "store-node must exit 0 on SIGTERM"


@pytest.fixture
def client(node):
    connection = redis.Redis(host="127.0.0.1", port=node["resp"], password=PASSWORD, decode_responses=True)
    connection.flushdb()
    yield connection
    connection.close()
