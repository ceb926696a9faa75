package keyhash_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/keyhash"
)

// TestPsqlTakesSameLock runs the documented expression from a real psql
// session: refused while Go holds keyhash.Name(name), granted after.
func TestPsqlTakesSameLock(t *testing.T) {
	psql, err := exec.LookPath("psql")
	if err != nil {
		if os.Getenv(integration.EnvRequire) == "1" {
			t.Fatalf("psql not found: %v", err)
		}
		t.Skipf("psql not found: %v", err)
	}
	dsn := integration.PostgresDSN(t)
	c := pgConn(t, integration.Postgres(t))
	name := integration.Name(t) + " ünï'cödé"
	// psql interpolates :'name' as a quoted literal.
	script := `SELECT pg_try_advisory_lock(` + strings.ReplaceAll(keyhash.NameKeySQL, "$1", ":'name'") + `);` + "\n"
	run := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, psql, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-v", "name="+name, dsn)
		cmd.Stdin = strings.NewReader(script)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("psql: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	key := keyhash.Name(name)
	if !tryKey(t, c, key) {
		t.Fatal("Go side not acquired")
	}
	if got := run(); got != "f" {
		t.Fatalf("psql while Go holds the lock: %q, want f", got)
	}
	if !unlockKey(t, c, key) {
		t.Fatal("unlock false")
	}
	if got := run(); got != "t" {
		t.Fatalf("psql after Go released: %q, want t", got)
	}
}
