package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/lockkit/lockkit/etcdlock"
	"github.com/lockkit/lockkit/integration"
)

// etcd: lockkit's etcdlock against etcd's own recipe (concurrency.Mutex
// on a Session) and a floor of raw clientv3 calls sending etcdlock's
// transactions. The server is the one -etcd names (default
// $LOCKKIT_TEST_ETCD), else a private single member that the harness
// starts from Debian's etcd binary (startEtcd) and stops on exit.
//
// Round trips are counted per gRPC request, not per TCP flight: a gRPC
// client multiplexes every call of its workers on one connection, where
// netcount's flights would merge concurrent calls into one. A unary call
// (Txn, Put, Get, Delete, Grant, Revoke) is one round trip, and so is
// every message a client sends on a stream (a watch created or cancelled,
// a KeepAliveOnce). Retries count once each.

// etcdPrefix is the run's key prefix: every key any variant puts is under
// it, and the backend's cleanup deletes it.
func (e *env) etcdPrefix() string { return "lockkit-bench/" + e.runID + "/" }

// etcdLeaseTTL is the floor's and the raw-writes diagnostic's one lease:
// granted at setup and revoked at cleanup, long enough to need no
// keepalive during a run.
const etcdLeaseTTL = 3600

// startEtcd returns e.etcd's endpoints, starting a private single-member
// etcd when e has none; stop ends what it started. Without an etcd the
// error wraps errOptional unless e.etcdRequested: the backend is skipped
// then, with the error, and a -strict run still passes.
func startEtcd(e *env) (endpoints []string, stop func(), err error) {
	if e.etcd != "" {
		var eps []string
		for _, ep := range strings.Split(e.etcd, ",") {
			if ep = strings.TrimSpace(ep); ep != "" {
				eps = append(eps, ep)
			}
		}
		return eps, func() {}, nil
	}
	c, err := integration.LaunchEtcdCluster(1)
	if err != nil {
		err = fmt.Errorf("no etcd: set -etcd or %s, or install etcd-server (a private member did not start: %w)", integration.EnvEtcd, err)
		if !e.etcdRequested {
			err = fmt.Errorf("%w: %w", errOptional, err)
		}
		return nil, nil, err
	}
	return c.Endpoints(), func() { _ = c.Close() }, nil
}

// newEtcd opens an etcd client whose connections and requests are counted
// by c (which must have rpc set).
func newEtcd(endpoints []string, c *netCounter) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
				return c.dial(ctx, "tcp", addr)
			}),
			// Chained after clientv3's own (retrying) interceptors, so
			// that each attempt counts.
			grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				c.flights.Add(1)
				return invoker(ctx, method, req, reply, cc, opts...)
			}),
			grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
				s, err := streamer(ctx, desc, cc, method, opts...)
				if err != nil {
					return nil, err
				}
				return &countedStream{ClientStream: s, c: c}, nil
			}),
		},
	})
}

// countedStream counts the messages a client sends on a stream.
type countedStream struct {
	grpc.ClientStream
	c *netCounter
}

func (s *countedStream) SendMsg(m any) error {
	s.c.flights.Add(1)
	return s.ClientStream.SendMsg(m)
}

// openEtcd is newEtcd on a fresh counter, with a first request made so
// that no measurement waits for the connection.
func openEtcd(ctx context.Context, endpoints []string) (*clientv3.Client, *netCounter, error) {
	c := &netCounter{rpc: true}
	cli, err := newEtcd(endpoints, c)
	if err != nil {
		return nil, nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second) // an endpoint that does not answer
	defer cancel()
	if _, err := cli.Get(pctx, "lockkit-bench/ping"); err != nil {
		cli.Close()
		return nil, nil, err
	}
	return cli, c, nil
}

