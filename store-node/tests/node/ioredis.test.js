// ioredis (6, which speaks RESP3) against a store-node binary (STORE_NODE_BIN) started for this
// file: the ready check, subscribe/psubscribe/ssubscribe and the messages they get, commands on
// a subscribed connection, and scripts as rate limiters run them (defineCommand: EVALSHA, falling back to EVAL on NOSCRIPT; in a pipeline: SCRIPT EXISTS
// and SCRIPT LOAD first). Expected values are what redis-server 7 answers.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const http = require('node:http');
const net = require('node:net');
const { once } = require('node:events');
const Redis = require('ioredis');

const PASSWORD = 'ioredis-secret';
let node;
let ports;
let redis;

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function ready(port) {
  return new Promise((resolve) => {
    http
      .get({ host: '127.0.0.1', port, path: '/readyz', timeout: 1000 }, (response) => {
        response.resume();
        resolve(response.statusCode === 200);
      })
      .on('error', () => resolve(false));
  });
}

function connect(options = {}) {
  return new Redis({
    host: '127.0.0.1',
    port: ports.resp,
    password: PASSWORD,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    ...options,
  });
}

/** The next `count` events named `event` on `emitter`, as arrays of their arguments. */
function next(emitter, event, count) {
  return new Promise((resolve, reject) => {
    const got = [];
    const timer = setTimeout(() => reject(new Error(`only ${got.length} ${event} events`)), 10000);
    emitter.on(event, function listener(...args) {
      got.push(args);
      if (got.length === count) {
        clearTimeout(timer);
        emitter.off(event, listener);
        resolve(got);
      }
    });
  });
}

before(async () => {
  ports = { resp: await freePort(), http: await freePort() };
  const fs = require('node:fs');
  const os = require('node:os');
  const path = require('node:path');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'store-node-ioredis-'));
  fs.writeFileSync(path.join(dir, 'password'), `${PASSWORD}\n`);
  node = spawn(
    process.env.STORE_NODE_BIN,
    [
      '--bind', '127.0.0.1',
      '--resp-port', String(ports.resp),
      '--http-port', String(ports.http),
      '--node-name', 'ioredis-0',
      '--password-file', path.join(dir, 'password'),
      '--log-level', 'warn',
    ],
    { stdio: ['ignore', 'inherit', 'inherit'] },
  );
  const deadline = Date.now() + 20000;
  while (!(await ready(ports.http))) {
    assert.ok(Date.now() < deadline, 'store-node did not become ready');
    assert.equal(node.exitCode, null, 'store-node exited');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  redis = connect();
  await once(redis, 'ready');
});

after(async () => {
  redis?.disconnect();
  if (node && node.exitCode === null) {
    node.kill('SIGTERM');
    const [code] = await once(node, 'exit');
    assert.equal(code, 0, 'store-node exits 0 on SIGTERM');
  }
});

test('the ready check passes and commands work', async () => {
  assert.equal(redis.status, 'ready');
  assert.equal(await redis.ping(), 'PONG');
  assert.equal(await redis.set('greeting', 'hello', 'EX', 60), 'OK');
  assert.equal(await redis.get('greeting'), 'hello');
});

test('subscribers get messages, pattern and shard messages', async () => {
  const subscriber = redis.duplicate();
  try {
    assert.equal(await subscriber.subscribe('news', 'weather'), 2);
    assert.equal(await subscriber.psubscribe('n*'), 3);
    const messages = next(subscriber, 'message', 2);
    const patterns = next(subscriber, 'pmessage', 1);
    // A client subscribed to the channel and to a pattern matching it counts twice.
    assert.equal(await redis.publish('news', 'first'), 2);
    assert.equal(await redis.publish('weather', 'sunny'), 1);
    assert.equal(await redis.publish('nobody', 'lost'), 1);
    assert.deepEqual(await messages, [
      ['news', 'first'],
      ['weather', 'sunny'],
    ]);
    assert.deepEqual(await patterns, [['n*', 'news', 'first']]);
    assert.deepEqual(await redis.pubsub('NUMSUB', 'news', 'none'), ['news', 1, 'none', 0]);
    assert.equal(await redis.pubsub('NUMPAT'), 1);
    assert.deepEqual((await redis.pubsub('CHANNELS')).sort(), ['news', 'weather']);

    assert.equal(await subscriber.ssubscribe('orders'), 1);
    const shard = next(subscriber, 'smessage', 1);
    assert.equal(await redis.spublish('orders', 'o-1'), 1);
    assert.deepEqual(await shard, [['orders', 'o-1']]);

    await subscriber.unsubscribe();
    await subscriber.punsubscribe();
    await subscriber.sunsubscribe();
    // Out of subscribed mode, the connection runs commands again.
    assert.equal(await subscriber.get('greeting'), 'hello');
  } finally {
    subscriber.disconnect();
  }
});

test('ioredis speaks RESP3: a subscribed connection gets pushes and runs commands', async () => {
  assert.match(await redis.client('INFO'), / resp=3\b/);
  const subscriber = redis.duplicate();
  try {
    await subscriber.subscribe('x');
    const messages = next(subscriber, 'message', 1);
    assert.equal(await subscriber.get('greeting'), 'hello');
    assert.equal(await redis.publish('x', 'pushed'), 1);
    assert.deepEqual(await messages, [['x', 'pushed']]);
    assert.equal(await subscriber.set('from-subscriber', '1'), 'OK');
  } finally {
    subscriber.disconnect();
  }
});

const FIXED_WINDOW = `
local hits = redis.call('INCR', KEYS[1])
if hits == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {hits, redis.call('PTTL', KEYS[1])}`;

test('defined commands run by EVALSHA, fall back to EVAL, and run in pipelines', async () => {
  redis.defineCommand('hit', { numberOfKeys: 1, lua: FIXED_WINDOW });
  await redis.script('FLUSH');
  const [first, ttl] = await redis.hit('rate:client-1', 60000);
  assert.equal(first, 1);
  assert.ok(ttl > 59000 && ttl <= 60000, `ttl ${ttl}`);
  assert.equal((await redis.hit('rate:client-1', 60000))[0], 2);
  const sha = await redis.script('LOAD', FIXED_WINDOW);
  assert.deepEqual(await redis.script('EXISTS', sha, '0'.repeat(40)), [1, 0]);

  await redis.script('FLUSH');
  const results = await redis.pipeline().hit('rate:client-1', 60000).hit('rate:client-2', 60000).exec();
  assert.deepEqual(
    results.map(([error, [hits]]) => [error, hits]),
    [
      [null, 3],
      [null, 1],
    ],
  );
  assert.equal(await redis.get('rate:client-1'), '3');
});

test('script errors and conversions reach the client as Redis sends them', async () => {
  await assert.rejects(redis.eval("return redis.error_reply('LIMITED try later')", 0), {
    name: 'ReplyError',
    message: 'LIMITED try later',
  });
  await assert.rejects(redis.evalsha('0'.repeat(40), 0), {
    message: 'NOSCRIPT No matching script. Please use EVAL.',
  });
  assert.deepEqual(
    await redis.eval("return {1, 'two', 3.99, false, {ok='OK'}}", 0),
    [1, 'two', 3, null, 'OK'],
  );
  assert.equal(
    await redis.eval("return cjson.encode(cmsgpack.unpack(cmsgpack.pack({user=KEYS[1]})))", 1, 'u-1'),
    '{"user":"u-1"}',
  );
  assert.deepEqual(await redis.eval("return {struct.unpack('>I2', ARGV[1])}", 0, 'AB'), [16706, 3]);
});
