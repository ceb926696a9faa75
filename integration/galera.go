package integration

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// GaleraProvider is where Debian's galera-4 package installs the wsrep
// provider library.
const GaleraProvider = "/usr/lib/galera/libgalera_smm.so"

// GaleraCluster is a private MariaDB Galera cluster on loopback: every
// node is a [Server] that a test can kill, pause, stop and start, to see
// what a lock does when a node of a synchronously replicated cluster
// fails.
type GaleraCluster struct {
	// Nodes are the cluster's MariaDB servers; Nodes[0] bootstrapped it.
	Nodes []*Server

	formed atomic.Bool // every node has joined once
}

// StartGaleraCluster starts a private Galera cluster of n nodes for t and
// removes it when t ends. See [LaunchGaleraCluster].
func StartGaleraCluster(t testing.TB, n int, opts ...Option) *GaleraCluster {
	t.Helper()
	c, err := LaunchGaleraCluster(n, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("integration: remove Galera cluster: %v", err)
		}
	})
	return c
}

// Failure detection of the private clusters: a node that stops answering
// is suspected after galeraSuspect and evicted from the cluster view after
// galeraInactive (Galera's defaults are 5 s and 15 s). Until then the
// other nodes' commits wait for it. Tighter bounds than these evict live
// nodes of a loaded 2-core machine.
const (
	galeraSuspect  = 3 * time.Second
	galeraInactive = 4 * time.Second
)

// LaunchGaleraCluster starts a MariaDB Galera cluster of n nodes on
// loopback, from the mariadbd of Debian's mariadb-server package and the
// provider of its galera-4 package ([GaleraProvider]). Each node listens
// on free ports for clients, group communication (gmcast), incremental
// state transfer (IST) and state snapshot transfer (SST). It returns once
// every node reports wsrep_ready=ON and a cluster size of n, with a
// database named test; [Server.DSN] of each node names it.
//
// Startup: node 0's data directory is initialised (mariadb-install-db)
// and node 0 bootstraps the cluster (--wsrep-new-cluster); the others
// start with an empty data directory and join one at a time, each
// receiving a snapshot of a synced node by rsync (wsrep_sst_method=rsync;
// Debian's rsync package). Joining together, they would first form views
// without a primary component, which costs seconds, and wait for a donor
// anyway. Three nodes take about 26 s on a 2-core machine at a load of 10
// (45 s at 20): about 6 s for node 0, and 10 to 20 s for each snapshot
// transfer, mostly the SST scripts' own waiting. A node started again
// after a kill or a stop joins the same way; node 0 too, as the cluster
// then exists.
//
// Options apply to every node, after the cluster's own settings:
// binlog_format=ROW, innodb_autoinc_lock_mode=2, a unique cluster name,
// and a node failure detected within about 4 s (evs.suspect_timeout and
// evs.inactive_timeout; see [Server.Kill]). The caller must
// [GaleraCluster.Close] the cluster.
func LaunchGaleraCluster(n int, opts ...Option) (*GaleraCluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("integration: a Galera cluster needs a node, not %d", n)
	}
	if _, err := os.Stat(GaleraProvider); err != nil {
		return nil, fmt.Errorf("integration: no Galera provider (apt-get install galera-4): %w", err)
	}
	o, err := applyOptions(opts)
	if err != nil {
		return nil, err
	}
	m, err := installMariaDB("lkgal")
	if err != nil {
		return nil, err
	}
	c := &GaleraCluster{}
	ports, err := freePorts(4 * n)
	if err != nil {
		_ = os.RemoveAll(m.dir)
		return nil, err
	}
	type nodePorts struct{ sql, gcomm, ist, sst int }
	np := make([]nodePorts, n)
	for i := range np {
		p := ports[4*i:]
		np[i] = nodePorts{p[0], p[1], p[2], p[3]}
	}
	var peers []string
	for _, p := range np {
		peers = append(peers, "127.0.0.1:"+strconv.Itoa(p.gcomm))
	}
	var tok [6]byte
	_, _ = rand.Read(tok[:])
	name := "lockkit-" + hex.EncodeToString(tok[:])
	for i, p := range np {
		dir := m.dir
		if i > 0 {
			// A joiner's data comes from its snapshot transfer.
			if dir, err = serverDir("lkgal", m.cred); err == nil {
				err = os.Mkdir(filepath.Join(dir, "data"), 0o750)
				if err == nil && m.cred != nil {
					err = os.Chown(filepath.Join(dir, "data"), int(m.cred.Uid), int(m.cred.Gid))
				}
			}
			if err != nil {
				if dir != "" {
					_ = os.RemoveAll(dir)
				}
				_ = c.Close()
				_ = os.RemoveAll(m.dir)
				return nil, err
			}
		}
		provider := strings.Join([]string{
			"gmcast.listen_addr=tcp://127.0.0.1:" + strconv.Itoa(p.gcomm),
			"ist.recv_addr=127.0.0.1:" + strconv.Itoa(p.ist),
			"gcache.size=16M",
			"evs.keepalive_period=PT0.5S", "evs.inactive_check_period=PT0.5S",
			fmt.Sprintf("evs.suspect_timeout=PT%gS", galeraSuspect.Seconds()),
			fmt.Sprintf("evs.inactive_timeout=PT%gS", galeraInactive.Seconds()),
		}, ";")
		first := i == 0
		s := m.server(dir, p.sql, o, func() []string {
			args := []string{
				"--wsrep-on=ON", "--wsrep-provider=" + GaleraProvider,
				"--wsrep-cluster-name=" + name, "--wsrep-node-name=node" + strconv.Itoa(i),
				"--wsrep-node-address=127.0.0.1:" + strconv.Itoa(p.gcomm),
				"--wsrep-provider-options=" + provider,
				"--wsrep-sst-method=rsync", "--wsrep-sst-receive-address=127.0.0.1:" + strconv.Itoa(p.sst),
				"--binlog-format=ROW", "--innodb-autoinc-lock-mode=2", "--default-storage-engine=InnoDB",
			}
			if first && !c.formed.Load() {
				return append(args, "--wsrep-cluster-address=gcomm://", "--wsrep-new-cluster")
			}
			return append(args, "--wsrep-cluster-address=gcomm://"+strings.Join(peers, ","))
		})
		root := fmt.Sprintf("root@tcp(127.0.0.1:%d)/", p.sql)
		s.ready = func(ctx context.Context) error { return galeraReady(ctx, root) }
		c.Nodes = append(c.Nodes, s)
	}
	// One node at a time: nodes that join together first form views
	// without a primary component, which costs seconds to sort out.
	for i, s := range c.Nodes {
		if err := s.startGalera(); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("integration: Galera node %d: %w", i, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := c.WaitSynced(ctx, n); err != nil {
		_ = c.Close()
		return nil, err
	}
	c.formed.Store(true)
	if err := pingSQL(ctx, "mysql", fmt.Sprintf("root@tcp(127.0.0.1:%d)/", np[0].sql), "CREATE DATABASE IF NOT EXISTS test"); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("integration: Galera: create database test: %w", err)
	}
	// DDL is certified in total order but applied on the other nodes
	// after node 0 returns (wsrep_sync_wait is 0): wait until every node
	// has the database, so that a connection naming it works on any node.
	for i, p := range np {
		err := poll(ctx, func() error {
			return pingSQL(ctx, "mysql", fmt.Sprintf("root@tcp(127.0.0.1:%d)/test", p.sql))
		})
		if err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("integration: Galera node %d: database test: %w", i, err)
		}
	}
	return c, nil
}

