package integration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// standbyName is the standby's application_name, which the primary's
// synchronous_standby_names and pg_stat_replication know it by.
const standbyName = "lkstandby"

// PostgresPair is a PostgreSQL primary with one hot standby that streams
// its WAL, both private [Server]s on loopback: the topology of a
// replicated PostgreSQL (by hand, or under Patroni) on one machine, for
// tests that kill the primary and promote the standby.
//
// With synchronous replication a commit on the primary returns only once
// the standby has flushed its WAL (synchronous_standby_names names the
// standby); with asynchronous replication the primary does not wait, and
// what the standby had not received when the primary died is gone after
// a promotion. [PostgresPair.StallReplication] makes that window as wide
// as a test needs.
type PostgresPair struct {
	// Primary is the server the standby replicates from.
	Primary *Server
	// Standby is the streaming replica; after [PostgresPair.Promote] it is
	// a primary on a new timeline.
	Standby *Server
	// Sync is true when commits wait for the standby.
	Sync bool
}

// StartPostgresPair starts a primary and a streaming standby for t and
// removes both when t ends. See [LaunchPostgresPair].
func StartPostgresPair(t testing.TB, sync bool, opts ...Option) *PostgresPair {
	t.Helper()
	p, err := LaunchPostgresPair(sync, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("integration: remove PostgreSQL pair: %v", err)
		}
	})
	return p
}

// LaunchPostgresPair starts a primary as [LaunchPostgres] does, copies it
// with pg_basebackup into a standby that streams from it
// (primary_conninfo, standby.signal, hot_standby on), and waits until the
// standby streams. With sync, the primary's synchronous_standby_names
// names the standby, and the pair is returned once the primary reports it
// as synchronous. opts apply to both servers. The caller must
// [PostgresPair.Close] the pair.
func LaunchPostgresPair(sync bool, opts ...Option) (*PostgresPair, error) {
	o, err := applyOptions(opts)
	if err != nil {
		return nil, err
	}
	primary, err := LaunchPostgres(opts...)
	if err != nil {
		return nil, err
	}
	p := &PostgresPair{Primary: primary, Sync: sync}
	if err := p.launchStandby(o); err != nil {
		_ = p.Close()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if sync {
		if err := pingSQL(ctx, "pgx", primary.DSN(),
			"ALTER SYSTEM SET synchronous_standby_names = '"+standbyName+"'",
			"SELECT pg_reload_conf()"); err != nil {
			_ = p.Close()
			return nil, fmt.Errorf("integration: make the standby synchronous: %w", err)
		}
	}
	want := "async"
	if sync {
		want = "sync"
	}
	if err := p.waitStreaming(ctx, want); err != nil {
		_ = p.Close()
		return nil, err
	}
	return p, nil
}

// launchStandby copies the primary with pg_basebackup and starts the copy
// as a standby.
func (p *PostgresPair) launchStandby(o *serverOptions) error {
	bin, err := postgresBinDir()
	if err != nil {
		return err
	}
	cred := p.Primary.cred
	dir, err := serverDir("lkpgs", cred)
	if err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		_ = os.RemoveAll(dir)
		return err
	}
	data := filepath.Join(dir, "data")
	if err := run(cred, filepath.Join(bin, "pg_basebackup"), "-h", "127.0.0.1", "-p", fmt.Sprint(p.Primary.Port()),
		"-U", "postgres", "-D", data, "-X", "stream", "--checkpoint=fast", "--no-sync"); err != nil {
		_ = os.RemoveAll(dir)
		return err
	}
	conf := fmt.Sprintf("primary_conninfo = 'host=127.0.0.1 port=%d user=postgres application_name=%s'\n", p.Primary.Port(), standbyName)
	if err := appendFile(filepath.Join(data, "postgresql.auto.conf"), conf); err != nil {
		_ = os.RemoveAll(dir)
		return err
	}
	if err := appendFile(filepath.Join(data, "standby.signal"), ""); err != nil {
		_ = os.RemoveAll(dir)
		return err
	}
	p.Standby = postgresServer(bin, dir, data, port, cred, o)
	if err := p.Standby.Start(); err != nil {
		_ = p.Standby.Close()
		p.Standby = nil
		return err
	}
	return nil
}

