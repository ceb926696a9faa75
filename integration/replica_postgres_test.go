package integration

import (
	"database/sql"
	"testing"
	"time"
)

// TestPostgresPair checks the pair's replication modes with the fault the
// failover tests rely on: a commit made while replication is stalled is
// on the promoted standby with synchronous replication (the commit waited
// for it) and gone with asynchronous replication.
func TestPostgresPair(t *testing.T) {
	t.Parallel()
	for _, sync := range []bool{false, true} {
		mode := map[bool]string{false: "async", true: "sync"}[sync]
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			p := StartPostgresPair(t, sync)
			ctx := ctxFor(t, 2*time.Minute)
			primary, err := sql.Open("pgx", p.Primary.DSN())
			if err != nil {
				t.Fatal(err)
			}
			defer primary.Close()
			if _, err := primary.ExecContext(ctx, "CREATE TABLE kv (k int)"); err != nil {
				t.Fatal(err)
			}
			if _, err := primary.ExecContext(ctx, "INSERT INTO kv VALUES (1)"); err != nil {
				t.Fatal(err)
			}
			if err := p.WaitReplayed(ctx); err != nil {
				t.Fatal(err)
			}
			resume, err := p.StallReplication(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = resume() }()
			committed := make(chan error, 1)
			go func() {
				_, err := primary.ExecContext(ctx, "INSERT INTO kv VALUES (2)")
				committed <- err
			}()
			select {
			case err := <-committed:
				if sync {
					t.Fatalf("a commit returned (%v) while the synchronous standby could not receive it", err)
				}
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(time.Second):
				if !sync {
					t.Fatal("an asynchronous commit waited for the stalled standby")
				}
				// Let the synchronous commit through: it returns once the
				// standby has flushed it.
				if err := resume(); err != nil {
					t.Fatal(err)
				}
				if err := <-committed; err != nil {
					t.Fatal(err)
				}
			}
			if err := p.Primary.Kill(); err != nil {
				t.Fatal(err)
			}
			if err := p.Promote(ctx); err != nil {
				t.Fatal(err)
			}
			promoted, err := sql.Open("pgx", p.DSN()) // the multi-host DSN finds the new primary
			if err != nil {
				t.Fatal(err)
			}
			defer promoted.Close()
			if _, err := promoted.ExecContext(ctx, "INSERT INTO kv VALUES (3)"); err != nil {
				t.Fatalf("write through the multi-host DSN after promotion: %v", err)
			}
			var n int
			if err := promoted.QueryRowContext(ctx, "SELECT count(*) FROM kv WHERE k = 2").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{false: 0, true: 1}[sync]; n != want {
				t.Errorf("the commit made while replication stalled: %d rows on the promoted standby, want %d", n, want)
			}
		})
	}
}
