package rowlock

func quote(d Dialect, table string) string {
	if d == Postgres {
		return `"` + table + `"`
	}
	return "`" + table + "`"
}

// SetTestHook makes l call f before each acquire statement ("acquire") and
// holder read ("holder") of an acquisition attempt, and the function f
// returns after it. Set it before l is used.
func SetTestHook(l *Locker, f func(op string) (done func())) { l.testHook = f }

// QueueLen returns how many of l's waiters are queued on name, the head
// included.
func QueueLen(l *Locker, name string) int { return l.wake.Len(name) }

// ForceStatement returns the force-release statement of a dialect, so that
// a test can run it inside a transaction of its own.
func ForceStatement(d Dialect, table string) string {
	return newStatements(d, quote(d, table)).force
}

// RoomStatements returns the PostgreSQL waiting-room statements for table.
func RoomStatements(table string) []string {
	q := newStatements(Postgres, quote(Postgres, table))
	return []string{q.roomEnter, q.roomRelease, q.roomLeave}
}

// RoomKeys returns the two advisory keys of name's waiting room.
func RoomKeys(table, name string) [2]int32 { return roomKeys(table, name) }

// RoomLockName returns the user lock of name's waiting room on MySQL.
func RoomLockName(table, name string) string { return roomLockName(table, name) }

// RoomLingerMySQL is how long a Lock that waited keeps the waiting room on
// MySQL after it acquired.
const RoomLingerMySQL = roomLingerMySQL
