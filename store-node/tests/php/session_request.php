<?php
// One request of a PHP application that keeps its sessions in store-node through phpredis's
// session handler with locking (redis.session.locking_enabled=1): session_start() takes the
// session's lock (SET <key>_LOCK <secret> NX, retried while another request holds it), the
// request works on $_SESSION for hold_ms, and session_write_close() writes the session and
// releases the lock with EVALSHA of a compare-and-delete script (EVAL when the node answers
// NOSCRIPT). Prints a JSON line with its timings and the session it saw.
//
// Usage: php session_request.php NAME HOLD_MS STATE_DIR   (SESSION_SAVE_PATH in the environment)

[, $name, $hold_ms, $state_dir] = $argv;
ini_set('session.save_handler', 'redis');
ini_set('session.save_path', getenv('SESSION_SAVE_PATH'));
ini_set('session.use_cookies', '0');
ini_set('session.use_strict_mode', '0');
ini_set('redis.session.locking_enabled', '1');
ini_set('redis.session.lock_expire', '30');
// Retry every 10 ms, for up to 10 s: far longer than the other request holds the lock.
ini_set('redis.session.lock_wait_time', '10000');
ini_set('redis.session.lock_retries', '1000');

session_id('php-locking-test');
$requested = microtime(true);
if (!session_start()) {
    fwrite(STDERR, "$name: session_start failed\n");
    exit(1);
}
$locked = microtime(true);
// Tell the test this request holds the lock.
file_put_contents("$state_dir/$name.locked", '');
$_SESSION['requests'] = array_merge($_SESSION['requests'] ?? [], [$name]);
usleep((int) $hold_ms * 1000);
$releasing = microtime(true);
if (!session_write_close()) {
    fwrite(STDERR, "$name: session_write_close failed\n");
    exit(1);
}
echo json_encode([
    'name' => $name,
    'requested' => $requested,
    'locked' => $locked,
    'releasing' => $releasing,
    'requests' => $_SESSION['requests'],
]), "\n";
