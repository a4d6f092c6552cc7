//! The libraries Redis gives scripts (`cmsgpack`, `struct`, `cjson` and its settings, `bit`),
//! how errors read to a script and in the reply (`pcall`, `xpcall`, positions, argument
//! errors), the sandbox (the interpreter's own globals are the sandbox: nothing reaches
//! `dofile` through `loadstring`, nothing changes a library), shebang flags, `CLIENT REPLY`,
//! byte for byte against Debian's redis-server in the same run; that `SCRIPT KILL` cannot be
//! caught by `pcall`, `xpcall` or a coroutine; `allow-oom`; Redis 7.2's order of a script's
//! publications to its own connection; and Redis's text for a script that runs out of memory.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::versus_redis::{against_both, Conn};
use common::{node, node_with};
use store_node::scripting::sha1_hex;

/// Prepended to the scripts written `hex: ...`: binary results compare as hex digits.
const HEX: &str = "local function hex(s) return (string.gsub(s, '.', function(c) return string.format('%02x', string.byte(c)) end)) end ";

/// (script run with `EVAL script 0`, its exact reply), in order, on one RESP2 connection.
/// Replies were taken from redis-server 7.0.15 and are checked against it again in each run.
const LIBRARIES: &[(&str, &str)] = &[
    ("hex: return hex(cmsgpack.pack(0, 127, 128, 255, 256, 65535, 65536, 4294967295, 4294967296, -1, -32, -33, -128, -129, -32768, -32769, -2147483648, -2147483649))", "$124\r\n007fcc80ccffcd0100cdffffce00010000ceffffffffcf0000000100000000ffe0d0dfd080d1ff7fd18000d2ffff7fffd280000000d3ffffffff7fffffff\r\n"),
    ("hex: return hex(cmsgpack.pack(1.5, 0.1, 2^63, -2^63, 1/0, -0.0, true, false))", "$72\r\nca3fc00000cb3fb999999999999aca5f000000d38000000000000000ca7f80000000c3c2\r\n"),
    ("hex: return hex(cmsgpack.pack('', 'abc', string.rep('a', 31), string.rep('b', 32)))", "$142\r\na0a3616263bf61616161616161616161616161616161616161616161616161616161616161d9206262626262626262626262626262626262626262626262626262626262626262\r\n"),
    ("hex: return hex(string.sub(cmsgpack.pack(string.rep('c', 256)), 1, 4)) .. ' ' .. hex(string.sub(cmsgpack.pack(string.rep('d', 65536)), 1, 6))", "$21\r\nda010063 db0001000064\r\n"),
    ("hex: return hex(cmsgpack.pack({1, 2, 3}, {}, {1, 2, nil, 4}, {[1]=1, [3]=3}, {[0]=1}, {[1.5]=1}, {a={b={}}}))", "$68\r\n930102039083010102020404820101030381000181ca3fc000000181a16181a16290\r\n"),
    ("hex: local t = {} for i = 1, 16 do t[i] = i end return hex(cmsgpack.pack(t))", "$38\r\ndc00100102030405060708090a0b0c0d0e0f10\r\n"),
    ("hex: local t = {} t.x = t return hex(cmsgpack.pack(t))", "$98\r\n81a17881a17881a17881a17881a17881a17881a17881a17881a17881a17881a17881a17881a17881a17881a17881a178c0\r\n"),
    ("hex: return hex(cmsgpack.pack(redis.call, cjson.null))", "$4\r\nc0c0\r\n"),
    ("return cjson.encode({cmsgpack.unpack(cmsgpack.pack({a={b={c={1, 2, {d=true}}}}}, 'x', 1.5, -7, false))})", "$53\r\n[{\"a\":{\"b\":{\"c\":[1,2,{\"d\":true}]}}},\"x\",1.5,-7,false]\r\n"),
    ("local a, b = cmsgpack.unpack(string.char(0xcf, 255, 255, 255, 255, 255, 255, 255, 255, 0xd3, 128, 0, 0, 0, 0, 0, 0, 0)) return {tostring(a), tostring(b)}", "*2\r\n$2\r\n-1\r\n$20\r\n-9.2233720368548e+18\r\n"),
    ("return {cmsgpack.unpack(string.char(0xcc, 200, 0xd0, 200, 0xcd, 1, 0, 0xd1, 255, 0, 0xce, 0, 1, 0, 0, 0xd2, 255, 255, 255, 0, 0xe0, 0x7f, 0xc0, 0xc2, 0xc3))}", "*8\r\n:200\r\n:-56\r\n:256\r\n:-256\r\n:65536\r\n:-256\r\n:-32\r\n:127\r\n"),
    ("return {tostring(cmsgpack.unpack(string.char(0xca, 0x3f, 0xc0, 0, 0))), tostring(cmsgpack.unpack(string.char(0xcb, 0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a)))}", "*2\r\n$3\r\n1.5\r\n$3\r\n0.1\r\n"),
    ("return {cmsgpack.unpack(string.char(0xd9, 2) .. 'ab' .. string.char(0xda, 0, 1) .. 'c' .. string.char(0xdb, 0, 0, 0, 1) .. 'd' .. string.char(0xdc, 0, 1, 7, 0xdd, 0, 0, 0, 1, 8, 0xde, 0, 1, 1, 2, 0xdf, 0, 0, 0, 1, 3, 4))}", "*7\r\n$2\r\nab\r\n$1\r\nc\r\n$1\r\nd\r\n*1\r\n:7\r\n*1\r\n:8\r\n*1\r\n:2\r\n*0\r\n"),
    ("return {cmsgpack.unpack_one(cmsgpack.pack(1, 2, 3))}", "*2\r\n:1\r\n:1\r\n"),
    ("return {cmsgpack.unpack_one(cmsgpack.pack(1, 2, 3), 2)}", "*2\r\n:-1\r\n:3\r\n"),
    ("return {cmsgpack.unpack_one('')}", "*1\r\n:-1\r\n"),
    ("return {cmsgpack.unpack_one(123)}", "*2\r\n:1\r\n:49\r\n"),
    ("return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 2)}", "*3\r\n:2\r\n:1\r\n:2\r\n"),
    ("return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 0)}", "*3\r\n:1\r\n:2\r\n:3\r\n"),
    ("return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 5, 1)}", "*3\r\n:-1\r\n:2\r\n:3\r\n"),
    ("return select('#', cmsgpack.unpack(string.rep(string.char(1), 7998)))", ":7998\r\n"),
    ("return {cmsgpack._NAME, cmsgpack._VERSION}", "*2\r\n$8\r\ncmsgpack\r\n$18\r\nlua-cmsgpack 0.4.0\r\n"),
    ("return cmsgpack.pack()", "-ERR user_script:1: bad argument #0 to 'pack' (MessagePack pack needs input.) script: 6bc235afa55de88253e203cc5fe5844792e25209, on @user_script:1.\r\n"),
    ("return cmsgpack.unpack()", "-ERR user_script:1: bad argument #1 to 'unpack' (string expected, got no value) script: 78103c0f3f46e5897cb5d2fad8dfb28bd38e0eeb, on @user_script:1.\r\n"),
    ("return cmsgpack.unpack(string.char(0xc1))", "-ERR user_script:1: Bad data format in input. script: 2ac58dacf1d7b948cadb05031e34b96c0a0332a3, on @user_script:1.\r\n"),
    ("return cmsgpack.unpack(string.char(0xc4, 1, 1))", "-ERR user_script:1: Bad data format in input. script: 15651d391d98f1c2f1230041b9a02e83e48e84fb, on @user_script:1.\r\n"),
    ("return cmsgpack.unpack(string.char(0xcd, 1))", "-ERR user_script:1: Missing bytes in input. script: a3421c5f83f489873b9818486d7380840bfc645b, on @user_script:1.\r\n"),
    ("return cmsgpack.unpack(string.char(0xdc, 0, 2, 1))", "-ERR user_script:1: Missing bytes in input. script: f4304f37db8c0412fd10148eeddbccc83f5e01d7, on @user_script:1.\r\n"),
    ("return cmsgpack.unpack(string.char(0x81, 0xc0, 1))", "-ERR table index is nil script: 42c1be7e22c37cab41e4a64d862c08f9a363e23e, on @user_script:1.\r\n"),
    ("return cmsgpack.unpack(string.rep(string.char(1), 8000))", "-ERR user_script:1: stack overflow (too many return values at once; use unpack_one or unpack_limit instead.) script: 8a57c1d39e1b42b505aa41659e773f7bbfce2070, on @user_script:1.\r\n"),
    ("return cmsgpack.unpack_one('x', -1)", "-ERR user_script:1: Invalid request to unpack with offset of -1 and limit of 1. script: 9465d2d58d5f3466c1e0ef3c0057054581a2cdc2, on @user_script:1.\r\n"),
    ("return cmsgpack.unpack_one('x', 5)", "-ERR user_script:1: Start offset 5 greater than input length 1. script: 7a0aa0944495fcf6905f5170942bf07efe4dc7b1, on @user_script:1.\r\n"),
    ("return cmsgpack.unpack_one('x', 'y')", "-ERR user_script:1: bad argument #2 to 'unpack_one' (number expected, got string) script: 09c95962ebfa80db54358e13be44b0628d4b0801, on @user_script:1.\r\n"),
    ("return cmsgpack.unpack_limit('x')", "-ERR user_script:1: bad argument #2 to 'unpack_limit' (number expected, got no value) script: c0cd6bee44d8fcbbc6522c773966bb3a3885b080, on @user_script:1.\r\n"),
    ("cmsgpack.pack = nil", "-ERR user_script:1: Attempt to modify a readonly table script: 5042404704fad295e580fc47e5d8ea1e0f53184c, on @user_script:1.\r\n"),
    ("hex: return hex(struct.pack('>i2Hb', 1, 2, -3)) .. ' ' .. hex(struct.pack('<i', -2)) .. ' ' .. hex(struct.pack('!4 b i', 1, 2))", "$36\r\n00010002fd feffffff 0100000002000000\r\n"),
    ("hex: return hex(struct.pack('bd', 1, 1.5)) .. ' ' .. hex(struct.pack('!bd', 1, 1.5)) .. ' ' .. hex(struct.pack('>fd', 0.5, -2.25))", "$76\r\n01000000000000f83f 0100000000000000000000000000f83f 3f000000c002000000000000\r\n"),
    ("hex: return hex(struct.pack('c0s', 'ab', 'cd')) .. ' ' .. hex(struct.pack('c2x', 'abc')) .. ' ' .. hex(struct.pack('>I16', -1)) .. ' ' .. hex(struct.pack('i', '12'))", "$59\r\n6162636400 616200 0000000000000000ffffffffffffffff 0c000000\r\n"),
    ("hex: return hex(struct.pack('>L>L>L>L>L', 2^64, 0/0, -1/0, 2^63, -0.5))", "$80\r\n00000000000000008000000000000000800000000000000080000000000000000000000000000000\r\n"),
    ("hex: return hex(struct.pack('b\\0b', 1, 2)) .. ' ' .. hex(struct.pack('!4bi3', 1, 2))", "$15\r\n01 010000020000\r\n"),
    ("return {struct.unpack('>i2Hb', struct.pack('>i2Hb', 1, 2, -3))}", "*4\r\n:1\r\n:2\r\n:-3\r\n:6\r\n"),
    ("return {struct.unpack('>h<h', struct.pack('>h<h', -2, -2))}", "*3\r\n:-2\r\n:-2\r\n:5\r\n"),
    ("return {struct.unpack('>fd', struct.pack('>fd', 0.5, -2.25))}", "*3\r\n:0\r\n:-2\r\n:13\r\n"),
    ("return {struct.unpack('bc0', string.char(2) .. 'hello')}", "*2\r\n$2\r\nhe\r\n:4\r\n"),
    ("return {struct.unpack('c1c0', '3abc')}", "*2\r\n$3\r\nabc\r\n:5\r\n"),
    ("return {struct.unpack('!4bi', 'abcdefgh')}", "*3\r\n:97\r\n:1751606885\r\n:9\r\n"),
    ("return {struct.unpack('s', 'ab' .. string.char(0) .. 'c')}", "*2\r\n$2\r\nab\r\n:4\r\n"),
    ("return {struct.unpack('b', 'abc', 3)}", "*2\r\n:99\r\n:4\r\n"),
    ("return {tostring(struct.unpack('f', struct.pack('f', 1.1))), tostring(struct.unpack('>L', struct.pack('>L', -1))), tostring(struct.unpack('>i16', string.rep(string.char(255), 16))), tostring(struct.unpack('>I3', string.rep(string.char(255), 3)))}", "*4\r\n$15\r\n1.1000000238419\r\n$18\r\n1.844674407371e+19\r\n$2\r\n-1\r\n$8\r\n16777215\r\n"),
    ("return {struct.size('!8bd'), struct.size('!bi3d'), struct.size('bc'), struct.size('z'), struct.size('')}", "*5\r\n:16\r\n:16\r\n:2\r\n:0\r\n:0\r\n"),
    ("return select('#', struct.unpack(string.rep('b', 7996), string.rep('a', 8000)))", ":7997\r\n"),
    ("return struct.pack('c5', 'ab')", "-ERR user_script:1: bad argument #3 to 'pack' (string too short) script: cec53901ab5000b5eccda51f64e59e716bdfd4ba, on @user_script:1.\r\n"),
    ("return struct.pack('z', 1)", "-ERR user_script:1: bad argument #1 to 'pack' (invalid format option 'z') script: b1a49a62278d772f47cfca6a679bc33c0fa64430, on @user_script:1.\r\n"),
    ("return struct.pack('i')", "-ERR user_script:1: bad argument #2 to 'pack' (number expected, got nil) script: 63b299178a495d059d925846f3a5f58587cb30c9, on @user_script:1.\r\n"),
    ("return struct.pack('ii', 1)", "-ERR user_script:1: bad argument #3 to 'pack' (number expected, got nil) script: 2c85861ffbe8a6c7335e4a3239f2eafc62283cea, on @user_script:1.\r\n"),
    ("return struct.pack('i', 'x')", "-ERR user_script:1: bad argument #2 to 'pack' (number expected, got string) script: 72d01f23645269179316b093775c7fa64478554a, on @user_script:1.\r\n"),
    ("return struct.pack('s', {})", "-ERR user_script:1: bad argument #2 to 'pack' (string expected, got table) script: 5cf444f359bf1c8e7834932265689f94ec6774d9, on @user_script:1.\r\n"),
    ("return struct.pack()", "-ERR user_script:1: bad argument #1 to 'pack' (string expected, got no value) script: c9b8aed4f0633591e6252db264bf8b86b82828d5, on @user_script:1.\r\n"),
    ("return struct.pack('i33', 1)", "-ERR user_script:1: integral size 33 is larger than limit of 32 script: 0a76c071d82805e752befa6958961c98c39f358f, on @user_script:1.\r\n"),
    ("return struct.pack('!3', 1)", "-ERR user_script:1: alignment 3 is not a power of 2 script: 015083070625e0c8535172e55b13a94acdf4c3c6, on @user_script:1.\r\n"),
    ("return struct.pack('i99999999999', 1)", "-ERR user_script:1: integral size overflow script: 55da9dc87c031781cab77cd7caa7180a2f334e7e, on @user_script:1.\r\n"),
    ("return struct.size('?')", "-ERR user_script:1: bad argument #1 to 'size' (invalid format option '?') script: 7bbb71570e714600c71d9cc568bccd7730051b1f, on @user_script:1.\r\n"),
    ("return struct.size('s')", "-ERR user_script:1: bad argument #1 to 'size' (option 's' has no fixed size) script: a2a0525826ab7939ccd3f54427a862205642f28f, on @user_script:1.\r\n"),
    ("return struct.size('c0')", "-ERR user_script:1: bad argument #1 to 'size' (option 'c0' has no fixed size) script: 18f217e7d560de92703dc71e9797e043b536e0e6, on @user_script:1.\r\n"),
    ("return struct.unpack('b', '')", "-ERR user_script:1: bad argument #2 to 'unpack' (data string too short) script: 66765221c9b972d0a7f55f45639ebb2f78a50eb5, on @user_script:1.\r\n"),
    ("return struct.unpack('b', 'a', 0)", "-ERR user_script:1: bad argument #3 to 'unpack' (offset must be 1 or greater) script: 78b1453fc7bc0eefb9dbb82866b90482a537fd6c, on @user_script:1.\r\n"),
    ("return struct.unpack('s', 'abc')", "-ERR user_script:1: unfinished string in data script: 3c8c11118da3ea1fd285856434f3f28c04cc4a2a, on @user_script:1.\r\n"),
    ("return struct.unpack('c0', 'hello')", "-ERR user_script:1: format 'c0' needs a previous size script: 6653cafa97d23e0bdb500e32d127e17fe86bf7c5, on @user_script:1.\r\n"),
    ("return struct.unpack(string.rep('b', 7998), string.rep('a', 8000))", "-ERR user_script:1: stack overflow (too many results) script: 484443f8947886c322e3efd709285e7d0b2284be, on @user_script:1.\r\n"),
    ("local p = struct.pack return p('z')", "-ERR user_script:1: bad argument #1 to 'p' (invalid format option 'z') script: ef443eb455fdae85ab6bede27741cc076a5d40d3, on @user_script:1.\r\n"),
    ("return struct:pack('i')", "-ERR user_script:1: calling 'pack' on bad self (string expected, got table) script: 215059dd427d3b75c625c9c7183e9ddf21abecd6, on @user_script:1.\r\n"),
    ("local ok, e = pcall(struct.pack, 'z') return e", "$50\r\nbad argument #1 to '?' (invalid format option 'z')\r\n"),
    ("local ok, e = pcall(function() return struct.pack('z') end) return e", "$68\r\nuser_script:1: bad argument #1 to 'pack' (invalid format option 'z')\r\n"),
    ("local ok, e = pcall(cjson.decode, 'x') return {tostring(ok), type(e), e}", "*3\r\n$5\r\nfalse\r\n$6\r\nstring\r\n$53\r\nExpected value but found invalid token at character 1\r\n"),
    ("local ok, e = pcall(function() return cjson.decode('x') end) return e", "$68\r\nuser_script:1: Expected value but found invalid token at character 1\r\n"),
    ("local ok, e = pcall(function() return redis.call('nosuch') end) return {type(e), e}", "*2\r\n$6\r\nstring\r\n$44\r\nERR Unknown Redis command called from script\r\n"),
    ("local ok, e = pcall(function() error({err='x'}) end) return {type(e), e}", "*2\r\n$6\r\nstring\r\n$1\r\nx\r\n"),
    ("local ok, e = pcall(error) return {tostring(ok), type(e)}", "*2\r\n$5\r\nfalse\r\n$3\r\nnil\r\n"),
    ("local ok, e = xpcall(function() redis.call('nosuch') end, function(e) return type(e) end) return e", "$5\r\ntable\r\n"),
    ("local ok, e = xpcall(function() redis.call('nosuch') end, function(e) return e end) return e", "-ERR Unknown Redis command called from script\r\n"),
    ("return {xpcall(function() error('z') end, function(e) return 'h:' .. e end)}", "*2\r\n$-1\r\n$18\r\nh:user_script:1: z\r\n"),
    ("local ok, e = pcall(redis.setresp, 4) return e", "$32\r\nERR RESP version must be 2 or 3.\r\n"),
    ("local ok, e = pcall(redis.error_reply, 1) return e", "-ERR wrong number or type of arguments\r\n"),
    ("return redis.status_reply()", "-ERR wrong number or type of arguments\r\n"),
    ("return redis.setresp()", "-ERR redis.setresp() requires one argument. script: 76da64e28014e7c9ad76db33c3918c53d81a3d7e, on @user_script:1.\r\n"),
    ("return redis.log()", "-ERR redis.log() requires two arguments or more. script: 28e28bf25123668ac541f5eec91bf7ad3d2fe0bd, on @user_script:1.\r\n"),
    ("return redis.log('x', 'y')", "-ERR First argument must be a number (log level). script: abaa422549b33ecc9a0466b3166971ce5a4734f0, on @user_script:1.\r\n"),
    ("return redis.log(9, 'y')", "-ERR Invalid debug level. script: 2bcb2397ed4e2b60674929abd77fcc674f1d1669, on @user_script:1.\r\n"),
    ("return redis.sha1hex()", "-ERR wrong number of arguments script: 3c7ce947ae74a835cc575b6ee87fb27503cb7ba4, on @user_script:1.\r\n"),
    ("return redis.sha1hex(12)", "$40\r\n7b52009b64fd0a2a49e6d8a939753077792b0554\r\n"),
    ("return cjson.decode('x')", "-ERR user_script:1: Expected value but found invalid token at character 1 script: 5f58dd5cefb3eb0313af3534f36be4b83e79ae80, on @user_script:1.\r\n"),
    ("return cjson.encode(function() end)", "-ERR user_script:1: Cannot serialise function: type not supported script: c6600573aa08cdf0af5da6e0ef682db69a3acc00, on @user_script:1.\r\n"),
    ("return cjson.decode()", "-ERR user_script:1: bad argument #1 to 'decode' (expected 1 argument) script: 5378278d59343caf5c3375a655dfea5e69ab8a74, on @user_script:1.\r\n"),
    ("return bit.tobit()", "-ERR user_script:1: bad argument #1 to 'tobit' (number expected, got no value) script: 6058df6fbdf91c1b96015f209fb1a490233f2272, on @user_script:1.\r\n"),
    ("return bit.tobit('x')", "-ERR user_script:1: bad argument #1 to 'tobit' (number expected, got string) script: 4fe0a4258aa95439ac2f80d95b01a24a0ba1ff0c, on @user_script:1.\r\n"),
    ("return bit.tohex(1, nil)", "-ERR user_script:1: bad argument #2 to 'tohex' (number expected, got nil) script: a371c52406761939e731eaf561be8634ccb2af98, on @user_script:1.\r\n"),
    ("coroutine.create = nil", "-ERR user_script:1: Attempt to modify a readonly table script: ba9186a50bd031d765793962e5da2675987637e7, on @user_script:1.\r\n"),
    ("return {coroutine.resume(coroutine.create(function() error('e') end))}", "*2\r\n$-1\r\n$16\r\nuser_script:1: e\r\n"),
];

