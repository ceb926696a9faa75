package redislock

import (
	"strings"

	"github.com/redis/go-redis/v9"
)

// The Lua scripts. Each runs with EVALSHA first and falls back to EVAL (which
// also caches the script again) when the server answers NOSCRIPT, as after a
// restart or SCRIPT FLUSH: go-redis's [redis.Script.Run]. The common case is
// one round trip.
//
// A lock key holds "<secret>|<fence>|<since-ms>|<holder JSON>". The secret
// is 26 random base32 characters that only the holder uses; ARGV[1] is
// always "<secret>|", so a prefix compare is exact. since-ms is the
// holder's clock at the acquire, in Unix milliseconds.

// valueInfo returns what a lock key's value v says about its holder,
// "<fence>|<since-ms>|<holder JSON>", without the holder's secret (the
// scripts do the same in Lua); ok is false when v has no separator, which
// no lockkit holder writes.
func valueInfo(v string) (info string, ok bool) {
	_, info, ok = strings.Cut(v, "|")
	return info, ok
}

// nextFenceLua defines nextFence(), which takes the next fencing token from
// the counter key named by the variable fenceKey ('0' when fenceKey is nil).
//
// The counter is max(previous+1, server time in µs): strictly increasing per
// name, and still above every earlier token after the counter was lost (a
// restart without persistence, a failover to a replica that had not seen
// the last write) as long as the server clock moves forward and fewer than
// a million locks a second were taken on that name.
const nextFenceLua = `
local function nextFence()
  if not fenceKey then return '0' end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local n = (tonumber(redis.call('GET', fenceKey)) or 0) + 1
  if n < now then n = now end
  local f = string.format('%d', n)
  redis.call('SET', fenceKey, f)
  return f
end
`

// acquireSrc takes the lock if the key is free. Lockers with fencing use it;
// the others send SET NX PX GET instead (see Locker.try), which costs the
// server less, and fall back to this script on a server older than Redis
// 7.0, where SET cannot combine NX with GET.
//
// KEYS[1] the lock key; KEYS[2], only with fencing, the fence counter key.
// ARGV[1] "<secret>|"; ARGV[2] lease in ms; ARGV[3] "|<since-ms>|<holder
// JSON>", the rest of the value after the fencing token.
//
// Reply {1, "<fence>|<since-ms>|<json>"} when acquired, or
// {0, "<fence>|<since-ms>|<json>", pttl-ms} when held by someone else.
const acquireSrc = `local fenceKey = KEYS[2]
` + nextFenceLua + `
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
local fence = nextFence()
local info = fence .. ARGV[3]
redis.call('SET', KEYS[1], ARGV[1] .. info, 'NX', 'PX', ARGV[2])
return {1, info}
`

// The wait queue. A waiter registers in two sorted sets next to the lock
// key: "<key>:queue", scored by when it first registered (its place in
// line) in µs of the server's clock, so that waiters arriving within one
// millisecond keep their order (Redis orders equal scores by member, which
// is random), and "<key>:alive", scored by when its registration lapses
// unless renewed, in ms. The member is the value the waiter's lock key
// will hold, without the fencing token: "<secret>||<since-ms>|<json>".
// Both sets expire with their last registration, so waiters that vanish
// leave nothing behind.

// waitSrc is a waiter's attempt: it takes the lock if the key is free or
// was granted to this waiter by a release (see releaseSrc), and otherwise
// registers the waiter, or renews its registration, keeping its place.
//
// KEYS[1] the lock key; KEYS[2] the queue; KEYS[3] the registrations;
// KEYS[4], only with fencing, the fence counter key.
// ARGV[1] "<secret>|"; ARGV[2] lease in ms; ARGV[3] "|<since-ms>|<json>";
// ARGV[4] how long a registration lasts, in ms; ARGV[5] (optional) the
// score an earlier attempt of this waiter reported: a new registration is
// scored above it, so that no two registrations of one waiter share a
// score even if the server's clock went back.
//
// Replies as acquireSrc, and a conflict's reply has a fourth element: the
// waiter's score in the queue (its registration's, in µs, as a decimal
// string). A lock granted to this waiter gets its full lease now, when the
// waiter claims it instead of holding it from the release's message.
const waitSrc = `local fenceKey = KEYS[4]
` + nextFenceLua + `
local member = ARGV[1] .. ARGV[3]
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[1]) == ARGV[1] then
  redis.call('ZREM', KEYS[2], member)
  redis.call('ZREM', KEYS[3], member)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, string.sub(v, #ARGV[1] + 1)}
end
if v then
  local t = redis.call('TIME')
  local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local score = tonumber(redis.call('ZSCORE', KEYS[2], member))
  if not score then
    score = us
    local prev = tonumber(ARGV[5])
    if prev and score <= prev then score = prev + 1 end
    redis.call('ZADD', KEYS[2], score, member)
  end
  redis.call('ZADD', KEYS[3], math.floor(us / 1000) + tonumber(ARGV[4]), member)
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
  local i = string.find(v, '|', 1, true)
  local info = ''
  if i then info = string.sub(v, i + 1) end
  return {0, info, redis.call('PTTL', KEYS[1]), string.format('%d', score)}
end
redis.call('ZREM', KEYS[2], member)
redis.call('ZREM', KEYS[3], member)
local info = nextFence() .. ARGV[3]
redis.call('SET', KEYS[1], ARGV[1] .. info, 'NX', 'PX', ARGV[2])
return {1, info}
`