// startGalera starts a Galera node, trying again when the provider failed
// to set its group communication thread's scheduling policy, a failure
// that Galera 4.23 reports now and then (ESRCH from
// pthread_setschedparam) and that a second start does not repeat.
func (s *Server) startGalera() error {
	for attempt := 1; ; attempt++ {
		err := s.Start()
		if err == nil || attempt == 3 || !strings.Contains(err.Error(), "Failed to set thread schedparams") {
			return err
		}
	}
}

// galeraReady reports whether the node at dsn accepts queries
// (wsrep_ready=ON: it is synced with a primary component).
func galeraReady(ctx context.Context, dsn string) error {
	st, err := galeraStatus(ctx, dsn)
	if err != nil {
		return err
	}
	if st.ready != "ON" {
		return fmt.Errorf("wsrep_ready=%q", st.ready)
	}
	return nil
}

type galeraState struct {
	ready string
	size  int
}

// galeraStatus reads a node's wsrep_ready and wsrep_cluster_size.
func galeraStatus(ctx context.Context, dsn string) (galeraState, error) {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return galeraState{}, err
	}
	defer db.Close()
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	rows, err := db.QueryContext(qctx, "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_ready', 'wsrep_cluster_size')")
	if err != nil {
		return galeraState{}, err
	}
	defer rows.Close()
	var st galeraState
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return galeraState{}, err
		}
		switch strings.ToLower(k) {
		case "wsrep_ready":
			st.ready = v
		case "wsrep_cluster_size":
			st.size, _ = strconv.Atoi(v)
		}
	}
	return st, rows.Err()
}

// WaitSynced waits until every running node reports wsrep_ready=ON and a
// cluster of size nodes, or ctx ends.
func (c *GaleraCluster) WaitSynced(ctx context.Context, size int) error {
	err := poll(ctx, func() error {
		for i, s := range c.Nodes {
			if !s.Running() {
				continue
			}
			st, err := galeraStatus(ctx, fmt.Sprintf("root@tcp(%s)/", s.Addr()))
			switch {
			case err != nil:
				return fmt.Errorf("node %d: %w", i, err)
			case st.ready != "ON" || st.size != size:
				return fmt.Errorf("node %d: wsrep_ready=%q, wsrep_cluster_size=%d, want ON and %d", i, st.ready, st.size, size)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("integration: Galera cluster not synced: %w", err)
	}
	return nil
}

// DSNs returns every node's DSN, in node order.
func (c *GaleraCluster) DSNs() []string {
	out := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		out[i] = s.DSN()
	}
	return out
}

// Close kills every node and removes their directories.
func (c *GaleraCluster) Close() error {
	var errs []error
	for _, s := range c.Nodes {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}
