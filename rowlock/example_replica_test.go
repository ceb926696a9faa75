package rowlock_test

import (
	"context"
	"database/sql"
	"log"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/lockkit/lockkit/rowlock"
)

// A lock table on a PostgreSQL primary with a standby. The DSN names both
// servers with target_session_attrs=read-write, so the pool's connections
// go to whichever accepts writes: after a failover, renewals and releases
// reach the promoted standby without a restart. With a synchronous standby
// a held lease survives the failover; with an asynchronous one the last
// leases can vanish, and the next holder's fencing token is still larger
// (it carries the server's timeline), so a resource that checks tokens
// refuses the old holder. Not run: it needs the two servers.
func Example_replicatedServer() {
	ctx := context.Background()
	db, err := sql.Open("pgx", "postgres://app@db-a:5432,db-b:5432/app?target_session_attrs=read-write&connect_timeout=5")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	locks, err := rowlock.New(db, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer locks.Close()
	lock, err := locks.Acquire(ctx, "nightly-report")
	if err != nil {
		log.Fatal(err)
	}
	defer lock.Release(context.WithoutCancel(ctx))
	// Pass lock.Token() with every write to the guarded resource:
	// UPDATE ... SET ..., fence = $token WHERE ... AND fence <= $token
	_ = lock.Token()
}
