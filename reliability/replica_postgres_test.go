package reliability

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/advisory"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/internal/pgepoch"
	"github.com/lockkit/lockkit/migrations"
	"github.com/lockkit/lockkit/rowlock"
)

// The failover tests run on a PostgreSQL primary with a streaming standby
// (integration.StartPostgresPair): they hold locks, SIGKILL the primary,
// promote the standby, and check what the holders report and which tokens
// the new primary hands out. See RELIABILITY.md, "Replicated servers and
// failover".

// withDB returns dsn with its database replaced by dbname.
func withDB(t testing.TB, dsn, dbname string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + dbname
	return u.String()
}

// newRowLocker makes a PostgreSQL rowlock Locker on db, closed when t ends.
func newRowLocker(t testing.TB, db *sql.DB, ttl, renew time.Duration) *rowlock.Locker {
	t.Helper()
	l, err := rowlock.New(db, &rowlock.Config{Dialect: rowlock.Postgres, TTL: ttl, RenewInterval: renew})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// draw acquires and releases name n times on l and returns the last token.
func draw(t testing.TB, l lockkit.Locker, name string, n int) int64 {
	t.Helper()
	ctx := ctxT(t, time.Minute)
	var last int64
	for range n {
		k, err := l.TryAcquire(ctx, name)
		if err != nil {
			t.Fatalf("TryAcquire(%q): %v", name, err)
		}
		if k.Token() <= last {
			t.Fatalf("token %d after %d on one server", k.Token(), last)
		}
		last = k.Token()
		if err := k.Release(ctx); err != nil {
			t.Fatalf("Release(%q): %v", name, err)
		}
	}
	return last
}

// fencedResource is a counter guarded by fencing tokens, in a table of
// the shared PostgreSQL server (not the pair that fails over), written
// the way the documentation tells users to: a write is accepted only when
// the resource's fence is at most the writer's token, and moves the fence
// to it.
type fencedResource struct {
	db    *sql.DB
	table string
}

func newFencedResource(t testing.TB) *fencedResource {
	t.Helper()
	db := integration.Postgres(t)
	table := "lkt_fenced_" + strings.ToLower(rand.Text()[:10])
	ctx := ctxT(t, 30*time.Second)
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+table+" (id int PRIMARY KEY, value bigint NOT NULL, fence bigint NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = db.ExecContext(ctx, "DROP TABLE "+table)
	})
	r := &fencedResource{db: db, table: table}
	r.reset(t)
	return r
}

func (r *fencedResource) reset(t testing.TB) {
	t.Helper()
	if _, err := r.db.ExecContext(ctxT(t, 30*time.Second), "DELETE FROM "+r.table+"; INSERT INTO "+r.table+" VALUES (1, 0, 0)"); err != nil {
		t.Fatal(err)
	}
}