func setupEtcd(ctx context.Context, e *env) (*backendSetup, error) {
	endpoints, stop, err := startEtcd(e)
	if err != nil {
		return nil, err
	}
	closers := []func(){stop}
	cleanup := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	fail := func(err error) (*backendSetup, error) { cleanup(); return nil, err }
	e.etcdEndpoints = endpoints
	prefix := e.etcdPrefix()
	name := e.lockName

	admin, _, err := openEtcd(ctx, endpoints)
	if err != nil {
		return fail(fmt.Errorf("etcd at %v: %w", endpoints, err))
	}
	closers = append(closers, func() {
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = admin.Delete(dctx, prefix, clientv3.WithPrefix())
		admin.Close()
	})
	notes := []string{"one clientv3 client (one gRPC connection) per variant; the workers of a variant share it except where a variant says otherwise; round trips are gRPC requests: unary calls and the messages a client sends on a stream (watch create and cancel, KeepAliveOnce)"}
	if st, err := admin.Status(ctx, endpoints[0]); err == nil {
		where := "the cluster of -etcd / " + integration.EnvEtcd
		if e.etcd == "" {
			where = "a private single member started by the harness (integration.LaunchEtcdCluster: data on /dev/shm, so a commit's fsync costs next to nothing; 50 ms heartbeat)"
		}
		notes = append(notes, fmt.Sprintf("etcd %s, %s", st.Version, where))
	}

	lkc, lkNet, err := openEtcd(ctx, endpoints)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { lkc.Close() })
	lk, err := etcdlock.New(lkc, &etcdlock.Config{Prefix: prefix + "lk/"})
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { _ = lk.Close() })
	lockkitV := &variant{
		name: "lockkit", role: roleLockkit, net: lkNet,
		note:      "etcdlock.New(client, prefix): one lease per Locker (30 s, KeepAliveOnce every 10 s), a watch on every held lock's key; TryAcquire/Acquire + Release; Acquire: a key of its own per attempt, waiters queued by create revision, each watching its predecessor; one Locker for the 16 workers",
		try:       lockkitTry(lk, name),
		contended: sharedLockerWorkers(lk, name),
	}

	flc, flNet, err := openEtcd(ctx, endpoints)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { flc.Close() })
	lease, err := flc.Grant(ctx, etcdLeaseTTL)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() {
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = flc.Revoke(rctx, lease.ID)
	})
	fl := &etcdFloor{c: flc, lease: lease.ID, pfx: prefix + "floor/"}
	floorV := &variant{
		name: "floor", role: roleFloor, net: flNet,
		note: "clientv3 sending etcdlock's transactions on one lease granted at setup (no keepalive, no watch on a held key): try = Txn(no key under the name ? put : get first); release = Txn(create revision = ours ? delete); contended: Txn(put, get first), then while not first Txn(ours and oldest ? put : get ours, predecessor, first) and a watch on the predecessor from the current revision (with a read of it when the revision moved before the watch started); no watch on its own key",
		try:  func(ctx context.Context, k int) (releaseFunc, error) { return fl.try(ctx, name(k)) },
		contended: func(ctx context.Context, k, n int) ([]worker, func(), error) {
			ws := make([]worker, n)
			for i := range ws {
				ws[i] = workerFunc(func(ctx context.Context) (releaseFunc, error) { return fl.lock(ctx, name(k)) })
			}
			return ws, func() {}, nil
		},
	}
	// The diagnostic has a client (a connection) of its own, as every
	// variant of the latency scenarios has; it puts under the floor's
	// lease.
	rawc, rawNet, err := openEtcd(ctx, endpoints)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { rawc.Close() })
	rawV := &variant{
		name: "floor, a Put and a Delete (diagnostic)", role: roleFloor, net: rawNet, diagnostic: true,
		note: "no lock at all: Put(key, lease) then Delete(key), two raft writes; the cost of any lock that writes a key to take and deletes it to give back",
		try: func(ctx context.Context, k int) (releaseFunc, error) {
			key := fl.pfx + "raw/" + name(k)
			if _, err := rawc.Put(ctx, key, "", clientv3.WithLease(lease.ID)); err != nil {
				return nil, err
			}
			return func(ctx context.Context) error { _, err := rawc.Delete(ctx, key); return err }, nil
		},
	}

	mxc, mxNet, err := openEtcd(ctx, endpoints)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { mxc.Close() })
	trySess, err := concurrency.NewSession(mxc, concurrency.WithTTL(30))
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { _ = trySess.Close() })
	mutexV := &variant{
		name: "concurrency.Mutex", role: rolePeer, net: mxNet,
		note: "go.etcd.io/etcd/client/v3/concurrency v3.7.3, etcd's own recipe: NewSession (30 s lease, the client's KeepAlive stream) and NewMutex(session, name); TryLock/Lock + Unlock; contended: a Session and a Mutex per worker on the shared client (a Mutex's key is its session's lease, so workers cannot share a session)",
		try: func(ctx context.Context, k int) (releaseFunc, error) {
			m := concurrency.NewMutex(trySess, prefix+"mutex/"+name(k))
			if err := m.TryLock(ctx); err != nil {
				return nil, err
			}
			return m.Unlock, nil
		},
		contended: func(ctx context.Context, k, n int) ([]worker, func(), error) {
			ws := make([]worker, n)
			var sessions []*concurrency.Session
			closeAll := func() {
				for _, s := range sessions {
					_ = s.Close()
				}
			}
			for i := range ws {
				s, err := concurrency.NewSession(mxc, concurrency.WithTTL(30))
				if err != nil {
					closeAll()
					return nil, nil, err
				}
				sessions = append(sessions, s)
				m := concurrency.NewMutex(s, prefix+"mutex/"+name(k))
				ws[i] = workerFunc(func(ctx context.Context) (releaseFunc, error) {
					if err := m.Lock(ctx); err != nil {
						return nil, err
					}
					return m.Unlock, nil
				})
			}
			return ws, closeAll, nil
		},
	}
	ind, err := independentVariants(e, "etcd", &netCounter{rpc: true})
	if err != nil {
		return fail(err)
	}
	return &backendSetup{
		variants: append([]*variant{lockkitV, floorV, mutexV, rawV}, ind...),
		notes:    notes,
		cleanup:  cleanup,
	}, nil
}