/// (script run with `EVAL script 1 k` after `SET k v`, its exact reply), in order, on one
/// RESP2 connection; replies from redis-server 7.0.15, checked against it again in each run.
const SANDBOX_AND_FLAGS: &[(&str, &str)] = &[
    ("return loadstring('return type(dofile)')()", "-ERR [string \"return type(dofile)\"]:1: Script attempted to access nonexistent global variable 'dofile' script: a7dea00fa2eef241433659af8e3e1ecfe6a1a47d, on return type(dofile):1.\r\n"),
    ("return loadstring('return rawget(_G, \"print\")')()", "$-1\r\n"),
    ("rawset(_G, 'x', 1) return x", "-ERR Attempt to modify a readonly table script: c92bcd17d4a06608da2dffc4fac6d0108bedb63c, on @user_script:1.\r\n"),
    ("setmetatable(_G, {})", "-ERR Attempt to modify a readonly table script: 0bf0a51fbb051c942113de0105d3f8e18cdcddb5, on @user_script:1.\r\n"),
    ("local g = getmetatable(_G) g.__index = {}", "-ERR user_script:1: Attempt to modify a readonly table script: b1a7e4ca615906790500da2b26a313f2ce643b80, on @user_script:1.\r\n"),
    ("rawset(string, 'upper', nil)", "-ERR Attempt to modify a readonly table script: e68ce73535d343c54e7cc830d5492eabc260cee3, on @user_script:1.\r\n"),
    ("getmetatable('').__index.upper = function() return 'pwned' end", "-ERR user_script:1: Attempt to modify a readonly table script: b557ccece61f0a82c1980f8c32b5f701d8a5c115, on @user_script:1.\r\n"),
    ("return ('abc'):upper()", "$3\r\nABC\r\n"),
    ("local f, e = loadstring(string.dump(function() return 1 end)) return {type(f), e}", "*2\r\n$3\r\nnil\r\n$53\r\n[string \"LuaQ\"]:1: unexpected symbol near 'char(27)'\r\n"),
    ("return loadstring(string.dump(function() return 1 end))()", "-ERR user_script:1: attempt to call a nil value script: 5dcb142d767eb350dbcc8f0ae66433b0e227f5a2, on @user_script:1.\r\n"),
    ("local f = loadstring('local t = nil; return t.x') return f()", "-ERR [string \"local t = nil; return t.x\"]:1: attempt to index local 't' (a nil value) script: a6ac556c37ffd2ae85c938793e3eb9526929987e, on local t = nil; return t.x:1.\r\n"),
    ("local f = loadstring('x_global = 1') f()", "-ERR [string \"x_global = 1\"]:1: Attempt to modify a readonly table script: 8e86648305a8dd728b7d9eb2a9d3bfcab9250019, on x_global = 1:1.\r\n"),
    ("redis.call('set', KEYS[1], 9007199254740991) return redis.call('get', KEYS[1])", "$16\r\n9007199254740991\r\n"),
    ("redis.call('set', KEYS[1], -42) return redis.call('get', KEYS[1])", "$3\r\n-42\r\n"),
    ("local a = {} for i = 1, 7000 do a[i] = 'k' .. i end return redis.call('exists', unpack(a))", ":0\r\n"),
    ("return redis.call('cluster', 'reset')", "-ERR This Redis command is not allowed from script script: ecbbf5fbcc4330416ab3bbd4fbf9b2c51ebc71e8, on @user_script:1.\r\n"),
    ("return redis.pcall('cluster', 'info')", "-ERR This instance has cluster support disabled\r\n"),
    ("return redis.pcall('client', 'getname')", "-ERR This Redis command is not allowed from script\r\n"),
    ("return redis.pcall('config', 'get', 'maxmemory')", "-ERR This Redis command is not allowed from script\r\n"),
    ("return redis.error_reply('NOSPACE')", "-ERR NOSPACE\r\n"),
    ("return redis.error_reply('-X y\\r\\n')", "-X y\r\n"),
    ("return redis.error_reply('')", "-ERR \r\n"),
    ("return {err='a\\nb\\r\\n'}", "-a b\r\n"),
    ("local ok, e = pcall(cjson.decode, '[1,]') return e", "$49\r\nExpected value but found T_ARR_END at character 4\r\n"),
    ("local ok, e = pcall(cjson.decode, '{\"a\" 1}') return e", "$48\r\nExpected colon but found T_NUMBER at character 6\r\n"),
    ("local ok, e = pcall(cjson.decode, '\"abc') return e", "$64\r\nExpected value but found unexpected end of string at character 5\r\n"),
    ("local ok, e = pcall(cjson.decode, '\"\\\\u12\"') return e", "$67\r\nExpected value but found invalid unicode escape code at character 2\r\n"),
    ("return cjson.encode(cjson.decode('[1e2, -0, 0x10, 012, 1.5E+3]'))", "$19\r\n[100,-0,16,12,1500]\r\n"),
    ("cjson.encode_invalid_numbers(true) local r = cjson.encode(cjson.decode('[inf, -Infinity, nan]')) cjson.encode_invalid_numbers(false) return r", "$14\r\n[inf,-inf,nan]\r\n"),
    ("cjson.decode_max_depth(1) local ok, e = pcall(cjson.decode, '{\"obj\": {\"array\": [1,2,3,4]}}') cjson.decode_max_depth(1000) return e", "$56\r\nFound too many nested data structures (2) at character 9\r\n"),
    ("cjson.encode_max_depth(1) local ok, e = pcall(cjson.encode, {a={}}) cjson.encode_max_depth(1000) return e", "$39\r\nCannot serialise, excessive nesting (2)\r\n"),
    ("cjson.encode_number_precision(3) local r = cjson.encode(3.14159) cjson.encode_number_precision(14) return r", "$4\r\n3.14\r\n"),
    ("cjson.encode_sparse_array(true) local r = cjson.encode({[1]=1, [20]=2}) cjson.encode_sparse_array(false) return r", "$14\r\n{\"1\":1,\"20\":2}\r\n"),
    ("return {cjson.encode_max_depth(), cjson.decode_max_depth(), cjson.encode_number_precision(), tostring(cjson.encode_keep_buffer()), tostring(cjson.encode_invalid_numbers()), tostring(cjson.decode_invalid_numbers())}", "*6\r\n:1000\r\n:1000\r\n:14\r\n$4\r\ntrue\r\n$5\r\nfalse\r\n$4\r\ntrue\r\n"),
    ("return {cjson.encode_sparse_array()}", "*3\r\n$-1\r\n:2\r\n:10\r\n"),
    ("return cjson.encode_max_depth(0)", "-ERR user_script:1: bad argument #1 to 'encode_max_depth' (expected integer between 1 and 2147483647) script: f40da52b0819d675b8802812b1c4504462426d31, on @user_script:1.\r\n"),
    ("return cjson.encode_max_depth(1, 2)", "-ERR user_script:1: bad argument #2 to 'encode_max_depth' (found too many arguments) script: ebf9f090ab5ddd4b21a6e44e9f074da030afcaf9, on @user_script:1.\r\n"),
    ("return cjson.encode_invalid_numbers('maybe')", "-ERR user_script:1: bad argument #1 to 'encode_invalid_numbers' (invalid option 'maybe') script: cc274de9dcb4191ad96cc35d6cd9de848bc40414, on @user_script:1.\r\n"),
    ("#!lua\nreturn 1", ":1\r\n"),
    ("#!lua flags=no-writes,allow-stale\nreturn redis.call('get', KEYS[1])", "$3\r\n-42\r\n"),
    ("#!lua flags=no-writes\nreturn redis.call('set', KEYS[1], 'x')", "-ERR Write commands are not allowed from read-only scripts. script: 5542bd57a4a0c7e258558319b363acf2ab028631, on @user_script:2.\r\n"),
    ("#!not-lua\nreturn 1", "-ERR Unexpected engine in script shebang: #!not-lua\r\n"),
    ("#!lua badger=data\nreturn 1", "-ERR Unknown lua shebang option: badger=data\r\n"),
    ("#!lua flags=allow-oom,what?\nreturn 1", "-ERR Unexpected flag in script shebang: what?\r\n"),
    ("#!lua", "-ERR Invalid script shebang\r\n"),
    ("#!lua\nreturn x", "-ERR user_script:2: Script attempted to access nonexistent global variable 'x' script: 58b72ca6d006e3bafbb8cc006de4820497ce9cf8, on @user_script:2.\r\n"),
];

