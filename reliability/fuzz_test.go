package reliability

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/filelock"
	"github.com/lockkit/lockkit/mysqllock"
	"github.com/lockkit/lockkit/rowlock"
)

// Fuzz targets for names and URLs on the way into every backend. Run one
// with, for example:
//
//	go test ./reliability -run '^$' -fuzz FuzzFileLockName -fuzztime 1m
//
// Plain go test runs their seed corpus. The other backends' names have
// fuzz targets in their own packages: keyhash.FuzzName (PostgreSQL advisory
// keys), advisory's FuzzMySQLLockName (internal rendering) and
// redislock.FuzzKeys.

// FuzzFileLockName: any name either gets ErrInvalid, or maps to one plain
// file name that a lock then creates directly inside the lock directory —
// never a path, never outside.
func FuzzFileLockName(f *testing.F) {
	for _, s := range []string{"nightly", "../x", "/etc/passwd", ".", "..", "a/b", "a\x00b", "~", ".hidden",
		strings.Repeat("x", 201), strings.Repeat("../", 100), "名前", "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		file, err := filelock.FileName(name)
		if err != nil {
			if !errors.Is(err, lockkit.ErrInvalid) {
				t.Fatalf("FileName(%q) = %v, want ErrInvalid", name, err)
			}
			return
		}
		if file == "." || file == ".." || strings.ContainsAny(file, "/\x00") || !strings.HasSuffix(file, filelock.Suffix) ||
			filepath.Base(file) != file || len(file) > 255 {
			t.Fatalf("FileName(%q) = %q: not one plain file name", name, file)
		}
		if again, _ := filelock.FileName(name); again != file {
			t.Fatalf("FileName(%q) not deterministic: %q then %q", name, file, again)
		}
		dir := t.TempDir()
		l, err := filelock.New(filepath.Join(dir, "locks"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		lk, err := l.TryAcquire(context.Background(), name)
		if err != nil {
			t.Fatalf("TryAcquire(%q): %v", name, err)
		}
		if err := lk.Release(context.Background()); err != nil {
			t.Fatal(err)
		}
		entries, _ := os.ReadDir(filepath.Join(dir, "locks"))
		top, _ := os.ReadDir(dir)
		if len(entries) != 1 || entries[0].Name() != file || len(top) != 1 {
			t.Fatalf("lock %q created %v in the lock directory and %v beside it; want only %q", name, entries, top, file)
		}
	})
}

// FuzzMySQLLockName: a rendered GET_LOCK name always fits MySQL (64
// characters) and MariaDB (192 bytes), is valid UTF-8 with no NUL, is the
// same every time, and two different names never render alike.
func FuzzMySQLLockName(f *testing.F) {
	f.Add("test", "a", "b")
	f.Add("", strings.Repeat("x", 64), strings.Repeat("x", 65))
	f.Add("app", strings.Repeat("é", 64), strings.Repeat("é", 63)+"e")
	f.Add("ns", "a.b", "a#b")
	f.Add("", "x'); DROP TABLE t; --", "x'); DROP TABLE t; -")
	f.Add("db", strings.Repeat("🔒", 50), strings.Repeat("🔒", 49))
	f.Fuzz(func(t *testing.T, ns, a, b string) {
		ra, errA := mysqllock.UserLockName(ns, a)
		rb, errB := mysqllock.UserLockName(ns, b)
		for _, c := range []struct {
			in, out string
			err     error
		}{{a, ra, errA}, {b, rb, errB}} {
			if c.err != nil {
				if !errors.Is(c.err, lockkit.ErrInvalid) {
					t.Fatalf("MySQLLockName(%q, %q) = %v, want ErrInvalid", ns, c.in, c.err)
				}
				continue
			}
			if n := utf8.RuneCountInString(c.out); n > mysqllock.MaxNameChars || len(c.out) > mysqllock.MaxNameBytes ||
				!utf8.ValidString(c.out) || strings.ContainsRune(c.out, 0) || c.out == "" {
				t.Fatalf("MySQLLockName(%q, %q) = %q (%d chars, %d bytes): does not fit", ns, c.in, c.out, n, len(c.out))
			}
			if again, _ := mysqllock.UserLockName(ns, c.in); again != c.out {
				t.Fatalf("MySQLLockName(%q, %q) not deterministic", ns, c.in)
			}
		}
		if errA == nil && errB == nil && a != b && ra == rb {
			t.Fatalf("names %q and %q share the GET_LOCK name %q", a, b, ra)
		}
	})
}

// FuzzRecordName: two different (table, id) pairs never name the same
// record lock.
func FuzzRecordName(f *testing.F) {
	f.Add("products", "42", "products", "43")
	f.Add("a:b", "c", "a", "b:c")
	f.Add("a%3Ab", "c", "a:b", "c")
	f.Add("", ":", ":", "")
	f.Fuzz(func(t *testing.T, t1, id1, t2, id2 string) {
		if t1 == t2 && id1 == id2 {
			return
		}
		if a, b := rowlock.RecordName(t1, id1), rowlock.RecordName(t2, id2); a == b {
			t.Fatalf("(%q, %q) and (%q, %q) both name %q", t1, id1, t2, id2, a)
		}
	})
}
