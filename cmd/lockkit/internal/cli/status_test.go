package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
)

func TestStatusFile(t *testing.T) {
	url, dir := fileURL(t)
	holdFile(t, dir, "nightly")
	holdFile(t, dir, "a/b c") // an encoded file name, named by its record
	// A symbolic link in the directory is not a lock file, even when it
	// points at a held one.
	if err := os.Symlink(filepath.Join(dir, "nightly.lock"), filepath.Join(dir, "link.lock")); err != nil {
		t.Fatal(err)
	}
	// A lock file nobody holds is not listed.
	if r := runCLI(t, nil, "run", "-b", url, "idle", "--", "true"); r.code != 0 {
		t.Fatalf("run: %d %s", r.code, r.stderr)
	}

	r := runCLI(t, nil, "status", "-b", url)
	if r.code != 0 {
		t.Fatalf("status: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") || !strings.HasPrefix(lines[1], "a/b c ") || !strings.HasPrefix(lines[2], "nightly ") {
		t.Fatalf("status table:\n%s", r.stdout)
	}
	if pid := strconv.Itoa(os.Getpid()); !strings.Contains(lines[2], "(pid "+pid) {
		t.Errorf("holder pid %s not shown:\n%s", pid, r.stdout)
	}

	// Names in the order given, flags after them, the free one marked,
	// exit 1 because one is free.
	r = runCLI(t, nil, "status", "-b", url, "nightly", "idle", "--json")
	if r.code != 1 {
		t.Fatalf("status NAME FREE: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	var locks []heldLock
	if err := json.Unmarshal([]byte(r.stdout), &locks); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	if len(locks) != 2 || locks[0].Name != "nightly" || !locks[0].Held || locks[0].PID != os.Getpid() || locks[0].Since == nil ||
		locks[1].Name != "idle" || locks[1].Held {
		t.Fatalf("status --json: %+v", locks)
	}
	if r := runCLI(t, nil, "status", "-b", url, "nightly"); r.code != 0 || !strings.Contains(r.stdout, "nightly") {
		t.Errorf("status of a held name: exit %d\n%s", r.code, r.stdout)
	}
}

func TestStatusFileNoDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "never")
	r := runCLI(t, nil, "status", "-b", "file://"+dir)
	if r.code != 0 || r.stdout != "no locks held\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, nil, "status", "-b", "file://"+dir, "--json", "x")
	if r.code != 1 || !strings.Contains(r.stdout, `"held": false`) {
		t.Fatalf("exit %d, stdout %q", r.code, r.stdout)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("status created the lock directory: %v", err)
	}
}

func TestStatusAndMigrateUsage(t *testing.T) {
	url, _ := fileURL(t)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"status", "--frob"}, "unknown flag -frob"},
		{[]string{"status", "-b", url, "--table"}, "--table needs a postgres:// or mysql://"},
		{[]string{"status", "-b", url, ""}, "empty lock name"},
		{[]string{"migrate"}, "missing up, down or version"},
		{[]string{"migrate", "-b", "postgres://u@127.0.0.1:1/db", "sideways"}, `unknown migration "sideways"`},
		{[]string{"migrate", "-b", "postgres://u@127.0.0.1:1/db", "up", "down"}, "one of up, down or version"},
		{[]string{"migrate", "up"}, "migrate needs a postgres:// or mysql:// backend"},
		{[]string{"migrate", "-b", url, "up"}, "the lock table lives in PostgreSQL or MySQL"},
		{[]string{"migrate", "-b", "redis://127.0.0.1:1/0", "version"}, "the lock table lives in PostgreSQL or MySQL"},
	}
	for _, c := range cases {
		r := runCLI(t, nil, c.args...)
		if r.code != ExitUsage || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%q: exit %d, stderr:\n%s", c.args, r.code, r.stderr)
		}
	}
}

func TestHolderColumn(t *testing.T) {
	h := heldLock{Owner: "alice", Data: "edit", Host: "web-3", PID: 4121, App: "backup", Scheme: "golang-migrate"}
	if got := h.holder(); got != "alice [edit] on web-3 (pid 4121, backup, golang-migrate)" {
		t.Errorf("holder %q", got)
	}
	if got := (heldLock{App: "psql"}).holder(); got != "psql" {
		t.Errorf("holder %q", got)
	}
}

// TestHeldOf pins the status rows of each backend's LockInfo: the JSON
// keys and which of them each backend shows.
func TestHeldOf(t *testing.T) {
	since := time.Date(2026, 1, 2, 10, 2, 11, 0, time.UTC)
	expires := since.Add(30 * time.Second)
	all := lockkit.LockInfo{Name: "n", Held: true, Mode: lockkit.Shared, Key: "K", Tool: "golang-migrate", Holder: lockkit.Holder{
		Owner: "alice", Host: "web-3", PID: 42, App: "app", Since: since, Expires: expires, Token: 7, Data: "d",
	}}
	cases := []struct {
		kind  string
		table bool
		info  lockkit.LockInfo
		want  string
	}{
		{kindPostgres, false, all, `{"name":"n","held":true,"mode":"shared","key":"K","scheme":"golang-migrate","owner":"alice","host":"web-3","pid":42,"app":"app","data":"d","since":"2026-01-02T10:02:11Z","expires":"2026-01-02T10:02:41Z","token":7}`},
		{kindPostgres, true, all, `{"name":"n","held":true,"mode":"shared","scheme":"golang-migrate","owner":"alice","host":"web-3","pid":42,"app":"app","data":"d","since":"2026-01-02T10:02:11Z","expires":"2026-01-02T10:02:41Z","token":7}`},
		{kindRedis, false, all, `{"name":"n","held":true,"mode":"shared","scheme":"golang-migrate","owner":"alice","host":"web-3","pid":42,"app":"app","data":"d","since":"2026-01-02T10:02:11Z","expires":"2026-01-02T10:02:41Z","token":7}`},
		{kindFile, false, all, `{"name":"n","held":true,"scheme":"golang-migrate","owner":"alice","host":"web-3","pid":42,"app":"app","data":"d","since":"2026-01-02T10:02:11Z","expires":"2026-01-02T10:02:41Z","token":7,"file":"K"}`},
		{kindMySQL, false, lockkit.LockInfo{Name: "n", Held: true, Key: "test.n", Holder: lockkit.Holder{PID: 9, Owner: "root", Host: "localhost:5"}}, `{"name":"n","held":true,"mode":"exclusive","owner":"root","host":"localhost:5","pid":9}`},
		{kindPostgres, false, lockkit.LockInfo{Name: "free", Key: "K"}, `{"name":"free","held":false}`},
		{kindRedis, false, lockkit.LockInfo{Name: "free", Key: "K"}, `{"name":"free","held":false}`},
		{kindFile, false, lockkit.LockInfo{Name: "free", Key: "/d/free.lock"}, `{"name":"free","held":false,"file":"/d/free.lock"}`},
	}
	for _, c := range cases {
		b, err := json.Marshal(heldOf(c.info, c.kind, c.table))
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != c.want {
			t.Errorf("%s (table %v):\n got %s\nwant %s", c.kind, c.table, b, c.want)
		}
	}
}
