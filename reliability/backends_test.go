package reliability

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/advisory"
	"github.com/lockkit/lockkit/filelock"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/internal/lockstate"
	"github.com/lockkit/lockkit/migrations"
	"github.com/lockkit/lockkit/mysqllock"
	"github.com/lockkit/lockkit/redislock"
	"github.com/lockkit/lockkit/rowlock"
	"github.com/redis/go-redis/v9"
)

// The backend kinds the matrix and the torture test run against.
const (
	kindPostgres = "postgres" // advisory.Locker (session advisory locks)
	kindMySQL    = "mysql"    // mysqllock.Locker (GET_LOCK)
	kindRedis    = "redis"    // redislock
	kindFile     = "file"     // filelock
	kindRowPG    = "rowlock-postgres"
	kindRowMySQL = "rowlock-mysql"
	kindNone     = "none" // excludes nothing: the torture test's control
)

// isRow reports whether kind is a lock-table backend.
func isRow(kind string) bool { return kind == kindRowPG || kind == kindRowMySQL }

// spec describes one Locker configuration. It crosses process boundaries
// as JSON, so that a helper process opens the same backend as its parent.
type spec struct {
	Kind    string        `json:"kind"`
	DSN     string        `json:"dsn,omitempty"`      // server backends
	Dir     string        `json:"dir,omitempty"`      // filelock
	TTL     time.Duration `json:"ttl,omitempty"`      // redislock, rowlock lease
	Renew   time.Duration `json:"renew,omitempty"`    // redislock, rowlock renew interval
	Probe   time.Duration `json:"probe,omitempty"`    // advisory MySQL probe interval
	ProbeTO time.Duration `json:"probe_to,omitempty"` // advisory MySQL probe timeout
	Check   time.Duration `json:"check,omitempty"`    // filelock CheckInterval
	Fencing bool          `json:"fencing,omitempty"`  // fencing tokens where they are opt-in: advisory, mysqllock, redislock, filelock
	Prefix  string        `json:"prefix,omitempty"`   // redislock key prefix
	// CtxTimeouts sets go-redis's ContextTimeoutEnabled, which redislock's
	// documentation asks for; without it go-redis bounds network waits by
	// its ReadTimeout and not by the context.
	CtxTimeouts bool `json:"ctx_timeouts,omitempty"`
	MaxConns    int  `json:"max_conns,omitempty"`
}

func (s spec) String() string {
	b, _ := json.Marshal(s)
	return string(b)
}

// lossBound is the documented bound on how soon a held lock reports its
// loss after its session or lease was ended from outside, for s:
//   - PostgreSQL: at once (a watcher blocks in a read on the session); the
//     advisory package documents 1 s.
//   - MySQL: one probe interval plus one probe timeout, plus 250 ms for
//     the timer and the goroutines to be scheduled: the probe's deadline
//     alone ends at the bound, so a loaded CI machine has seen Done close
//     a few milliseconds past it.
//   - Redis and the lock table: one renew interval (the next renewal finds
//     the lease gone) plus a round trip; when that round trip stalls (a
//     loaded CI machine has stalled one past a second), the lease's local
//     end, one TTL after the last confirmed renewal, still bounds it.
//   - files: one CheckInterval.
func (s spec) lossBound() time.Duration {
	switch s.Kind {
	case kindPostgres:
		return time.Second
	case kindMySQL:
		return s.probe() + s.probeTimeout() + 250*time.Millisecond
	case kindRedis, kindRowPG, kindRowMySQL:
		return max(s.renew()+time.Second, s.ttl()+500*time.Millisecond)
	case kindFile:
		return s.Check + 500*time.Millisecond
	}
	panic("unknown kind " + s.Kind)
}

func (s spec) probe() time.Duration {
	if s.Probe > 0 {
		return s.Probe
	}
	return mysqllock.DefaultProbeInterval
}

func (s spec) probeTimeout() time.Duration {
	if s.ProbeTO > 0 {
		return s.ProbeTO
	}
	return mysqllock.DefaultProbeTimeout
}

func (s spec) ttl() time.Duration {
	switch {
	case s.TTL > 0:
		return s.TTL
	case isRow(s.Kind):
		return rowlock.DefaultTTL
	}
	return redislock.DefaultTTL
}

func (s spec) renew() time.Duration {
	if s.Renew > 0 {
		return s.Renew
	}
	return s.ttl() / 3
}