// write adds one to the counter under token and reports whether the
// resource accepted it.
func (r *fencedResource) write(t testing.TB, token int64) bool {
	t.Helper()
	res, err := r.db.ExecContext(ctxT(t, 30*time.Second),
		"UPDATE "+r.table+" SET value = value + 1, fence = $1 WHERE id = 1 AND fence <= $1", token)
	if err != nil {
		t.Fatal(err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// TestReplicaPostgresAsyncFailover: asynchronous replication, with the
// WAL of the primary's last moments never reaching the standby (its WAL
// sender is stopped), then the primary is SIGKILLed and the standby
// promoted.
//
//   - Advisory locks held on the primary all report lost within the
//     documented bound (1 s); none is held on the promoted standby.
//   - The lock table of the first migration (tokens are plain sequence
//     values) hands out, after the failover, a token at most the last one
//     the old primary handed out — the hazard — and a fenced resource then
//     accepts the old holder's write after the new holder's: two writers.
//   - The lock table as migrated now (tokens carry the timeline) and
//     advisory Config.Fencing hand out tokens greater than every token of
//     the old primary, and the resource refuses the old holder.
func TestReplicaPostgresAsyncFailover(t *testing.T) {
	t.Parallel()
	pair := integration.StartPostgresPair(t, false)
	ctx := ctxT(t, 3*time.Minute)
	admin := openDB(t, pair.Primary.DSN())
	rowDSN := lockTable(t, kindRowPG, pair.Primary.DSN(), false) // database postgres
	// The old design: the lock table of migration 1 only, in a database
	// of its own.
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE olddesign"); err != nil {
		t.Fatal(err)
	}
	oldDSN := withDB(t, pair.Primary.DSN(), "olddesign")
	fsys, err := migrations.FS(migrations.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	first, err := fs.ReadFile(fsys, "0001_lock_table.up.sql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openDB(t, oldDSN).ExecContext(ctx, string(first)); err != nil {
		t.Fatal(err)
	}

	const ttl, renew = 3 * time.Second, 200 * time.Millisecond
	rows := newRowLocker(t, openDB(t, rowDSN), ttl, renew)
	old := newRowLocker(t, openDB(t, oldDSN), ttl, renew)
	adv, err := advisory.New(openDB(t, pair.Primary.DSN()), &advisory.Config{Fencing: true})
	if err != nil {
		t.Fatal(err)
	}
	draw(t, rows, "warm", 1)
	draw(t, old, "warm", 1)
	draw(t, adv, "warm", 1)
	if err := pair.WaitReplayed(ctx); err != nil {
		t.Fatal(err)
	}

	// From here the standby receives nothing. The old primary hands out
	// more tokens than a sequence logs ahead (32) in WAL.
	if _, err := pair.StallReplication(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 100
	lastRow := draw(t, rows, "job", n)
	lastOld := draw(t, old, "job", n)
	lastAdv := draw(t, adv, "job", n)
	// Holders at the failover: leases that never reached the standby,
	// whose holders have not written to the resource yet, and advisory
	// locks.
	rowHolder, err := rows.TryAcquire(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	oldHolder, err := old.TryAcquire(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	var advHolders []lockkit.Lock
	for i := range 3 {
		l, err := adv.Acquire(ctx, fmt.Sprintf("held-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		advHolders = append(advHolders, l)
	}
	lastRow, lastOld, lastAdv = rowHolder.Token(), oldHolder.Token(), advHolders[2].Token()

	killed := time.Now()
	if err := pair.Primary.Kill(); err != nil {
		t.Fatal(err)
	}
	for i, l := range advHolders {
		took := waitDone(t, l, killed, envSpecBound(kindPostgres))
		t.Logf("advisory holder %d reported lost %v after the SIGKILL: %v", i, took.Round(time.Millisecond), l.Err())
	}
	if err := pair.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	promoted := time.Now()

	// The application reconnects: the multi-host DSN finds the promoted
	// standby.
	after := pair.DSN()
	rowsAfter := newRowLocker(t, openDB(t, after), ttl, renew)
	oldAfter := newRowLocker(t, openDB(t, withDB(t, after, "olddesign")), ttl, renew)
	advAfter, err := advisory.New(openDB(t, after), &advisory.Config{Fencing: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range advHolders {
		name := fmt.Sprintf("held-%d", i)
		l, err := advAfter.TryAcquire(ctx, name)
		if err != nil {
			t.Fatalf("advisory lock %q on the promoted standby: %v (held on nothing, it must be free)", name, err)
		}
		_ = l.Release(ctx)
	}

	res := newFencedResource(t)
	// The old design: the promoted standby's sequence is behind.
	newOld, err := oldAfter.TryAcquire(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	if newOld.Token() > lastOld {
		t.Fatalf("old design: token %d after the failover is above the old primary's last %d: the failover lost no sequence values, and this test proves nothing", newOld.Token(), lastOld)
	}
	t.Logf("old design (plain sequence): the old primary's last token %d, the promoted standby's first %d: backwards", lastOld, newOld.Token())
	if !res.write(t, newOld.Token()) || !res.write(t, oldHolder.Token()) {
		t.Fatal("the resource refused a write under the old design")
	}
	t.Logf("old design: the resource accepted the new holder's write (token %d) and then the old holder's (token %d): two writers", newOld.Token(), oldHolder.Token())
	_ = newOld.Release(ctx)

	// The new design.
	res.reset(t)
	k, err := rowsAfter.TryAcquire(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	if k.Token() <= lastRow {
		t.Errorf("lock table: token %d after the failover, not above the old primary's last %d", k.Token(), lastRow)
	}
	if pgepoch.Timeline(k.Token()) != 2 || pgepoch.Timeline(lastRow) != 1 {
		t.Errorf("lock table tokens %d (timeline %d) then %d (timeline %d): want timelines 1, then 2",
			lastRow, pgepoch.Timeline(lastRow), k.Token(), pgepoch.Timeline(k.Token()))
	}
	if !res.write(t, k.Token()) {
		t.Fatal("the resource refused the new holder")
	}
	if res.write(t, rowHolder.Token()) {
		t.Error("lock table: the resource accepted the old primary's holder after the new holder")
	}
	if err := k.Release(ctx); err != nil {
		t.Fatal(err)
	}
	a, err := advAfter.TryAcquire(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	if a.Token() <= lastAdv {
		t.Errorf("advisory Fencing: token %d after the failover, not above the old primary's last %d", a.Token(), lastAdv)
	}
	var seq int64
	if err := openDB(t, after).QueryRowContext(ctx, "SELECT last_value FROM "+advisory.DefaultFencingSequence).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	if seq >= lastAdv&(1<<pgepoch.Shift-1) {
		t.Errorf("advisory: the promoted standby's sequence is at %d, not behind the old primary's %d: the fault did not take", seq, lastAdv&(1<<pgepoch.Shift-1))
	}
	t.Logf("new design: lock table %d -> %d, advisory %d -> %d (sequence on the promoted standby at %d)",
		lastRow, k.Token(), lastAdv, a.Token(), seq)
	_ = a.Release(ctx)

	// The leases the old primary gave are gone with it: their holders
	// learn it at their next renewal, or when the lease runs out locally
	// (their pool still points at the dead server).
	for _, l := range []lockkit.Lock{rowHolder, oldHolder} {
		waitDone(t, l, promoted, ttl+5*time.Second)
	}
	t.Logf("failover: SIGKILL to promoted in %v", promoted.Sub(killed).Round(time.Millisecond))
}

// envSpecBound is the documented loss bound of kind's held locks.
func envSpecBound(kind string) time.Duration { return spec{Kind: kind}.lossBound() }

// TestReplicaPostgresSyncFailover: synchronous replication; the primary
// is SIGKILLed and the standby promoted while a lease is held.
//
//   - The lease survives: its holder, on a pool with both servers in a
//     multi-host DSN (target_session_attrs=read-write), renews it on the
//     promoted standby, another Locker finds it held there, and its
//     release works there.
//   - Tokens after the failover are greater than before it.
//   - Advisory locks held through a pgxpool on the multi-host DSN report
//     lost; the same Locker then locks on the promoted standby, with
//     greater fencing tokens; so does a Locker on a new pool to the
//     standby's own address.
//   - Before the failover, the standby grants pg_try_advisory_lock on a
//     key the primary holds (the hazard), and an advisory Locker on it
//     refuses to lock (ErrStandby).
//   - A lock-table Locker on a new pool to the promoted standby works.
func TestReplicaPostgresSyncFailover(t *testing.T) {
	t.Parallel()
	pair := integration.StartPostgresPair(t, true)
	ctx := ctxT(t, 3*time.Minute)
	lockTable(t, kindRowPG, pair.Primary.DSN(), false)
	const ttl, renew = 8 * time.Second, 200 * time.Millisecond
	rows := newRowLocker(t, openDB(t, pair.DSN()), ttl, renew)
	other := newRowLocker(t, openDB(t, pair.DSN()), ttl, renew)

	pool, err := pgxpool.New(ctx, pair.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	adv, err := advisory.NewPool(pool, &advisory.Config{Fencing: true})
	if err != nil {
		t.Fatal(err)
	}
	lastRow := draw(t, rows, "job", 5)
	lastAdv := draw(t, adv, "job", 5)

	// A hot standby grants advisory locks of its own, which exclude
	// nobody on the primary; a Locker refuses it.
	heldOnPrimary, err := adv.Acquire(ctx, "standby")
	if err != nil {
		t.Fatal(err)
	}
	// Before pool.Close, which waits for every pinned connection.
	t.Cleanup(func() { _ = heldOnPrimary.Release(context.Background()) })
	var granted bool
	standby := openDB(t, pair.Standby.DSN())
	key := heldOnPrimary.(*advisory.Lock).Keys()[0]
	if err := standby.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", key.Int64()).Scan(&granted); err != nil || !granted {
		t.Fatalf("pg_try_advisory_lock on the standby of a key the primary holds = %v, %v; want true (the hazard)", granted, err)
	}
	onStandby, err := advisory.New(standby, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l, err := onStandby.TryAcquire(ctx, "other"); !errors.Is(err, advisory.ErrStandby) || !errors.Is(err, lockkit.ErrUnsupported) {
		if l != nil {
			_ = l.Release(ctx)
		}
		t.Fatalf("advisory lock through a connection to the standby = %v, want ErrStandby", err)
	}
	if err := heldOnPrimary.Release(ctx); err != nil {
		t.Fatal(err)
	}

	lease, err := rows.TryAcquire(ctx, "lease")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lease.Release(context.Background()) })
	advHeld, err := adv.Acquire(ctx, "held")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = advHeld.Release(context.Background()) })
	lastAdv = advHeld.Token()

	killed := time.Now()
	if err := pair.Primary.Kill(); err != nil {
		t.Fatal(err)
	}
	killTook := time.Since(killed)
	took := waitDone(t, advHeld, killed, envSpecBound(kindPostgres))
	t.Logf("advisory holder reported lost %v after the SIGKILL began (killing every server process took %v)",
		took.Round(time.Millisecond), killTook.Round(time.Millisecond))
	if err := pair.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	promoted := time.Now()
	t.Logf("failover: SIGKILL to promoted in %v", promoted.Sub(killed).Round(time.Millisecond))

	// The lease: renewed on the promoted standby by its own background
	// renewal, through the pool that reconnected there.
	rl := lease.(*rowlock.Lock)
	for !rl.Expires().After(promoted.Add(ttl - renew)) {
		select {
		case <-lease.Done():
			t.Fatalf("the lease was lost across a synchronous failover: %v", lease.Err())
		case <-ctx.Done():
			t.Fatal("no renewal on the promoted standby")
		case <-time.After(20 * time.Millisecond):
		}
	}
	stillHeld(t, lease)
	// The pool may still hold idle connections to the dead primary: the
	// first statement on one fails with a broken connection, which
	// database/sql then discards. Such a failure is not a loss; a lost
	// lease would fail every attempt with ErrLost.
	for attempt := 1; ; attempt++ {
		err := rl.Renew(ctx)
		if err == nil {
			break
		}
		if errors.Is(err, lockkit.ErrLost) || attempt == 5 {
			t.Fatalf("Renew on the promoted standby (attempt %d): %v", attempt, err)
		}
		t.Logf("Renew on the promoted standby, attempt %d: %v (a connection to the old primary)", attempt, err)
	}
	stillHeld(t, lease)
	_, err = other.TryAcquire(ctx, "lease")
	var held *lockkit.HeldError
	if !errors.As(err, &held) || held.Holder == nil || held.Holder.Token != lease.Token() {
		t.Fatalf("another Locker's TryAcquire on the promoted standby = %v, want HeldError naming token %d", err, lease.Token())
	}
	if err := lease.Release(ctx); err != nil {
		t.Fatalf("Release on the promoted standby: %v", err)
	}
	k, err := other.TryAcquire(ctx, "lease")
	if err != nil {
		t.Fatal(err)
	}
	if k.Token() <= lease.Token() || k.Token() <= lastRow {
		t.Errorf("lock table: token %d after the failover, not above %d and %d", k.Token(), lease.Token(), lastRow)
	}
	_ = k.Release(ctx)
	// A Locker on a new pool to the promoted standby's own address.
	if last := draw(t, newRowLocker(t, openDB(t, pair.Standby.DSN()), ttl, renew), "lease", 2); last <= k.Token() {
		t.Errorf("lock table on a new pool: token %d, not above %d", last, k.Token())
	}

	// Advisory: the same Locker on the same pool, and a Locker on a new
	// pool to the promoted standby's address.
	var a lockkit.Lock
	for {
		// The pool may still hand out a connection that died with the
		// old primary; such an attempt fails, and the next dials anew.
		if a, err = adv.TryAcquire(ctx, "job"); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("advisory on the reconnecting pool: %v", err)
		}
		t.Logf("advisory on the reconnecting pool: %v", err)
		time.Sleep(50 * time.Millisecond)
	}
	if a.Token() <= lastAdv {
		t.Errorf("advisory Fencing: token %d after the failover, not above %d", a.Token(), lastAdv)
	}
	_ = a.Release(ctx)
	fresh, err := advisory.New(openDB(t, pair.Standby.DSN()), &advisory.Config{Fencing: true})
	if err != nil {
		t.Fatal(err)
	}
	b := draw(t, fresh, "job", 3)
	if b <= a.Token() {
		t.Errorf("advisory on a new pool: token %d, not above %d", b, a.Token())
	}
}

// TestReplicaPostgresFencedCounter is the torture test's read-modify-write
// (three worker processes, the lock table, a counter fenced by tokens) on
// a primary with a standby, with a failover in the middle: once a third
// of the writes are done, replication stalls (asynchronous: the last
// leases and tokens never reach the standby), the primary is SIGKILLed and
// the standby promoted. The workers' pools name both servers
// (target_session_attrs=read-write) and follow. No fenced write may land
// over another, the counter must equal the accepted writes, the workers
// must go on writing after the failover, and every token handed out after
// it must be above every token before it.
func TestReplicaPostgresFencedCounter(t *testing.T) {
	t.Parallel()
	for _, sync := range []bool{false, true} {
		t.Run(map[bool]string{false: "async", true: "sync"}[sync], func(t *testing.T) {
			t.Parallel()
			fencedCounterFailover(t, sync)
		})
	}
}

func fencedCounterFailover(t *testing.T, sync bool) {
	pair := integration.StartPostgresPair(t, sync)
	ctx := ctxT(t, 3*time.Minute)
	lockTable(t, kindRowPG, pair.Primary.DSN(), false)
	s := spec{Kind: kindRowPG, DSN: pair.DSN(), TTL: time.Second, Renew: 100 * time.Millisecond}
	n := name(t)
	res := t.TempDir()
	const workers, iterations = 3, 150
	children := make([]*child, workers)
	for i := range children {
		children[i] = startChild(t, "torture", s, n, &childOptions{args: tortureArgs{
			Worker: i + 1, Iterations: iterations, Resource: res,
			HoldMax: 8 * time.Millisecond, ThinkMax: 2 * time.Millisecond, Tokens: true,
			// The failover took 5.1 s in one CI run, in which the
			// workers' failed acquires used up all their iterations.
			RetryFor: time.Minute,
		}})
	}
	for {
		st, err := readResource(res)
		if err != nil {
			t.Fatal(err)
		}
		if st.Writes >= workers*iterations/3 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("only %d writes before the failover", st.Writes)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var stalled time.Time
	if !sync {
		if _, err := pair.StallReplication(ctx); err != nil {
			t.Fatal(err)
		}
		stalled = time.Now()
		w0, err := readResource(res)
		if err != nil {
			t.Fatal(err)
		}
		// Acquires and renewals that only the old primary sees: at least
		// 300 ms of them, and workers+1 writes, so that some worker
		// wrote twice and took its second lease after the stall (a fixed
		// 300 ms saw none on a starved machine).
		time.Sleep(300 * time.Millisecond)
		for {
			st, err := readResource(res)
			if err != nil {
				t.Fatal(err)
			}
			if st.Writes > w0.Writes+workers {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("only %d writes while replication stalled", st.Writes-w0.Writes)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	killed := time.Now()
	if err := pair.Primary.Kill(); err != nil {
		t.Fatal(err)
	}
	before, err := readResource(res)
	if err != nil {
		t.Fatal(err)
	}
	if err := pair.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	promoted := time.Now()
	t.Logf("failover: SIGKILL to promoted in %v, after %d writes", promoted.Sub(killed).Round(time.Millisecond), before.Writes)

	var stats wStats
	var maxBefore, minAfter int64
	unreplicated := 0 // leases granted while replication stalled: the failover loses them
	for _, c := range children {
		for e := range c.events {
			switch e.Event {
			case "stats":
				stats.add(*e.Stats)
			case "held":
				// Drawn on the old primary, or on the promoted standby;
				// a lock reported in between may come from either.
				if e.At < killed.UnixNano() {
					maxBefore = max(maxBefore, e.Token)
					if !sync && e.At > stalled.UnixNano() {
						unreplicated++
					}
				} else if e.At > promoted.UnixNano() && (minAfter == 0 || e.Token < minAfter) {
					minAfter = e.Token
				}
			case "violation", "error":
				t.Errorf("worker %d seq %d: %s: %s", e.Worker, e.Seq, e.Event, e.Err)
			}
		}
		select {
		case <-c.exited:
		case <-ctx.Done():
			t.Fatal("a worker did not exit")
		}
	}
	after, err := readResource(res)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d writes (%d after the failover), %d leases granted while replication stalled, %d fenced, %d acquire errors, %d releases that found the lease lost; tokens up to %d before, from %d after",
		after.Writes, after.Writes-before.Writes, unreplicated, stats.Fenced, stats.AcquireErrs, stats.ReleaseLost, maxBefore, minAfter)
	if !sync && unreplicated == 0 {
		t.Error("no lease was granted while replication stalled: the asynchronous failover lost nothing, and the run proves less than it says")
	}
	if stats.Violations != 0 {
		t.Errorf("%d fenced writes landed over another write", stats.Violations)
	}
	if after.Counter != after.Writes {
		t.Errorf("counter %d after %d accepted writes: increments were lost", after.Counter, after.Writes)
	}
	if after.Writes <= before.Writes {
		t.Error("no write after the failover: the workers did not follow the promoted standby")
	}
	if minAfter == 0 || minAfter <= maxBefore {
		t.Errorf("a token after the failover (%d) is not above every token before it (%d)", minAfter, maxBefore)
	}
}
