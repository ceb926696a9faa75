package main

import (
	"os/exec"
	"os/signal"
	"regexp"
	"strconv"
	"syscall"
	"testing"

	"github.com/lockkit/lockkit/integration"
)

// TestIgnoredSignalsStayIgnored: a signal that lockkit was started with
// ignored (nohup, a shell's background job) stays ignored, for lockkit and
// for the command it runs, as under flock(1). Before, lockkit trapped
// SIGHUP, SIGINT, SIGTERM and SIGQUIT whatever their disposition, which
// undid the ignore (Go installs its handler): `nohup lockkit run ...`
// forwarded a hangup to a command that then died of it.
func TestIgnoredSignalsStayIgnored(t *testing.T) {
	t.Parallel()
	name := integration.Name(t)
	const hup, intr = 1 << (1 - 1), 1 << (2 - 1) // SigIgn's bits
	var inherited uint64                         // what this test was started with (under nohup: HUP)
	if signal.Ignored(syscall.SIGHUP) {
		inherited |= hup
	}
	if signal.Ignored(syscall.SIGINT) {
		inherited |= intr
	}
	for _, c := range []struct {
		trap string
		want uint64 // the command's ignored signals among HUP, INT
	}{
		{"", inherited},
		{`trap "" HUP;`, inherited | hup},
		{`trap "" HUP INT;`, hup | intr},
	} {
		cmd := exec.Command("sh", "-c", c.trap+` exec "$0" "$@"`, bin, "run", name, "--", "grep", "^SigIgn:", "/proc/self/status")
		cmd.Env = baseEnv(t)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%q: %v\n%s", c.trap, err, out)
		}
		m := regexp.MustCompile(`SigIgn:\s+([0-9a-f]+)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("%q: no SigIgn in %q", c.trap, out)
		}
		ign, err := strconv.ParseUint(string(m[1]), 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		if got := ign & (hup | intr); got != c.want {
			t.Errorf("started with %q: the command ignores %#x of HUP|INT, want %#x (SigIgn %s)", c.trap, got, c.want, m[1])
		}
	}
}
