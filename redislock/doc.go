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
// [Lock.Renew], [Lock.TTL] and [Lock.Key]. [Locker.List] reports the locks
// held under the Locker's prefix.
//
// Set redis.Options.ContextTimeoutEnabled on the client: without it go-redis
// ignores a context's deadline on socket reads (it waits out its
// ReadTimeout, 3 s by default, and may retry), so calls honour their context
// mid-call only with it set. Loss detection does not depend on it.
//
// # Keys
//
// The lock named N lives in the key "<prefix>{N}" ([Locker.Key]); with
// fencing, its token counter in "<prefix>{N}:fence"; while anyone waits, its
// wait queue in "<prefix>{N}:queue" and "<prefix>{N}:alive"; releases are
// published on "<prefix>{N}:released". The braces keep one name's keys apart
// from every other name's and make them a Redis Cluster hash tag, so that a
// name's keys share one slot and its scripts never fail with CROSSSLOT. A
// name that starts with "}" would make that tag empty; its keys are
// "<prefix>}{<N in hex>}" and so on instead. Names may hold any bytes, non-empty and at most [MaxNameLen]; anything else
// fails with lockkit.ErrInvalid before any I/O. Lockers that exclude each
// other must share the prefix ([DefaultPrefix] by default). The key's value
// holds this acquire's random secret, never shown to other clients, the
// token and the holder from [Config]; [Scripts] documents the format and the
// Lua, for services in other languages.
//
// # Acquire and release
//
// Every successful operation is one round trip. Release and renewal compare
// the secret in a script: they never delete or extend another holder's key,
// and a failed compare reports the lock lost ([ErrNotOwner]). An acquire
// whose reply was lost (a network error after the send, an ended context)
// deletes its own key with the same compare, so an abandoned attempt leaves
// nothing held: the call returns at most 100 ms after its context ended, and
// the delete finishes in the background within 2 s ([Locker.Close] waits for
// it).
//
// # Waiting
//
// A Locker's [Locker.Lock] calls on one name queue in-process, first come
// first served; only the head waits on the server, registered in the name's
// queue in Redis. A release hands the lock to the waiter that has waited
// longest, under a short lease (TTL, at most 2 s), and wakes that waiter
// alone: nobody else, the releaser included, can take the lock in between.
// The release's message carries the grant (its lease, its fencing token,
// and the waiter's registration), and the waiter holds the lock from the
// message alone: its lease runs at least to the start of its last attempt
// plus the grant's lease, and its first renewal goes at half of what is
// left (sooner if RenewInterval is), which gives it the full TTL. A grant
// to an earlier registration of the waiter — its message read late, by a
// process paused past the grant's lease while another waiter took the lock
// — is not taken: the waiter claims it with another attempt, which finds
// out whether it still holds. So is a grant with less than half of its
// lease left, and every grant with [Config.NoAutoRenew] or
// [Config.WaitReplicas] (the claim is then what gives the lock its TTL, or
// is waited for). With nobody queued, a release deletes the key. A waiter
// also tries again when the holder's lease runs out, and at least every
// TTL/3; a grant to a dead waiter is free again when its short lease ends.
// Pub/sub delivers at most once: a grant whose message is lost is claimed
// by the waiter's next attempt — at once when the loss broke the
// connection, which wakes the waiters, else at its next try — or, if its
// short lease ran out first, is free again as one to a dead waiter is.
// A Locker's waiters share
// one pub/sub connection. A name's release channel stays subscribed on it
// for 5 s after the name's last waiter returns, and the connection stays
// open while any channel does: a worker that loops Lock and Release finds
// the channel subscribed and goes straight to the wait script, so a
// contended acquisition costs two round trips (register in the queue,
// release) and no SUBSCRIBE. [Locker.Close] (or closing the client) ends
// the linger at once. While the pub/sub connection is broken, waiters are
// woken and try again every ~100 ms until it is back. A waiter whose
// context ends as the lock is handed to it gives the lock back (passing it
// on to the next waiter), as an abandoned acquire does.
//
// # Leases and loss
//
// A lock is a lease of [Config.TTL] (default 30 s) on the server's clock,
// renewed every [Config.RenewInterval] (default TTL/3, at most TTL/2). Done
// closes and Err wraps lockkit.ErrLost:
//
//   - when a renewal, [Lock.Renew] or [Lock.TTL] finds the key no longer
//     holds the secret ([ErrNotOwner]): within one RenewInterval plus a
//     round trip of the key being deleted, expired or overwritten;
//   - when TTL has passed on the holder's clock since the start of the last
//     renewal (or acquire) the server confirmed ([ErrLeaseExpired]), so the
//     holder gives up no later than the server can have expired the key (a
//     lock held from a release's grant, until its first renewal: the
//     grant's lease from the start of the waiter's last attempt);
//   - with [Config.NoAutoRenew], at the end of the lease unless Renew moved it.
//
// RELIABILITY.md at the repository root has the measured latencies.
//
// # Fencing, and what is not guaranteed
//
// Two holders never hold one name at once as long as Redis keeps its data.
// Redis can lose a key — a restart without persistence, a failover to an
// asynchronous replica that had not received it — and a holder can be
// paused past its lease; then a second client acquires while the first
// believes it holds the lock until its next renewal. Only fencing tokens
// protect the resource then: with [Config.Fencing] every acquire takes a
// token strictly greater than every earlier one for the name, max(previous
// + 1, server time in µs), which keeps increasing even when the counter was
// lost, as long as the server's clock does not go back. Pass it with every
// write and have the resource refuse tokens lower than the highest it has
// seen. Across a failover see Replicas and failover. Redlock-style quorums
// are not implemented.
//
// # Replicas and failover
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
// ring clients are not asked: their commands go to many nodes, and a
// cluster client sends writes to the masters.
//
// With Sentinel, give the Locker a failover client (redis.NewFailoverClient):
// it follows the master through a failover. Redis replicates
// asynchronously, so by default the new master may lack the last writes of
// the old one: a lock acquired just before the old master died is gone,
// another client can acquire it at once, and the old holder learns it at
// its next renewal ([ErrNotOwner], within RenewInterval of the new master
// answering); a lock the replica had is still held, and its renewals go on
// on the new master. Tokens stay above every earlier one through the
// clock floor (see Fencing) as long as the counter follows the clock and
// the new master's clock is not behind the old one's by more than the
// failover took; a counter ahead of the clock (an earlier master's clock
// ran fast, or a clock was set back) hands out a lost token again.
//
// [Config.WaitReplicas] closes that window: each acquire and each renewal
// is followed by WAIT for that many replicas, in the same pipeline (the
// client's round trips stay the same; the replica's acknowledgement adds
// its latency). An acquire that too few replicas acknowledged within
// [Config.WaitTimeout] gives the lock back and fails with
// [ErrNotReplicated]; so every lock and token a caller was handed is on
// that many replicas, and a failover to one of them keeps the lock held
// and the token counter, whatever the clocks say. The master must then
// have that many replicas: after a failover that leaves fewer (a master
// and one replica, until the old master is back as a replica) acquires fail
// and held locks are lost when their lease runs out. Run one more replica
// than WaitReplicas to lock through a failover. A failover promotes the
// most up-to-date replica it can reach; with more replicas than
// WaitReplicas it may promote one that had not acknowledged, and a
// partition that leaves the old master reachable to some clients is not
// covered at all (Redis's min-replicas-to-write limits that on the server).
// A release is not waited for: a release that the replica missed leaves the
// lock held on the new master until its lease ends.
//
// On Redis Cluster, give it a cluster client (redis.NewClusterClient):
// every name's keys share a slot, so every script runs on one node. While
// a slot migrates, scripts whose keys are split between the two nodes are
// answered TRYAGAIN; they are sent again for up to 5 s, and a held lock
// stays held through the migration. WaitReplicas on a cluster waits for
// the replicas of the slot's master.
//
// Redis 7.0 or newer is the tested target. Redis 5 and 6 work through the
// script fallback (Redis 5 is the oldest that replicates scripts by their
// effects, which the fencing script's TIME call needs); that path is tested
// here by forcing it on Redis 7.
package redislock
