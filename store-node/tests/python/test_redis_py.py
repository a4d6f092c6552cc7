"""redis-py >= 8 (RESP3 by default) against a store-node binary started per module (conftest.py)."""

import json
import time
import urllib.request

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


def test_speaks_resp3_by_default(client):
    assert redis.__version__.split(".")[0] >= "8"
    # The connection redis-py opened negotiated RESP3 with HELLO 3 (seen from the server).
    assert str(client.client_info()["resp"]) == "3"
    hello = client.execute_command("HELLO", "3")
    assert hello["proto"] == 3
    assert hello["server"] == "redis"
    assert client.get("missing") is None


def test_strings_and_expiry(client):
    assert client.set("k", "v") is True
    assert client.get("k") == "v"
    assert client.set("k", "w", nx=True) is None
    assert client.set("k", "w", xx=True, get=True) == "v"
    assert client.set("s", "x", ex=100) is True
    assert client.ttl("s") == 100
    assert client.setex("e", 50, "y") is True
    assert client.setnx("e", "z") is False
    assert client.getex("e", persist=True) == "y"
    assert client.ttl("e") == -1
    assert client.expire("e", 10, gt=True) is False
    assert client.expire("e", 10, lt=True) is True
    assert client.pttl("e") > 9000
    assert client.persist("e") is True
    assert client.ttl("missing") == -2
    assert client.mget("k", "missing", "s") == ["w", None, "x"]
    assert client.incrby("n", 5) == 5
    assert client.append("k", "!") == 2
    assert client.getdel("k") == "w!"
    assert client.exists("k", "s", "s") == 2
    assert client.delete("s", "n", "missing") == 2
    client.set("short", "v", px=50)
    time.sleep(0.2)
    assert client.get("short") is None


def test_hashes_and_types(client):
    assert client.hset("h", mapping={"a": "1", "b": "2"}) == 2
    assert client.hgetall("h") == {"a": "1", "b": "2"}
    assert client.hget("h", "a") == "1"
    assert client.hmget("h", ["a", "zz"]) == ["1", None]
    assert client.hexists("h", "b") is True
    assert client.hlen("h") == 2
    assert client.hdel("h", "a", "zz") == 1
    assert client.type("h") == "hash"
    assert client.type("nothing") == "none"
    client.set("str", "v")
    with pytest.raises(redis.ResponseError, match="^WRONGTYPE Operation against a key holding the wrong kind of value$"):
        client.hget("str", "a")


def test_rename_scan_keys_dbsize(client):
    for index in range(120):
        client.set(f"sess:{index}", "v")
    client.set("other", "v")
    assert sorted(client.scan_iter(match="sess:*", count=7)) == sorted(f"sess:{i}" for i in range(120))
    cursor, _ = client.scan(0, match="sess:*", count=10)
    assert isinstance(cursor, int) and 0 <= cursor < 2**53
    assert len(client.keys("sess:1*")) == 31
    assert client.dbsize() == 121
    assert client.rename("other", "moved") is True
    with pytest.raises(redis.ResponseError, match="^no such key$"):
        client.rename("other", "x")


def test_transactions_and_pipelines(client):
    pipe = client.pipeline(transaction=True)
    pipe.set("a", "1").expire("a", 60).incr("c").get("a")
    assert pipe.execute() == [True, True, 1, "1"]
    pipe = client.pipeline(transaction=False)
    for index in range(50):
        pipe.set(f"p{index}", index)
    assert pipe.execute() == [True] * 50


def test_auth_errors(node):
    bad = redis.Redis(host="127.0.0.1", port=node["resp"], password="wrong", retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.AuthenticationError):
        bad.ping()
    anonymous = redis.Redis(host="127.0.0.1", port=node["resp"], protocol=2, retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.AuthenticationError, match="Authentication required"):
        anonymous.get("k")


def test_client_name_info_and_config(client):
    assert client.client_setname("py-app") is True
    assert client.client_getname() == "py-app"
    client.set("something", "v")
    info = client.info()
    assert info["redis_version"].startswith("7.")
    assert info["loading"] == 0
    assert info["role"] == "master"
    memory = client.info("memory")
    assert memory["maxmemory_policy"] == "noeviction"
    assert memory["used_memory"] > 0
    assert client.config_get("maxmemory") == {"maxmemory": "0"}
    with pytest.raises(redis.ResponseError, match="DB index is out of range"):
        client.execute_command("SELECT", "1")


def test_http_sessions_visible_to_redis(client, node):
    body = json.dumps({"data": {"user": "grace"}, "idleTimeoutSeconds": 120}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{node['http']}/v1/sessions/py1",
        data=body,
        method="PUT",
        headers={"content-type": "application/json", "authorization": f"Bearer {node['password']}"},
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 201
    fields = client.hgetall("session:py1")
    assert json.loads(fields["data"]) == {"user": "grace"}
    assert fields["idleTimeout"] == "120"
    assert client.ttl("session:py1") == 120