// noLock is a Locker that excludes nothing: every Acquire succeeds at once.
type noLock struct{}

func (noLock) Acquire(_ context.Context, name string) (lockkit.Lock, error) {
	return lockstate.New(name, 0, func(context.Context, bool) error { return nil }), nil
}

func (n noLock) TryAcquire(ctx context.Context, name string) (lockkit.Lock, error) {
	return n.Acquire(ctx, name)
}

// backend is an opened spec: a Locker and the client it runs on, which the
// test also uses to inspect and fault the server.
type backend struct {
	spec   spec
	locker lockkit.Locker

	pg *advisory.Locker
	my *mysqllock.Locker
	rd *redislock.Locker
	fl *filelock.Locker
	rl *rowlock.Locker

	db *sql.DB       // postgres, mysql
	rc *redis.Client // redis
}

// open opens s. The caller must Close the backend.
func (s spec) open() (*backend, error) {
	b := &backend{spec: s}
	var err error
	switch s.Kind {
	case kindPostgres:
		if b.db, err = sql.Open("pgx", s.DSN); err != nil {
			return nil, err
		}
		if s.MaxConns > 0 {
			b.db.SetMaxOpenConns(s.MaxConns)
		}
		b.pg, err = advisory.New(b.db, &advisory.Config{Fencing: s.Fencing})
		b.locker = b.pg
	case kindMySQL:
		if b.db, err = sql.Open("mysql", s.DSN); err != nil {
			return nil, err
		}
		if s.MaxConns > 0 {
			b.db.SetMaxOpenConns(s.MaxConns)
		}
		b.my, err = mysqllock.New(b.db, &mysqllock.Config{ProbeInterval: s.Probe, ProbeTimeout: s.ProbeTO, Fencing: s.Fencing})
		b.locker = b.my
	case kindRedis:
		opts, perr := redis.ParseURL(s.DSN)
		if perr != nil {
			return nil, perr
		}
		opts.ContextTimeoutEnabled = s.CtxTimeouts
		b.rc = redis.NewClient(opts)
		b.rd, err = redislock.New(b.rc, &redislock.Config{
			Prefix: s.Prefix, TTL: s.TTL, RenewInterval: s.Renew, Fencing: s.Fencing,
		})
		b.locker = b.rd
	case kindFile:
		b.fl, err = filelock.New(s.Dir, &filelock.Config{CheckInterval: s.Check, Fencing: s.Fencing})
		b.locker = b.fl
	case kindRowPG, kindRowMySQL:
		driver, dialect := "pgx", rowlock.Postgres
		if s.Kind == kindRowMySQL {
			driver, dialect = "mysql", rowlock.MySQL
		}
		if b.db, err = sql.Open(driver, s.DSN); err != nil {
			return nil, err
		}
		if s.MaxConns > 0 {
			b.db.SetMaxOpenConns(s.MaxConns)
		}
		b.rl, err = rowlock.New(b.db, &rowlock.Config{Dialect: dialect, TTL: s.TTL, RenewInterval: s.Renew})
		b.locker = b.rl
	case kindNone:
		b.locker = noLock{}
	default:
		err = fmt.Errorf("unknown backend kind %q", s.Kind)
	}
	if err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// Close closes what open opened.
func (b *backend) Close() {
	if b.rd != nil {
		_ = b.rd.Close()
	}
	if b.rl != nil {
		_ = b.rl.Close()
	}
	if b.fl != nil {
		_ = b.fl.Close()
	}
	if b.db != nil {
		_ = b.db.Close()
	}
	if b.rc != nil {
		_ = b.rc.Close()
	}
}

// openT opens s for t and closes it when t ends.
func openT(t testing.TB, s spec) *backend {
	t.Helper()
	b, err := s.open()
	if err != nil {
		t.Fatalf("open %s backend: %v", s.Kind, err)
	}
	t.Cleanup(b.Close)
	return b
}

// session identifies what holds lock l on the server, for killSession: the
// backend pid on PostgreSQL, the connection id on MySQL, the key on Redis,
// the file on disk for filelock.
func session(l lockkit.Lock) string {
	switch l := l.(type) {
	case *advisory.Lock:
		return strconv.Itoa(l.PID())
	case *mysqllock.Lock:
		return strconv.FormatInt(l.ConnID(), 10)
	case *redislock.Lock:
		return l.Key()
	case *filelock.Lock:
		return l.Path()
	case *rowlock.Lock:
		return l.Name()
	}
	return ""
}

// killSession ends, from outside the holder, the session or lease behind a
// lock: pg_terminate_backend, KILL, DEL of the lease key, removal of the
// lock file, or ForceRelease of the lease.
func (b *backend) killSession(ctx context.Context, sess string) error {
	switch b.spec.Kind {
	case kindPostgres:
		pid, err := strconv.Atoi(sess)
		if err != nil {
			return err
		}
		var ok bool
		if err := b.db.QueryRowContext(ctx, "SELECT pg_terminate_backend($1)", pid).Scan(&ok); err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("pg_terminate_backend(%d) = false", pid)
		}
		return nil
	case kindMySQL:
		id, err := strconv.ParseInt(sess, 10, 64)
		if err != nil {
			return err
		}
		_, err = b.db.ExecContext(ctx, "KILL "+strconv.FormatInt(id, 10)) // KILL takes no placeholder
		return err
	case kindRedis:
		return b.rc.Del(ctx, sess).Err()
	case kindFile:
		return os.Remove(sess)
	case kindRowPG, kindRowMySQL:
		ended, err := b.rl.ForceRelease(ctx, sess)
		if err == nil && !ended {
			err = fmt.Errorf("ForceRelease(%q) ended no live lease", sess)
		}
		return err
	}
	return errors.ErrUnsupported
}

