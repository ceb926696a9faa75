package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// This file talks to etcd only over HTTP (/health and the JSON gateway of
// the v3 API) so that package integration, in lockkit's own module, does
// not import the etcd client: the client, with grpc and zap, stays in the
// etcdlock module's go.mod, and tests there open their clients themselves.

// EnvEtcd names an existing etcd cluster for the tests: its client
// endpoints separated by commas, such as
// 127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379 (an http:// scheme is
// optional). Without it the tests start a private 3-member cluster from the
// etcd binary (Debian's etcd-server package), and without that they are
// skipped, or fail under [EnvRequire].
const EnvEtcd = "LOCKKIT_TEST_ETCD"

// EtcdEndpoints returns the client endpoints of an etcd cluster: the one
// [EnvEtcd] names, else a private 3-member cluster started once per test
// binary (see [EtcdCleanup]), else the test is skipped with a message naming
// [EnvEtcd] — or fails when [EnvRequire] is "1".
//
// Tests must not inflict faults on this cluster: it may be shared. Fault
// tests start a cluster of their own with [StartEtcdCluster].
func EtcdEndpoints(t testing.TB) []string {
	t.Helper()
	if v := strings.TrimSpace(os.Getenv(EnvEtcd)); v != "" {
		return splitEndpoints(v)
	}
	sharedEtcd.once.Do(func() {
		sharedEtcd.c, sharedEtcd.err = LaunchEtcdCluster(3)
	})
	if sharedEtcd.err == nil {
		return sharedEtcd.c.Endpoints()
	}
	msg := fmt.Sprintf("integration: no etcd: set %s (%v)", EnvEtcd, sharedEtcd.err)
	if os.Getenv(EnvRequire) == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return nil
}

var sharedEtcd struct {
	once sync.Once
	c    *EtcdCluster
	err  error
}

// EtcdCleanup wraps a test binary's testing.M so that the shared private
// etcd cluster (started by the first [EtcdEndpoints] call without
// [EnvEtcd]) is removed after the tests run:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(integration.EtcdCleanup(m)) }
func EtcdCleanup(m interface{ Run() int }) interface{ Run() int } { return cleanupM{m} }

type cleanupM struct{ m interface{ Run() int } }

func (c cleanupM) Run() int {
	code := c.m.Run()
	if sharedEtcd.c != nil {
		_ = sharedEtcd.c.Close()
	}
	return code
}

func splitEndpoints(v string) []string {
	var out []string
	for _, e := range strings.Split(v, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// EtcdCluster is a private etcd cluster on loopback: a test can kill,
// pause and restart each member (a [Server]) to exercise real raft
// failovers.
type EtcdCluster struct {
	Members []*Server
	dir     string
}

// StartEtcdCluster starts a private cluster of n members for t and removes
// it when t ends. See [LaunchEtcdCluster].
func StartEtcdCluster(t testing.TB, n int) *EtcdCluster {
	t.Helper()
	c, err := LaunchEtcdCluster(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("integration: remove etcd cluster: %v", err)
		}
	})
	return c
}

// Election timing of the private clusters: a tenth of etcd's defaults'
// heartbeat is too tight for a shared 2-core machine, so half of them. A
// lost leader is replaced within about a second.
const (
	etcdHeartbeatMs = 50
	etcdElectionMs  = 500
)

// LaunchEtcdCluster starts n etcd members on free loopback ports, with
// their data in a temporary directory (on /dev/shm where it exists, as the
// etcd of Debian 12 has no switch to turn fsync off), a 50 ms heartbeat and
// a 500 ms election timeout. It returns once every member answers /health,
// which needs a leader. The caller must [EtcdCluster.Close] it.
//
// The binary is etcd from PATH or /usr/bin (Debian's etcd-server package).
func LaunchEtcdCluster(n int) (*EtcdCluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("integration: an etcd cluster needs a member, not %d", n)
	}
	bin, err := findBinary("etcd", "/usr/bin", "/usr/local/bin")
	if err != nil {
		return nil, err
	}
	base := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm"
	}
	dir, err := os.MkdirTemp(base, "lketcd")
	if err != nil {
		return nil, err
	}
	c := &EtcdCluster{dir: dir}
	type ports struct{ client, peer int }
	ps := make([]ports, n)
	free, err := freePorts(2 * n)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	for i := range ps {
		ps[i] = ports{free[2*i], free[2*i+1]}
	}
	var initial []string
	for i, p := range ps {
		initial = append(initial, fmt.Sprintf("m%d=http://127.0.0.1:%d", i, p.peer))
	}
	var tok [6]byte
	_, _ = rand.Read(tok[:])
	token := "lockkit-" + hex.EncodeToString(tok[:])
	for i, p := range ps {
		mdir := filepath.Join(dir, "m"+strconv.Itoa(i))
		if err := os.Mkdir(mdir, 0o700); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		clientURL := fmt.Sprintf("http://127.0.0.1:%d", p.client)
		peerURL := fmt.Sprintf("http://127.0.0.1:%d", p.peer)
		s := &Server{
			kind:    "etcd",
			dir:     mdir,
			port:    p.client,
			dsn:     clientURL,
			logPath: filepath.Join(mdir, "server.log"),
			stopSig: syscall.SIGTERM,
			args: func() (string, []string) {
				return bin, []string{
					"--name", "m" + strconv.Itoa(i),
					"--data-dir", filepath.Join(mdir, "data"),
					"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
					"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
					"--initial-cluster", strings.Join(initial, ","),
					"--initial-cluster-state", "new", "--initial-cluster-token", token,
					"--heartbeat-interval", strconv.Itoa(etcdHeartbeatMs),
					"--election-timeout", strconv.Itoa(etcdElectionMs),
					"--logger", "zap", "--log-level", "warn",
				}
			},
		}
		s.ready = func(ctx context.Context) error { return etcdHealthy(ctx, clientURL) }
		c.Members = append(c.Members, s)
	}
	// Every member waits for a leader, so they start together.
	if err := c.startAll(); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

