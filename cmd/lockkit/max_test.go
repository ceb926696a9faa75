package main

// End-to-end tests of lockkit run --max: at most N runs of a name at once.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/lockkit/lockkit/filelock"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/keyhash"
	"github.com/lockkit/lockkit/semaphore"
)

// maxConcurrency starts 3×n runs of one name with --max n at once. Each
// command notes its start and end, with its LOCKKIT_SLOT, in a log (one
// O_APPEND write each, so the log has the order in which they happened);
// the first commands also wait, up to 5s, until n of them have started, so
// that the permits are seen to be used in full. In the log, never more
// than n commands run at once, nor two on one slot, and n do at some
// point.
func maxConcurrency(t *testing.T, bc backendCase, n int) {
	name := integration.Name(t)
	log := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(log, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`echo "start $$ $LOCKKIT_SLOT ${LOCKKIT_TOKEN-0}" >> %[1]s
i=0; until [ "$(grep -c '^start' %[1]s)" -ge %[2]d ] || [ $i -ge 100 ]; do sleep 0.05; i=$((i+1)); done
sleep 0.2
echo "end $$ $LOCKKIT_SLOT" >> %[1]s`, log, n)
	bc.max = n
	procs := make([]*proc, 3*n)
	for i := range procs {
		procs[i] = start(t, bc.env, false, bc.run("-w", "60s", name, "--", "sh", "-c", script)...)
	}
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code := p.wait(); code != 0 {
				t.Errorf("run %d: exit %d; stderr:\n%s", i, code, p.stderr())
			}
		}()
	}
	wg.Wait()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	var (
		running   = map[string]string{} // pid → slot
		slots     = map[string]string{} // slot → pid
		lastToken = map[string]int64{}  // slot → token
		most      int
		starts    int
	)
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 4 && f[0] == "start":
			pid, slot := f[1], f[2]
			if s, err := strconv.Atoi(slot); err != nil || s < 0 || s >= n {
				t.Errorf("LOCKKIT_SLOT %q, want 0 to %d", slot, n-1)
			}
			if other, ok := slots[slot]; ok {
				t.Errorf("slot %s: command %s started while %s ran", slot, pid, other)
			}
			tok, _ := strconv.ParseInt(f[3], 10, 64)
			if tok != 0 && tok <= lastToken[slot] {
				t.Errorf("slot %s: LOCKKIT_TOKEN %d after %d", slot, tok, lastToken[slot])
			}
			lastToken[slot] = tok
			running[pid], slots[slot] = slot, pid
			starts++
			most = max(most, len(running))
			if len(running) > n {
				t.Errorf("%d commands ran at once with --max %d", len(running), n)
			}
		case len(f) == 3 && f[0] == "end":
			delete(running, f[1])
			delete(slots, f[2])
		default:
			t.Errorf("log line %q", line)
		}
	}
	if starts != 3*n || len(running) != 0 {
		t.Errorf("%d commands started, %d did not end; want %d and 0; log:\n%s", starts, len(running), 3*n, b)
	}
	if most != n {
		t.Errorf("at most %d commands ran at once, want %d (--max %d); log:\n%s", most, n, n, b)
	}
}

func TestFileMaxConcurrency(t *testing.T)     { t.Parallel(); maxConcurrency(t, fileCase(t), 2) }
func TestPostgresMaxConcurrency(t *testing.T) { t.Parallel(); maxConcurrency(t, pgCase(t), 2) }
func TestMySQLMaxConcurrency(t *testing.T)    { t.Parallel(); maxConcurrency(t, mysqlCase(t), 2) }
func TestRedisMaxConcurrency(t *testing.T)    { t.Parallel(); maxConcurrency(t, redisCase(t), 3) }
func TestEtcdMaxConcurrency(t *testing.T)     { t.Parallel(); maxConcurrency(t, etcdCase(t), 2) }
func TestPostgresTableMaxConcurrency(t *testing.T) {
	t.Parallel()
	maxConcurrency(t, withTable(pgTableCase(t)), 2)
}

func TestMySQLTableMaxConcurrency(t *testing.T) {
	t.Parallel()
	maxConcurrency(t, withTable(mysqlTableCase(t)), 2)
}