/// (request, exact reply) pairs on one RESP2 connection.
const REQUESTS: &[(&[&str], &str)] = &[
    (
        &["EVAL_RO", "#!lua\nreturn 1", "0"],
        "-ERR Can not execute a script with write flag using *_ro command.\r\n",
    ),
    (
        &["EVAL_RO", "#!lua flags=no-writes\nreturn 1", "0"],
        ":1\r\n",
    ),
    (
        &["SCRIPT", "LOAD", "#!lua\nreturn 2"],
        "$40\r\n327e60b78547ebb77ec450ead371d5bd10cbdd69\r\n",
    ),
    (
        &[
            "EVALSHA_RO",
            "327e60b78547ebb77ec450ead371d5bd10cbdd69",
            "0",
        ],
        "-ERR Can not execute a script with write flag using *_ro command.\r\n",
    ),
    (
        &["EVALSHA", "327e60b78547ebb77ec450ead371d5bd10cbdd69", "0"],
        ":2\r\n",
    ),
    (
        &["SCRIPT", "LOAD", "#!bad\nreturn 2"],
        "-ERR Unexpected engine in script shebang: #!bad\r\n",
    ),
    // CLIENT REPLY: OFF and SKIP answer nothing, pushes (and subscribe confirmations) still go out.
    (&["CLIENT", "REPLY", "OFF"], ""),
    (&["SET", "a", "1"], ""),
    (&["CLIENT", "REPLY", "ON"], "+OK\r\n"),
    (&["CLIENT", "REPLY", "SKIP"], ""),
    (&["GET", "a"], ""),
    (&["GET", "a"], "$1\r\n1\r\n"),
    (&["CLIENT", "REPLY", "BAD"], "-ERR syntax error\r\n"),
    (&["HELLO", "3"], "*"),
    (&["CLIENT", "REPLY", "OFF"], ""),
    (
        &["SUBSCRIBE", "x"],
        ">3\r\n$9\r\nsubscribe\r\n$1\r\nx\r\n:1\r\n",
    ),
    (&["PING"], ""),
    (
        &["UNSUBSCRIBE", "x"],
        ">3\r\n$11\r\nunsubscribe\r\n$1\r\nx\r\n:0\r\n",
    ),
    (&["CLIENT", "REPLY", "ON"], "+OK\r\n"),
];

