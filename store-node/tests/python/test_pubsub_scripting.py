"""redis-py >= 8 pub/sub and scripts against store-node (conftest.py starts it): PubSub objects
over RESP3 and RESP2 (subscribe, psubscribe, ssubscribe, the message dictionaries, PUBSUB
introspection, run_in_thread), and register_script (EVALSHA, reloaded after NOSCRIPT, in a
pipeline after SCRIPT EXISTS/LOAD) as rate limiters and lock libraries use it. The expected
values are what redis-server 7 answers."""

import threading
import time

import pytest
import redis


FIXED_WINDOW = """
local hits = redis.call('INCR', KEYS[1])
if hits == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {hits, redis.call('PTTL', KEYS[1])}
"""

# The compare-and-delete that releases a lock only for its owner (redis-py's Lock, phpredis).
RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end
"""


def next_message(pubsub, timeout=10.0):
    """The next message of `pubsub`, waiting at most `timeout` seconds for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
        if message is not None:
            return message
    raise AssertionError("no message within %s s" % timeout)


def message(kind, channel, data, pattern=None):
    return {"type": kind, "pattern": pattern, "channel": channel, "data": data}


@pytest.fixture(params=[3, 2], ids=["resp3", "resp2"])
def connection(request, node):
    client = redis.Redis(
        host="127.0.0.1",
        port=node["resp"],
        password=node["password"],
        decode_responses=True,
        protocol=request.param,
    )
    client.flushdb()
    yield client
    client.close()


def test_subscribers_get_channel_and_pattern_messages(connection):
    pubsub = connection.pubsub()
    pubsub.subscribe("news", "weather")
    assert next_message(pubsub) == message("subscribe", "news", 1)
    assert next_message(pubsub) == message("subscribe", "weather", 2)
    pubsub.psubscribe("n*")
    assert next_message(pubsub) == message("psubscribe", "n*", 3)
    # A client subscribed to the channel and to a matching pattern counts twice.
    assert connection.publish("news", "first") == 2
    assert next_message(pubsub) == message("message", "news", "first")
    assert next_message(pubsub) == message("pmessage", "news", "first", pattern="n*")
    assert connection.publish("x-nobody", "lost") == 0
    assert connection.pubsub_numsub("news", "none") == [("news", 1), ("none", 0)]
    assert connection.pubsub_numpat() == 1
    assert sorted(connection.pubsub_channels()) == ["news", "weather"]
    assert connection.pubsub_channels("w*") == ["weather"]
    pubsub.unsubscribe("weather")
    assert next_message(pubsub) == message("unsubscribe", "weather", 2)
    pubsub.punsubscribe()
    assert next_message(pubsub) == message("punsubscribe", "n*", 1)
    pubsub.close()
    assert connection.pubsub_numsub("news") == [("news", 0)]


def test_shard_channels(connection):
    pubsub = connection.pubsub()
    pubsub.ssubscribe("orders")
    assert next_message(pubsub) == message("ssubscribe", "orders", 1)
    assert connection.spublish("orders", "o-1") == 1
    assert next_message(pubsub) == message("smessage", "orders", "o-1")
    # Shard channels are a namespace of their own.
    assert connection.publish("orders", "not-for-shard-subscribers") == 0
    assert connection.pubsub_shardchannels() == ["orders"]
    assert connection.pubsub_shardnumsub("orders") == [("orders", 1)]
    pubsub.close()


def test_a_handler_thread_receives_what_is_published(connection):
    received = []
    arrived = threading.Event()

    def handler(item):
        received.append(item["data"])
        if len(received) == 3:
            arrived.set()

    pubsub = connection.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(**{"events": handler})
    worker = pubsub.run_in_thread(sleep_time=0.01, daemon=True)
    try:
        deadline = time.monotonic() + 10
        while connection.pubsub_numsub("events") != [("events", 1)]:
            assert time.monotonic() < deadline, "the worker never subscribed"
            time.sleep(0.01)
        for index in range(3):
            assert connection.publish("events", f"e{index}") == 1
        assert arrived.wait(10), f"got {received}"
        assert received == ["e0", "e1", "e2"]
    finally:
        worker.stop()
        worker.join(10)
        pubsub.close()


def test_registered_scripts_survive_a_script_flush(connection):
    hit = connection.register_script(FIXED_WINDOW)
    connection.script_flush()
    first, ttl = hit(keys=["rate:client-1"], args=[60000])
    assert first == 1
    assert 59000 < ttl <= 60000
    assert hit(keys=["rate:client-1"], args=[60000])[0] == 2
    assert connection.script_exists(hit.sha) == [True]
    # The node forgets every script: redis-py's EVALSHA gets NOSCRIPT and loads it again.
    connection.script_flush()
    assert connection.script_exists(hit.sha) == [False]
    assert hit(keys=["rate:client-1"], args=[60000])[0] == 3
    assert connection.script_exists(hit.sha) == [True]


def test_registered_scripts_in_a_pipeline(connection):
    hit = connection.register_script(FIXED_WINDOW)
    connection.script_flush()
    pipe = connection.pipeline(transaction=True)
    hit(keys=["rate:a"], args=[1000], client=pipe)
    hit(keys=["rate:a"], args=[1000], client=pipe)
    hit(keys=["rate:b"], args=[1000], client=pipe)
    assert [hits for hits, _ in pipe.execute()] == [1, 2, 1]


def test_a_lock_released_by_its_owner_only(connection):
    release = connection.register_script(RELEASE)
    assert connection.set("resource_LOCK", "owner-1", nx=True, px=30000) is True
    assert connection.set("resource_LOCK", "owner-2", nx=True, px=30000) is None
    assert release(keys=["resource_LOCK"], args=["owner-2"]) == 0
    assert connection.get("resource_LOCK") == "owner-1"
    assert release(keys=["resource_LOCK"], args=["owner-1"]) == 1
    assert connection.exists("resource_LOCK") == 0
    # redis-py's own Lock releases with the same kind of script.
    lock = connection.lock("resource", timeout=30, blocking_timeout=1)
    assert lock.acquire() is True
    assert connection.lock("resource", timeout=30, blocking_timeout=0.1).acquire() is False
    lock.release()
    assert connection.exists("resource") == 0


def test_script_errors_reach_the_client(connection):
    failing = connection.register_script("return redis.error_reply('LIMITED try later')")
    with pytest.raises(redis.ResponseError, match="^LIMITED try later$"):
        failing()
    connection.set("text", "abc")
    incr = connection.register_script("return redis.call('incr', KEYS[1])")
    with pytest.raises(
        redis.ResponseError,
        match=r"^value is not an integer or out of range script: [0-9a-f]{40}, on @user_script:1\.$",
    ):
        incr(keys=["text"])
    with pytest.raises(redis.exceptions.NoScriptError):
        connection.evalsha("0" * 40, 0)
    assert connection.eval("return {1, 'two', 3.99, false, {ok='OK'}}", 0) == [1, "two", 3, None, "OK"]
