//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package filelock

import (
	"errors"
	"fmt"

	"github.com/lockkit/lockkit"
	"golang.org/x/sys/unix"
)

// ErrNetworkFS means the lock directory is on a network file system (NFS,
// SMB/CIFS, Ceph, AFS, 9P, Lustre, GPFS and the like) and
// [Config.AllowNetworkFS] is not set. There flock(2) does not do what it
// does on a local disk: Linux emulates it on NFS with byte-range locks that
// the server keeps (or, with mount option local_lock=flock or nolock, that
// only this machine sees), so exclusion depends on the server and the
// mount, and a lock can silently disappear when the client or the server
// restarts or the server's lease on it expires; other clients of SMB and
// 9P may not see it at all. It matches lockkit.ErrUnsupported too.
var ErrNetworkFS = errors.New("filelock: the lock directory is on a network file system")

// FileSystem returns the type of the file system that holds dir, as the
// kernel names it ("ext4", "tmpfs", "nfs", "fuse", ...; on Linux the
// statfs magic number in hex for a type lockkit does not know), and
// whether it is a network file system, where New refuses to lock unless
// [Config.AllowNetworkFS] is set. FUSE file systems are not counted as
// network file systems (most are local); sshfs and other network ones
// among them lock only on this machine.
func FileSystem(dir string) (fstype string, network bool, err error) {
	fd, err := openRetry(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", false, err
	}
	defer unix.Close(fd)
	fstype, network, err = fdFileSystem(fd)
	if err != nil {
		return "", false, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return fstype, network, nil
}

// fsHook, when set by a test, replaces the file system type New sees.
var fsHook func(fd int) (string, bool, error)

func dirFileSystem(fd int) (string, bool, error) {
	if fsHook != nil {
		return fsHook(fd)
	}
	return fdFileSystem(fd)
}

// networkFSError is an ErrNetworkFS naming the directory and the type.
type networkFSError struct{ dir, fstype string }

func (e *networkFSError) Error() string {
	return fmt.Sprintf("filelock: lock directory %s is on %s, a network file system: flock there is emulated or not shared, "+
		"so exclusion depends on the server and the mount, and a lock can silently disappear when the client or the server restarts; "+
		"use a local directory, or a database or Redis backend, or set Config.AllowNetworkFS (lockkit CLI: file:///DIR?allow_network_fs=1) to lock there anyway",
		e.dir, e.fstype)
}

func (e *networkFSError) Is(target error) bool {
	return target == ErrNetworkFS || target == lockkit.ErrUnsupported
}

// networkNames are the network file systems by the names the BSDs and
// macOS give them.
var networkNames = map[string]bool{
	"nfs": true, "nfs4": true, "smbfs": true, "cifs": true, "afpfs": true, "webdav": true,
	"afs": true, "ncpfs": true, "9p": true, "ceph": true, "fusefs.sshfs": true, "ftp": true,
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
