//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package filelock

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
)

// TestList: without names, the held lock files ordered by name, named by
// their file name or holder record, or by the file in parentheses; not the
// free ones, nor files that are not lock files.
func TestList(t *testing.T) {
	dir := t.TempDir()
	l := newLocker(t, dir, &Config{Owner: "alice", App: "backup", Data: "d"})
	long := strings.Repeat("n", maxRecordName+1) + "/x"
	held := []*Lock{
		mustTry(t, l, "plain", Exclusive),
		mustTry(t, l, "enc/oded ü", Exclusive),
		mustTry(t, l, "readers", Shared),
		mustTry(t, l, "readers", Shared),
		mustTry(t, l, long, Exclusive),
	}
	mustRelease(t, mustTry(t, l, "free", Exclusive))
	if err := os.Symlink("/etc/hostname", filepath.Join(dir, "sym.lock")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(held[0].Path(), filepath.Join(dir, "link.lock")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := l.List(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	longName := "(" + fileName(long) + ")" // its record keeps a cut name
	var names []string
	for _, e := range got {
		names = append(names, e.Name)
	}
	if want := []string{longName, "enc/oded ü", "plain", "readers"}; !slices.Equal(names, want) {
		t.Fatalf("List names %q, want %q", names, want)
	}
	host, _ := os.Hostname()
	for _, e := range got {
		switch e.Name {
		case "readers":
			if !e.Held || e.Mode != Shared || e.Holder != (lockkit.Holder{}) || e.Key != held[2].Path() {
				t.Errorf("shared lock listed as %+v", e)
			}
		default:
			h := e.Holder
			if !e.Held || e.Mode != Exclusive || h.PID != os.Getpid() || h.Host != host || h.Owner != "alice" ||
				h.App != "backup" || h.Data != "d" || h.Since.IsZero() || !strings.HasPrefix(e.Key, dir+"/") {
				t.Errorf("List entry %+v", e)
			}
		}
	}
	if got[0].Key != held[4].Path() || got[2].Key != held[0].Path() {
		t.Errorf("Key is not the lock file: %+v", got)
	}
	for _, lk := range held {
		mustRelease(t, lk)
	}
	if got, err := l.List(ctxT(t, 5*time.Second)); err != nil || len(got) != 0 {
		t.Errorf("List after every release = %+v, %v", got, err)
	}
}

// TestListNames: with names, an entry per name in the order given, Held
// false for a free name, and no lock file created.
func TestListNames(t *testing.T) {
	dir := t.TempDir()
	l := newLocker(t, dir, nil)
	other := newLocker(t, dir, &Config{Owner: "bob"})
	x := mustTry(t, other, "x", Exclusive)
	s := mustTry(t, l, "s/1", Shared)
	freed := mustTry(t, l, "freed", Exclusive)
	mustRelease(t, freed)

	got, err := l.List(ctxT(t, 5*time.Second), "x", "never", "s/1", "freed", "x")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("List = %+v, want 5 entries", got)
	}
	if e := got[0]; e.Name != "x" || !e.Held || e.Mode != Exclusive || e.Key != x.Path() || e.Holder.Owner != "bob" || e.Holder.PID != os.Getpid() {
		t.Errorf("held entry %+v", e)
	}
	if e := got[1]; e.Name != "never" || e.Held || e.Key != filepath.Join(dir, "never.lock") || e.Holder != (lockkit.Holder{}) {
		t.Errorf("entry of a name never taken %+v", e)
	}
	if e := got[2]; e.Name != "s/1" || !e.Held || e.Mode != Shared || e.Key != s.Path() {
		t.Errorf("shared entry %+v", e)
	}
	if e := got[3]; e.Name != "freed" || e.Held || e.Key != freed.Path() {
		t.Errorf("entry of a released name %+v", e)
	}
	if got[4] != got[0] {
		t.Errorf("a name given twice: %+v, then %+v", got[0], got[4])
	}
	if _, err := os.Stat(filepath.Join(dir, "never.lock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("List created a lock file: %v", err)
	}
	if st, err := l.Inspect(ctxT(t, 5*time.Second), "s/1"); err != nil || !st.Held || st.Mode != Shared || st.Holder != nil {
		t.Errorf("Inspect of a shared lock = %+v, %v", st, err)
	}
	if _, err := l.List(ctxT(t, 5*time.Second), "x", ""); !errors.Is(err, lockkit.ErrInvalid) {
		t.Errorf("List with an empty name = %v, want ErrInvalid", err)
	}
	mustRelease(t, x)
	mustRelease(t, s)
	if got, err := l.List(ctxT(t, 5*time.Second), "x", "s/1"); err != nil || got[0].Held || got[1].Held {
		t.Errorf("after release: %+v, %v", got, err)
	}
}

// TestListSharedIgnoresStaleRecord: beside shared holders only, a record an
// exclusive holder left behind is not reported as theirs.
func TestListSharedIgnoresStaleRecord(t *testing.T) {
	dir := t.TempDir()
	l := newLocker(t, dir, &Config{Owner: "alice"})
	x := mustTry(t, l, "n", Exclusive)
	rec, err := os.ReadFile(x.Path())
	if err != nil {
		t.Fatal(err)
	}
	mustRelease(t, x)
	s := mustTry(t, l, "n", Shared)
	defer mustRelease(t, s)
	// As a holder killed before it cleared its record leaves it, and a
	// shared holder that could not write (read-only) keeps it.
	if err := os.WriteFile(s.Path(), rec, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := l.List(ctxT(t, 5*time.Second), "n")
	if err != nil || len(got) != 1 || !got[0].Held || got[0].Mode != Shared || got[0].Holder != (lockkit.Holder{}) {
		t.Errorf("List = %+v, %v; want held shared without a holder", got, err)
	}
}

// TestListClosed: a closed Locker cannot list.
func TestListClosed(t *testing.T) {
	l, err := New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.List(ctxT(t, 5*time.Second)); err == nil {
		t.Error("List on a closed Locker succeeded")
	}
}
