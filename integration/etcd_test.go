package integration

import (
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	"time"
)

// A private 3-member cluster is real raft: with the leader killed the other
// two elect a new one and keep serving writes, and the killed member
// rejoins with its data.
func TestEtcdCluster(t *testing.T) {
	c := StartEtcdCluster(t, 3)
	cli := EtcdClient(t, c.Endpoints()...)
	if _, err := cli.Put(ctxFor(t, 10*time.Second), "k", "1"); err != nil {
		t.Fatal(err)
	}
	leader := c.Leader(ctxFor(t, 10*time.Second))
	if leader < 0 {
		t.Fatal("no leader")
	}
	if err := c.Members[leader].Kill(); err != nil {
		t.Fatal(err)
	}
	// A write in flight during the election can time out on the server
	// (a follower drops proposals while it has no leader): retry.
	var err error
	for range 5 {
		if _, err = cli.Put(ctxFor(t, 20*time.Second), "k", "2"); err == nil {
			break
		}
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
	only := EtcdClient(t, c.Members[leader].DSN())
	var resp *clientv3.GetResponse
	resp, err = only.Get(ctxFor(t, 10*time.Second), "k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "2" {
		t.Fatalf("get from the restarted member = %v, %v; want k=2", resp, err)
	}
}