// appendFile appends text to the file at path, creating it with the
// ownership of its directory (the server's user) when it is missing.
func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(filepath.Dir(path)); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			_ = f.Chown(int(st.Uid), int(st.Gid))
		}
	}
	if _, err := f.WriteString(text); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// waitStreaming waits until the primary reports the standby streaming
// with sync_state want.
func (p *PostgresPair) waitStreaming(ctx context.Context, want string) error {
	db, err := sql.Open("pgx", p.Primary.DSN())
	if err != nil {
		return err
	}
	defer db.Close()
	err = poll(ctx, func() error {
		var state, sync string
		err := db.QueryRowContext(ctx, `SELECT state, sync_state FROM pg_stat_replication WHERE application_name = $1`,
			standbyName).Scan(&state, &sync)
		if err == nil && (state != "streaming" || sync != want) {
			err = fmt.Errorf("state %q, sync_state %q", state, sync)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("integration: standby not streaming (%s): %w\n%s", want, err, p.Standby.logTail())
	}
	return nil
}

// DSN returns a pgx URL naming both servers, primary first, with
// target_session_attrs=read-write: a connection goes to whichever of
// them accepts writes, so a pool on it follows a promotion as its
// connections are replaced.
func (p *PostgresPair) DSN() string {
	return fmt.Sprintf("postgres://postgres@%s,%s/postgres?sslmode=disable&target_session_attrs=read-write&connect_timeout=5",
		p.Primary.Addr(), p.Standby.Addr())
}

// WaitReplayed waits until the standby has replayed every WAL record the
// primary had written when it was called.
func (p *PostgresPair) WaitReplayed(ctx context.Context) error {
	var lsn string
	if err := queryRow(ctx, p.Primary.DSN(), "SELECT pg_current_wal_lsn()::text", &lsn); err != nil {
		return err
	}
	db, err := sql.Open("pgx", p.Standby.DSN())
	if err != nil {
		return err
	}
	defer db.Close()
	err = poll(ctx, func() error {
		var done bool
		err := db.QueryRowContext(ctx, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", lsn).Scan(&done)
		if err == nil && !done {
			err = errors.New("not yet")
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("integration: standby has not replayed %s: %w", lsn, err)
	}
	return nil
}

// StallReplication stops (SIGSTOP) the primary's WAL sender for the
// standby: from then on WAL stays on the primary, as behind a network
// that stalls. With asynchronous replication commits go on, and a
// failover loses them; with synchronous replication commits wait. The
// returned function resumes the sender; killing the primary ends it too.
func (p *PostgresPair) StallReplication(ctx context.Context) (resume func() error, err error) {
	var pid int
	if err := queryRow(ctx, p.Primary.DSN(), "SELECT pid FROM pg_stat_replication WHERE application_name = '"+standbyName+"'", &pid); err != nil {
		return nil, fmt.Errorf("integration: find the WAL sender: %w", err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return nil, fmt.Errorf("integration: stop the WAL sender: %w", err)
	}
	return func() error {
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil && !errors.Is(err, syscall.ESRCH) {
			return err
		}
		return nil
	}, nil
}

// Promote promotes the standby (pg_promote) and waits until it accepts
// writes. Kill the primary first to stage a failover.
func (p *PostgresPair) Promote(ctx context.Context) error {
	var ok bool
	if err := queryRow(ctx, p.Standby.DSN(), "SELECT pg_promote(true, 60)", &ok); err != nil {
		return fmt.Errorf("integration: promote the standby: %w", err)
	}
	if !ok {
		return fmt.Errorf("integration: the standby was not promoted within 60s\n%s", p.Standby.logTail())
	}
	return nil
}

// Close kills both servers and removes their directories.
func (p *PostgresPair) Close() error {
	var errs []error
	if p.Standby != nil {
		errs = append(errs, p.Standby.Close())
	}
	errs = append(errs, p.Primary.Close())
	return errors.Join(errs...)
}

// queryRow scans the one row of q on a new connection to dsn into dest.
func queryRow(ctx context.Context, dsn, q string, dest ...any) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.QueryRowContext(ctx, q).Scan(dest...)
}
