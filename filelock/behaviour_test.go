//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package filelock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"golang.org/x/sys/unix"
)

func mustTry(t *testing.T, l *Locker, name string, mode Mode) *Lock {
	t.Helper()
	lk, err := l.TryLock(ctxT(t, 5*time.Second), name, &Options{Mode: mode})
	if err != nil {
		t.Fatalf("TryLock(%q, %v) = %v", name, mode, err)
	}
	return lk
}

func mustRelease(t *testing.T, lk lockkit.Lock) {
	t.Helper()
	if err := lk.Release(ctxT(t, 5*time.Second)); err != nil {
		t.Fatalf("Release(%q) = %v", lk.Name(), err)
	}
}

func wantHeld(t *testing.T, l *Locker, name string, mode Mode) {
	t.Helper()
	lk, err := l.TryLock(ctxT(t, 5*time.Second), name, &Options{Mode: mode})
	if err == nil {
		_ = lk.Release(context.Background())
		t.Fatalf("TryLock(%q, %v) succeeded, want it held elsewhere", name, mode)
	}
	if !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Fatalf("TryLock(%q, %v) = %v, want ErrNotAcquired", name, mode, err)
	}
}

func TestNameMapping(t *testing.T) {
	long := strings.Repeat("x", MaxPlainLen+1)
	for _, tc := range []struct {
		name, file string // file "" means: encoded, check the shape only
		prefix     string // readable prefix of an encoded name
	}{
		{name: "nightly-backup", file: "nightly-backup.lock"},
		{name: "db.migrate_v2", file: "db.migrate_v2.lock"},
		{name: "a..b", file: "a..b.lock"},
		{name: strings.Repeat("y", MaxPlainLen), file: strings.Repeat("y", MaxPlainLen) + ".lock"},
		{name: "../x", prefix: "_x"},
		{name: "..", prefix: ""},
		{name: ".", prefix: ""},
		{name: ".hidden", prefix: "hidden"},
		{name: "a/b", prefix: "a_b"},
		{name: "/etc/passwd", prefix: "_etc_passwd"},
		{name: "nul\x00byte", prefix: "nul_byte"},
		{name: "with space", prefix: "with_space"},
		{name: "tilde~x", prefix: "tilde_x"},
		{name: "ünïcödé", prefix: "__n__c__d__"}, // one _ per byte
		{name: long, prefix: strings.Repeat("x", encodedPrefixLen)},
		{name: strings.Repeat("z", MaxNameLen), prefix: strings.Repeat("z", encodedPrefixLen)},
	} {
		got, err := FileName(tc.name)
		if err != nil {
			t.Errorf("FileName(%q) = %v", tc.name, err)
			continue
		}
		if tc.file != "" {
			if got != tc.file {
				t.Errorf("FileName(%q) = %q, want %q", tc.name, got, tc.file)
			}
			continue
		}
		want := tc.prefix + "~"
		if !strings.HasPrefix(got, want) || len(got) != len(want)+hashHexLen+len(Suffix) || !strings.HasSuffix(got, Suffix) {
			t.Errorf("FileName(%q) = %q, want %q + %d hex digits + %q", tc.name, got, want, hashHexLen, Suffix)
		}
		checkFileName(t, tc.name, got)
	}
	// Names that differ only in bytes the prefix replaces stay apart.
	a, _ := FileName("a/b")
	b, _ := FileName("a_b~")
	c, _ := FileName("a b")
	if a == b || a == c || b == c {
		t.Errorf("collision among %q %q %q", a, b, c)
	}
	for _, bad := range []string{"", strings.Repeat("z", MaxNameLen+1)} {
		if _, err := FileName(bad); !errors.Is(err, lockkit.ErrInvalid) {
			t.Errorf("FileName(%d bytes) = %v, want ErrInvalid", len(bad), err)
		}
	}
}

// checkFileName checks what must hold for every name's file.
func checkFileName(t testing.TB, name, file string) {
	t.Helper()
	switch {
	case file == "" || file == "." || file == ".." || strings.HasPrefix(file, "."):
		t.Errorf("FileName(%q) = %q: empty or hidden", name, file)
	case strings.ContainsAny(file, "/\x00"):
		t.Errorf("FileName(%q) = %q contains '/' or NUL", name, file)
	case len(file) > 255:
		t.Errorf("FileName(%q) is %d bytes, longer than NAME_MAX", name, len(file))
	case !strings.HasSuffix(file, Suffix):
		t.Errorf("FileName(%q) = %q lacks %q", name, file, Suffix)
	case filepath.Base(file) != file || filepath.Clean(file) != file:
		t.Errorf("FileName(%q) = %q is not a single clean path element", name, file)
	}
	for i := 0; i < len(file); i++ {
		if !plainByte(file[i]) && file[i] != '~' {
			t.Errorf("FileName(%q) = %q has byte %q outside [A-Za-z0-9._~-]", name, file, file[i])
			break
		}
	}
}

