package main

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/rowlock"
)

// TestTableAbandonedAcquireGivenBack: `lockkit run --table -w` whose wait
// ends while an acquire statement is still running on the server (held
// back here by a transaction that has locked the row and ends the holder's
// lease) must not exit leaving the lease that statement takes afterwards:
// lockkit gives it back before it exits, so the name is free at once, not
// after the lease's TTL.
func TestTableAbandonedAcquireGivenBack(t *testing.T) {
	t.Parallel()
	bc := pgTableCase(t)
	name := integration.Name(t)
	db, err := sql.Open("pgx", bc.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := rowlock.New(db, &rowlock.Config{Dialect: rowlock.Postgres, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	held, err := l.TryAcquire(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release(context.Background())

	// lockkit finds the lock held and waits (-v says so on stderr).
	cmd := exec.Command(bin, "run", "-v", "-b", bc.url, "--table", "-w", "1s", name, "--", "true")
	cmd.Env = bc.env
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	started := time.Now()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		pr.Close()
	})
	stderr := bufio.NewReader(pr)
	for {
		line, err := stderr.ReadString('\n')
		if err != nil {
			t.Fatalf("lockkit's stderr ended before it waited: %v", err)
		}
		if strings.Contains(line, "waiting for") {
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()

	// Lock the row and end the lease in one transaction: lockkit's next
	// attempt waits for the row, and takes the lease once the transaction
	// commits, after --wait has elapsed.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var blocker int
	if err := tx.QueryRowContext(ctx, "SELECT pg_backend_pid() FROM lockkit_locks WHERE name = $1 FOR UPDATE", name).Scan(&blocker); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE lockkit_locks SET expires_at = clock_timestamp() WHERE name = $1", name); err != nil {
		t.Fatal(err)
	}
	q, err := rowlock.Statements(rowlock.Postgres, "")
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		// Wake lockkit's waiter (it also polls, but slowly) so that its
		// next attempt comes now, while the row is locked.
		if _, err := db.ExecContext(ctx, "SELECT pg_notify($1, $2)", q.Channel, name); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM pg_stat_activity WHERE $1::int = ANY(pg_blocking_pids(pid))", blocker).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("lockkit's acquire statement never waited for the row")
		}
	}
	time.Sleep(time.Until(started.Add(1500 * time.Millisecond))) // --wait has elapsed
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 75 {
			t.Fatalf("lockkit whose --wait elapsed: %v, want exit status 75", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("lockkit did not exit")
	}

	lk, err := l.TryAcquire(ctx, name)
	if err != nil {
		t.Fatalf("after lockkit exited: %v", err)
	}
	_ = lk.Release(ctx)
}
