package mysqllock_test

import (
	"testing"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/locktest"
	"github.com/lockkit/lockkit/mysqllock"
)

// TestSemaphore runs the semaphore suite on GET_LOCK. KILLing the holder's
// connection is the kill, and stands for a crash: the server ends the
// session and its user locks at once. User locks carry no holder data, so
// callers that disagree on the number of permits are not told apart (the
// suite says so).
func TestSemaphore(t *testing.T) {
	admin := integration.MySQL(t)
	var namer *mysqllock.Locker
	locktest.RunSemaphore(t, locktest.SemaphoreConfig{
		Config: locktest.Config{
			NewLocker: func(t *testing.T) lockkit.Locker {
				m, _ := newMySQL(t, nil)
				return m
			},
			KillHolder: func(t *testing.T, l lockkit.Lock) {
				killConn(t, admin, l.(*mysqllock.Lock).ConnID())
			},
			LossBound: mysqlLossBound(testProbeInterval),
			Leftovers: func(t *testing.T, names []string) int {
				if namer == nil {
					namer, _ = newMySQL(t, nil)
				}
				n := 0
				for _, name := range names {
					if usedBy(t, admin, lockName(t, namer, name)).Valid {
						n++
					}
				}
				return n
			},
		},
	})
}