// lease returns the holder of the live lease on name in the lock table,
// if any.
func (b *backend) lease(ctx context.Context, name string) (*lockkit.Holder, error) {
	got, err := b.rl.List(ctx, name)
	if err != nil || !got[0].Held {
		return nil, err
	}
	return &got[0].Holder, nil
}

// leaseLeft returns how long the lease on name has left by the server's
// clock: Redis's PTTL of the key, or expires_at less the database's time
// for the lock table. It is negative when there is no live lease. The
// lease ends no earlier than the time the statement ran plus what it
// returns: a renewal still in flight can only extend it.
func (b *backend) leaseLeft(ctx context.Context, name string) (time.Duration, error) {
	var (
		ms, us int64
		err    error
	)
	switch b.spec.Kind {
	case kindRedis:
		// -2: no key; -1: a key without expiry, which redislock never sets.
		ms, err = b.rc.Do(ctx, "PTTL", b.rd.Key(name)).Int64()
		if err == nil && ms == -1 {
			err = fmt.Errorf("redis key %s has no expiry", b.rd.Key(name))
		}
		return time.Duration(ms) * time.Millisecond, err
	case kindRowPG:
		err = b.db.QueryRowContext(ctx, `SELECT (EXTRACT(EPOCH FROM expires_at - clock_timestamp()) * 1e6)::bigint
			FROM `+rowlock.DefaultTable+` WHERE name = $1`, name).Scan(&us)
	case kindRowMySQL:
		err = b.db.QueryRowContext(ctx, `SELECT TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), expires_at)
			FROM `+rowlock.DefaultTable+` WHERE name = ?`, name).Scan(&us)
	default:
		return 0, errors.ErrUnsupported
	}
	if errors.Is(err, sql.ErrNoRows) {
		return -1, nil
	}
	return time.Duration(us) * time.Microsecond, err
}

