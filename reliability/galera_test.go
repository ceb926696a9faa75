package reliability

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/migrations"
	"github.com/lockkit/lockkit/mysqllock"
	"github.com/lockkit/lockkit/rowlock"
)

// The Galera tests share one private three-node MariaDB Galera cluster per
// test binary (about 25 s to start on a loaded 2-core machine), started by
// the first of them and removed by TestMain. The test that kills a node
// runs last in this file; a later test that finds a node down starts it
// again (a snapshot transfer with rsync, 10 to 20 s).
var galera struct {
	sync.Mutex
	c   *integration.GaleraCluster
	err error
}

// galeraCluster returns the binary's Galera cluster with every node
// running, starting it on first use.
func galeraCluster(t *testing.T) *integration.GaleraCluster {
	t.Helper()
	galera.Lock()
	defer galera.Unlock()
	if galera.c == nil && galera.err == nil {
		start := time.Now()
		galera.c, galera.err = integration.LaunchGaleraCluster(3)
		if galera.err == nil {
			t.Logf("Galera: three nodes synced in %v", time.Since(start).Round(time.Millisecond))
		}
	}
	if galera.err != nil {
		t.Fatal(galera.err)
	}
	c := galera.c
	restarted := false
	for i, n := range c.Nodes {
		if !n.Running() {
			if err := n.Start(); err != nil {
				t.Fatalf("restart Galera node %d: %v", i, err)
			}
			restarted = true
		}
	}
	if restarted {
		if err := c.WaitSynced(ctxT(t, time.Minute), len(c.Nodes)); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func closeGalera() {
	galera.Lock()
	defer galera.Unlock()
	if galera.c != nil {
		_ = galera.c.Close()
		galera.c = nil
	}
}

// galeraDB opens node's database with the given session variables
// (name=value DSN parameters, such as wsrep_retry_autocommit=0) and short
// network timeouts, so that a killed node's clients fail fast.
func galeraDB(t *testing.T, node *integration.Server, vars ...string) *sql.DB {
	t.Helper()
	cfg, err := mysql.ParseDSN(node.DSN())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = 2*time.Second, 10*time.Second, 10*time.Second
	for _, v := range vars {
		k, val, _ := strings.Cut(v, "=")
		if cfg.Params == nil {
			cfg.Params = map[string]string{}
		}
		cfg.Params[k] = val
	}
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// galeraConflicts sums the certification failures and brute-force aborts
// of every running node: the transactions Galera rolled back for a
// conflicting write on another node.
func galeraConflicts(t *testing.T, c *integration.GaleraCluster) int64 {
	t.Helper()
	var sum int64
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		db := galeraDB(t, n)
		rows, err := db.QueryContext(ctxT(t, 10*time.Second),
			"SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_cert_failures', 'wsrep_local_bf_aborts')")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var k, v string
			if err := rows.Scan(&k, &v); err != nil {
				t.Fatal(err)
			}
			x, _ := strconv.ParseInt(v, 10, 64)
			sum += x
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
		_ = db.Close()
	}
	return sum
}

// GET_LOCK on a Galera node is a lock on that node only: two nodes grant
// the same name at once. mysqllock refuses it at the first acquire with
// ErrGalera, which names the lock table, and leaves nothing held.
func TestGalera_GetLockRefused(t *testing.T) {
	c := galeraCluster(t)
	ctx := ctxT(t, time.Minute)
	db0, db1 := galeraDB(t, c.Nodes[0]), galeraDB(t, c.Nodes[1])
	lockName := "lockkit-galera-" + name(t)
	if len(lockName) > 64 {
		lockName = lockName[:64]
	}

	// Why: the server grants GET_LOCK on both nodes at once.
	var granted [2]int64
	for i, db := range []*sql.DB{db0, db1} {
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got sql.NullInt64
		err = conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", lockName).Scan(&got)
		var me *mysql.MySQLError
		switch {
		case errors.As(err, &me) && me.Number == 1235:
			t.Logf("node %d rejects GET_LOCK: %v", i, err)
		case err != nil:
			t.Fatal(err)
		}
		granted[i] = got.Int64
		defer func() {
			if got.Int64 == 1 {
				if _, err := conn.ExecContext(context.Background(), "DO RELEASE_LOCK(?)", lockName); err != nil {
					t.Errorf("RELEASE_LOCK on node %d: %v", i, err)
				}
			}
			_ = conn.Close()
		}()
	}
	t.Logf("raw GET_LOCK(%q, 0) on node 0 and node 1 at once: %v (1 = granted)", lockName, granted)

	// lockkit refuses, on every acquire path.
	m, err := mysqllock.New(galeraDB(t, c.Nodes[2]), nil)
	if err != nil {
		t.Fatal(err)
	}
	name := name(t)
	for what, acquire := range map[string]func() error{
		"TryAcquire": func() error { _, err := m.TryAcquire(ctx, name); return err },
		"Acquire":    func() error { _, err := m.Acquire(ctx, name); return err },
		"LockNames":  func() error { _, err := m.LockNames(ctx, []string{name, name + "-2"}); return err },
	} {
		err := acquire()
		if !errors.Is(err, mysqllock.ErrGalera) || !errors.Is(err, lockkit.ErrUnsupported) {
			t.Errorf("%s on a Galera node: %v, want ErrGalera and lockkit.ErrUnsupported", what, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "rowlock") || !strings.Contains(msg, "lock table") || !strings.Contains(msg, "wsrep_on=ON") {
			t.Errorf("%s: %q does not say what was seen (wsrep_on=ON) and what to use (the lock table, rowlock)", what, msg)
		}
	}
	server, err := m.UserLockName(name)
	if err != nil {
		t.Fatal(err)
	}
	var holder sql.NullInt64
	if err := galeraDB(t, c.Nodes[2]).QueryRowContext(ctx, "SELECT IS_USED_LOCK(?)", server).Scan(&holder); err != nil {
		t.Fatal(err)
	}
	if holder.Valid {
		t.Errorf("the refused acquires left %q held by session %d", server, holder.Int64)
	}
	// lockkit doctor's check says the same.
	info, err := mysqllock.Diagnose(ctx, db0)
	if err != nil || !info.Galera {
		t.Errorf("Diagnose on a Galera node: %+v, %v; want Galera", info, err)
	}
}

// fencedCounter is a resource that checks fencing tokens, as the torture
// run's does: an access with a token below the highest one seen is
// refused; a fenced write over a counter that moved since its read is a
// violation, and so is a second holder inside at once while no fault
// explains it.
type fencedCounter struct {
	mu         sync.Mutex
	token      int64 // the highest token that entered
	counter    int64
	inside     int
	overlaps   int // entered while another holder was inside
	fenced     int // accesses refused for a stale token
	violations int // fenced writes over another write
	ops        int
}

// enter reads the counter under token; ok is false when the token is
// stale.
func (f *fencedCounter) enter(token int64) (c0 int64, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if token < f.token {
		f.fenced++
		return 0, false
	}
	if f.inside > 0 {
		f.overlaps++
	}
	f.inside++
	f.token = token
	return f.counter, true
}

// write leaves, writing c0+1 unless the token went stale meanwhile.
func (f *fencedCounter) write(token, c0 int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inside--
	if token < f.token {
		f.fenced++
		return
	}
	if f.counter != c0 {
		f.violations++
	}
	f.counter = c0 + 1
	f.ops++
}

func (f *fencedCounter) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fmt.Sprintf("%d writes, counter %d, overlaps %d, fenced %d, violations %d", f.ops, f.counter, f.overlaps, f.fenced, f.violations)
}

// galeraLockers returns, for every node, a lock-table Locker with Galera's
// default automatic retry of a conflicting autocommit statement
// (wsrep_retry_autocommit=1) and one without it, so that certification
// conflicts reach lockkit. The table is created on node 0.
func galeraLockers(t *testing.T, c *integration.GaleraCluster, cfg rowlock.Config) (lockers [][]*rowlock.Locker) {
	t.Helper()
	if err := migrations.Up(ctxT(t, time.Minute), galeraDB(t, c.Nodes[0]), migrations.MySQL, nil); err != nil {
		t.Fatal(err)
	}
	cfg.Dialect = rowlock.MySQL
	for i, n := range c.Nodes {
		var per []*rowlock.Locker
		for j, vars := range [][]string{nil, {"wsrep_retry_autocommit=0"}} {
			cfg := cfg
			cfg.Owner = fmt.Sprintf("node%d-%d", i, j)
			l, err := rowlock.New(galeraDB(t, n, vars...), &cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = l.Close() })
			per = append(per, l)
		}
		lockers = append(lockers, per)
	}
	return lockers
}

// The lock table across nodes: many goroutines on every node take the same
// name, with TryAcquire and Acquire. Galera certifies the conflicting
// writes; the losers must come back as "not acquired" or wait on, never as
// a second holder or an error.
func TestGalera_LockTableAcrossNodes(t *testing.T) {
	c := galeraCluster(t)
	lockers := galeraLockers(t, c, rowlock.Config{TTL: 10 * time.Second, MaxPoll: 20 * time.Millisecond})
	lockName := name(t)
	conflictsBefore := galeraConflicts(t, c)
	var (
		res                           fencedCounter
		acquired, notAcquired, failed atomic.Int64
		lastToken                     atomic.Int64
		backwards                     atomic.Int64
		errMu                         sync.Mutex
		errs                          []string
	)
	deadline := time.Now().Add(4 * time.Second)
	var wg sync.WaitGroup
	// No waiting room on Galera, where GET_LOCK is granted by one node
	// only: no session ever waits for one (rowlock's roomEnter).
	var roomWaits atomic.Int64
	for _, n := range c.Nodes {
		db := galeraDB(t, n)
		wg.Go(func() {
			for time.Now().Before(deadline) {
				var k int64
				if err := db.QueryRow(`SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT IS_FREE_LOCK(%'`).Scan(&k); err == nil {
					roomWaits.Add(k)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	for i, per := range lockers {
		for j, l := range per {
			for g := range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					wait := g == 0
					for time.Now().Before(deadline) {
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						var lk lockkit.Lock
						var err error
						if wait {
							lk, err = l.Acquire(ctx, lockName)
						} else {
							lk, err = l.TryAcquire(ctx, lockName)
						}
						cancel()
						switch {
						case errors.Is(err, lockkit.ErrNotAcquired):
							notAcquired.Add(1)
							time.Sleep(time.Millisecond)
							continue
						case err != nil:
							failed.Add(1)
							errMu.Lock()
							errs = append(errs, fmt.Sprintf("node %d locker %d: %v", i, j, err))
							errMu.Unlock()
							time.Sleep(5 * time.Millisecond)
							continue
						}
						acquired.Add(1)
						tok := lk.Token()
						if prev := lastToken.Swap(tok); tok <= prev {
							backwards.Add(1)
						}
						if c0, ok := res.enter(tok); ok {
							time.Sleep(time.Millisecond)
							res.write(tok, c0)
						}
						if err := lk.Release(context.Background()); err != nil {
							failed.Add(1)
							errMu.Lock()
							errs = append(errs, fmt.Sprintf("node %d locker %d: release: %v", i, j, err))
							errMu.Unlock()
						}
					}
				}()
			}
		}
	}
	wg.Wait()
	conflicts := galeraConflicts(t, c) - conflictsBefore
	t.Logf("%d acquisitions, %d not acquired, %d errors; certification conflicts and brute-force aborts on the nodes: %d; resource: %s",
		acquired.Load(), notAcquired.Load(), failed.Load(), conflicts, &res)
	if len(errs) > 0 {
		t.Errorf("%d acquires or releases failed; the first: %s", len(errs), strings.Join(errs[:min(5, len(errs))], "\n"))
	}
	if res.overlaps != 0 || res.violations != 0 || res.fenced != 0 || backwards.Load() != 0 {
		t.Errorf("two holders: %s; tokens not increasing %d times", &res, backwards.Load())
	}
	if acquired.Load() < 20 {
		t.Errorf("only %d acquisitions in 4 s", acquired.Load())
	}
	if conflicts == 0 {
		t.Errorf("no certification conflict on the nodes: the test did not exercise concurrent writes on different nodes")
	}
	if n := roomWaits.Load(); n != 0 {
		t.Errorf("sessions seen waiting for rowlock's waiting room %d times: the room must be off on Galera", n)
	}
}

// A node is killed (SIGKILL) while a lock-table lease taken through it is
// held, and while workers on every node run the fenced read-modify-write.
// The holder reports the lock lost when its lease runs out; a waiter on
// another node gets it after the lease ran out, with a greater token; the
// two nodes left go on; the fenced counter sees no violation.
//
// It kills a node of the shared cluster: keep it last in this file.
func TestGalera_NodeKilledWhileHolding(t *testing.T) {
	c := galeraCluster(t)
	// Well above the time the cluster takes to evict a dead node (about 4 s), during
	// which commits on the other nodes wait: a shorter lease taken then
	// would run out before its acquire returned.
	const ttl = 8 * time.Second
	lockers := galeraLockers(t, c, rowlock.Config{TTL: ttl, MaxPoll: 20 * time.Millisecond})
	victim := 2
	held, fence := name(t)+"-held", name(t)+"-fence"

	// The holder, on the node to be killed.
	hl, err := lockers[victim][0].TryAcquire(ctxT(t, 10*time.Second), held)
	if err != nil {
		t.Fatal(err)
	}
	t1 := hl.Token()

	// The fenced read-modify-write on every node, until stopped.
	var res fencedCounter
	var acqErrs atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, per := range lockers {
		for _, l := range per {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					ctx, cancel := context.WithTimeout(context.Background(), 3*ttl)
					lk, err := l.Acquire(ctx, fence)
					cancel()
					if err != nil {
						acqErrs.Add(1)
						time.Sleep(20 * time.Millisecond)
						continue
					}
					if c0, ok := res.enter(lk.Token()); ok {
						time.Sleep(2 * time.Millisecond)
						res.write(lk.Token(), c0)
					}
					_ = lk.Release(context.Background())
				}
			}()
		}
	}
	time.Sleep(time.Second) // let the workers run before the fault

	// A waiter on node 0.
	type result struct {
		lk  lockkit.Lock
		err error
		at  time.Time
	}
	waiter := make(chan result, 1)
	go func() {
		lk, err := lockers[0][0].Acquire(ctxT(t, time.Minute), held)
		waiter <- result{lk, err, time.Now()}
	}()
	time.Sleep(200 * time.Millisecond)
	opsBefore := func() int { res.mu.Lock(); defer res.mu.Unlock(); return res.ops }()

	if err := c.Nodes[victim].Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	evicted := make(chan error, 1)
	var evictedAfter time.Duration
	go func() {
		err := c.WaitSynced(ctxT(t, 30*time.Second), 2)
		evictedAfter = time.Since(killed)
		evicted <- err
	}()

	var lostAt time.Time
	select {
	case <-hl.Done():
		lostAt = time.Now()
	case <-time.After(ttl + 5*time.Second):
		t.Fatalf("the holder on the killed node still reports its lock held %v after the kill (TTL %v)", time.Since(killed), ttl)
	}
	if err := hl.Err(); !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("the holder's Err after the kill: %v, want ErrLost", err)
	}
	w := <-waiter
	if w.err != nil {
		t.Fatalf("the waiter on node 0: %v", w.err)
	}
	if w.lk.Token() <= t1 {
		t.Errorf("the waiter's token %d is not above the killed holder's %d", w.lk.Token(), t1)
	}
	// The holder's lease ran out on its clock (counted from before its
	// last renewal was sent) before the database let the waiter have it.
	if exp := hl.(*rowlock.Lock).Expires(); !exp.Before(w.at) {
		t.Errorf("the holder's lease ran out on its clock at %v after the kill, the waiter acquired at %v: after it", exp.Sub(killed), w.at.Sub(killed))
	}
	t.Logf("holder on the killed node reported lost %v after the kill; waiter on node 0 acquired %v after it (token %d over %d)",
		lostAt.Sub(killed).Round(time.Millisecond), w.at.Sub(killed).Round(time.Millisecond), w.lk.Token(), t1)
	if err := w.lk.Release(ctxT(t, 10*time.Second)); err != nil {
		t.Errorf("release on node 0: %v", err)
	}

	// The two nodes left form the cluster and keep the lock table working.
	if err := <-evicted; err != nil {
		t.Fatal(err)
	}
	t.Logf("the two nodes left were synced in a cluster of 2 %v after the kill", evictedAfter.Round(time.Millisecond))
	lk, err := lockers[1][1].TryAcquire(ctxT(t, 10*time.Second), held)
	if err != nil {
		t.Fatalf("TryAcquire on node 1 after the kill: %v", err)
	}
	if lk.Token() <= w.lk.Token() {
		t.Errorf("token %d on node 1 is not above %d", lk.Token(), w.lk.Token())
	}
	if err := lk.Release(ctxT(t, 10*time.Second)); err != nil {
		t.Errorf("release on node 1: %v", err)
	}

	time.Sleep(ttl) // the workers go on for a lease after the cluster settled
	close(stop)
	wg.Wait()
	_ = hl.Release(context.Background()) // reports the loss; nothing to give back
	opsAfter := func() int { res.mu.Lock(); defer res.mu.Unlock(); return res.ops }() - opsBefore
	t.Logf("fenced read-modify-write: %s; %d writes after the kill; %d acquire errors (the killed node's workers)", &res, opsAfter, acqErrs.Load())
	if res.violations != 0 {
		t.Errorf("%d fenced writes over another write", res.violations)
	}
	if opsAfter == 0 {
		t.Errorf("no write after the kill: the two nodes left did not go on")
	}
}
