//go:build darwin || freebsd || dragonfly

package filelock

import "golang.org/x/sys/unix"

func fdFileSystem(fd int) (string, bool, error) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return "", false, err
	}
	name := cString(st.Fstypename[:])
	return name, networkNames[name], nil
}
