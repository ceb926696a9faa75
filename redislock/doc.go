// Package redislock is lockkit's Redis backend: named locks held as leases
// in Redis with SET NX PX, released and renewed only by their holder, with
// optional fencing tokens, holder information on conflict, and waiters woken
// by pub/sub instead of polling. It uses go-redis v9.
//
//	l, err := redislock.New(client, &redislock.Config{Fencing: true, Owner: "billing-worker"})
//	...
//	lock, err := l.Lock(ctx, "invoices.nightly") // waits; TryLock does not
//	if err != nil { ... }
//	defer lock.Release(context.WithoutCancel(ctx))
//	... write with lock.Token() as the fencing token ...
//
// A [Locker] implements lockkit.Locker, so lockkit.Do and lockkit.TryDo work
// with it; [Locker.Lock] and [Locker.TryLock] return the typed [*Lock] with
// [Lock.Renew], [Lock.TTL] and [Lock.Key].
//
// # Keys
//
// The lock named N lives in the key "<prefix>{N}" (see [Locker.Key]); with
// fencing, its token counter in "<prefix>{N}:fence"; its wait queue in
// "<prefix>{N}:queue" and "<prefix>{N}:alive" while anyone waits; releases
// are published on the channel "<prefix>{N}:released". The braces keep a
// lock key apart from every other name's keys (no name's lock key is
// another name's counter) and make them a Redis Cluster hash tag, so one
// name's keys land in one slot. (In a cluster, a name that starts with "}"
// has an empty hash tag and its keys may land in different slots: avoid
// such names there.)
//
// Names may hold any bytes, NUL included: Redis keys are binary-safe. They
// must be non-empty and at most [MaxNameLen] bytes; anything else is refused
// with lockkit.ErrInvalid before any I/O. The prefix defaults to
// [DefaultPrefix]; Lockers meant to exclude each other must share it.
//
// The key's value is "<secret>|<token>|<since>|<holder JSON>": a random
// 128-bit secret that identifies this one acquire, the fencing token (0
// without fencing), the holder's clock at the acquire in Unix milliseconds,
// and the holder's owner, host, pid and data from [Config]. The secret is
// stripped from everything shown to other clients (errors, Holder); it is
// not a credential, since anyone who can reach Redis can delete the key.
//
// # Operations and round trips
//
// Every successful operation is one round trip:
//
//   - acquire without fencing: SET key value NX PX ttl GET, which answers
//     nil when it took the lock, or the holder's value. On a conflict
//     TryLock asks PTTL in a second round trip for the holder's lease;
//     Lock does not need it (its waiting attempts report it).
//   - acquire with fencing: one Lua script that checks the key, takes the
//     next token from the counter, sets the key with SET NX PX, and on
//     conflict replies with the holder and its PTTL. (It is also the
//     fallback for servers older than Redis 7.0, which cannot combine NX
//     with GET; a Locker switches to it after the first syntax error.)
//   - release: a Lua script that compares the secret, DELs the key (or
//     hands it to the first waiter, see Waiting) and PUBLISHes on the
//     name's release channel.
//   - a waiter's attempt: a Lua script that takes the lock if it is free or
//     was handed to this waiter, and otherwise registers it in the queue.
//   - renew: a Lua script that compares the secret and PEXPIREs.
//   - TTL: a Lua script that compares the secret and returns PTTL.
//
// Scripts run with EVALSHA. When the server has lost them (a restart, SCRIPT
// FLUSH, a failover) it answers NOSCRIPT and the call is repeated once with
// EVAL, which caches the script again.
//
// A release or renewal whose compare fails reports the lock lost
// ([ErrNotOwner] inside a lockkit.LostError): it never deletes or extends
// another holder's key. An acquire whose reply was lost (a network error
// after the send, a cancelled context) deletes its own key again with the
// same compare-and-delete, so an abandoned attempt leaves nothing held (when
// the caller's context has already ended, the call returns after at most
// 100 ms and that delete finishes in the background within 2 s, so a stalled
// server cannot hold a call past its deadline); and
// an acquire that go-redis retries after a network error recognises its own
// key by the secret and succeeds rather than reporting itself as the holder.
//
// # Leases, renewal and loss
//
// A lock is a lease of [Config.TTL] (default 30 s) on the server's clock.
// By default it is renewed every [Config.RenewInterval] (default TTL/3, at
// most TTL/2), on a context of its own that the acquire call's context never
// cancels. Each held lock has timers, not a goroutine; renewals that come
// due within a few milliseconds of each other are sent together in one
// pipeline by a goroutine that runs only while renewals are pending, so a
// Locker holding thousands of locks spends a few round trips per interval
// on them, not one per lock. Release stops the renewal and waits for one in
// flight.
//
// The lock is reported lost (Done closes, Err wraps lockkit.ErrLost):
//
//   - at the first renewal, Renew or TTL call that finds the key no longer
//     holds its secret ([ErrNotOwner]). With automatic renewal, a key that
//     was deleted, expired or overwritten is therefore noticed within one
//     RenewInterval (plus a round trip): that is the loss-detection bound.
//   - when TTL has passed, on the holder's clock, since the start of the
//     last renewal (or acquire) the server confirmed ([ErrLeaseExpired]):
//     failed renewals are retried every RenewInterval/4, and once the lease
//     may have run out on the server the lock is reported lost even though
//     the server could not be asked. Measuring from the moment the request
//     was sent errs on the early side, so the holder gives up no later than
//     the server can have expired the key (short of clock rate differences
//     between the hosts).
//   - with [Config.NoAutoRenew], at the end of the lease unless Renew has
//     moved it.
//
// go-redis bounds a network wait by its ReadTimeout (3 s by default) and
// ignores the context's deadline unless redis.Options.ContextTimeoutEnabled
// is set. Loss detection does not depend on it (the lease's end is a timer
// of its own), but Acquire's and Release's contexts are honoured mid-call
// only with it set: set it.
//
// # Waiting
//
// A Locker's [Locker.Lock] calls on one name queue in-process, in the
// order they were made, and only the head of that local queue waits on the
// server; the others wait for their turn without a round trip. A call that
// finds no other call of its Locker waiting on the name tries once (one
// round trip when the lock is free); one that finds others waiting queues
// behind them without trying. The head subscribes to the name's release
// channel (the subscription is confirmed by a PING on the pub/sub
// connection before going on, so no release is missed; it is kept for the
// next head), and each of its attempts takes the lock if it is free or was
// handed to it, or else registers it in the name's wait queue in Redis. It
// waits for a release message that wakes it (see below), for the holder's
// lease to run out (an expired key publishes nothing, so a timer is set to
// the PTTL the conflict reported), or for its context; and it renews its
// registration every TTL/3. When the head acquires, fails or gives up, the
// turn passes to the next call in the local queue, which registers in
// Redis at once. So a Locker has at most one waiter per name in the Redis
// queue: the Redis queue orders processes (Lockers), each Locker's local
// queue orders its own calls, and a Locker whose waiter just got the lock
// queues its next waiter behind those other processes had already queued.
// Under contention an acquisition costs about two round trips (the
// release that hands the lock on and the claim), plus the next waiter's
// registration when the lock passes between processes.
//
// Releases hand the lock over in order. A release that finds waiters
// registered does not delete the key: it sets it to the value of the
// waiter that has waited longest (with a new fencing token), with a short
// lease (TTL, at most 2 s) in which that waiter must claim it, and
// publishes that waiter's id (a SHA-1 of its secret, never the secret):
// only that waiter is woken, in whichever process it runs; the others sleep
// on. Its next attempt finds its own secret in the key and takes the full
// lease in the same script. A release that finds nobody queued deletes the
// key and wakes every waiter on the name. Nobody else, the
// releaser included, can take the lock in between, so a holder that
// releases and re-acquires in a loop cannot starve the others. A waiter
// that gives up leaves the queue and, if the lock was just handed to it,
// passes it on in the same round trip. A waiter whose process died stays
// registered until its registration lapses (TTL after its last renewal);
// a lock handed to it in that time is free again when the short lease
// ends, and the waiting head of every Locker is woken then if no later
// grant was published on that name meanwhile. When a holder's lease ends
// without a release, the lock is free for whoever tries first.
//
// The queue lives in two sorted sets beside the lock key,
// "<prefix>{N}:queue" (places in line) and "<prefix>{N}:alive"
// (registrations' ends), which expire with the last registration.
//
// All of a Locker's waiters share one pub/sub connection, on which each
// waited-on channel is subscribed once. The connection is opened when the
// first waiter starts and closed when the last one leaves: an idle Locker
// holds no pub/sub connection and runs no goroutine. The cost of waiting is
// therefore one extra connection per Locker (not per waiter) plus a
// SUBSCRIBE and an UNSUBSCRIBE per waited-on name. If that connection
// breaks, go-redis reconnects and subscribes again; messages published
// meanwhile are lost, so every waiter is woken to try again once the
// subscriptions are back.
//
// # What is and is not guaranteed
//
// Two holders never hold one name at once as long as Redis keeps its data:
// acquire is a single atomic script, and release and renewal act only on
// the holder's own secret.
//
// Redis can lose a lock key, and then a second client acquires while the
// first still believes it holds the lock until its next renewal:
//
//   - a restart without persistence (or with data not yet written by
//     appendfsync everysec) loses every key;
//   - a failover to an asynchronous replica that had not yet received the
//     SET loses that key (Sentinel and Cluster both fail over this way);
//   - a holder paused longer than its lease (a GC pause, a stopped VM)
//     resumes believing it holds the lock until it next looks.
//
// No lock can prevent work done by a holder that has already lost its lock.
// Fencing tokens can: with [Config.Fencing], every acquire takes a token
// from the name's counter in the same script as the SET, strictly greater
// than every earlier token for that name; pass it with every write and have
// the guarded resource refuse tokens lower than the highest it has seen. The
// counter is max(previous + 1, server time in microseconds), so tokens stay
// increasing even when the counter itself was lost in a restart or a
// failover, as long as the server clock only moves forward (and the
// replica's clock is not behind the primary's by more than the time since
// the last acquire). Redlock-style quorums over several independent masters
// are not implemented.
//
// # Replicas
//
// A lock must be taken on the primary. Before its first acquire, a Locker
// on a single-node client (*redis.Client, which a Sentinel failover client
// is too) asks the server's ROLE: one round trip, once per Locker. A
// replica is refused with [ErrReplica] (which matches
// lockkit.ErrUnsupported), naming the server and its primary, before
// anything is written — also with replica-read-only off, where the write
// would succeed on the replica alone, unseen by the primary's clients. A
// server that refuses ROLE (renamed, or not allowed by an ACL) is not asked
// again. A primary demoted later refuses writes with READONLY, which is
// reported as ErrReplica too; the next acquire asks ROLE again. Cluster and
// ring clients are not asked: their commands go to many nodes.
//
// Redis 7.0 or newer is the tested target. Redis 5 and 6 work through the
// script fallback (Redis 5 is the oldest that replicates scripts by their
// effects, which the fencing script's TIME call needs); that path is tested
// here by forcing it on Redis 7.
package redislock