func (c *EtcdCluster) startAll() error {
	errs := make([]error, len(c.Members))
	var wg sync.WaitGroup
	for i, m := range c.Members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.Start()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// etcdHealthy asks a member's /health, which reports true only while the
// cluster has a leader and the member can serve a quorum read.
func etcdHealthy(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"health":"true"`) {
		return fmt.Errorf("etcd %s/health: %s %s", url, resp.Status, body)
	}
	return nil
}

// Endpoints returns every member's client URL.
func (c *EtcdCluster) Endpoints() []string {
	out := make([]string, len(c.Members))
	for i, m := range c.Members {
		out[i] = m.DSN()
	}
	return out
}

// Leader returns the index of the member that is the raft leader now,
// asking every running member; -1 when none knows a leader.
func (c *EtcdCluster) Leader(ctx context.Context) int {
	ids := make([]string, len(c.Members))
	var leader string
	for i, m := range c.Members {
		if !m.Running() {
			continue
		}
		var st struct {
			Header struct {
				MemberID etcdUint `json:"member_id"`
			} `json:"header"`
			Leader etcdUint `json:"leader"`
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := etcdCall(sctx, m.DSN(), "/v3/maintenance/status", struct{}{}, &st)
		cancel()
		if err != nil {
			continue
		}
		ids[i] = string(st.Header.MemberID)
		if st.Leader != "" && st.Leader != "0" {
			leader = string(st.Leader)
		}
	}
	for i, id := range ids {
		if id != "" && id == leader {
			return i
		}
	}
	return -1
}

// etcdPut writes key=value through the member at endpoint (a client URL),
// with etcd's JSON gateway.
func etcdPut(ctx context.Context, endpoint, key, value string) error {
	return etcdCall(ctx, endpoint, "/v3/kv/put", map[string]string{
		"key":   base64.StdEncoding.EncodeToString([]byte(key)),
		"value": base64.StdEncoding.EncodeToString([]byte(value)),
	}, nil)
}

// etcdGet reads key through the member at endpoint (a client URL), with a
// linearizable read on etcd's JSON gateway; found is false when the key
// does not exist.
func etcdGet(ctx context.Context, endpoint, key string) (value string, found bool, err error) {
	var resp struct {
		Kvs []struct {
			Value []byte `json:"value"` // base64 in JSON
		} `json:"kvs"`
	}
	err = etcdCall(ctx, endpoint, "/v3/kv/range", map[string]string{
		"key": base64.StdEncoding.EncodeToString([]byte(key)),
	}, &resp)
	if err != nil || len(resp.Kvs) == 0 {
		return "", false, err
	}
	return string(resp.Kvs[0].Value), true, nil
}

// etcdUint is a uint64 of etcd's JSON gateway, which writes them as
// strings; kept as its decimal text.
type etcdUint string

func (u *etcdUint) UnmarshalJSON(b []byte) error {
	*u = etcdUint(strings.Trim(string(b), `"`))
	return nil
}

// etcdHTTP keeps no idle connections, so that no transport goroutine
// outlives a call (the tests check for leaks).
var etcdHTTP = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// etcdCall posts req as JSON to path of etcd's v3 JSON gateway at endpoint
// and decodes the answer into resp (when not nil).
func etcdCall(ctx context.Context, endpoint, path string, req, resp any) error {
	if !strings.Contains(endpoint, "://") {
		endpoint = "http://" + endpoint
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/json")
	hresp, err := etcdHTTP.Do(hreq)
	if err != nil {
		return err
	}
	defer hresp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(hresp.Body, 1<<20))
	if err != nil {
		return err
	}
	if hresp.StatusCode != http.StatusOK {
		return fmt.Errorf("etcd %s%s: %s %s", endpoint, path, hresp.Status, bytes.TrimSpace(out))
	}
	if resp == nil {
		return nil
	}
	if err := json.Unmarshal(out, resp); err != nil {
		return fmt.Errorf("etcd %s%s: %w", endpoint, path, err)
	}
	return nil
}

// WaitHealthy waits until every running member answers /health, or ctx
// ends.
func (c *EtcdCluster) WaitHealthy(ctx context.Context) error {
	err := poll(ctx, func() error {
		for _, m := range c.Members {
			if m.Running() {
				if err := etcdHealthy(ctx, m.DSN()); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("integration: etcd cluster not healthy: %w", err)
	}
	return nil
}

// Close kills every member and removes the cluster's directory.
func (c *EtcdCluster) Close() error {
	var errs []error
	for _, m := range c.Members {
		errs = append(errs, m.Close())
	}
	errs = append(errs, os.RemoveAll(c.dir))
	return errors.Join(errs...)
}
