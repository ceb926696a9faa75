package main

import (
	"database/sql/driver"
	"fmt"
	"net"
	"os"
	"strconv"
)

// countFDs returns how many descriptors this process has open.
func countFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// lockName is the name of lock index k in this run: unique per run, so
// that a run never meets another run's (or another engineer's) locks.
func (e *env) lockName(k int) string {
	return "bench-" + e.runID + "-" + strconv.Itoa(k)
}

// keyInt64 is the advisory key of lock index k for the variants that take
// raw keys (peers with a numeric lock id).
func (e *env) keyInt64(k int) int64 {
	return e.keySeed + int64(k)
}

// logf prints a progress line to stderr.
func (e *env) logf(format string, args ...any) {
	if e.verbose {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
	}
}

func errDriverBadConn() error { return driver.ErrBadConn }

// netConn is net.Conn, for dial function signatures.
type netConn = net.Conn
