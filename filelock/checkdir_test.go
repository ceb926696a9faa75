package filelock

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestCheckDir(t *testing.T) {
	dir := t.TempDir()
	if err := CheckDir(dir); err != nil {
		t.Errorf("a private directory: %v", err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := CheckDir(dir); !errors.Is(err, ErrUnsafe) {
		t.Errorf("a world-writable directory: %v, want ErrUnsafe", err)
	}
	if _, err := New(dir, nil); !errors.Is(err, ErrUnsafe) {
		t.Errorf("New agrees: %v", err)
	}
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if err := CheckDir(dir); err != nil {
		t.Errorf("a sticky world-writable directory: %v", err)
	}
	if err := CheckDir(filepath.Join(dir, "missing")); err == nil || errors.Is(err, ErrUnsafe) {
		t.Errorf("a missing directory: %v", err)
	}
	if os.Geteuid() != 0 {
		ro := filepath.Join(dir, "ro")
		if err := os.Mkdir(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		if err := CheckDir(ro); !errors.Is(err, ErrNoAccess) {
			t.Errorf("a read-only directory: %v, want ErrNoAccess", err)
		}
	}
}
