//go:build linux

package procstat

import (
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	s, ok := parse([]byte("42 (a) b) (c d) S 7 9 9 0 -1 4194560\n"))
	if !ok || s != (Stat{State: "S", PPID: 7, PGrp: 9}) || !s.Alive() {
		t.Fatalf("parse = %+v, %v", s, ok)
	}
	for _, bad := range []string{"", "42 (x", "42 (x) S", "42 (x) S a b"} {
		if _, ok := parse([]byte(bad)); ok {
			t.Errorf("parse(%q) ok", bad)
		}
	}
}

// TestReadSelfAndZombie reads this process and an exited, unreaped child.
func TestReadSelfAndZombie(t *testing.T) {
	if !OwnNamespace() {
		t.Fatal("/proc is not this PID namespace's")
	}
	s, ok := Read(os.Getpid())
	if !ok || !s.Alive() || s.PPID != os.Getppid() || s.PGrp != syscall.Getpgrp() {
		t.Fatalf("Read(self) = %+v, %v", s, ok)
	}
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	// Until cmd.Wait reaps it, the exited child stays a zombie.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if s, ok = Read(cmd.Process.Pid); !ok {
			t.Fatal("child not in /proc")
		}
		if !s.Alive() || time.Now().After(deadline) {
			break
		}
	}
	if s.State != "Z" || s.PPID != os.Getpid() {
		t.Fatalf("exited child = %+v", s)
	}
	pids, err := PIDs()
	if err != nil || !slices.Contains(pids, os.Getpid()) || !slices.Contains(pids, cmd.Process.Pid) {
		t.Fatalf("PIDs() = %d pids, %v", len(pids), err)
	}
}