// etcdFloor runs etcdlock's transactions with clientv3 alone.
type etcdFloor struct {
	c     *clientv3.Client
	lease clientv3.LeaseID
	pfx   string
	seq   atomic.Uint64
}

// key returns a fresh key under name's prefix (etcdlock: lease-n).
func (f *etcdFloor) key(name string) (pfx, key string) {
	pfx = f.pfx + name + "/"
	return pfx, pfx + strconv.FormatInt(int64(f.lease), 16) + "-" + strconv.FormatUint(f.seq.Add(1), 16)
}

// release is etcdlock's release transaction for key at create revision rev.
func (f *etcdFloor) release(key string, rev int64) releaseFunc {
	return func(ctx context.Context) error {
		resp, err := f.c.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", rev)).
			Then(clientv3.OpDelete(key)).
			Commit()
		if err == nil && !resp.Succeeded {
			err = errors.New("release: not the owner")
		}
		return err
	}
}

// try is etcdlock's TryLock transaction.
func (f *etcdFloor) try(ctx context.Context, name string) (releaseFunc, error) {
	pfx, key := f.key(name)
	resp, err := f.c.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(pfx).WithPrefix(), "=", 0)).
		Then(clientv3.OpPut(key, "", clientv3.WithLease(f.lease))).
		Else(clientv3.OpGet(pfx, clientv3.WithFirstCreate()...)).
		Commit()
	if err != nil {
		return nil, err
	}
	if !resp.Succeeded {
		return nil, errors.New("held")
	}
	return f.release(key, resp.Header.Revision), nil
}

// lock is etcdlock's Lock: put a key and read the oldest; while not the
// oldest, watch the predecessor and try again when it is deleted. A wait
// that ends with ctx deletes its key.
func (f *etcdFloor) lock(ctx context.Context, name string) (releaseFunc, error) {
	pfx, key := f.key(name)
	resp, err := f.c.Txn(ctx).
		Then(clientv3.OpPut(key, "", clientv3.WithLease(f.lease)),
			clientv3.OpGet(pfx, clientv3.WithFirstCreate()...)).
		Commit()
	if err != nil {
		return nil, err
	}
	rev := resp.Header.Revision
	if first := resp.Responses[1].GetResponseRange().Kvs; len(first) > 0 && first[0].CreateRevision == rev {
		return f.release(key, rev), nil
	}
	for {
		resp, err := f.c.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", rev),
				clientv3.Compare(clientv3.CreateRevision(pfx).WithPrefix(), ">", rev-1)).
			Then(clientv3.OpPut(key, "", clientv3.WithLease(f.lease))).
			Else(clientv3.OpGet(key),
				clientv3.OpGet(pfx, append(clientv3.WithLastCreate(), clientv3.WithMaxCreateRev(rev-1))...),
				clientv3.OpGet(pfx, clientv3.WithFirstCreate()...)).
			Commit()
		if err == nil && resp.Succeeded {
			return f.release(key, rev), nil
		}
		if err == nil {
			pred := resp.Responses[1].GetResponseRange().Kvs
			if len(pred) == 0 {
				continue
			}
			err = f.waitDelete(ctx, string(pred[0].Key), resp.Header.Revision+1)
			if err == nil {
				continue
			}
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_ = f.release(key, rev)(dctx)
		cancel()
		return nil, err
	}
}

// waitDelete waits until key is deleted after revision from, or ctx ends,
// as etcdlock waits: the watch starts at the current revision (a watch
// from a past revision waits for etcd's 100 ms catch-up of unsynced
// watches), and once it is created a read covers the revisions from from
// to its start, unless nothing was written in between.
func (f *etcdFloor) waitDelete(ctx context.Context, key string, from int64) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for wr := range f.c.Watch(wctx, key, clientv3.WithCreatedNotify()) {
		if err := wr.Err(); err != nil {
			return err
		}
		for _, ev := range wr.Events {
			if ev.Type == clientv3.EventTypeDelete {
				return nil
			}
		}
		if wr.Created && wr.Header.Revision >= from {
			g, err := f.c.Get(ctx, key, clientv3.WithCountOnly())
			if err != nil || g.Count == 0 {
				return err
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("watch closed")
}
