package cli

import (
	"strconv"
	"strings"
	"testing"

	"github.com/lockkit/lockkit/integration"
)

// A redis:// URL with master_name reaches the master through Sentinel:
// the lock is taken on the master the Sentinels name, and doctor checks
// that server.
func TestRunThroughSentinel(t *testing.T) {
	t.Parallel()
	rs := integration.StartRedisSentinel(t, integration.SentinelConfig{})
	addrs := rs.SentinelAddrs()
	url := "redis://" + addrs[0] + "/0?master_name=" + integration.SentinelMaster + "&addr=" + addrs[1] + "&addr=" + addrs[2]

	check := "redis-cli -h 127.0.0.1 -p " + strconv.Itoa(rs.Master.Port()) + " exists 'lockkit:{through-sentinel}'"
	r := runCLI(t, nil, "run", "-b", url, "through-sentinel", "--", "sh", "-c", check)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "1" {
		t.Fatalf("run through Sentinel: exit %d, stdout %q (want the lock key on the master: 1), stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := runCLI(t, nil, "run", "-b", url+"&nonsense=1", "x", "--", "true"); r.code != ExitUsage {
		t.Errorf("a Sentinel URL with an unknown option: exit %d, stderr %q; want %d", r.code, r.stderr, ExitUsage)
	}
	d, res := doctorJSON(t, url)
	if st := statuses(d)["role"]; st != statusOK {
		t.Errorf("doctor through Sentinel: role %q, want ok\n%s", st, res.stdout)
	}
}
