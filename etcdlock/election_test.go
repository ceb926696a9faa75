package etcdlock

import (
	"testing"
	"time"

	"github.com/lockkit/lockkit/locktest"
)

// TestElection runs the election suite on the shared cluster: terms are
// the holder key's create revision, Leader and Observe read it back
// through List, and observers are woken by an etcd watch (Pushed). Deleting
// the leader's key is the kill; a crashed leader (its client closed, its
// lease not revoked) is succeeded when the lease runs out. etcd keys carry
// no per-acquire data, so candidates campaign without values.
func TestElection(t *testing.T) {
	cfg, crash := suiteConfig(t)
	locktest.RunElection(t, locktest.ElectionConfig{
		Config:        cfg,
		FailoverBound: time.Second,
		Pushed:        true,
		Crash:         crash,
	})
}
