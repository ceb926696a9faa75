package mysqllock

import (
	"database/sql"
	"reflect"
	"sync"
)

// mysqlConnIDs caches the server's connection id (CONNECTION_ID()) of the
// pool's physical connections, keyed by the driver's connection. A waiting
// acquire needs the id before it blocks, to KILL the session if the wait
// is abandoned; with the id cached the wait is one statement.
//
// The key is only compared, never used: database/sql never hands out a
// driver connection that it closed, and while the map holds a key its
// address cannot be reused by another connection, so a hit is always the
// connection's own id. Connections that the pool closed are not reported
// to anyone; a sweep drops every entry that was not used since the
// previous sweep, whenever the map has doubled since then (at least 64
// entries), so the map stays within a small multiple of the connections
// in use. A live connection swept out costs one more statement the next
// time it waits. Every lock statement reads CONNECTION_ID() too, so the
// lock's own id never depends on the cache.
type mysqlConnIDs struct {
	mu    sync.Mutex
	ids   map[any]mysqlConnIDEntry
	epoch uint64
	limit int // sweep when the map grows past it
}

type mysqlConnIDEntry struct {
	id    int64
	epoch uint64 // of the last use
}

// mysqlConnIDsMin is the least size of the map before a sweep.
const mysqlConnIDsMin = 64

// driverConn returns conn's driver connection, as a key for mysqlConnIDs,
// or nil if conn is closed or its driver connection is not a pointer (and
// so perhaps neither comparable nor unique).
func driverConn(conn *sql.Conn) any {
	var dc any
	_ = conn.Raw(func(c any) error {
		if reflect.TypeOf(c).Kind() == reflect.Pointer {
			dc = c
		}
		return nil
	})
	return dc
}

// get returns the cached id of the driver connection dc.
func (c *mysqlConnIDs) get(dc any) (int64, bool) {
	if dc == nil {
		return 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.ids[dc]
	if !ok {
		return 0, false
	}
	if e.epoch != c.epoch {
		e.epoch = c.epoch
		c.ids[dc] = e
	}
	return e.id, true
}

// put records id as the connection id of dc.
func (c *mysqlConnIDs) put(dc any, id int64) {
	if dc == nil || id == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ids == nil {
		c.ids = make(map[any]mysqlConnIDEntry)
		c.limit = mysqlConnIDsMin
	}
	c.ids[dc] = mysqlConnIDEntry{id: id, epoch: c.epoch}
	if len(c.ids) <= c.limit {
		return
	}
	for k, e := range c.ids {
		if e.epoch != c.epoch {
			delete(c.ids, k)
		}
	}
	c.epoch++
	c.limit = max(mysqlConnIDsMin, 2*len(c.ids))
}

// len returns the number of cached ids, for tests.
func (c *mysqlConnIDs) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ids)
}
