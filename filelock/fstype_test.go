//go:build linux

package filelock

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lockkit/lockkit"
	"golang.org/x/sys/unix"
)

// mountType returns the type /proc/self/mounts gives the mount that holds
// path (the longest mount point that is a prefix of it).
func mountType(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		t.Skipf("no /proc/self/mounts: %v", err)
	}
	defer f.Close()
	best, typ := "", ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			continue
		}
		mp := strings.ReplaceAll(fields[1], `\040`, " ")
		if (path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(best) {
			best, typ = mp, fields[2]
		}
	}
	return typ
}

// The file system check on the file systems this machine has: what
// FileSystem reports matches /proc/self/mounts, none of them is a network
// file system, and New locks there. This machine's kernel has no NFS or
// CIFS client (see TestNetworkFSRefused for the refusal).
func TestFileSystemOfThisMachine(t *testing.T) {
	dirs := []string{t.TempDir(), "/dev/shm"}
	if os.Geteuid() == 0 {
		// A tmpfs of the test's own, where root may mount one.
		d := t.TempDir()
		if err := unix.Mount("lockkit-test", d, "tmpfs", 0, "size=1m"); err == nil {
			t.Cleanup(func() { _ = unix.Unmount(d, 0) })
			dirs = append(dirs, d)
		} else {
			t.Logf("mount tmpfs: %v", err)
		}
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); err != nil {
			continue
		}
		d, _ = filepath.EvalSymlinks(d)
		fstype, network, err := FileSystem(d)
		if err != nil {
			t.Fatal(err)
		}
		want := mountType(t, d)
		t.Logf("%s: %s (mounts: %s), network %v", d, fstype, want, network)
		if want != "" && fstype != want && !(want == "ext3" || want == "ext2") {
			t.Errorf("FileSystem(%s) = %q, /proc/self/mounts says %q", d, fstype, want)
		}
		if network {
			t.Errorf("FileSystem(%s) says %s is a network file system", d, fstype)
		}
		l, err := New(filepath.Join(d, "lockkit-fstype-test"), nil)
		if err != nil {
			t.Fatalf("New on %s (%s): %v", d, fstype, err)
		}
		_ = l.Close()
		_ = os.RemoveAll(filepath.Join(d, "lockkit-fstype-test"))
	}
	if _, _, err := FileSystem(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("FileSystem of a missing directory: no error")
	}
}

// New refuses a lock directory on a network file system unless
// AllowNetworkFS is set. The machine cannot mount one (its kernel has no
// NFS or CIFS client), so the statfs answer is replaced with NFS's, as a
// stand-in for an NFS mount.
func TestNetworkFSRefused(t *testing.T) {
	fsHook = func(int) (string, bool, error) { return "nfs", true, nil }
	t.Cleanup(func() { fsHook = nil })
	dir := t.TempDir()
	_, err := New(dir, nil)
	if !errors.Is(err, ErrNetworkFS) || !errors.Is(err, lockkit.ErrUnsupported) {
		t.Fatalf("New on nfs = %v, want ErrNetworkFS", err)
	}
	for _, want := range []string{dir, "nfs", "AllowNetworkFS"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal %q does not mention %q", err, want)
		}
	}
	l, err := New(dir, &Config{AllowNetworkFS: true})
	if err != nil {
		t.Fatalf("New on nfs with AllowNetworkFS: %v", err)
	}
	defer l.Close()
	lk, err := l.TryAcquire(t.Context(), "x")
	if err != nil {
		t.Fatal(err)
	}
	if err := lk.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The magic numbers the kernel reports for network file systems.
	for magic, name := range map[int64]string{0x6969: "nfs", 0xFF534D42: "cifs", 0xFE534D42: "smb2", 0x00C36400: "ceph", 0x01021997: "9p"} {
		if fs := linuxFS[magic]; fs.name != name || !fs.network {
			t.Errorf("magic %#x: %+v, want network file system %s", magic, fs, name)
		}
	}
}
