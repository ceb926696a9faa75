package redislock

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// maxBatch is the most renewals sent in one pipeline.
const maxBatch = 512

// batcher sends a Locker's automatic renewals. Each held lock's timer queues
// the lock when its renewal is due; one goroutine, started when the queue
// fills and ended when it is empty, sends everything queued in one pipeline
// of renewal scripts, after waiting a few milliseconds for more to come
// due. Many held locks then cost a few round trips per interval instead of
// one each, and a Locker whose locks are not due runs no goroutine.
type batcher struct {
	l *Locker

	mu      sync.Mutex
	queue   []*Lock
	running bool
}

func (b *batcher) add(lk *Lock) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.queue = append(b.queue, lk)
	if !b.running {
		b.running = true
		go b.run()
	}
}

// remove takes lk out of the queue and reports whether it was there; false
// means its renewal is being sent.
func (b *batcher) remove(lk *Lock) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := slices.Index(b.queue, lk)
	if i < 0 {
		return false
	}
	b.queue = slices.Delete(b.queue, i, i+1)
	return true
}

func (b *batcher) run() {
	// Wait a moment before each batch so that renewals coming due close
	// together share a round trip. Renewals run at most every TTL/2, so a
	// few milliseconds more do not endanger a lease.
	wait := min(b.l.set.renewEvery/16, 5*time.Millisecond)
	for {
		time.Sleep(wait)
		b.mu.Lock()
		n := min(len(b.queue), maxBatch)
		if n == 0 {
			b.running = false
			b.queue = nil
			b.mu.Unlock()
			return
		}
		batch := slices.Clone(b.queue[:n])
		b.queue = slices.Delete(b.queue, 0, n)
		b.mu.Unlock()
		b.send(batch)
	}
}

// send renews batch: one EVALSHA for a single lock, a pipeline for more.
// A renewal the server answers with NOSCRIPT is repeated with the script's
// EVAL fallback. The context bounds the wait by one renew interval; the
// locks' expiry timers end any lock whose lease runs out meanwhile.
func (b *batcher) send(batch []*Lock) {
	l := b.l
	ctx, cancel := context.WithTimeout(context.Background(), l.set.renewEvery)
	defer cancel()
	start := time.Now()
	_, cluster := l.c.(*redis.ClusterClient)
	if len(batch) == 1 || (l.set.waitN > 0 && cluster) {
		// With WaitReplicas on a cluster, each renewal waits for the
		// replicas of its own slot's master.
		for _, lk := range batch {
			lk.autoRenewed(lk.renew(ctx))
		}
		return
	}
	pipe := l.c.Pipeline()
	cmds := make([]*redis.Cmd, len(batch))
	for i, lk := range batch {
		cmds[i] = pipe.EvalSha(ctx, renewScript.Hash(), []string{lk.k.key}, lk.secret, l.set.ttlMs)
	}
	var wait *redis.Cmd
	if l.set.waitN > 0 {
		// One WAIT after the batch, on its connection, covers every
		// renewal in it.
		wait = pipe.Do(ctx, "wait", l.set.waitN, l.set.waitMs)
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error
	var waitErr error
	if wait != nil {
		acks, err := wait.Int64()
		if err != nil {
			waitErr = fmt.Errorf("WAIT: %w", err)
		} else {
			waitErr = l.notReplicated(int(acks))
		}
	}
	for i, lk := range batch {
		n, err := cmds[i].Int64()
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			lk.autoRenewed(lk.renew(ctx))
			continue
		}
		if err == nil && n == 1 {
			err = waitErr
		}
		lk.autoRenewed(lk.renewed(start, n, err))
	}
}