// heldOnServer reports whether the server shows name as held by anyone:
// pg_locks, IS_USED_LOCK, EXISTS; for files, whether a try-lock fails.
func (b *backend) heldOnServer(ctx context.Context, name string) (bool, error) {
	switch b.spec.Kind {
	case kindPostgres:
		k, err := b.pg.Key(name)
		if err != nil {
			return false, err
		}
		hi, lo := k.Pair()
		var n int
		err = b.db.QueryRowContext(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
			AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 1 AND granted`,
			int64(uint32(hi)), int64(uint32(lo))).Scan(&n)
		return n > 0, err
	case kindMySQL:
		ln, err := b.my.UserLockName(name)
		if err != nil {
			return false, err
		}
		var holder sql.NullInt64
		err = b.db.QueryRowContext(ctx, "SELECT IS_USED_LOCK(?)", ln).Scan(&holder)
		return holder.Valid, err
	case kindRedis:
		n, err := b.rc.Exists(ctx, b.rd.Key(name)).Result()
		return n > 0, err
	case kindRowPG, kindRowMySQL:
		h, err := b.lease(ctx, name)
		return h != nil, err
	case kindNone:
		return false, nil
	case kindFile:
		l, err := b.fl.TryAcquire(ctx, name)
		if errors.Is(err, lockkit.ErrNotAcquired) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		return false, l.Release(ctx)
	}
	return false, errors.ErrUnsupported
}

// ownedBy reports whether the server shows name held by lock l itself, not
// by another session: pg_locks' pid, IS_USED_LOCK's connection id, the
// lease key's secret (redislock's TTL checks it).
func (b *backend) ownedBy(ctx context.Context, name string, l lockkit.Lock) (bool, error) {
	switch b.spec.Kind {
	case kindPostgres:
		k, err := b.pg.Key(name)
		if err != nil {
			return false, err
		}
		hi, lo := k.Pair()
		var n int
		err = b.db.QueryRowContext(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
			AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 1 AND granted AND pid = $3`,
			int64(uint32(hi)), int64(uint32(lo)), l.(*advisory.Lock).PID()).Scan(&n)
		return n == 1, err
	case kindMySQL:
		ln, err := b.my.UserLockName(name)
		if err != nil {
			return false, err
		}
		var holder sql.NullInt64
		err = b.db.QueryRowContext(ctx, "SELECT IS_USED_LOCK(?)", ln).Scan(&holder)
		return holder.Valid && holder.Int64 == l.(*mysqllock.Lock).ConnID(), err
	case kindRedis:
		_, err := l.(*redislock.Lock).TTL(ctx)
		if errors.Is(err, lockkit.ErrLost) {
			return false, nil
		}
		return err == nil, err
	case kindRowPG, kindRowMySQL:
		h, err := b.lease(ctx, name)
		return h != nil && h.Token == l.Token(), err
	}
	return false, errors.ErrUnsupported
}

// eventuallyFree waits until the server shows name free, for at most
// bound, and fails t otherwise.
func (b *backend) eventuallyFree(t testing.TB, name string, bound time.Duration) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		held, err := b.heldOnServer(ctxT(t, 10*time.Second), name)
		if err != nil {
			t.Fatalf("check %s on the server: %v", name, err)
		}
		if !held {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: lock %q still held on the server %v after the fault", b.spec.Kind, name, bound)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// forget removes what a Redis lock or a fenced GET_LOCK leaves by design
// (its fencing counter) when t ends.
func (b *backend) forget(t testing.TB, names ...string) {
	if b.rd == nil && (b.my == nil || !b.spec.Fencing) {
		return
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, n := range names {
			if b.rd != nil {
				_ = b.rc.Del(ctx, b.rd.Key(n), b.rd.Key(n)+":fence").Err()
				continue
			}
			if ln, err := b.my.UserLockName(n); err == nil {
				_, _ = b.db.ExecContext(ctx, "DELETE FROM "+mysqllock.DefaultFencingTable+" WHERE name = ?", ln)
			}
		}
	})
}

// envSpec returns the spec of kind on the shared servers named by the
// LOCKKIT_TEST_* variables (or Testcontainers), skipping or failing t as
// package integration does when there is none.
func envSpec(t testing.TB, kind string) spec {
	t.Helper()
	switch kind {
	case kindPostgres:
		return spec{Kind: kind, DSN: integration.PostgresDSN(t)}
	case kindMySQL:
		return spec{Kind: kind, DSN: integration.MySQLDSN(t)}
	case kindRedis:
		return spec{Kind: kind, DSN: integration.RedisURL(t), Prefix: "lockkit-rel:"}
	case kindFile:
		return spec{Kind: kind, Dir: t.TempDir()}
	case kindRowPG:
		return spec{Kind: kind, DSN: lockTable(t, kind, integration.PostgresDSN(t), true)}
	case kindRowMySQL:
		return spec{Kind: kind, DSN: lockTable(t, kind, integration.MySQLDSN(t), true)}
	}
	t.Fatalf("unknown kind %q", kind)
	return spec{}
}

