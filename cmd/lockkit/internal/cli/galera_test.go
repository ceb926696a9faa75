package cli

import (
	"net/url"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/lockkit/lockkit/integration"
)

// On a Galera node, doctor and run give the same answer: GET_LOCK is
// refused, and --table is what to use; run --table works there.
func TestGaleraNode(t *testing.T) {
	t.Parallel()
	c := integration.StartGaleraCluster(t, 1)
	cfg, err := mysql.ParseDSN(c.Nodes[0].DSN())
	if err != nil {
		t.Fatal(err)
	}
	backend := (&url.URL{Scheme: "mysql", User: url.User(cfg.User), Host: cfg.Addr, Path: "/" + cfg.DBName}).String()

	r, res := doctorJSON(t, backend)
	wantChecks(t, r, res, 1, map[string]string{
		"connect": statusOK, "server": statusOK, "cluster": statusFail, "session locks": statusFail,
		"lock table": statusInfo, "clock": statusOK, "connections": statusOK,
	})
	for _, c := range r.Checks {
		if (c.Name == "cluster" || c.Name == "session locks") && (!strings.Contains(c.Detail, "Galera") || !strings.Contains(c.Detail, "--table")) {
			t.Errorf("doctor's %s check: %q does not name Galera and --table", c.Name, c.Detail)
		}
	}

	run := runCLI(t, nil, "run", "-b", backend, "-n", "nightly", "--", "true")
	if run.code != ExitUsage || !strings.Contains(run.stderr, "Galera") || !strings.Contains(run.stderr, "--table") {
		t.Errorf("run on a Galera node: exit %d, want %d, and a refusal naming Galera and --table:\n%s", run.code, ExitUsage, run.stderr)
	}
	if res := runCLI(t, nil, "migrate", "-b", backend, "up"); res.code != ExitOK {
		t.Fatalf("migrate up: exit %d\n%s", res.code, res.stderr)
	}
	if res := runCLI(t, nil, "run", "-b", backend, "--table", "-n", "nightly", "--", "true"); res.code != ExitOK {
		t.Errorf("run --table on a Galera node: exit %d\n%s", res.code, res.stderr)
	}
}