fn flags_conversation(address: SocketAddr) {
    let mut conn = Conn::open(address);
    assert_eq!(conn.call(&["SET", "k", "v"]), "+OK\r\n");
    for (script, expected) in SANDBOX_AND_FLAGS {
        let reply = conn.call(&["EVAL", script, "1", "k"]);
        assert_eq!(reply, *expected, "reply to {script:?} from {address}");
    }
    // Each reply is read before the next request: a left-out reply shows as the next one's.
    for (request, expected) in REQUESTS {
        conn.send(request);
        if expected.is_empty() {
            continue;
        }
        let reply = conn.reply();
        if *expected == "*" {
            continue;
        }
        assert_eq!(reply, *expected, "reply to {request:?} from {address}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_shebang_flags_and_client_reply_answer_like_redis_byte_for_byte() {
    let node = node().await;
    let address = node.resp_addr;
    tokio::task::spawn_blocking(move || against_both(address, flags_conversation))
        .await
        .expect("conversation");
    node.shutdown().await.expect("shutdown");
}

/// Redis 7.2 writes what a script published to its own RESP3 connection after the script's
/// reply, as it does after EXEC (7.0 wrote it before; the 7.2 suite's "publish to self inside
/// script" checks this order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_publishing_to_its_own_connection_answers_first() {
    let node = node().await;
    let address = node.resp_addr;
    tokio::task::spawn_blocking(move || {
        let mut conn = Conn::open(address);
        conn.call(&["HELLO", "3"]);
        assert_eq!(
            conn.call(&["SUBSCRIBE", "foo"]),
            ">3\r\n$9\r\nsubscribe\r\n$3\r\nfoo\r\n:1\r\n"
        );
        let script =
            "redis.call('publish', 'foo', 'bar') redis.call('publish', 'foo', 'vaz') return 'bla'";
        assert_eq!(conn.call(&["EVAL", script, "0"]), "$3\r\nbla\r\n");
        assert_eq!(
            conn.reply(),
            ">3\r\n$7\r\nmessage\r\n$3\r\nfoo\r\n$3\r\nbar\r\n"
        );
        assert_eq!(
            conn.reply(),
            ">3\r\n$7\r\nmessage\r\n$3\r\nfoo\r\n$3\r\nvaz\r\n"
        );
    })
    .await
    .expect("conversation");
    node.shutdown().await.expect("shutdown");
}

/// With memory full, Redis 7 refuses a script that declares flags but not `allow-oom` before
/// it runs, lets an `allow-oom` one write, and checks a script without flags write by write
/// (the suite's "allow-oom shebang flag"; store-node has no CONFIG SET maxmemory, so this runs
/// here only, with --max-memory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_oom_lets_a_declared_script_write_while_memory_is_full() {
    let node = node_with(|config| config.max_memory = 8 << 20).await;
    let address = node.resp_addr;
    tokio::task::spawn_blocking(move || {
        let mut conn = Conn::open(address);
        let value = "x".repeat(64 * 1024);
        let mut index = 0;
        while conn.call(&["SET", &format!("fill:{index}"), &value]) == "+OK\r\n" {
            index += 1;
            assert!(index < 1000, "memory never filled");
        }
        let oom = "-OOM command not allowed when used memory > 'maxmemory'.\r\n";
        assert_eq!(conn.call(&["EVAL", "#!lua flags=\nreturn 1", "0"]), oom);
        let write = "#!lua flags=allow-oom\nredis.call('set', KEYS[1], '1') return 1";
        assert_eq!(conn.call(&["EVAL", write, "1", "x"]), ":1\r\n");
        assert_eq!(conn.call(&["EVAL", "#!lua flags=no-writes\nreturn redis.call('get', KEYS[1])", "1", "x"]), "$1\r\n1\r\n");
        let compat = "redis.call('set', KEYS[1], '2') return 1";
        assert_eq!(
            conn.call(&["EVAL", compat, "1", "x"]),
            format!(
                "-OOM command not allowed when used memory > 'maxmemory'. script: {}, on @user_script:1.\r\n",
                sha1_hex(compat.as_bytes())
            )
        );
        assert_eq!(conn.call(&["EVAL", "return redis.call('get', KEYS[1])", "1", "x"]), "$1\r\n1\r\n");
        // A lock release (compare and delete) works while memory is full.
        let release = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
        assert_eq!(conn.call(&["EVAL", release, "1", "x", "1"]), ":1\r\n");
    })
    .await
    .expect("conversation");
    node.shutdown().await.expect("shutdown");
}