// lockTable prepares a lock table on the server of dsn and returns the DSN
// to use it. With private set, the table lives in a schema (PostgreSQL) or
// database (MySQL) of its own, dropped when t ends; otherwise it is created
// in dsn's own schema, once.
func lockTable(t testing.TB, kind, dsn string, private bool) string {
	t.Helper()
	driver, dialect := "pgx", migrations.Postgres
	if kind == kindRowMySQL {
		driver, dialect = "mysql", migrations.MySQL
	}
	admin, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx := ctxT(t, time.Minute)
	if private {
		schema := "lkt_rel_" + strings.ToLower(rand.Text()[:10])
		stmt, drop := "CREATE SCHEMA "+schema, "DROP SCHEMA "+schema+" CASCADE"
		if kind == kindRowMySQL {
			stmt, drop = "CREATE DATABASE "+schema, "DROP DATABASE "+schema
		}
		if _, err := admin.ExecContext(ctx, stmt); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			db, err := sql.Open(driver, dsn)
			if err != nil {
				return
			}
			defer db.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := db.ExecContext(ctx, drop); err != nil {
				t.Errorf("%s: %v", drop, err)
			}
		})
		if kind == kindRowMySQL {
			cfg, err := mysql.ParseDSN(dsn)
			if err != nil {
				t.Fatal(err)
			}
			cfg.DBName = schema
			dsn = cfg.FormatDSN()
		} else {
			u, err := url.Parse(dsn)
			if err != nil {
				t.Fatal(err)
			}
			q := u.Query()
			q.Set("search_path", schema)
			u.RawQuery = q.Encode()
			dsn = u.String()
		}
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := migrations.Up(ctx, db, dialect, nil); err != nil {
		t.Fatalf("migrations.Up: %v", err)
	}
	return dsn
}

// privateSpec returns the spec of kind on the binary's private server.
func privateSpec(t *testing.T, kind string) (spec, *integration.Server) {
	t.Helper()
	switch kind {
	case kindPostgres:
		srv := privateServer(t, "postgres")
		return spec{Kind: kind, DSN: srv.DSN()}, srv
	case kindMySQL:
		srv := privateServer(t, "mariadb")
		return spec{Kind: kind, DSN: srv.DSN()}, srv
	case kindRedis:
		srv := privateServer(t, "redis")
		return spec{Kind: kind, DSN: srv.DSN(), Prefix: "lockkit-rel:"}, srv
	case kindRowPG:
		srv := privateServer(t, "postgres")
		return spec{Kind: kind, DSN: lockTable(t, kind, srv.DSN(), false)}, srv
	case kindRowMySQL:
		srv := privateServer(t, "mariadb")
		return spec{Kind: kind, DSN: lockTable(t, kind, srv.DSN(), false)}, srv
	}
	t.Fatalf("no private server for %q", kind)
	return spec{}, nil
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// mustAcquire acquires name on b within 10 s and releases it when t ends
// (a lost lock's Release just frees it).
func mustAcquire(t testing.TB, b *backend, name string) lockkit.Lock {
	t.Helper()
	l, err := b.locker.Acquire(ctxT(t, 10*time.Second), name)
	if err != nil {
		t.Fatalf("%s: Acquire(%q): %v", b.spec.Kind, name, err)
	}
	t.Cleanup(func() { _ = l.Release(context.Background()) })
	return l
}

// waitDone waits for l's Done within bound of since and checks that Err
// wraps ErrLost. It returns how long it took (as seen by the test, which
// may wake late).
func waitDone(t testing.TB, l lockkit.Lock, since time.Time, bound time.Duration) time.Duration {
	t.Helper()
	select {
	case <-l.Done():
	case <-time.After(time.Until(since.Add(bound))):
		// When this goroutine wakes late, or the bound had passed before
		// the call, both cases can be ready and select picks either: look
		// at Done once more before failing.
		select {
		case <-l.Done():
		default:
			t.Fatalf("Done not closed within %v of the fault", bound)
		}
	}
	took := time.Since(since)
	if err := l.Err(); !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("Err() after the fault = %v, want ErrLost", err)
	}
	return took
}

// notHeld checks that l still reports held.
func stillHeld(t testing.TB, l lockkit.Lock) {
	t.Helper()
	select {
	case <-l.Done():
		t.Fatalf("lock reported done: %v", l.Err())
	default:
	}
	if err := l.Err(); err != nil {
		t.Fatalf("Err() = %v, want nil while held", err)
	}
}

// name returns a unique lock name for t.
func name(t testing.TB) string { return integration.Name(t) }

// contains reports whether s contains any of subs.
func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
