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


def test_transaction_with_watch_retries_and_aborts(client, node):
    client.set("balance", "10")

    def spend(pipe):
        balance = int(pipe.get("balance"))
        pipe.multi()
        pipe.set("balance", balance - 3)

    # redis-py's transaction(): WATCH, read, MULTI, write, EXEC (retried on WatchError).
    assert client.transaction(spend, "balance") == [True]
    assert client.get("balance") == "7"

    # A watched key changed by another client before EXEC: EXEC answers null, WatchError.
    other = redis.Redis(host="127.0.0.1", port=node["resp"], password=PASSWORD, decode_responses=True)
    with client.pipeline() as pipe:
        pipe.watch("balance")
        assert pipe.get("balance") == "7"
        assert other.set("balance", "100") is True
        pipe.multi()
        pipe.set("balance", "4")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert client.get("balance") == "100"

    # The same, without the interference: EXEC runs; UNWATCH forgets the watched keys.
    with client.pipeline() as pipe:
        pipe.watch("balance")
        pipe.multi()
        pipe.incrby("balance", 5)
        assert pipe.execute() == [105]
    with client.pipeline() as pipe:
        pipe.watch("balance")
        pipe.unwatch()
        other.set("balance", "1")
        pipe.multi()
        pipe.incr("balance")
        assert pipe.execute() == [2]

    # transaction() retries after a WatchError until its function runs on an unchanged key.
    calls = []

    def interfered(pipe):
        calls.append(pipe.get("balance"))
        if len(calls) == 1:
            other.incr("balance")
        pipe.multi()
        pipe.incr("balance")

    assert client.transaction(interfered, "balance") == [4]
    assert calls == ["2", "3"]
    other.close()


def test_sets(client):
    assert client.sadd("principal:grace", "s1", "s2", "s3") == 3
    assert client.sadd("principal:grace", "s2") == 0
    assert client.smembers("principal:grace") == {"s1", "s2", "s3"}
    # redis-py passes SISMEMBER's integer through (1 or 0).
    assert client.sismember("principal:grace", "s1") == 1
    assert client.sismember("principal:grace", "nope") == 0
    assert client.smismember("principal:grace", ["s1", "nope"]) == [1, 0]
    assert client.scard("principal:grace") == 3
    assert client.srem("principal:grace", "s1", "nope") == 1
    assert client.type("principal:grace") == "set"
    client.sadd("other", "s2", "x")
    assert client.sinter("principal:grace", "other") == {"s2"}
    assert client.sunion("principal:grace", "other") == {"s2", "s3", "x"}
    assert client.sdiff("principal:grace", "other") == {"s3"}
    assert client.sunionstore("both", ["principal:grace", "other"]) == 3
    assert client.smove("other", "principal:grace", "x") is True
    assert client.smembers("other") == {"s2"}
    assert sorted(client.sscan_iter("principal:grace", count=1)) == ["s2", "s3", "x"]
    popped = client.spop("principal:grace")
    assert popped in {"s2", "s3", "x"}
    assert client.scard("principal:grace") == 2
    assert client.srem("principal:grace", *client.smembers("principal:grace")) == 2
    assert client.exists("principal:grace") == 0
    client.set("str", "v")
    with pytest.raises(redis.ResponseError, match="^WRONGTYPE Operation against a key holding the wrong kind of value$"):
        client.sadd("str", "m")


def pairs(reply):
    """(member, score) pairs, whichever shape (tuples or lists) this redis-py version returns."""
    return [(member, float(score)) for member, score in reply]


def test_sorted_sets(client):
    assert client.zadd("z", {"a": 1, "b": 2, "c": 3}) == 3
    assert client.zadd("z", {"a": 5}, xx=True, ch=True) == 1
    assert client.zadd("z", {"d": 4}, xx=True) == 0
    assert client.zadd("z", {"b": 1}, gt=True) == 0
    assert pairs(client.zrange("z", 0, -1, withscores=True)) == [("b", 2.0), ("c", 3.0), ("a", 5.0)]
    assert client.zscore("z", "a") == 5.0
    assert client.zmscore("z", ["a", "missing"]) == [5.0, None]
    assert client.zincrby("z", 2.5, "b") == 4.5
    assert client.zcard("z") == 3
    assert client.zcount("z", 3, "+inf") == 3
    assert client.zrangebyscore("z", "(3", 5) == ["b", "a"]
    assert client.zrevrange("z", 0, 0) == ["a"]
    assert client.zrank("z", "c") == 0
    assert client.zrevrank("z", "c") == 2
    assert client.zrange("z", 4, 10, byscore=True, offset=1, num=1) == ["a"]
    assert pairs(client.zpopmin("z")) == [("c", 3.0)]
    assert pairs(client.zpopmax("z")) == [("a", 5.0)]
    assert client.zrem("z", "b", "missing") == 1
    assert client.exists("z") == 0
    assert client.zadd("z", {"x": 1}, incr=True) == 1.0
    with pytest.raises(redis.ResponseError, match="^value is not a valid float$"):
        client.execute_command("ZADD", "z", "one", "x")


def test_sliding_window_rate_limiter_in_multi(client):
    """The sliding-window limiter middleware runs: one MULTI per request."""
    limit, window_ms = 5, 1000
    key = "rate:10.0.0.1"

    def request(now_ms, request_id):
        pipe = client.pipeline(transaction=True)
        pipe.zadd(key, {request_id: now_ms})
        pipe.zremrangebyscore(key, 0, now_ms - window_ms)
        pipe.zcard(key)
        pipe.pexpire(key, window_ms)
        added, removed, count, expire_set = pipe.execute()
        assert added == 1 and expire_set is True
        return removed, count <= limit

    start = 1_700_000_000_000
    answers = [request(start + index * 100, f"r{index}") for index in range(7)]
    # Five fit in the window, the sixth and seventh are refused.
    assert [allowed for _, allowed in answers] == [True] * 5 + [False] * 2
    assert [removed for removed, _ in answers] == [0] * 7
    # At start + 1050 ms the first request has left the window, r1..r6 and this one remain.
    removed, allowed = request(start + 1050, "r7")
    assert removed == 1
    assert allowed is False
    assert client.zcard(key) == 7
    # Far later every earlier request has left the window.
    removed, allowed = request(start + 5000, "r8")
    assert removed == 7
    assert allowed is True
    assert client.zrange(key, 0, -1) == ["r8"]
    assert 0 < client.pttl(key) <= window_ms
