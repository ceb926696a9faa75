package redislock

import "github.com/redis/go-redis/v9"

// The Lua scripts. Each runs with EVALSHA first and falls back to EVAL (which
// also caches the script again) when the server answers NOSCRIPT, as after a
// restart or SCRIPT FLUSH: go-redis's [redis.Script.Run]. The common case is
// one round trip.
//
// A lock key holds "<secret>|<fence>|<since-ms>|<holder JSON>". The secret
// is 26 random base32 characters that only the holder uses; ARGV[1] is
// always "<secret>|", so a prefix compare is exact. since-ms is the
// holder's clock at the acquire, in Unix milliseconds.

// acquireSrc takes the lock if the key is free. Lockers with fencing use it;
// the others send SET NX PX GET and PTTL in one pipeline instead (see
// Locker.try), which costs the server less, and fall back to this script on
// a server older than Redis 7.0, where SET cannot combine NX with GET.
//
// KEYS[1] the lock key; KEYS[2], only with fencing, the fence counter key.
// ARGV[1] "<secret>|"; ARGV[2] lease in ms; ARGV[3] "|<since-ms>|<holder
// JSON>", the rest of the value after the fencing token.
//
// Reply {1, "<fence>|<since-ms>|<json>"} when acquired, or
// {0, "<fence>|<since-ms>|<json>", pttl-ms} when held by someone else.
//
// The fence counter is max(previous+1, server time in µs): strictly
// increasing per name, and still above every earlier token after the
// counter was lost (a restart without persistence, a failover to a replica
// that had not seen the last write) as long as the server clock moves
// forward and fewer than a million locks a second were taken on that name.
const acquireSrc = `
local v = redis.call('GET', KEYS[1])
if v then
  if string.sub(v, 1, #ARGV[1]) == ARGV[1] then
    return {1, string.sub(v, #ARGV[1] + 1)}
  end
  local i = string.find(v, '|', 1, true)
  local info = ''
  if i then info = string.sub(v, i + 1) end
  return {0, info, redis.call('PTTL', KEYS[1])}
end
local fence = '0'
if KEYS[2] then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local n = (tonumber(redis.call('GET', KEYS[2])) or 0) + 1
  if n < now then n = now end
  fence = string.format('%d', n)
  redis.call('SET', KEYS[2], fence)
end
local info = fence .. ARGV[3]
redis.call('SET', KEYS[1], ARGV[1] .. info, 'NX', 'PX', ARGV[2])
return {1, info}
`

// releaseSrc deletes the key if it still holds the caller's secret, and
// publishes on the name's release channel so waiters try at once.
//
// KEYS[1] the lock key. ARGV[1] "<secret>|"; ARGV[2] the release channel.
// Reply 1 when released, 0 when the key no longer held the secret.
const releaseSrc = `
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], 'released')
  return 1
end
return 0
`

// renewSrc resets the lease if the key still holds the caller's secret.
//
// KEYS[1] the lock key. ARGV[1] "<secret>|"; ARGV[2] lease in ms.
// Reply 1 when renewed, 0 when the key no longer held the secret.
const renewSrc = `
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`

// ttlSrc returns the remaining lease if the key still holds the caller's
// secret, else -3.
//
// KEYS[1] the lock key. ARGV[1] "<secret>|".
const ttlSrc = `
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[1]) == ARGV[1] then
  return redis.call('PTTL', KEYS[1])
end
return -3
`

var (
	acquireScript = redis.NewScript(acquireSrc)
	releaseScript = redis.NewScript(releaseSrc)
	renewScript   = redis.NewScript(renewSrc)
	ttlScript     = redis.NewScript(ttlSrc)
)
