package integration

import (
	"testing"
	"time"
)

// A private 3-member cluster is real raft: with the leader killed the other
// two elect a new one and keep serving writes, and the killed member
// rejoins with its data.
func TestEtcdCluster(t *testing.T) {
	c := StartEtcdCluster(t, 3)
	leader := c.Leader(ctxFor(t, 10*time.Second))
	if leader < 0 {
		t.Fatal("no leader")
	}
	if err := etcdPut(ctxFor(t, 10*time.Second), c.Members[leader].DSN(), "k", "1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Members[leader].Kill(); err != nil {
		t.Fatal(err)
	}
	// A write in flight during the election can time out on the server
	// (a follower drops proposals while it has no leader): retry, on each
	// surviving member in turn.
	var err error
	for i := range 6 {
		m := c.Members[(leader+1+i%2)%3]
		if err = etcdPut(ctxFor(t, 20*time.Second), m.DSN(), "k", "2"); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("put with the leader killed: %v", err)
	}
	if next := c.Leader(ctxFor(t, 10*time.Second)); next < 0 || next == leader {
		t.Fatalf("leader after the kill = %d, want another than %d", next, leader)
	}
	if err := c.Members[leader].Start(); err != nil {
		t.Fatal(err)
	}
	v, found, err := etcdGet(ctxFor(t, 10*time.Second), c.Members[leader].DSN(), "k")
	if err != nil || !found || v != "2" {
		t.Fatalf("get from the restarted member = %q, %v, %v; want k=2", v, found, err)
	}
}
