//go:build netbsd

package filelock

import "golang.org/x/sys/unix"

func fdFileSystem(fd int) (string, bool, error) {
	var st unix.Statvfs_t
	if err := unix.Fstatvfs1(fd, &st, unix.ST_WAIT); err != nil {
		return "", false, err
	}
	name := cString(st.Fstypename[:])
	return name, networkNames[name], nil
}
