package interop

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/advisory"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/keyhash"
)

type riverNoopArgs struct{}

func (riverNoopArgs) Kind() string { return "lkt_noop" }

type riverNoopWorker struct {
	river.WorkerDefaults[riverNoopArgs]
}

func (riverNoopWorker) Work(context.Context, *river.Job[riverNoopArgs]) error { return nil }

// TestRiverLeaderStatus: a real River client (its migrations run by
// rivermigrate into a schema of the test's own) is elected leader through
// river_leader. lockkit's List names River's leader with the client's id
// and the term's end, and no longer once the client stops and resigns.
func TestRiverLeaderStatus(t *testing.T) {
	ctx := ctxT(t, 2*time.Minute)
	schema := uniq("lkt_river_")
	execSQL(t, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize())
	t.Cleanup(func() { execSQL(t, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE") })

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	driver := riverpgxv5.New(integration.PgxPool(t))
	migrator, err := rivermigrate.New(driver, &rivermigrate.Config{Schema: schema, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		t.Fatalf("river migrations: %v", err)
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &riverNoopWorker{})
	id := uniq("lkt-river-")
	client, err := river.NewClient(driver, &river.Config{
		ID:      id,
		Schema:  schema,
		Logger:  quiet,
		Queues:  map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 1}},
		Workers: workers,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = client.Stop(context.Background())
		}
	})

	p, err := advisory.New(newDB(t, 2), nil)
	if err != nil {
		t.Fatal(err)
	}
	wantKey := "table " + pgx.Identifier{schema, keyhash.RiverLeaderTable}.Sanitize()
	leader := func() (lockkit.LockInfo, bool) {
		locks, err := p.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range locks {
			if l.Key == wantKey {
				return l, true
			}
		}
		return lockkit.LockInfo{}, false
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		l, ok := leader()
		if ok {
			if !l.Held || l.Tool != keyhash.ToolRiver || l.Holder.Owner != id || !l.Holder.Expires.After(l.Holder.Since) {
				t.Fatalf("List shows River's leader as %+v, want client %s", l, id)
			}
			t.Logf("lockkit status: %s: %s until %s", l.Name, l.Holder.Owner, l.Holder.Expires.Format(time.TimeOnly))
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("River elected no leader within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	if err := client.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	stopped = true
	if l, ok := leader(); ok {
		t.Fatalf("River's stopped client still listed as leader: %+v", l)
	}
}
