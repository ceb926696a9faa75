package cli

import (
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lockkit/lockkit/integration"
)

// The experiment: six lockkit run on one name at once through
// PgBouncer in transaction mode, each command checking that it is alone
// (mkdir is atomic: a second holder's mkdir fails, and its command exits
// 99). Before the session checks, five ran at once. Now none overlaps:
// each run either held the lock alone (0), was refused because its server
// session was shared (64, with the reason), or was not granted (75); a
// run whose unlock went to another server session reports the lock lost
// (70), never success. The URL has no default_query_exec_mode: lockkit
// uses unnamed statements itself.
func TestRunThroughPgBouncerTransactionMode(t *testing.T) {
	t.Parallel()
	pgb := integration.StartPgBouncer(t, "transaction")
	for _, db := range []string{"single", "trio"} {
		t.Run(db, func(t *testing.T) {
			u := "postgres://postgres@" + pgb.Addr() + "/" + db + "?sslmode=disable"
			dir := t.TempDir()
			name := integration.Name(t)
			inside := filepath.Join(dir, "inside")
			var wg sync.WaitGroup
			results := make([]result, 6)
			for i := range results {
				wg.Add(1)
				go func() {
					defer wg.Done()
					results[i] = runCLI(t, nil, "run", "-b", u, "-w", "5s", name, "--",
						"sh", "-c", `mkdir "$1" || exit 99; sleep 0.3; rmdir "$1"`, "sh", inside)
				}()
			}
			wg.Wait()
			codes := map[int]int{}
			for _, r := range results {
				codes[r.code]++
				switch r.code {
				case ExitOK, ExitNotAcquired, ExitLost:
				case ExitUsage:
					if !strings.Contains(r.stderr, "shared with other clients") || !strings.Contains(r.stderr, "--table") && !strings.Contains(r.stderr, "rowlock") {
						t.Errorf("exit 64 without the reason and the way out: %s", r.stderr)
					}
				case 99:
					t.Errorf("two runs held the lock at once:\n%s", r.stderr)
				default:
					t.Errorf("exit %d: %s", r.code, r.stderr)
				}
			}
			t.Logf("exit statuses: %v", codes)
			if codes[ExitOK] == 0 && codes[ExitUsage] == 0 {
				t.Errorf("no run held the lock or was refused: %v", codes)
			}
		})
	}
}

// What works through a transaction pooler works from the CLI without
// touching the URL: the lock table (--table).
func TestRunTableThroughPgBouncerTransactionMode(t *testing.T) {
	t.Parallel()
	if res := runCLI(t, nil, "migrate", "-b", pgURL(t), "up"); res.code != ExitOK {
		t.Fatalf("migrate up: %d %s", res.code, res.stderr)
	}
	pgb := integration.StartPgBouncer(t, "transaction")
	u := "postgres://postgres@" + pgb.Addr() + "/trio?sslmode=disable"
	dir := t.TempDir()
	name := integration.Name(t)
	inside := filepath.Join(dir, "inside")
	var wg sync.WaitGroup
	results := make([]result, 4)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = runCLI(t, nil, "run", "--table", "-b", u, "-w", "20s", name, "--",
				"sh", "-c", `mkdir "$1" || exit 99; sleep 0.1; rmdir "$1"`, "sh", inside)
		}()
	}
	wg.Wait()
	for _, r := range results {
		if r.code != ExitOK {
			t.Errorf("run --table through PgBouncer: exit %d: %s", r.code, r.stderr)
		}
	}
}
