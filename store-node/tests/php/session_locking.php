<?php
// Two concurrent requests for one session through phpredis's session handler with locking,
// against a running store-node: request A takes the lock and holds it for a second, request
// B starts meanwhile, waits for the lock, and sees A's write; both complete. Then the lock
// key is gone (released, not expired: it would live 30 s) and the node's /metrics show the
// releases ran as EVALSHA (after one EVAL: the node's script cache starts empty, so the
// first EVALSHA gets NOSCRIPT and phpredis falls back to EVAL).
//
// Usage: php session_locking.php RESP_PORT HTTP_PORT PASSWORD   (exit status 1 on failure)

[, $resp_port, $http_port, $password] = $argv;

function fail(string $why): void {
    fwrite(STDERR, "FAIL: $why\n");
    exit(1);
}

function check(bool $holds, string $why): void {
    if (!$holds) {
        fail($why);
    }
}

/** The value of one counter of the node's /metrics (0 when absent). */
function counter(int $http_port, string $series): int {
    $metrics = file_get_contents("http://127.0.0.1:$http_port/metrics");
    check($metrics !== false, 'GET /metrics');
    foreach (explode("\n", $metrics) as $line) {
        if (str_starts_with($line, "$series ")) {
            return (int) substr($line, strlen($series) + 1);
        }
    }
    return 0;
}

$state_dir = sys_get_temp_dir() . '/store-node-php-' . getmypid();
@mkdir($state_dir);
$environment = getenv();
$environment['SESSION_SAVE_PATH'] = "tcp://127.0.0.1:$resp_port?auth=" . urlencode($password);
$evalsha_before = counter($http_port, 'store_node_commands_total{command="evalsha"}');
$eval_before = counter($http_port, 'store_node_commands_total{command="eval"}');

/** Starts one request; returns [process, stdout pipe]. */
function request(string $name, int $hold_ms, string $state_dir, array $environment): array {
    $command = [PHP_BINARY, __DIR__ . '/session_request.php', $name, (string) $hold_ms, $state_dir];
    $process = proc_open($command, [1 => ['pipe', 'w'], 2 => STDERR], $pipes, null, $environment);
    check(is_resource($process), "starting request $name");
    return [$process, $pipes[1]];
}

/** Waits for a request to end; returns what it printed, decoded. */
function finish(array $request, string $name): array {
    [$process, $stdout] = $request;
    $output = stream_get_contents($stdout);
    fclose($stdout);
    $status = proc_close($process);
    check($status === 0, "request $name exited with $status");
    $result = json_decode(trim($output), true);
    check(is_array($result), "request $name printed " . var_export($output, true));
    return $result;
}

$a = request('A', 1000, $state_dir, $environment);
$deadline = microtime(true) + 20;
while (!file_exists("$state_dir/A.locked")) {
    check(microtime(true) < $deadline, 'request A never took the lock');
    usleep(5000);
}
$b = request('B', 0, $state_dir, $environment);
$a = finish($a, 'A');
$b = finish($b, 'B');
array_map('unlink', glob("$state_dir/*"));
rmdir($state_dir);

check($b['requested'] < $a['releasing'], 'B asked for the session while A held its lock');
check($b['locked'] >= $a['releasing'], 'B got the lock only after A released it');
check($a['requests'] === ['A'], 'A saw ' . json_encode($a['requests']));
check($b['requests'] === ['A', 'B'], 'B saw A\'s write: ' . json_encode($b['requests']));
printf(
    "A held the lock %.0f ms; B asked %.0f ms after A took it and got it %.0f ms after A released it\n",
    ($a['releasing'] - $a['locked']) * 1000,
    ($b['requested'] - $a['locked']) * 1000,
    ($b['locked'] - $a['releasing']) * 1000
);

$redis = new Redis();
check($redis->connect('127.0.0.1', (int) $resp_port, 5.0), 'connect');
check($redis->auth($password), 'AUTH');
check($redis->exists('PHPREDIS_SESSION:php-locking-test_LOCK') === 0, 'the lock was released');
$session = $redis->get('PHPREDIS_SESSION:php-locking-test');
check(is_string($session) && str_contains($session, '"A"') && str_contains($session, '"B"'),
    'the stored session holds both requests: ' . var_export($session, true));
check($redis->ttl('PHPREDIS_SESSION:php-locking-test') > 0, 'the session has its lifetime');

$evalsha = counter($http_port, 'store_node_commands_total{command="evalsha"}') - $evalsha_before;
$eval = counter($http_port, 'store_node_commands_total{command="eval"}') - $eval_before;
check($evalsha === 2, "two releases by EVALSHA, got $evalsha");
check($eval === 1, "one EVAL after the first NOSCRIPT, got $eval");
echo "phpredis " . phpversion('redis') . ": both requests completed, the second waited for the lock; "
    . "released by EVALSHA x$evalsha (EVAL x$eval after NOSCRIPT)\n";
