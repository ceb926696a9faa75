package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestFlockInterop checks that util-linux flock(1) and lockkit run on
// file:///DIR exclude each other in both directions, on the file the
// documentation names for a plain lock name: DIR/NAME.lock.
func TestFlockInterop(t *testing.T) {
	t.Parallel()
	flock, err := exec.LookPath("flock")
	if err != nil {
		if os.Getenv("LOCKKIT_TEST_REQUIRE") == "1" {
			t.Fatal("util-linux flock(1) is not installed (apt-get install util-linux)")
		}
		t.Skip("util-linux flock(1) is not installed")
	}
	dir := t.TempDir()
	env := baseEnv(t)
	backend := "file://" + dir
	file := filepath.Join(dir, "nightly.lock")

	t.Run("flock holds, lockkit waits", func(t *testing.T) {
		holder := exec.Command(flock, file, "-c", "echo held; sleep 1.5")
		out, err := holder.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := holder.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
		buf := make([]byte, 5)
		if _, err := out.Read(buf); err != nil || string(buf) != "held\n" {
			t.Fatalf("flock(1) did not start its command: %q %v", buf, err)
		}

		code, _, errOut := lockkit(t, env, "run", "-b", backend, "-n", "nightly", "--", "true")
		wantExit(t, "lockkit run -n while flock(1) holds", code, 75, errOut)

		began := time.Now()
		code, stdout, errOut := lockkit(t, env, "run", "-b", backend, "nightly", "--", "echo", "ran")
		wantExit(t, "lockkit run while flock(1) holds", code, 0, errOut)
		if stdout != "ran\n" {
			t.Fatalf("stdout %q", stdout)
		}
		if err := holder.Wait(); err != nil {
			t.Fatalf("flock(1): %v", err)
		}
		if took := time.Since(began); took < time.Second {
			t.Fatalf("lockkit ran its command after %v, while flock(1) still held the file", took)
		}
	})

	t.Run("lockkit holds, flock waits", func(t *testing.T) {
		p := start(t, env, true, "run", "-b", backend, "nightly", "--", "sh", "-c", "echo held; sleep 1.5")
		p.waitLine("held")

		busy := exec.Command(flock, "-n", file, "true")
		if err := busy.Run(); err == nil {
			t.Fatal("flock -n succeeded while lockkit held the lock")
		} else if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Fatalf("flock -n while lockkit held the lock: %v, want exit 1", err)
		}

		began := time.Now()
		if out, err := exec.Command(flock, file, "true").CombinedOutput(); err != nil {
			t.Fatalf("flock(1) after lockkit: %v %s", err, out)
		}
		if code := p.wait(); code != 0 {
			t.Fatalf("lockkit run exited %d; stderr:\n%s", code, p.stderr())
		}
		if took := time.Since(began); took < time.Second {
			t.Fatalf("flock(1) got the file after %v, while lockkit still held it", took)
		}
	})
}
