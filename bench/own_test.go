package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFailoverAndSemaphoreFiles runs the failover and semaphore scenarios
// in quick mode on the file backend (no server needed): the leader
// processes (this test binary again, see TestMain) are SIGKILLed and a
// candidate here takes over with a greater term, and 16 workers share 4
// permits. It checks what was measured, not how fast.
func TestFailoverAndSemaphoreFiles(t *testing.T) {
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"-quick", "-nocharts", "-backends", "files", "-scenarios", "failover,semaphore", "-out", out, "-strict"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	for _, want := range []string{"## Failover", "| files | lockkit election (Campaign) | session | 2 |", "| files | client-go-style, retry 200ms | session | 1 |", "## Semaphore", "| files | WaitOne |"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("tables lack %q:\n%s", want, stdout.String())
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Backends) != 0 {
		t.Errorf("the harness ran %d backends for the failover and semaphore scenarios alone", len(rep.Backends))
	}
	if len(rep.Failover) != 2 {
		t.Fatalf("failover rows: %+v", rep.Failover)
	}
	for _, r := range rep.Failover {
		if len(r.Errors) > 0 || len(r.Failovers) == 0 || r.P50 <= 0 || r.P99 < r.P50 {
			t.Errorf("failover %s %s: %+v", r.Backend, r.Mode, r)
		}
	}
	if len(rep.Semaphore) != 1 {
		t.Fatalf("semaphore rows: %+v", rep.Semaphore)
	}
	s := rep.Semaphore[0]
	if s.Acquisitions == 0 || s.Samples == 0 || s.MaxInUse < 1 || s.MaxInUse > semPermits || s.ServerMax > semPermits || len(s.Errors) > 0 {
		t.Errorf("semaphore: %+v", s)
	}
	var share float64
	for _, f := range s.InUse {
		share += f
	}
	if share < 0.999 || share > 1.001 {
		t.Errorf("the in-use distribution adds up to %v", share)
	}
}

// TestOwnFailures: more holders than permits, and a failover that errs,
// are problems (and fail -strict); a slow failover is not.
func TestOwnFailures(t *testing.T) {
	rep := &report{}
	rep.Semaphore = []*semaphoreResult{
		{Backend: "a", Permits: 4, MaxInUse: 5, Acquisitions: 1, ServerMax: -1},
		{Backend: "b", Permits: 4, MaxInUse: 4, Acquisitions: 1, ServerMax: 5},
		{Backend: "c", Permits: 4, MaxInUse: 4, Acquisitions: 1, ServerMax: 4},
	}
	rep.Failover = []*failoverResult{
		{Backend: "d", Mode: foLockkit, Errors: []string{"boom"}},
		{Backend: "e", Mode: foLockkit, Failovers: []int64{5e9}, Met: false},
	}
	got := ownFailures(rep)
	if len(got) != 3 || !strings.Contains(got[0], "failover: d") || !strings.Contains(got[1], "semaphore: a: 5 holders") || !strings.Contains(got[2], "semaphore: b:") {
		t.Errorf("ownFailures = %q", got)
	}
}
