package main

import (
	"context"
	"time"
)

// serverVersions asks each configured server for its version, for the
// report. A server that does not answer is left out.
func serverVersions(ctx context.Context, e *env) map[string]string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out := map[string]string{}
	if e.pgDSN != "" {
		if db, err := newPgxDB(e.pgDSN, &netCounter{}, 1); err == nil {
			var v string
			if db.QueryRowContext(ctx, "SHOW server_version").Scan(&v) == nil {
				out["postgres"] = "PostgreSQL " + v
			}
			var mc, ml string
			if db.QueryRowContext(ctx, "SELECT current_setting('max_connections'), current_setting('max_locks_per_transaction')").Scan(&mc, &ml) == nil {
				out["postgres"] += ", max_connections " + mc + ", max_locks_per_transaction " + ml
			}
			db.Close()
		}
	}
	if e.myDSN != "" {
		if db, err := newMySQLDB(e.myDSN, &netCounter{}, 1); err == nil {
			var v string
			if db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&v) == nil {
				out["mysql"] = v
			}
			db.Close()
		}
	}
	if e.redisURL != "" {
		if c, err := newRedis(e.redisURL, &netCounter{}); err == nil {
			if info, err := c.InfoMap(ctx, "server").Result(); err == nil {
				out["redis"] = "Redis " + info["Server"]["redis_version"]
			}
			c.Close()
		}
	}
	return out
}
