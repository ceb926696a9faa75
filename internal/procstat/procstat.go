// Package procstat reads the state of processes from Linux's /proc, for
// code that waits for a process tree or group to end. Unlike kill(2), it
// tells an exited process that nobody has reaped yet (a zombie, which a
// container's init may never reap) from a running one. It also reads what
// this process has spent (SelfCPU, GoroutinesCreated), for benchmarks.
package procstat

import (
	"bytes"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// SelfCPU is the user and system CPU time this process has used; 0 if
// getrusage fails.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// GoroutinesCreated is how many goroutines this process has started.
func GoroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// Stat is what /proc/PID/stat says about a process.
type Stat struct {
	State string // R, S, D, T, Z (zombie), X (dead), ...
	PPID  int    // parent
	PGrp  int    // process group
}

// Alive reports whether the process has not exited (neither zombie nor
// dead).
func (s Stat) Alive() bool { return s.State != "Z" && s.State != "X" }

// Read returns the Stat of pid; false when it cannot be read (the process
// is gone, or /proc does not show it).
func Read(pid int) (Stat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Stat{}, false
	}
	return parse(b)
}

// parse parses "pid (comm) state ppid pgrp ...". comm may hold spaces and
// parentheses, so the fields are counted after the last ')'.
func parse(b []byte) (Stat, bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return Stat{}, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 {
		return Stat{}, false
	}
	ppid, err1 := strconv.Atoi(f[1])
	pgrp, err2 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil {
		return Stat{}, false
	}
	return Stat{State: f[0], PPID: ppid, PGrp: pgrp}, true
}

// PIDs lists the processes /proc shows.
func PIDs() ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	pids := make([]int, 0, len(entries))
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// OwnNamespace reports whether /proc belongs to this process's PID
// namespace (and so shows the processes it can signal).
func OwnNamespace() bool {
	self, err := os.Readlink("/proc/self")
	return err == nil && self == strconv.Itoa(os.Getpid())
}
