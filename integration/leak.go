package integration

import "go.uber.org/goleak"

// IgnorePgxBackgroundReader lets a goleak check pass over pgx's background
// reader. pgx starts it on a connection when a write takes over 15 ms (a
// loaded machine), and it stays blocked in a read until the connection
// next reads: on a connection of a pool that outlives the check (a
// package's shared pool, an admin pool), it is the connection's, not a
// leak of the check's. The cost: a connection the check left open would
// not be found through such a reader.
var IgnorePgxBackgroundReader = goleak.IgnoreAnyFunction("github.com/jackc/pgx/v5/pgconn/internal/bgreader.(*BGReader).bgRead")
