package advisory

import (
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/keyhash"
	"github.com/lockkit/lockkit/locktest"
)

// pgLossBound is the documented bound (see doc.go) on how soon Done closes
// after the holder's backend is terminated.
const pgLossBound = time.Second

func pgConformance(t *testing.T, ns string, newLocker func(t *testing.T) lockkit.Locker) {
	admin := pgAdmin(t)
	locktest.Run(t, locktest.Config{
		NewLocker:   newLocker,
		LossBound:   pgLossBound,
		LeakOptions: pgLeakOptions,
		KillHolder: func(t *testing.T, l lockkit.Lock) {
			pl := l.(*Lock)
			// Wait for the backend to exit: the suite takes the lock
			// elsewhere right after Done, and the server releases it a
			// moment after it reports the session's end.
			if pid := terminateHolder(t, admin, pl.Keys()[0], true); pid != pl.PID() {
				t.Errorf("pg_locks holder pid %d, Lock.PID() %d", pid, pl.PID())
			}
		},
		Leftovers: func(t *testing.T, names []string) int {
			keys := make([]keyhash.Key, len(names))
			for i, n := range names {
				keys[i] = keyhash.NamespacedName(ns, n)
			}
			// A discarded session's backend exits a moment after its
			// socket closes.
			deadline := time.Now().Add(5 * time.Second)
			for {
				n := len(pgLocks(t, admin, keys...))
				if n == 0 || time.Now().After(deadline) {
					return n
				}
				time.Sleep(10 * time.Millisecond)
			}
		},
	})
}

func TestPostgresConformanceSQL(t *testing.T) {
	pgConformance(t, "", func(t *testing.T) lockkit.Locker {
		p, _ := newPG(t, 8, nil)
		return p
	})
}

func TestPostgresConformancePool(t *testing.T) {
	pgConformance(t, "conformance-ns", func(t *testing.T) lockkit.Locker {
		return newPGPool(t, &Config{Namespace: "conformance-ns"})
	})
}