func FuzzFileName(f *testing.F) {
	for _, s := range []string{"a", "../x", "a/b", "a\x00b", ".", "..", "ünï", "a~b", strings.Repeat("q", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		file, err := FileName(name)
		if name == "" || len(name) > MaxNameLen {
			if !errors.Is(err, lockkit.ErrInvalid) {
				t.Fatalf("FileName(%q) = %v, want ErrInvalid", name, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("FileName(%q) = %v", name, err)
		}
		checkFileName(t, name, file)
		if isPlain(name) != (file == name+Suffix) {
			t.Errorf("FileName(%q) = %q: plain names map to NAME.lock, others are encoded", name, file)
		}
		if again, _ := FileName(name); again != file {
			t.Errorf("FileName(%q) not deterministic: %q then %q", name, file, again)
		}
	})
}

// TestHostileNamesStayInside locks hostile names and checks every file
// created is directly inside the lock directory, and nothing outside.
func TestHostileNamesStayInside(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "locks")
	l := newLocker(t, dir, nil)
	names := []string{"../x", "../../etc/evil", "a/b", "/abs", "nul\x00byte", "ünïcödé", "sp ace", ".", "..", ".hidden", strings.Repeat("L", 5000)[:MaxNameLen]}
	for _, n := range names {
		lk := mustTry(t, l, n, Exclusive)
		if filepath.Dir(lk.Path()) != dir {
			t.Errorf("lock %q at %s, outside %s", n, lk.Path(), dir)
		}
		mustRelease(t, lk)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "locks" {
		t.Errorf("files appeared next to the lock directory: %v", entries)
	}
	files, _ := os.ReadDir(dir)
	if len(files) != len(names) {
		t.Errorf("%d files in the lock directory for %d distinct names", len(files), len(names))
	}
	for _, bad := range []string{"", strings.Repeat("z", MaxNameLen+1)} {
		for what, fn := range map[string]func(context.Context, string) (lockkit.Lock, error){"Acquire": l.Acquire, "TryAcquire": l.TryAcquire} {
			if _, err := fn(ctxT(t, time.Second), bad); !errors.Is(err, lockkit.ErrInvalid) {
				t.Errorf("%s(%d-byte name) = %v, want ErrInvalid", what, len(bad), err)
			}
		}
	}
	if _, err := l.TryLock(ctxT(t, time.Second), "m", &Options{Mode: Mode(7)}); !errors.Is(err, lockkit.ErrInvalid) {
		t.Errorf("TryLock(Mode(7)) = %v, want ErrInvalid", err)
	}
}

func TestSymlinkRefused(t *testing.T) {
	dir := t.TempDir()
	l := newLocker(t, dir, nil)
	target := filepath.Join(t.TempDir(), "precious")
	if err := os.WriteFile(target, []byte("keep me\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(target)
	if err := os.Symlink(target, filepath.Join(dir, "planted.lock")); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(t.TempDir(), "not-there")
	if err := os.Symlink(dangling, filepath.Join(dir, "dangling.lock")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"planted", "dangling"} {
		lk, err := l.TryAcquire(ctxT(t, time.Second), name)
		if err == nil {
			_ = lk.Release(context.Background())
			t.Errorf("TryAcquire(%q) through a planted symlink succeeded", name)
		} else if !errors.Is(err, ErrUnsafe) {
			t.Errorf("TryAcquire(%q) = %v, want ErrUnsafe", name, err)
		}
		if _, err := l.Acquire(ctxT(t, time.Second), name); !errors.Is(err, ErrUnsafe) {
			t.Errorf("Acquire(%q) = %v, want ErrUnsafe", name, err)
		}
		if _, err := l.Inspect(ctxT(t, time.Second), name); !errors.Is(err, ErrUnsafe) {
			t.Errorf("Inspect(%q) = %v, want ErrUnsafe", name, err)
		}
	}
	b, _ := os.ReadFile(target)
	after, _ := os.Stat(target)
	if string(b) != "keep me\n" || after.Mode() != before.Mode() || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("symlink target changed: %q %v %v", b, after.Mode(), after.ModTime())
	}
	if _, err := os.Lstat(dangling); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a dangling symlink's target was created: %v", err)
	}
	// A fd leak on the refusal path would keep the target open.
	fd, err := unix.Open(target, unix.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Errorf("symlink target left locked: %v", err)
	}
}

func TestNonRegularAndHardLinkRefused(t *testing.T) {
	dir := t.TempDir()
	l := newLocker(t, dir, nil)
	if err := unix.Mkfifo(filepath.Join(dir, "fifo.lock"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.lock"), 0o755); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other")
	if err := os.WriteFile(other, []byte("secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(other, filepath.Join(dir, "linked.lock")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"fifo", "sub", "linked"} {
		done := make(chan error, 1)
		go func() { _, err := l.TryAcquire(context.Background(), name); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, ErrUnsafe) {
				t.Errorf("TryAcquire(%q) = %v, want ErrUnsafe", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("TryAcquire(%q) hangs", name)
		}
	}
	if b, _ := os.ReadFile(other); string(b) != "secret\n" {
		t.Errorf("hard-linked file was written: %q", b)
	}
}

func TestPermissions(t *testing.T) {
	umask := unix.Umask(0)
	unix.Umask(umask)
	perm := func(p string) os.FileMode {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode().Perm()
	}
	dir := filepath.Join(t.TempDir(), "a", "b")
	l := newLocker(t, dir, nil)
	if got, want := perm(dir), DefaultDirMode&^os.FileMode(umask); got != want {
		t.Errorf("created directory mode %v, want %v", got, want)
	}
	lk := mustTry(t, l, "p", Exclusive)
	mustRelease(t, lk)
	if got, want := perm(lk.Path()), DefaultFileMode&^os.FileMode(umask); got != want {
		t.Errorf("lock file mode %v, want %v", got, want)
	}

	l2 := newLocker(t, t.TempDir(), &Config{FileMode: 0o640})
	lk = mustTry(t, l2, "q", Exclusive)
	mustRelease(t, lk)
	if got, want := perm(lk.Path()), os.FileMode(0o640)&^os.FileMode(umask); got != want {
		t.Errorf("lock file mode %v with FileMode 0640, want %v", got, want)
	}

	// World-writable without the sticky bit: anyone could swap files.
	open := t.TempDir()
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := New(open, nil); !errors.Is(err, ErrUnsafe) {
		t.Errorf("New on a 0777 directory = %v, want ErrUnsafe", err)
	}
	if err := os.Chmod(open, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	newLocker(t, open, nil) // like /tmp: fine
}

func TestBadConfig(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "never")
	for _, tc := range []struct {
		dir string
		cfg *Config
	}{
		{"", nil},
		{"a\x00b", nil},
		{dir, &Config{FileMode: 0o4644}},
		{dir, &Config{FileMode: 0o044}},
		{dir, &Config{DirMode: 0o600}},
		{dir, &Config{PollMin: -1}},
		{dir, &Config{PollMin: time.Second, PollMax: time.Millisecond}},
		{dir, &Config{CheckInterval: -time.Second}},
		{dir, &Config{Data: strings.Repeat("d", maxRecordMeta+1)}},
	} {
		if _, err := New(tc.dir, tc.cfg); !errors.Is(err, lockkit.ErrInvalid) {
			t.Errorf("New(%q, %+v) = %v, want ErrInvalid", tc.dir, tc.cfg, err)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("New with a bad config touched the file system: %v", err)
	}
}

func TestRelativeDir(t *testing.T) {
	t.Chdir(t.TempDir())
	l := newLocker(t, "rel", nil)
	if !filepath.IsAbs(l.Dir()) || filepath.Base(l.Dir()) != "rel" {
		t.Errorf("Dir() = %q, want an absolute path ending in rel", l.Dir())
	}
}

func TestSharedMode(t *testing.T) {
	dir := t.TempDir()
	a, b, c := newLocker(t, dir, nil), newLocker(t, dir, nil), newLocker(t, dir, nil)
	s1 := mustTry(t, a, "rw", Shared)
	s2 := mustTry(t, b, "rw", Shared)
	if s1.Mode() != Shared {
		t.Errorf("Mode() = %v", s1.Mode())
	}
	wantHeld(t, c, "rw", Exclusive)
	if _, err := c.Acquire(ctxT(t, 50*time.Millisecond), "rw"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("exclusive Acquire while shared holders hold = %v, want a timeout", err)
	}
	mustRelease(t, s1)
	wantHeld(t, c, "rw", Exclusive) // s2 still holds
	mustRelease(t, s2)
	x := mustTry(t, c, "rw", Exclusive)
	wantHeld(t, a, "rw", Shared)
	// A shared waiter gets in once the exclusive holder leaves.
	got := make(chan error, 1)
	go func() {
		lk, err := a.Lock(ctxT(t, 5*time.Second), "rw", &Options{Mode: Shared})
		if err == nil {
			err = lk.Release(context.Background())
		}
		got <- err
	}()
	time.Sleep(20 * time.Millisecond)
	mustRelease(t, x)
	if err := <-got; err != nil {
		t.Errorf("shared waiter: %v", err)
	}
}

func TestHolderRecord(t *testing.T) {
	dir := t.TempDir()
	a := newLocker(t, dir, &Config{Owner: "alice", App: "backup", Data: "ticket \"42\"\n"})
	b := newLocker(t, dir, nil)
	name := "rec/ord ü"
	start := time.Now()
	lk := mustTry(t, a, name, Exclusive)
	raw, err := os.ReadFile(lk.Path())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(raw), "}\n") || strings.Count(string(raw), "\n") != 1 {
		t.Errorf("holder record is not one JSON line: %q", raw)
	}
	_, err = b.TryAcquire(ctxT(t, time.Second), name)
	var he *lockkit.HeldError
	if !errors.As(err, &he) || he.Holder == nil {
		t.Fatalf("TryAcquire = %v, want a HeldError with a holder", err)
	}
	h := he.Holder
	host, _ := os.Hostname()
	if h.PID != os.Getpid() || h.Host != host || h.Owner != "alice" || h.App != "backup" || h.Data != "ticket \"42\"\n" {
		t.Errorf("holder = %+v", h)
	}
	if h.Since.Before(start.Add(-time.Second)) || h.Since.After(time.Now()) {
		t.Errorf("holder since %v, want about %v", h.Since, start)
	}
	st, err := b.Inspect(ctxT(t, time.Second), name)
	if err != nil || !st.Held || st.Holder == nil || st.Holder.PID != os.Getpid() || st.Path != lk.Path() {
		t.Errorf("Inspect while held = %+v, %v", st, err)
	}
	mustRelease(t, lk)
	if after, _ := os.ReadFile(lk.Path()); len(after) == 0 || after[0] == '{' || first(parseHolder(after)) != nil {
		t.Errorf("record not cleared on release: %q", after)
	}
	st, err = b.Inspect(ctxT(t, time.Second), name)
	if err != nil || st.Held || st.Holder != nil {
		t.Errorf("Inspect after release = %+v, %v", st, err)
	}
	st, err = b.Inspect(ctxT(t, time.Second), "never-taken")
	if err != nil || st.Held {
		t.Errorf("Inspect of a name never taken = %+v, %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "never-taken.lock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Inspect created a lock file")
	}
	// A shared holder clears a stale record a killed holder left behind.
	if err := os.WriteFile(lk.Path(), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if st, _ := b.Inspect(ctxT(t, time.Second), name); st.Holder != nil {
		t.Errorf("Inspect reports a record while nobody holds: %+v", st)
	}
	s := mustTry(t, a, name, Shared)
	if after, _ := os.ReadFile(lk.Path()); first(parseHolder(after)) != nil {
		t.Errorf("stale record kept under a shared lock: %q", after)
	}
	if _, err := b.TryAcquire(ctxT(t, time.Second), name); !errors.As(err, &he) || he.Holder != nil {
		t.Errorf("conflict with a shared holder = %v, want a HeldError without a stale holder", err)
	}
	mustRelease(t, s)
}

func TestParseHolderTolerant(t *testing.T) {
	rec := appendRecord(nil, recordPrefix(7, "h", "o", "", ""), time.Unix(1, 0), "n")
	if h, name := parseHolder(rec); h == nil || h.PID != 7 || h.Owner != "o" || name != "n" {
		t.Errorf("parseHolder(full) = %+v", h)
	}
	// A new, shorter record over an old, longer one, before the cut.
	old := appendRecord(nil, recordPrefix(9, "a-much-longer-host-name", "", "", ""), time.Unix(2, 0), "a longer name")
	mixed := append(append([]byte(nil), rec...), old[len(rec):]...)
	if h, _ := parseHolder(mixed); h == nil || h.PID != 7 {
		t.Errorf("parseHolder(new over old) = %+v", h)
	}
	cleared := append([]byte{' '}, rec[1:]...)
	if h, _ := parseHolder(cleared); h != nil {
		t.Errorf("parseHolder(cleared) = %+v, want nil", h)
	}
	long := strings.Repeat("\x00", MaxNameLen)
	big := appendRecord(nil, recordPrefix(1, strings.Repeat("\x01", 300), strings.Repeat("\x02", 300), strings.Repeat("\x03", 300), strings.Repeat("\x04", maxRecordMeta-900)), time.Now(), long)
	if len(big) > maxHolderInfo {
		t.Errorf("a record at every limit is %d bytes, more than a reader reads (%d)", len(big), maxHolderInfo)
	}
	if h, _ := parseHolder(big); h == nil || h.PID != 1 {
		t.Errorf("parseHolder(record at every limit) = %+v", h)
	}
	for i := range rec {
		_, _ = parseHolder(rec[:i]) // must not panic
	}
	for _, junk := range []string{"", "\n", "garbage", "{", `{"pid":"x"}`, "{}", "\x00\x00"} {
		if h, _ := parseHolder([]byte(junk)); h != nil {
			t.Errorf("parseHolder(%q) = %+v, want nil", junk, h)
		}
	}
}

func TestFileRemovedWhileHeld(t *testing.T) {
	dir := t.TempDir()
	l := newLocker(t, dir, nil)
	lk := mustTry(t, l, "gone", Exclusive)
	if err := lk.Check(); err != nil {
		t.Fatalf("Check while intact = %v", err)
	}
	if err := os.Remove(lk.Path()); err != nil {
		t.Fatal(err)
	}
	// A new process now creates and locks a new file: the exclusion is broken.
	other := mustTry(t, newLocker(t, dir, nil), "gone", Exclusive)
	if err := lk.Check(); !errors.Is(err, lockkit.ErrLost) || !errors.Is(err, ErrFileRemoved) {
		t.Errorf("Check after removal = %v, want ErrLost with ErrFileRemoved", err)
	}
	select {
	case <-lk.Done():
	default:
		t.Error("Done open after Check found the file removed")
	}
	if err := lk.Release(ctxT(t, time.Second)); !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("Release = %v, want ErrLost", err)
	}
	mustRelease(t, other)

	// With CheckInterval, Release alone notices too (an hour: only
	// Release checks in this test).
	checked := newLocker(t, dir, &Config{CheckInterval: time.Hour})
	lk = mustTry(t, checked, "replaced", Exclusive)
	if err := os.Rename(filepath.Join(dir, "gone.lock"), lk.Path()); err != nil {
		t.Fatal(err)
	}
	if err := lk.Release(ctxT(t, time.Second)); !errors.Is(err, ErrFileRemoved) {
		t.Errorf("Release after the file was replaced = %v, want ErrFileRemoved", err)
	}
	if err := lk.Check(); !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("Check after Release = %v, want the loss", err)
	}

	// Without it, Release makes no loss check (it saves a system call per
	// lock); an explicit Check still finds the loss.
	lk = mustTry(t, l, "unchecked", Exclusive)
	if err := os.Remove(lk.Path()); err != nil {
		t.Fatal(err)
	}
	if err := lk.Release(ctxT(t, time.Second)); err != nil {
		t.Errorf("Release without CheckInterval = %v, want nil (no loss check)", err)
	}
	lk = mustTry(t, l, "unchecked", Exclusive)
	if err := os.Remove(lk.Path()); err != nil {
		t.Fatal(err)
	}
	if err := lk.Check(); !errors.Is(err, ErrFileRemoved) {
		t.Errorf("Check without CheckInterval = %v, want ErrFileRemoved", err)
	}
	if err := lk.Release(ctxT(t, time.Second)); !errors.Is(err, lockkit.ErrLost) {
		t.Errorf("Release after Check found the loss = %v, want ErrLost", err)
	}
}

func TestClosedLocker(t *testing.T) {
	dir := t.TempDir()
	l, err := New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	lk := mustTry(t, l, "outlives", Exclusive)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, err := l.TryAcquire(ctxT(t, time.Second), "x"); !errors.Is(err, ErrClosed) {
		t.Errorf("TryAcquire after Close = %v, want ErrClosed", err)
	}
	wantHeld(t, newLocker(t, dir, nil), "outlives", Exclusive)
	if err := lk.Check(); err != nil {
		t.Errorf("Check of a lock outliving its closed Locker = %v", err)
	}
	mustRelease(t, lk)
}

func TestDefaultDir(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/somewhere/cache")
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/4242")
	d, err := DefaultDir()
	if err != nil || d != "/somewhere/cache/lockkit/locks" {
		t.Errorf("DefaultDir() = %q, %v", d, err)
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "")
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	want := filepath.Join(tmp, "lockkit-"+itoa(os.Getuid()))
	if d, err := DefaultDir(); err != nil || d != want {
		t.Errorf("DefaultDir() without a home = %q, %v; want %q", d, err, want)
	}
	// A squatted fallback (a symlink, or not a directory) is refused.
	if err := os.Symlink(t.TempDir(), want); err != nil {
		t.Fatal(err)
	}
	if _, err := DefaultDir(); !errors.Is(err, ErrUnsafe) {
		t.Errorf("DefaultDir() with a symlink squatting %s = %v, want ErrUnsafe", want, err)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(entries)
}

// TestNoDescriptorLeaks runs every path that opens something — conflicts,
// waits that time out or win, refusals, Inspect, Clean — and checks that
// once the Lockers are closed the process has as many descriptors open as
// before.
func TestNoDescriptorLeaks(t *testing.T) {
	dir := t.TempDir()
	if err := os.Symlink("/etc/hostname", filepath.Join(dir, "sym.lock")); err != nil {
		t.Fatal(err)
	}
	before := openFDs(t)
	a, err := New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(dir, &Config{CheckInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	held := mustTry(t, a, "x", Exclusive)
	wantHeld(t, b, "x", Exclusive)
	if _, err := b.Acquire(ctxT(t, 20*time.Millisecond), "x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Acquire = %v, want a timeout", err)
	}
	got := make(chan error, 1)
	go func() {
		lk, err := b.Acquire(ctxT(t, 5*time.Second), "x")
		if err == nil {
			err = lk.Release(context.Background())
		}
		got <- err
	}()
	time.Sleep(10 * time.Millisecond)
	mustRelease(t, held)
	if err := <-got; err != nil {
		t.Errorf("waiter: %v", err)
	}
	if _, err := a.TryAcquire(ctxT(t, time.Second), "sym"); !errors.Is(err, ErrUnsafe) {
		t.Errorf("TryAcquire through a symlink = %v", err)
	}
	if _, err := a.Inspect(ctxT(t, time.Second), "x"); err != nil {
		t.Error(err)
	}
	if _, err := a.Clean(ctxT(t, time.Second)); err != nil {
		t.Error(err)
	}
	lk := mustTry(t, a, "gone", Exclusive)
	_ = os.Remove(lk.Path())
	_ = lk.Release(context.Background())
	if err := a.Close(); err != nil {
		t.Error(err)
	}
	if err := b.Close(); err != nil {
		t.Error(err)
	}
	if after := openFDs(t); after != before {
		t.Errorf("%d descriptors open after closing the Lockers, %d before", after, before)
	}
}

func first[A, B any](a A, _ B) A { return a }

// TestWaiterFollowsReplacedFile: when a lock file is removed while a waiter
// waits on it, the waiter (woken by inotify on Linux) moves to the path's
// new file instead of queueing behind the old file's holder.
func TestWaiterFollowsReplacedFile(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the wake-up on removal is inotify's")
	}
	dir := t.TempDir()
	a, w := newLocker(t, dir, &Config{CheckInterval: time.Hour}), newLocker(t, dir, nil)
	old := mustTry(t, a, "moved", Exclusive)
	got := make(chan error, 1)
	go func() {
		lk, err := w.Acquire(ctxT(t, 10*time.Second), "moved")
		if err == nil {
			err = lk.Release(context.Background())
		}
		got <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := os.Remove(old.Path()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Errorf("waiter: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("waiter still queued behind the removed file's holder")
	}
	if err := old.Release(ctxT(t, time.Second)); !errors.Is(err, ErrFileRemoved) {
		t.Errorf("Release of the lock whose file was removed = %v, want ErrFileRemoved", err)
	}
}