// withMax makes every lockkit run of bc use --max n.
func withMax(bc backendCase, n int) backendCase {
	bc.max = n
	return bc
}

// The exit statuses and signal handling of run hold with --max: a
// semaphore of one permit behaves as a lock.
func TestFileMaxExitCodes(t *testing.T) { t.Parallel(); exitCodes(t, withMax(fileCase(t), 1)) }
func TestFileMaxSignalForwarding(t *testing.T) {
	t.Parallel()
	signalForwarding(t, withMax(fileCase(t), 1))
}
func TestPostgresMaxExitCodes(t *testing.T) { t.Parallel(); exitCodes(t, withMax(pgCase(t), 1)) }
func TestPostgresMaxSignalForwarding(t *testing.T) {
	t.Parallel()
	signalForwarding(t, withMax(pgCase(t), 1))
}
func TestRedisMaxExitCodes(t *testing.T) { t.Parallel(); exitCodes(t, withMax(redisCase(t), 1)) }

func TestMaxUsage(t *testing.T) {
	t.Parallel()
	bc := fileCase(t)
	for _, args := range [][]string{
		{"--max", "0"}, {"--max", "-1"}, {"--max", "x"}, {"--max", "1001"}, {"--max", "2", "--shared"},
	} {
		code, out, errOut := lockkit(t, bc.env, append(append([]string{"run", "-b", bc.url}, args...), "x", "--", "echo", "ran")...)
		wantExit(t, strings.Join(args, " "), code, 64, errOut)
		if out != "" || !strings.Contains(errOut, "max") {
			t.Errorf("%v: stdout %q, stderr %q", args, out, errOut)
		}
	}
}

// maxAllHeld: with every permit held, --no-wait exits 75 and says so with
// -v; a held permit's run and a plain run of the same name do not exclude
// each other.
func TestFileMaxAllHeld(t *testing.T) {
	t.Parallel()
	bc := withMax(fileCase(t), 2)
	name := integration.Name(t)
	for range 2 {
		p := start(t, bc.env, true, bc.run(name, "--", "sh", "-c", "echo ready; exec sleep 1000")...)
		p.waitLine("ready")
	}
	code, out, errOut := lockkit(t, bc.env, bc.run("-n", "-v", name, "--", "echo", "ran")...)
	wantExit(t, "--no-wait with every permit held", code, 75, errOut)
	if out != "" || !strings.Contains(errOut, fmt.Sprintf("all 2 permits of %q are held (one by ", name)) {
		t.Errorf("stdout %q, stderr %q", out, errOut)
	}
	code, out, errOut = lockkit(t, bc.env, "run", "-b", bc.url, "-n", name, "--", "echo", "ran")
	wantExit(t, "a run without --max", code, 0, errOut)
	if out != "ran\n" {
		t.Errorf("stdout %q", out)
	}
}

// maxOneBesidePlain: --max 1 is a semaphore of one permit (the lock
// NAME#0), not the lock NAME, so a run with --max 1 and a plain run of the
// same name do not exclude each other, in either order, as lockkit run
// --help and the README say; each still excludes a second run of its own
// form.
func maxOneBesidePlain(t *testing.T, bc backendCase) {
	name := integration.Name(t)
	plain, one := bc, withMax(bc, 1)
	for _, c := range []struct {
		holder, other backendCase
		what          string
	}{{plain, one, "--max 1 beside a plain run"}, {one, plain, "a plain run beside --max 1"}} {
		h := start(t, bc.env, true, c.holder.run(name, "--", "sh", "-c", "echo ready; exec sleep 1000")...)
		h.waitLine("ready")
		code, out, errOut := lockkit(t, bc.env, c.other.run("-n", name, "--", "echo", "ran")...)
		wantExit(t, c.what, code, 0, errOut)
		if out != "ran\n" {
			t.Errorf("%s: stdout %q", c.what, out)
		}
		code, _, errOut = lockkit(t, bc.env, c.holder.run("-n", name, "--", "echo", "ran")...)
		wantExit(t, c.what+": a second run of the holder's form", code, 75, errOut)
		_ = h.cmd.Process.Signal(syscall.SIGTERM) // forwarded to sleep: the holder exits
		if code := h.wait(); code != 128+int(syscall.SIGTERM) {
			t.Errorf("%s: the holder exited %d after SIGTERM; stderr:\n%s", c.what, code, h.stderr())
		}
	}
}

