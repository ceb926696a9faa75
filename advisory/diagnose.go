package advisory

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ServerKind says which server answers as PostgreSQL.
type ServerKind int

const (
	// KindPostgres is PostgreSQL, or a server that does not say it is
	// something else.
	KindPostgres ServerKind = iota
	// KindCockroachDB is CockroachDB, whose session advisory lock
	// functions lock nothing; New refuses it.
	KindCockroachDB
	// KindYugabyteDB is YugabyteDB, which has advisory locks only where
	// they are enabled.
	KindYugabyteDB
)

// ServerInfo is what the server says about itself.
type ServerInfo struct {
	Version    string     // version(), e.g. "PostgreSQL 16.4 on x86_64-pc-linux-gnu, ..."
	VersionNum int        // server_version_num, e.g. 160004
	Kind       ServerKind // told from Version
}

// ServerVersion asks the server db reaches for its version, and tells
// PostgreSQL from look-alikes by it.
func ServerVersion(ctx context.Context, db *sql.DB) (ServerInfo, error) {
	var s ServerInfo
	if err := db.QueryRowContext(ctx, "SELECT pg_catalog.version(), pg_catalog.current_setting('server_version_num')::integer").Scan(&s.Version, &s.VersionNum); err != nil {
		return s, fmt.Errorf("SELECT version(): %w", err)
	}
	switch low := strings.ToLower(s.Version); {
	case strings.Contains(low, "cockroachdb"):
		s.Kind = KindCockroachDB
	case strings.Contains(low, "-yb-") || strings.Contains(low, "yugabyte"):
		s.Kind = KindYugabyteDB
	}
	return s, nil
}

// ServerTime returns the server's clock (clock_timestamp()).
func ServerTime(ctx context.Context, db *sql.DB) (time.Time, error) {
	var t time.Time
	if err := db.QueryRowContext(ctx, "SELECT pg_catalog.clock_timestamp()").Scan(&t); err != nil {
		return t, fmt.Errorf("SELECT clock_timestamp(): %w", err)
	}
	return t, nil
}

// Connections returns the server's max_connections, its
// superuser_reserved_connections, and the client connections in use.
func Connections(ctx context.Context, db *sql.DB) (max, reserved, used int, err error) {
	err = db.QueryRowContext(ctx, `SELECT pg_catalog.current_setting('max_connections')::integer,
 pg_catalog.current_setting('superuser_reserved_connections')::integer,
 (SELECT pg_catalog.count(*)::integer FROM pg_catalog.pg_stat_activity WHERE backend_type = 'client backend')`).Scan(&max, &reserved, &used)
	return max, reserved, used, err
}

// PoolerProbe is what ProbePooler saw.
type PoolerProbe struct {
	// ClientPID is the backend pid the connection was given at startup;
	// ServerPID is the one its server session reports. They are equal
	// when nothing stands between the client and the server (Direct).
	ClientPID uint32
	ServerPID int32
	Direct    bool
	// SecondConnect or SecondQuery is set when a pooler answers but the
	// probe's second connection could not be made or queried; the fields
	// below are then unknown.
	SecondConnect, SecondQuery error
	// Shared is true when a second client connection ran on a server
	// session (SharedPID) carrying the first connection's setting:
	// transaction or statement pooling.
	Shared    bool
	SharedPID int32
	// Sessions is how many server sessions the first connection ran on;
	// more than one is transaction or statement pooling too.
	Sessions int
}

// ProbePooler detects a pooler or proxy between the client and
// PostgreSQL, and whether it shares server sessions between client
// connections (where session locks exclude nothing): it opens two
// connections of its own with cfg, sets a session setting on the first,
// and looks for it from the second. The error is for the first
// connection only.
func ProbePooler(ctx context.Context, cfg *pgx.ConnConfig, token string) (*PoolerProbe, error) {
	a, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer a.Close(context.WithoutCancel(ctx))
	p := &PoolerProbe{}
	if err := a.QueryRow(ctx, "SELECT pg_catalog.pg_backend_pid() FROM (SELECT pg_catalog.set_config('lockkit.doctor', $1, false)) s", token).Scan(&p.ServerPID); err != nil {
		return nil, err
	}
	defer func() {
		_, _ = a.Exec(context.WithoutCancel(ctx), "SELECT pg_catalog.set_config('lockkit.doctor', '', false)")
	}()
	p.ClientPID = a.PgConn().PID()
	if uint32(p.ServerPID) == p.ClientPID {
		p.Direct = true
		return p, nil
	}
	b, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		p.SecondConnect = err
		return p, nil
	}
	defer b.Close(context.WithoutCancel(ctx))
	pids := map[int32]bool{p.ServerPID: true}
	for range 5 {
		var seen *string
		var bpid int32
		if err := b.QueryRow(ctx, "SELECT pg_catalog.current_setting('lockkit.doctor', true), pg_catalog.pg_backend_pid()").Scan(&seen, &bpid); err != nil {
			p.SecondQuery = err
			return p, nil
		}
		if seen != nil && *seen == token {
			p.Shared, p.SharedPID = true, bpid
			return p, nil
		}
		var apid int32
		if err := a.QueryRow(ctx, "SELECT pg_catalog.pg_backend_pid()").Scan(&apid); err == nil {
			pids[apid] = true
		}
	}
	p.Sessions = len(pids)
	return p, nil
}

// NotifyProbe is what ProbeNotify saw.
type NotifyProbe struct {
	// Listen or Notify is the error of LISTEN or of pg_notify, if any
	// (the statement named in it).
	Listen, Notify error
	// Delivered says whether the notification reached the listener
	// within the wait, and Latency how long it took.
	Delivered bool
	Latency   time.Duration
}

// ProbeNotify checks that NOTIFY reaches a listener, which rowlock's
// waiters on PostgreSQL use to learn of a release at once: it LISTENs on
// channel on one connection of its own, notifies from another, and waits
// up to wait. The error is for connecting.
func ProbeNotify(ctx context.Context, cfg *pgx.ConnConfig, channel string, wait time.Duration) (*NotifyProbe, error) {
	p := &NotifyProbe{}
	l, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer l.Close(context.WithoutCancel(ctx))
	if _, err := l.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		p.Listen = fmt.Errorf("LISTEN: %w", err)
		return p, nil
	}
	s, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer s.Close(context.WithoutCancel(ctx))
	if _, err := s.Exec(ctx, "SELECT pg_catalog.pg_notify($1, 'probe')", channel); err != nil {
		p.Notify = fmt.Errorf("NOTIFY: %w", err)
		return p, nil
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	start := time.Now()
	n, err := l.WaitForNotification(wctx)
	if err == nil && n.Channel == channel {
		p.Delivered, p.Latency = true, time.Since(start)
	}
	return p, nil
}
