package reliability

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/lockkit/lockkit/integration"
	"go.uber.org/goleak"
)

// TestMain runs a helper process when the test binary was started as one
// (see child_test.go), else the tests; then it removes the private servers
// the tests shared and checks that no goroutine leaked.
func TestMain(m *testing.M) {
	if mode := os.Getenv(envChild); mode != "" {
		os.Exit(runChild(mode))
	}
	code := m.Run()
	closePrivate()
	closeGalera()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines leaked by the reliability tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// The private servers are shared by the tests of one test binary: starting
// PostgreSQL takes about 2 s and MariaDB about 5 s. Tests that stop, kill or
// pause one are not parallel, and leave it running when they end.
var private struct {
	sync.Mutex
	servers map[string]*integration.Server
}

// privateServer returns the binary's private server of the given kind
// ("postgres", "mariadb", "redis"), starting it on first use, and makes sure
// it runs again when t ends.
func privateServer(t *testing.T, kind string) *integration.Server {
	t.Helper()
	private.Lock()
	defer private.Unlock()
	if private.servers == nil {
		private.servers = map[string]*integration.Server{}
	}
	srv := private.servers[kind]
	if srv == nil {
		var err error
		switch kind {
		case "postgres":
			srv, err = integration.LaunchPostgres()
		case "mariadb":
			srv, err = integration.LaunchMariaDB()
		case "redis":
			srv, err = integration.LaunchRedis()
		default:
			err = fmt.Errorf("no private server of kind %q", kind)
		}
		if err != nil {
			t.Fatal(err)
		}
		private.servers[kind] = srv
	}
	t.Cleanup(func() {
		if err := srv.Resume(); err != nil && srv.Running() {
			t.Errorf("resume private %s: %v", kind, err)
		}
		if !srv.Running() {
			if err := srv.Start(); err != nil {
				t.Errorf("restart private %s for the next test: %v", kind, err)
			}
		}
	})
	return srv
}

func closePrivate() {
	private.Lock()
	defer private.Unlock()
	for _, srv := range private.servers {
		_ = srv.Close()
	}
	private.servers = nil
}