fn libraries_conversation(address: SocketAddr) {
    let mut conn = Conn::open(address);
    for (script, expected) in LIBRARIES {
        let body = match script.strip_prefix("hex: ") {
            Some(rest) => format!("{HEX}{rest}"),
            None => script.to_string(),
        };
        let reply = conn.call(&["EVAL", &body, "0"]);
        assert_eq!(reply, *expected, "reply to {script:?} from {address}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libraries_and_script_errors_reply_like_redis_byte_for_byte() {
    let node = node().await;
    let address = node.resp_addr;
    tokio::task::spawn_blocking(move || against_both(address, libraries_conversation))
        .await
        .expect("conversation");
    node.shutdown().await.expect("shutdown");
}

/// Runs `script` until another client sees BUSY, kills it, and returns its reply.
fn killed_reply(address: SocketAddr, script: &str) -> String {
    let mut runner = Conn::open(address);
    let mut other = Conn::open(address);
    assert_eq!(
        other.call(&["CONFIG", "SET", "busy-reply-threshold", "100"]),
        "+OK\r\n"
    );
    runner.send(&["EVAL", script, "0"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !other.call(&["PING"]).starts_with("-BUSY") {
        assert!(Instant::now() < deadline, "never BUSY: {script}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(other.call(&["SCRIPT", "KILL"]), "+OK\r\n");
    let reply = runner.reply();
    assert_eq!(other.call(&["PING"]), "+PONG\r\n");
    reply
}

/// Scripts that catch every error they see and loop on.
const CATCHING: &[&str] = &[
    "while true do pcall(function() while true do end end) end",
    "while true do pcall(function() end) end",
    "while true do xpcall(function() while true do end end, function(e) return e end) end",
    "local f = coroutine.wrap(function() while true do end end) f()",
];

fn kill_conversation(address: SocketAddr) {
    for script in CATCHING {
        assert_eq!(
            killed_reply(address, script),
            format!(
                "-ERR Script killed by user with SCRIPT KILL... script: {}, on @user_script:1.\r\n",
                sha1_hex(script.as_bytes())
            ),
            "{script} on {address}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_kill_cannot_be_caught() {
    let node = node().await;
    let address = node.resp_addr;
    tokio::task::spawn_blocking(move || {
        against_both(address, kill_conversation);
        // A fresh coroutine at every turn: Redis 7.0 ends it only after seconds (its line hook
        // reaches the loop slowly); here the resume that sees the kill raises it again.
        let script = "while true do coroutine.resume(coroutine.create(function() while true do end end)) end";
        assert_eq!(
            killed_reply(address, script),
            format!(
                "-ERR Script killed by user with SCRIPT KILL... script: {}, on @user_script:1.\r\n",
                sha1_hex(script.as_bytes())
            )
        );
    })
    .await
    .expect("conversation");
    node.shutdown().await.expect("shutdown");
}

/// Redis 7.0 answers a script whose interpreter cannot allocate with
/// `Error running script <sha>, not enough memory` (Lua's out-of-memory error reaches
/// `luaCallFunction` as a bare string). Its own Lua has no limit: redis-server 7.0.15 under
/// `ulimit -v` aborts with `Out Of Memory allocating ...` instead, so this text is checked here
/// only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_past_its_memory_room_fails_with_redis_text_and_the_node_keeps_serving() {
    let node = node_with(|config| config.max_memory = 64 << 20).await;
    let address = node.resp_addr;
    tokio::task::spawn_blocking(move || {
        let mut conn = Conn::open(address);
        for script in [
            // Lua's own allocations.
            "local t = {} for i = 1, 1e8 do t[i] = string.rep('x', 100) .. i end return #t",
            // An allocation of a library written in Rust.
            "local s = string.rep('x', 30000000) return #cmsgpack.pack(s)",
        ] {
            assert_eq!(
                conn.call(&["EVAL", script, "0"]),
                format!(
                    "-ERR Error running script {}, not enough memory\r\n",
                    sha1_hex(script.as_bytes())
                )
            );
            assert_eq!(conn.call(&["EVAL", "return 1", "0"]), ":1\r\n");
            assert_eq!(conn.call(&["SET", "k", "v"]), "+OK\r\n");
        }
    })
    .await
    .expect("conversation");
    node.shutdown().await.expect("shutdown");
}