func TestFileMaxOneBesidePlain(t *testing.T)     { t.Parallel(); maxOneBesidePlain(t, fileCase(t)) }
func TestPostgresMaxOneBesidePlain(t *testing.T) { t.Parallel(); maxOneBesidePlain(t, pgCase(t)) }

// maxMismatch runs a holder with --max 2, then runs with --max 3 and
// --max 1: where the backend records holder data they are refused with
// exit 64 naming both numbers; elsewhere they run.
func maxMismatch(t *testing.T, bc backendCase, detected bool) {
	name := integration.Name(t)
	holder := start(t, bc.env, true, withMax(bc, 2).run(name, "--", "sh", "-c", "echo ready; exec sleep 1000")...)
	holder.waitLine("ready")
	for _, n := range []int{3, 1} {
		code, out, errOut := lockkit(t, bc.env, withMax(bc, n).run("-n", name, "--", "echo", "ran")...)
		if !detected {
			// --max 1 may meet the holder on its one slot.
			if code != 0 && code != 75 {
				t.Errorf("--max %d beside a holder of --max 2: exit %d; stderr:\n%s", n, code, errOut)
			}
			continue
		}
		wantExit(t, fmt.Sprintf("--max %d beside a holder of --max 2", n), code, 64, errOut)
		want := fmt.Sprintf("--max %d: %q is run with --max 2 elsewhere", n, name)
		if out != "" || !strings.Contains(errOut, want) {
			t.Errorf("--max %d: stdout %q, stderr %q; want %q", n, out, errOut, want)
		}
	}
	code, out, errOut := lockkit(t, bc.env, withMax(bc, 2).run("-n", name, "--", "echo", "ran")...)
	wantExit(t, "--max 2 beside a holder of --max 2", code, 0, errOut)
	if out != "ran\n" {
		t.Errorf("stdout %q", out)
	}
}

func TestFileMaxMismatch(t *testing.T)  { t.Parallel(); maxMismatch(t, fileCase(t), true) }
func TestRedisMaxMismatch(t *testing.T) { t.Parallel(); maxMismatch(t, redisCase(t), true) }
func TestPostgresTableMaxMismatch(t *testing.T) {
	t.Parallel()
	maxMismatch(t, withTable(pgTableCase(t)), true)
}
func TestPostgresMaxMismatchUndetected(t *testing.T) { t.Parallel(); maxMismatch(t, pgCase(t), false) }
func TestEtcdMaxMismatchUndetected(t *testing.T)     { t.Parallel(); maxMismatch(t, etcdCase(t), false) }

// maxLost takes a permit's lock away from outside while its command runs:
// lockkit stops the command and exits 70 naming the slot.
func maxLost(t *testing.T, bc backendCase, kill func(t *testing.T, slotName string)) {
	name := integration.Name(t)
	bc = withMax(bc, 2)
	p := start(t, bc.env, true, bc.run("--kill-grace", "2s", name, "--", "sh", "-c", `echo "$LOCKKIT_SLOT"; exec sleep 1000`)...)
	line, err := p.stdout.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the slot: %v; stderr:\n%s", err, p.stderr())
	}
	slot, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("LOCKKIT_SLOT %q", line)
	}
	kill(t, semaphore.SlotName(name, slot))
	wantExit(t, "lost permit", p.wait(), 70, p.stderr())
	want := fmt.Sprintf("lost lock %q slot %d of --max 2 on %s", name, slot, redacted(bc.url))
	if msg := p.stderr(); !strings.Contains(msg, want) {
		t.Errorf("stderr does not say %q:\n%s", want, msg)
	}
}

func TestFileMaxLost(t *testing.T) {
	t.Parallel()
	bc := fileCase(t)
	dir := strings.TrimPrefix(bc.url, "file://")
	maxLost(t, bc, func(t *testing.T, slotName string) {
		f, err := filelock.FileName(slotName)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	})
}

