// Package etcdlock is lockkit's etcd backend: named locks held as keys in an
// etcd cluster, attached to a lease that a keepalive renews, with waiters
// queued first come, first served (each watching only the waiter ahead of
// it), fencing tokens from the cluster's revision, and holder information on
// conflict. It uses go.etcd.io/etcd/client/v3.
//
// etcd replicates every write through raft to a majority of its members, so
// a lock survives the loss of any minority of them: a killed leader, a
// failed disk, a partitioned member. Use it where locks must outlive one
// server; the other backends live on one.
//
//	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"10.0.0.1:2379", "10.0.0.2:2379", "10.0.0.3:2379"}})
//	...
//	l, err := etcdlock.New(cli, &etcdlock.Config{Owner: "billing-worker"})
//	...
//	defer l.Close() // revokes the lease
//	lock, err := l.Lock(ctx, "invoices.nightly") // waits; TryLock does not
//	if err != nil { ... }
//	defer lock.Release(context.WithoutCancel(ctx))
//	... write with lock.Token() as the fencing token ...
//
// A [Locker] implements lockkit.Locker and lockkit.Lister, so lockkit.Do,
// lockkit.TryDo and lockkit status work with it; [Locker.Lock] and
// [Locker.TryLock] return the typed [*Lock] with [Lock.Key], [Lock.Lease]
// and [Lock.IsOwner].
//
// # Keys
//
// Every acquire of the name N puts a key of its own,
// "<prefix><N escaped>/<lease id>-<n>" (see [Locker.Prefix]), attached to
// the Locker's lease; its value is JSON with the owner, host, pid and data
// from [Config] and the time the key became the holder. The oldest key under
// the name's prefix, by create revision, holds the lock; the younger ones
// are its waiters, in order. The name is escaped as a URL path segment, so
// one name's keys are never under another name's prefix. Names are checked
// by keyhash.ValidateName (not empty, at most 1024 bytes, valid UTF-8, no
// NUL byte); a bad name is refused with lockkit.ErrInvalid before any I/O.
//
// Keys are unique per attempt, never reused: not the lease id alone, as
// etcd's concurrency.Mutex uses. So two acquires of one name through one
// Locker exclude each other (no silent re-entry), and a release, which
// deletes its key only if the key still has the lock's create revision,
// cannot delete a successor's key, however late or often it is retried
// (etcd-io/etcd#22082, where a retried Unlock deleted a newer lock of the
// same session).
//
// # One lease per Locker
//
// A Locker grants one lease, on its first acquire, and attaches every key
// it puts to it; it grants a new one after losing it, and revokes it in
// [Locker.Close]. One lease per Locker rather than per lock because:
//
//   - an acquire stays one transaction, one raft write (a lease per lock
//     would add a Grant before it and a Revoke after the release, three
//     writes per lock);
//   - a Locker renews one lease whatever it holds: a thousand held locks
//     cost one keepalive per interval, not a thousand;
//   - a lease stands for what it can actually tell, that this process is
//     alive and in touch with the cluster, which is the same for all of
//     its locks: when one lock's keepalive fails, all of them would.
//
// The cost is that losing the lease loses every lock of the Locker at
// once, and that an idle Locker keeps its lease (one keepalive per
// RenewInterval) until Close. A process that wants locks that fail
// independently uses several Lockers.
//
// # Leases, keepalive and loss
//
// The lease's TTL is [Config.TTL] (default 30 s, whole seconds). It is
// renewed every [Config.RenewInterval] (default TTL/3) by a single
// KeepAliveOnce call, each bounded by the lease's deadline on this host's
// clock: the moment the last renewal the server confirmed was sent, plus
// the TTL. The server counts its TTL from when it received that renewal,
// which is later, so the deadline never comes after the server's expiry
// (barring a difference in clock rates). An attempt that has no answer
// within RenewInterval is given up and sent again (the client may route it
// to another member), and a failed renewal is retried every
// RenewInterval/4.
//
// A held lock is reported lost (Done closes, Err wraps lockkit.ErrLost):
//
//   - when its key is deleted (by hand, or because the lease was revoked
//     or expired on the server): a watch on the key (one per held lock,
//     all on the client's one watch stream) delivers the deletion, within
//     milliseconds on a healthy cluster ([ErrKeyDeleted]);
//   - when the server answers a keepalive that it does not know the lease
//     ([ErrLeaseGone]): within RenewInterval of a revoke or expiry, unless
//     the watch was first;
//   - when the lease's deadline passes without a confirmed renewal: the
//     cluster had no quorum, the client could not reach it, or this
//     process was paused ([ErrLeaseExpired]). This is at most TTL after
//     the last successful renewal, and so no later than the server can let
//     the keys go: that is the loss-detection bound;
//   - with [ErrClosed] when the Locker is closed.
//
// Every lock of a lost lease is reported lost together. The watch asks for
// a leader (a member cut off from the quorum cancels it), and when it
// breaks the key is read again before watching resumes.
//
// # Waiting
//
// [Locker.Lock] puts its key and reads the oldest key under the name in one
// transaction: when the oldest is its own, the lock is held. Otherwise it
// watches the key created just before its own, and no other waiter's (it
// also watches its own key, to learn at once when that is deleted). When
// the predecessor is deleted, one transaction either takes the lock (if the call's key still
// exists and no older key is left: the key's value is rewritten with the
// time it became the holder) or finds the next older key to watch. A release
// wakes exactly one waiter, in whichever process it runs, so a crowd of
// waiters costs two watches each and no thundering herd, and waiters are
// served first come, first served across every process: a holder that
// releases and acquires again in a loop queues behind the others. A
// waiter's watches start at the cluster's current revision, followed by a
// read when other writes moved the revision on since its transaction:
// etcd catches a watch from an earlier revision up only every 100 ms, which
// held each handoff under contention back by up to that.
//
// A waiter rides out leader elections and unreachable members (the
// transactions are retried with a backoff of up to 500 ms). A waiter whose
// key is deleted or whose lease is lost while it waits queues again,
// last, under the Locker's new lease, rather than waiting on forever behind
// a key that will never be its turn (etcd-io/etcd#19597). When the call's
// context ends it deletes its key and returns a *lockkit.HeldError with the
// holder it last saw and ctx.Err() as Cause.
//
// [Locker.TryLock] is one transaction that puts the key only if no key
// exists under the name, and otherwise reads the holder: it leaves nothing
// behind when it fails. Its *lockkit.HeldError names the holder, with the
// lease's end from a second round trip (TimeToLive).
//
// An attempt whose outcome is unknown (a network error after the request
// was sent, a context ended mid-call) deletes its key again, and so does a
// release. When that delete fails too, the key is retried after every
// successful keepalive; and it is attached to the lease, so it goes with
// the lease at the latest.
//
// # Fencing tokens
//
// A lock's token ([Lock.Token]) is the create revision of its key. etcd's
// revision counts every write to the cluster, is agreed by raft and only
// ever grows, so:
//
//   - for one name, every holder's token is greater than every earlier
//     holder's: a key becomes the holder only when every older key is
//     gone, and any key created later has a larger revision;
//   - no two locks in the cluster, of any names, share a token;
//   - tokens survive leader elections, member restarts and the loss of a
//     minority of members, as the revision lives in the replicated log.
//
// Restoring the cluster from a snapshot taken earlier winds the revision
// back; restore with etcdutl snapshot restore --bump-revision to keep
// tokens increasing. Tokens are not dense: other writes to the cluster
// skip numbers.
//
// Inside etcd there is a stronger fence: [Lock.IsOwner] is a comparison
// that holds only while the lock's key exists with its create revision, to
// put in the If of a transaction that writes under the lock.
//
// # What is and is not guaranteed
//
// Two holders never hold one name at once as long as the cluster keeps a
// quorum: every acquire, handover and release is a linearizable
// transaction through raft. A minority of members may fail, be killed or
// be cut off without a lock being lost or granted twice; the client moves
// to another endpoint.
//
// A lock can still be lost while its holder runs on: a process paused
// past its lease (a GC pause, a stopped VM) resumes believing it holds the
// lock until its keepalive fails or its deadline timer fires, which is
// after the server gave the lock to the next waiter. Pass the fencing token
// along with every write, or use IsOwner, so that the resource refuses a
// stale holder's writes.
package etcdlock
