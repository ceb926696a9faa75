package reliability

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/filelock"
)

// hostileNames try to break out of a bound value: quotes, comments,
// statement separators, placeholders, LIKE wildcards, a Redis hash tag and
// the fence key's suffix, control characters. %[1]s is replaced by the name
// of a canary table that must survive them all.
var hostileNames = []string{
	`x'); DROP TABLE %[1]s; --`,
	`x"); DROP TABLE %[1]s; --`,
	"x`; DROP TABLE %[1]s; #",
	`'; SELECT pg_sleep(10); --`,
	`a\' OR '1'='1`,
	`%`,
	`_`,
	`a%c`,
	`/* c */ name`,
	`semi;colon;`,
	`back\slash\`,
	`$1 ? ?`,
	`{tag}:fence`,
	"tab\tnew\nline\r",
	"名前 ünïcødé 🔒",
}

// near returns names a broken escaping or a LIKE would confuse with name;
// none of them may be locked by name's lock.
func near(name string) []string {
	out := []string{name + "x", "x" + name}
	if len(name) > 1 {
		out = append(out, name[1:], name[:len(name)-1])
	}
	switch name {
	case "%":
		out = append(out, "a", "")
	case "_":
		out = append(out, "a")
	case "a%c":
		out = append(out, "abc", "ac")
	}
	var valid []string
	for _, n := range out {
		if n != "" && n != name {
			valid = append(valid, n)
		}
	}
	return valid
}

// TestHostileNamesAreBoundValues: lock names that try SQL injection, LIKE
// wildcards or key-syntax tricks lock exactly that name — the server shows
// it held by the lock's own session, lease or key — lock nothing else, and
// leave a canary table alone. (PostgreSQL advisory names never reach the
// server as text: they are hashed to a key. The check still shows the key
// is that name's.)
func TestHostileNamesAreBoundValues(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{kindPostgres, kindMySQL, kindRedis, kindRowPG, kindRowMySQL, kindFile} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			s := faultSpec(t, kind)
			b, other := openT(t, s), openT(t, s)
			canary := ""
			if b.db != nil {
				canary = "lkt_canary_" + strings.ToLower(rand.Text()[:8])
				if _, err := b.db.ExecContext(ctxT(t, 10*time.Second), "CREATE TABLE "+canary+" (k int)"); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					_, _ = openT(t, s).db.ExecContext(ctx, "DROP TABLE "+canary)
				})
			}
			for _, pattern := range hostileNames {
				n := pattern
				if strings.Contains(pattern, "%[1]s") {
					n = fmt.Sprintf(pattern, canary)
				}
				if kind == kindRedis {
					n = "lkt." + strings.ToLower(rand.Text()[:6]) + "." + n // the shared Redis: keep it ours
				}
				b.forget(t, n)
				l, err := b.locker.Acquire(ctxT(t, 10*time.Second), n)
				if err != nil {
					t.Errorf("Acquire(%q): %v", n, err)
					continue
				}
				if kind != kindFile {
					if own, err := b.ownedBy(ctxT(t, 5*time.Second), n, l); err != nil || !own {
						t.Errorf("the server does not show %q held by its lock (%v)", n, err)
					}
				} else if held, err := other.heldOnServer(ctxT(t, 5*time.Second), n); err != nil || !held {
					t.Errorf("%q is not held for another locker (%v)", n, err)
				}
				for _, nn := range near(n) {
					other.forget(t, nn)
					l2, err := other.locker.TryAcquire(ctxT(t, 5*time.Second), nn)
					if err != nil {
						if !errors.Is(err, lockkit.ErrInvalid) {
							t.Errorf("the lock of %q also locks %q: %v", n, nn, err)
						}
						continue
					}
					releaseOK(t, l2)
				}
				releaseOK(t, l)
				if kind != kindFile {
					b.eventuallyFree(t, n, 2*time.Second)
				}
			}
			if canary != "" {
				var cnt int
				if err := b.db.QueryRowContext(ctxT(t, 5*time.Second), "SELECT count(*) FROM "+canary).Scan(&cnt); err != nil {
					t.Errorf("the canary table did not survive the hostile names: %v", err)
				}
			}
		})
	}
}

// TestHostileBadInputBeforeIO: bad names get an error matching
// lockkit.ErrInvalid before any I/O: the backend's connections go through a
// proxy that counts them, and the count does not move.
func TestHostileBadInputBeforeIO(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{kindPostgres, kindMySQL, kindRedis, kindRowPG, kindRowMySQL} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			s, p := proxied(t, faultSpec(t, kind))
			b := openT(t, s)
			before := p.Accepted()
			for _, bad := range []string{"", strings.Repeat("n", 1<<20)} {
				for _, try := range []bool{false, true} {
					var err error
					var l lockkit.Lock
					if try {
						l, err = b.locker.TryAcquire(ctxT(t, 5*time.Second), bad)
					} else {
						l, err = b.locker.Acquire(ctxT(t, 5*time.Second), bad)
					}
					if err == nil {
						_ = l.Release(ctxT(t, 5*time.Second))
					}
					if !errors.Is(err, lockkit.ErrInvalid) {
						t.Errorf("name of %d bytes: err = %v, want ErrInvalid", len(bad), err)
					}
				}
			}
			if n := p.Accepted() - before; n != 0 {
				t.Errorf("bad input opened %d connections: validation must come before any I/O", n)
			}
		})
	}
}

// TestPitfall21_NamesAreNotPaths: whatever the name, a file lock creates
// its file inside the lock directory and nowhere else; a symbolic link
// planted at a lock path (to a file outside, or dangling) is refused with
// ErrUnsafe, and its target is neither created, opened for writing nor
// changed.
func TestPitfall21_NamesAreNotPaths(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	dir := filepath.Join(root, "locks")
	s := spec{Kind: kindFile, Dir: dir}
	b := openT(t, s)
	outside := filepath.Join(root, "outside.txt")
	if err := os.WriteFile(outside, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	names := []string{"../x", "../../etc/passwd", "/etc/passwd", "a/../../b", ".", "..", "...", ".hidden",
		"a/b/c", `a\b`, "nul\x00byte", "~", "x~" + strings.Repeat("0", 32), strings.Repeat("../", 300) + "deep",
		"outside.txt", "../outside.txt", "locks/../outside.txt"}
	for _, n := range names {
		l, err := b.locker.Acquire(ctxT(t, 5*time.Second), n)
		if err != nil {
			if !errors.Is(err, lockkit.ErrInvalid) {
				t.Errorf("Acquire(%q): %v", n, err)
			}
			continue
		}
		releaseOK(t, l)
	}
	// Every file below root is the outside file, or a lock file directly
	// in the lock directory named by FileName.
	want := map[string]bool{outside: true, dir: true}
	for _, n := range names {
		if f, err := filelock.FileName(n); err == nil {
			want[filepath.Join(dir, f)] = true
		}
	}
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if path != root && !want[path] {
			t.Errorf("a lock created %s, outside its place", path)
		}
		return nil
	})
	if b, _ := os.ReadFile(outside); string(b) != "precious" {
		t.Errorf("the file outside the lock directory changed: %q", b)
	}

	// Planted symlinks: to a file outside, and dangling.
	for _, target := range []string{outside, filepath.Join(root, "created-through-link")} {
		n := "planted" + strings.ToLower(rand.Text()[:6])
		f, err := filelock.FileName(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
		l, err := b.locker.Acquire(ctxT(t, 5*time.Second), n)
		if err == nil {
			_ = l.Release(ctxT(t, 5*time.Second))
			t.Errorf("Acquire through a symlink to %s succeeded", target)
		} else if !errors.Is(err, filelock.ErrUnsafe) {
			t.Errorf("Acquire through a symlink to %s = %v, want ErrUnsafe", target, err)
		}
	}
	if b, _ := os.ReadFile(outside); string(b) != "precious" {
		t.Errorf("the symlink's target changed: %q", b)
	}
	if _, err := os.Lstat(filepath.Join(root, "created-through-link")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a dangling symlink's target was created: %v", err)
	}
}

// secretCases are lockkit invocations with a password in the backend URL
// (or the environment). Each runs against an unreachable port, a server
// that refuses the password, or a server that ignores it (trust), so that
// the failure paths, the driver errors and the success path are all
// covered.
func secretCases(t *testing.T) []struct {
	args   []string
	env    []string
	secret string
} {
	pgAddr, myAddr, rdAddr := hostPort(t, kindPostgres), hostPort(t, kindMySQL), hostPort(t, kindRedis)
	return []struct {
		args   []string
		env    []string
		secret string
	}{
		{args: []string{"status", "-b", "postgres://u:S3CRETpg1@127.0.0.1:1/db"}, secret: "S3CRETpg1"},
		{args: []string{"status", "-b", "postgres://u@127.0.0.1:1/db?password=S3CRETpg2"}, secret: "S3CRETpg2"},
		{args: []string{"status", "-b", "postgres://u:p%40ss%2FS3CRETpg3@127.0.0.1:1/db"}, secret: "S3CRETpg3"},
		{args: []string{"status", "-b", "postgres://u:S3CRETpg4@127.0.0.1:notaport/db"}, secret: "S3CRETpg4"},
		{args: []string{"status", "-b", "postgres://postgres:S3CRETpg5@" + pgAddr + "/test"}, secret: "S3CRETpg5"},
		{args: []string{"status", "--table", "-b", "postgres://postgres:S3CRETpg6@" + pgAddr + "/test"}, secret: "S3CRETpg6"},
		{args: []string{"run", "-b", "postgres://u:S3CRETpg7@127.0.0.1:1/db", "n", "--", "true"}, secret: "S3CRETpg7"},
		{args: []string{"migrate", "-b", "postgres://u:S3CRETpg8@127.0.0.1:1/db", "version"}, secret: "S3CRETpg8"},
		{args: []string{"status", "-b", "mysql://u:S3CRETmy1@127.0.0.1:1/db"}, secret: "S3CRETmy1"},
		{args: []string{"status", "-b", "mysql://root:S3CRETmy2@" + myAddr + "/test"}, secret: "S3CRETmy2"},
		{args: []string{"run", "-b", "mysql://root:S3CRETmy3@" + myAddr + "/test", "n", "--", "true"}, secret: "S3CRETmy3"},
		{args: []string{"status", "-b", "redis://:S3CRETrd1@127.0.0.1:1/0"}, secret: "S3CRETrd1"},
		{args: []string{"status", "-b", "redis://user:S3CRETrd2@127.0.0.1:1/0"}, secret: "S3CRETrd2"},
		{args: []string{"status", "-b", "redis://:S3CRETrd3@" + rdAddr + "/0"}, secret: "S3CRETrd3"},
		{args: []string{"status"}, env: []string{"LOCKKIT_BACKEND=postgres://u:S3CRETenv@127.0.0.1:1/db"}, secret: "S3CRETenv"},
		// Without "//" a URL is opaque to net/url: no user, no password.
		{args: []string{"status", "-b", "mysql:alice:S3CRETop1@db.internal/app"}, secret: "S3CRETop1"},
		{args: []string{"run", "-b", "postgres:alice:S3CRETop2@127.0.0.1:1/db", "n", "--", "true"}, secret: "S3CRETop2"},
		{args: []string{"status", "-b", "redis::S3CRETop3@127.0.0.1:1/0"}, secret: "S3CRETop3"},
	}
}

// hostPort returns the shared server's host:port for kind.
func hostPort(t *testing.T, kind string) string {
	t.Helper()
	s := envSpec(t, kind)
	if kind == kindMySQL {
		cfg, err := mysql.ParseDSN(s.DSN)
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Addr
	}
	u, err := url.Parse(s.DSN)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// TestHostilePasswordsNeverPrinted runs the lockkit binary with passwords in backend URLs, and checks that no
// output, error or status line carries them.
func TestHostilePasswordsNeverPrinted(t *testing.T) {
	t.Parallel()
	cases := secretCases(t)
	bin := filepath.Join(t.TempDir(), "lockkit")
	// The command is a module of its own: built from its directory, it
	// builds with or without the repository's go.work (its go.mod replaces
	// lockkit and etcdlock with this checkout's).
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join("..", "cmd", "lockkit")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/lockkit: %v\n%s", err, out)
	}
	for _, c := range cases {
		cmd := exec.Command(bin, c.args...)
		cmd.Env = append(os.Environ(), c.env...)
		out, _ := cmd.CombinedOutput()
		if bytes.Contains(out, []byte(c.secret)) {
			t.Errorf("the lockkit binary, %q, printed its password:\n%s", c.args, out)
		}
		if len(out) == 0 {
			t.Errorf("lockkit %q printed nothing: the check would be empty", c.args)
		}
	}
}

// TestHostilePasswordsNotInLibraryErrors: the libraries take clients, not
// URLs, but they wrap the drivers' errors; with a password the server
// refuses (or an unreachable server), no error a caller sees quotes it.
func TestHostilePasswordsNotInLibraryErrors(t *testing.T) {
	t.Parallel()
	const secret = "S3CRETlib"
	myAddr, rdAddr := hostPort(t, kindMySQL), hostPort(t, kindRedis)
	for _, s := range []spec{
		{Kind: kindPostgres, DSN: "postgres://u:" + secret + "@127.0.0.1:1/db?connect_timeout=2"},
		{Kind: kindMySQL, DSN: "root:" + secret + "@tcp(" + myAddr + ")/test"},
		{Kind: kindRedis, DSN: "redis://lkt-no-such-user:" + secret + "@" + rdAddr + "/0", Prefix: "lockkit-rel:"},
		{Kind: kindRowPG, DSN: "postgres://u:" + secret + "@127.0.0.1:1/db?connect_timeout=2"},
	} {
		b, err := s.open()
		if err != nil {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s: open error quotes the password: %v", s.Kind, err)
			}
			continue
		}
		l, err := b.locker.Acquire(ctxT(t, 5*time.Second), name(t))
		if err == nil {
			_ = l.Release(ctxT(t, 5*time.Second))
			b.Close()
			t.Errorf("%s: Acquire with a refused password succeeded", s.Kind)
			continue
		}
		b.Close()
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: Acquire error quotes the password: %v", s.Kind, err)
		}
	}
}
