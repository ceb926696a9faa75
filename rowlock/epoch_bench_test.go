package rowlock_test

import (
	"context"
	"testing"
	"time"

	"github.com/lockkit/lockkit/internal/pgepoch"
	"github.com/lockkit/lockkit/rowlock"
)

// BenchmarkPostgresTokenEpoch measures what the timeline in PostgreSQL
// tokens (migration 0002) costs: an uncontended TryAcquire + Release
// through rowlock on the migrated table ("epoch") against the same on a
// copy of it whose token default is the plain sequence of migration 0001
// ("plain"), alternating iteration by iteration so that load from
// elsewhere hits both alike. It reports the median of each, their
// difference and their ratio. The timeline is read inside the acquire
// statement, so the difference is server time only: no round trip.
func BenchmarkPostgresTokenEpoch(b *testing.B) {
	e := setup(b, rowlock.Postgres)
	ctx := context.Background()
	if _, err := e.db.ExecContext(ctx, `CREATE TABLE plain_locks (LIKE lockkit_locks INCLUDING ALL);
		CREATE SEQUENCE plain_locks_token_seq OWNED BY plain_locks.token;
		ALTER TABLE plain_locks ALTER COLUMN token SET DEFAULT nextval('plain_locks_token_seq')`); err != nil {
		b.Fatal(err)
	}
	cfg := func(table string) *rowlock.Config {
		return &rowlock.Config{Dialect: rowlock.Postgres, Table: table, TTL: 30 * time.Second, RenewInterval: rowlock.NoRenew}
	}
	epoch, plain := e.locker(b, cfg(rowlock.DefaultTable)), e.locker(b, cfg("plain_locks"))
	name := "bench." + randHex(6)
	once := func(l *rowlock.Locker) (time.Duration, int64) {
		start := time.Now()
		k, err := l.TryAcquire(ctx, name)
		if err != nil {
			b.Fatal(err)
		}
		if err := k.Release(ctx); err != nil {
			b.Fatal(err)
		}
		return time.Since(start), k.Token()
	}
	var withEpoch, without []time.Duration
	for b.Loop() {
		d, tok := once(epoch)
		if pgepoch.Timeline(tok) < 1 {
			b.Fatalf("token %d carries no timeline", tok)
		}
		withEpoch = append(withEpoch, d)
		d, tok = once(plain)
		if pgepoch.Timeline(tok) != 0 {
			b.Fatalf("plain token %d carries a timeline", tok)
		}
		without = append(without, d)
	}
	me, mp := median(withEpoch), median(without)
	b.ReportMetric(float64(me.Nanoseconds())/1e3, "epoch-µs")
	b.ReportMetric(float64(mp.Nanoseconds())/1e3, "plain-µs")
	b.ReportMetric(float64((me-mp).Nanoseconds())/1e3, "diff-µs")
	b.ReportMetric(float64(me)/float64(mp), "ratio")
}
