package etcdlock

import (
	"cmp"
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockkit/lockkit"
)

// maxTxnOps stays under etcd's default limit of operations in one
// transaction (--max-txn-ops, 128).
const maxTxnOps = 100

// List implements lockkit.Lister. Without names it reads every key under
// the Locker's prefix in one range read and reports each name whose oldest
// key (its holder) exists, ordered by name; with names it reads each name's
// oldest key, up to 100 names per transaction, and reports every name in
// the order given. The holder's lease's end (Holder.Expires) costs one
// TimeToLive call per holder.
func (l *Locker) List(ctx context.Context, names ...string) ([]lockkit.LockInfo, error) {
	if len(names) == 0 {
		return l.listAll(ctx)
	}
	out := make([]lockkit.LockInfo, 0, len(names))
	for chunk := range slices.Chunk(names, maxTxnOps) {
		ops := make([]clientv3.Op, len(chunk))
		for i, n := range chunk {
			ops[i] = clientv3.OpGet(l.Prefix(n), clientv3.WithFirstCreate()...)
		}
		resp, err := l.c.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, fmt.Errorf("etcdlock: list: %w", err)
		}
		for i, n := range chunk {
			info := lockkit.LockInfo{Name: n, Key: l.Prefix(n)}
			if kvs := resp.Responses[i].GetResponseRange().Kvs; len(kvs) > 0 {
				l.fill(ctx, &info, kvs[0])
			}
			out = append(out, info)
		}
	}
	return out, nil
}

func (l *Locker) listAll(ctx context.Context) ([]lockkit.LockInfo, error) {
	resp, err := l.c.Get(ctx, l.set.prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("etcdlock: list: %w", err)
	}
	oldest := map[string]*mvccpb.KeyValue{}
	for _, kv := range resp.Kvs {
		rest := strings.TrimPrefix(string(kv.Key), l.set.prefix)
		esc, _, ok := strings.Cut(rest, "/")
		if !ok {
			continue // not a lock key
		}
		name, err := url.PathUnescape(esc)
		if err != nil {
			continue
		}
		if o := oldest[name]; o == nil || kv.CreateRevision < o.CreateRevision {
			oldest[name] = kv
		}
	}
	out := make([]lockkit.LockInfo, 0, len(oldest))
	for name, kv := range oldest {
		info := lockkit.LockInfo{Name: name}
		l.fill(ctx, &info, kv)
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b lockkit.LockInfo) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// fill describes the holder whose key is kv.
func (l *Locker) fill(ctx context.Context, info *lockkit.LockInfo, kv *mvccpb.KeyValue) {
	info.Held = true
	info.Mode = lockkit.Exclusive
	info.Key = string(kv.Key)
	info.Holder = decodeHolder(kv.Value, kv.CreateRevision)
	l.expires(ctx, &info.Holder, clientv3.LeaseID(kv.Lease))
}
