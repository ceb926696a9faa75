package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/lockkit/lockkit/filelock"
)

// doctorFile checks a lock directory, without creating it.
func (e *env) doctorFile(ctx context.Context, b *backendURL, r *report) {
	allow, err := allowNetworkFS(b)
	if err != nil {
		r.usage = err
		return
	}
	dir, err := filepath.Abs(b.dir)
	if err != nil {
		r.usage = err
		return
	}
	// The directory, or the nearest ancestor that exists.
	at := dir
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		for at != filepath.Dir(at) {
			at = filepath.Dir(at)
			if _, err := os.Stat(at); err == nil {
				break
			}
		}
		r.add("directory", statusInfo, "%s does not exist yet: lockkit creates it (mode 0700) on first use, in %s", dir, at)
	case err != nil:
		r.add("directory", statusFail, "%v", err)
		return
	case !st.IsDir():
		r.add("directory", statusFail, "%s is not a directory", dir)
		return
	default:
		r.add("directory", statusOK, "%s exists", dir)
	}

	fstype, network, err := filelock.FileSystem(at)
	switch {
	case err != nil:
		r.add("file system", statusFail, "%v", err)
	case network && allow:
		r.add("file system", statusWarn, "%s, a network file system, allowed by allow_network_fs: flock there is emulated or not shared, exclusion depends on the server and the mount, and a lock can silently disappear when the client or the server restarts", fstype)
	case network:
		r.add("file system", statusFail, "%s, a network file system: lockkit refuses to lock there (filelock.ErrNetworkFS); use a local directory or a server backend, or add ?allow_network_fs=1 knowing what is lost", fstype)
	case fstype == "fuse":
		r.add("file system", statusWarn, "fuse: if it is a network file system (sshfs, s3fs, ...), its locks exclude only processes on this machine")
	default:
		r.add("file system", statusOK, "%s, a local file system", fstype)
	}

	if st != nil && st.IsDir() {
		mode := st.Mode()
		owner := ""
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			owner = fmt.Sprintf(", owner uid %d", sys.Uid)
		}
		switch err := filelock.CheckDir(dir); {
		case errors.Is(err, filelock.ErrUnsafe):
			r.add("permissions", statusFail, "%v%s: writable by every user without the sticky bit; lockkit refuses it (anyone could replace a lock file)", mode, owner)
		case err != nil:
			r.add("permissions", statusFail, "%v%s: this user (uid %d) cannot create lock files here", mode, owner, os.Getuid())
		default:
			r.add("permissions", statusOK, "%v%s: this user can create lock files; only processes that use this directory exclude each other", mode, owner)
		}
		if r.failed("permissions") || (network && !allow) {
			return
		}
		cfg := &filelock.Config{AllowNetworkFS: allow}
		la, errA := filelock.New(dir, cfg)
		lb, errB := filelock.New(dir, cfg)
		if err := errors.Join(errA, errB); err != nil {
			r.add("locks", statusFail, "%v", err)
			return
		}
		defer la.Close()
		defer lb.Close()
		name := probeName()
		st, detail := exclusionProbe(ctx, la, lb, name, "open file description")
		r.add("locks", st, "%s", detail)
		// The probe's lock file, which nobody else uses and the probe
		// released.
		if p, err := la.Path(name); err == nil {
			_ = os.Remove(p)
		}
	}
}
