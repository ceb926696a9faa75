//go:build linux

package filelock

import (
	"strconv"

	"golang.org/x/sys/unix"
)

// linuxFS names statfs magic numbers (linux/magic.h and the file systems'
// own headers); network marks the network file systems.
var linuxFS = map[int64]struct {
	name    string
	network bool
}{
	0x6969:     {"nfs", true},
	0x517B:     {"smb", true},
	0xFF534D42: {"cifs", true},
	0xFE534D42: {"smb2", true},
	0x00C36400: {"ceph", true},
	0x5346414F: {"afs", true},
	0x6B414653: {"afs", true},
	0x73757245: {"coda", true},
	0x564C:     {"ncp", true},
	0x01021997: {"9p", true},
	0x0BD00BD0: {"lustre", true},
	0x47504653: {"gpfs", true},
	0x13661366: {"orangefs", true},
	0x65735546: {"fuse", false},
	0xEF53:     {"ext4", false},
	0x01021994: {"tmpfs", false},
	0x794C7630: {"overlay", false},
	0x58465342: {"xfs", false},
	0x9123683E: {"btrfs", false},
	0x2FC12FC1: {"zfs", false},
	0xF2F52010: {"f2fs", false},
	0x4D44:     {"vfat", false},
	0x5346544E: {"ntfs", false},
	0x7461636F: {"ocfs2", false},
	0x01161970: {"gfs2", false},
	0x858458F6: {"ramfs", false},
	0x6A656A63: {"virtiofs", false},
}

func fdFileSystem(fd int) (string, bool, error) {
	var st unix.Statfs_t
	for {
		err := unix.Fstatfs(fd, &st)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return "", false, err
		}
		break
	}
	if fs, ok := linuxFS[int64(st.Type)&0xFFFFFFFF]; ok {
		return fs.name, fs.network, nil
	}
	return "0x" + strconv.FormatInt(int64(st.Type)&0xFFFFFFFF, 16), false, nil
}