func TestPostgresMaxLost(t *testing.T) {
	t.Parallel()
	db := integration.Postgres(t)
	maxLost(t, pgCase(t), func(t *testing.T, slotName string) {
		k := keyhash.Name(slotName).Int64()
		var pid int
		err := db.QueryRow(`SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
			AND objsubid = 1 AND classid::bigint = $1 AND objid::bigint = $2`,
			int64(uint32(k>>32)), int64(uint32(k))).Scan(&pid)
		if err != nil {
			t.Fatalf("finding the holder's session: %v", err)
		}
		var ok bool
		if err := db.QueryRow("SELECT pg_terminate_backend($1)", pid).Scan(&ok); err != nil || !ok {
			t.Fatalf("pg_terminate_backend(%d): %v %v", pid, ok, err)
		}
	})
}

// TestStatusMax: lockkit status --max lists the holders of a semaphore's
// permits and how many are free, on every backend.
func TestStatusMax(t *testing.T) {
	t.Parallel()
	cases := []backendCase{fileCase(t), pgCase(t), mysqlCase(t), redisCase(t), withTable(pgTableCase(t)), etcdCase(t)}
	for _, bc := range cases {
		t.Run(bc.name, func(t *testing.T) {
			t.Parallel()
			name, free := integration.Name(t), integration.Name(t)
			sargs := []string{"status", "-b", bc.url, "--max", "3"}
			if bc.table {
				sargs = append(sargs, "--table")
			}
			for range 2 {
				p := start(t, bc.env, true, withMax(bc, 3).run(name, "--", "sh", "-c", "echo ready; exec sleep 1000")...)
				p.waitLine("ready")
			}
			code, out, errOut := lockkit(t, bc.env, append(sargs, "--json", name, free)...)
			wantExit(t, "status --max NAME FREE", code, 1, errOut)
			var st []struct {
				Name    string           `json:"name"`
				Permits int              `json:"permits"`
				Free    int              `json:"free"`
				Holders []map[string]any `json:"holders"`
			}
			if err := json.Unmarshal([]byte(out), &st); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if len(st) != 2 || st[0].Name != name || st[0].Permits != 3 || st[0].Free != 1 || len(st[0].Holders) != 2 ||
				st[1].Name != free || st[1].Free != 3 || len(st[1].Holders) != 0 {
				t.Fatalf("status --max --json:\n%s", out)
			}
			for _, h := range st[0].Holders {
				n, _ := h["name"].(string)
				if base, _, ok := semaphore.ParseSlotName(n); !ok || base != name || h["held"] != true {
					t.Errorf("holder %v", h)
				}
				// The lock table keeps the owner after "n=3".
				if d, _ := h["data"].(string); (bc.name == "file" || bc.name == "redis" || bc.table) && !strings.HasPrefix(d, "n=3") {
					t.Errorf("holder data %q, want n=3", d)
				}
			}
			code, out, errOut = lockkit(t, bc.env, append(sargs, name)...)
			wantExit(t, "status --max NAME", code, 0, errOut)
			if !strings.HasPrefix(out, "NAME") || !strings.Contains(out, name+": 2 of 3 permits held, 1 free\n") {
				t.Errorf("status --max table:\n%s", out)
			}
			// Without names, the listing names the slots (on PostgreSQL
			// by the session's application_name); MySQL may not list.
			if bc.name != "mysql" {
				all := []string{"-b", bc.url}
				if bc.table {
					all = append(all, "--table")
				}
				_, locks := statusOf(t, bc.env, all...)
				slots := 0
				for _, l := range locks {
					if n, _ := l["name"].(string); strings.HasPrefix(n, name+"#") {
						slots++
					}
				}
				if slots != 2 {
					t.Errorf("status without names lists %d slots of %q, want 2: %v", slots, name, locks)
				}
			}
		})
	}
	bc := fileCase(t)
	for _, args := range [][]string{{"--max", "2"}, {"--max", "0", "x"}} {
		code, _, errOut := lockkit(t, bc.env, append([]string{"status", "-b", bc.url}, args...)...)
		wantExit(t, "status "+strings.Join(args, " "), code, 64, errOut)
	}
}