// releaseSrc gives the lock up if the key still holds the caller's secret.
// When waiters are registered, it hands the lock straight to the one that
// has waited longest and is still alive: the key is set to that waiter's
// value, with a fresh fencing token and a short lease in which the waiter
// must claim it (waitSrc) or renew it, so that neither the releaser nor
// anyone else can take the lock in between, and publishes "granted <id>
// <grant-ms> <score> <fence>" on the name's release channel, where id is
// the SHA-1 (hex) of the waiter's "<secret>|", score its registration's
// score (as waitSrc reported it) and fence the grant's fencing token ('0'
// without fencing): only that waiter wakes (see hub), and it may hold the
// lock from the message alone (see Locker.fromGrant); the others learn how
// long the grant reserves the lock. Otherwise it deletes the key and
// publishes "released", which wakes every waiter.
//
// KEYS[1] the lock key; KEYS[2] the queue; KEYS[3] the registrations;
// KEYS[4], only with fencing, the fence counter key.
// ARGV[1] "<secret>|"; ARGV[2] the release channel; ARGV[3] the grant's
// lease in ms; ARGV[4] a waiter's member to take out of the queue first (a
// waiter that gives up), or the empty string.
// Reply 1 when released, 0 when the key no longer held the secret.
const releaseSrc = `local fenceKey = KEYS[4]
` + nextFenceLua + `
if ARGV[4] ~= '' then
  redis.call('ZREM', KEYS[2], ARGV[4])
  redis.call('ZREM', KEYS[3], ARGV[4])
end
local v = redis.call('GET', KEYS[1])
if not (v and string.sub(v, 1, #ARGV[1]) == ARGV[1]) then
  return 0
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)) do
    redis.call('ZREM', KEYS[2], m)
    redis.call('ZREM', KEYS[3], m)
  end
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  local head = first[1]
  if head then
    redis.call('ZREM', KEYS[2], head)
    redis.call('ZREM', KEYS[3], head)
    local i = string.find(head, '|', 1, true)
    local fence = nextFence()
    redis.call('SET', KEYS[1], string.sub(head, 1, i) .. fence .. string.sub(head, i + 1), 'PX', ARGV[3])
    redis.call('PUBLISH', ARGV[2], 'granted ' .. redis.sha1hex(string.sub(head, 1, i)) .. ' ' .. ARGV[3] .. ' ' .. string.format('%d', tonumber(first[2])) .. ' ' .. fence)
    return 1
  end
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], 'released')
return 1
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
	waitScript    = redis.NewScript(waitSrc)
	releaseScript = redis.NewScript(releaseSrc)
	renewScript   = redis.NewScript(renewSrc)
	ttlScript     = redis.NewScript(ttlSrc)
)

// Lua is the source of the scripts a Locker runs, for an audit, for a
// service in another language that takes and releases the same locks, and
// for a benchmark that runs them through the raw client. Each field says
// its keys, arguments and reply. A name's keys are [Locker.Key] and, next
// to it, "<key>:queue" and "<key>:alive" (the wait queue),
// "<key>:fence" (the fencing counter) and the release channel
// "<key>:released". A key's value is "<secret>|<fence>|<since-ms>|<holder
// JSON>", where the secret is the holder's alone. The scripts and this
// format belong to the lockkit version that returns them and may change
// between versions.
type Lua struct {
	// Acquire takes the lock if the key is free. KEYS[1] the lock key;
	// KEYS[2], only with fencing, the fence counter key. ARGV[1]
	// "<secret>|"; ARGV[2] lease in ms; ARGV[3] "|<since-ms>|<holder
	// JSON>". Reply {1, "<fence>|<since-ms>|<json>"} when acquired, or
	// {0, "<fence>|<since-ms>|<json>", pttl-ms} when held by someone else.
	Acquire string
	// Wait is a waiter's attempt: it takes the lock if free or granted to
	// this waiter, else registers the waiter in the queue. KEYS[1] the
	// lock key; KEYS[2] the queue; KEYS[3] the registrations; KEYS[4],
	// only with fencing, the fence counter. ARGV[1] "<secret>|"; ARGV[2]
	// lease in ms; ARGV[3] "|<since-ms>|<json>"; ARGV[4] how long a
	// registration lasts, in ms; ARGV[5] (optional) the score an earlier
	// attempt reported. Replies as Acquire; a conflict's reply has a
	// fourth element, the waiter's score in the queue (decimal string).
	Wait string
	// Release gives the lock up if the key holds the caller's secret,
	// handing it to the longest registered waiter ("granted <sha1 of its
	// secret> <grant-ms> <its score> <fencing token>" on the channel) or
	// deleting it ("released").
	// KEYS as Wait. ARGV[1] "<secret>|"; ARGV[2] the release channel;
	// ARGV[3] a grant's lease in ms; ARGV[4] a waiter's queue member to
	// drop first, or "". Reply 1 released, 0 the key no longer held the
	// secret.
	Release string
	// Renew resets the lease if the key holds the caller's secret.
	// KEYS[1] the lock key. ARGV[1] "<secret>|"; ARGV[2] lease in ms.
	// Reply 1 renewed, 0 lost.
	Renew string
}

// Scripts returns the Lua a Locker runs.
func Scripts() Lua {
	return Lua{Acquire: acquireSrc, Wait: waitSrc, Release: releaseSrc, Renew: renewSrc}
}
