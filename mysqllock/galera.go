package mysqllock

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"github.com/go-sql-driver/mysql"
	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/mysqlconn"
)

// ErrGalera means the server is a node of a Galera cluster (wsrep_on is
// ON: MariaDB Galera Cluster, Percona XtraDB Cluster). User locks are not
// replicated there: GET_LOCK is granted by the one node that runs it, so a
// client of another node takes the same name at the same time. Some
// versions reject GET_LOCK there (MDEV-30473, error 1235 "GET_LOCK in
// cluster (WSREP_ON=ON)"); later ones grant it again, on the one node
// (MDEV-31325; MariaDB 10.11.19 does). A Locker refuses to lock
// on such a server rather than hand out a lock that excludes nothing. The
// error matches lockkit.ErrUnsupported too. On Galera, use the lock table
// (package rowlock, migrations.MySQL), whose rows replicate through
// certification.
var ErrGalera = errors.New("mysqllock: the server is a Galera cluster node, where GET_LOCK is not replicated and excludes nothing across nodes")

// galeraAdvice is what a Galera refusal tells the caller to do instead.
const galeraAdvice = "use the lock table instead (package rowlock with migrations.MySQL; lockkit run --table), whose rows replicate to every node"

// galeraError is an ErrGalera with how it was seen.
type galeraError struct {
	evidence string // "wsrep_on=ON", or the server's refusal of GET_LOCK
}

func (e *galeraError) Error() string {
	return ErrGalera.Error() + " (" + e.evidence + "): " + galeraAdvice
}

func (e *galeraError) Is(target error) bool {
	return target == ErrGalera || target == lockkit.ErrUnsupported
}

// checkCluster asks, on the connection of the Locker's first acquire,
// whether the server is a Galera node: one statement, once per Locker
// until a server says it is not one. A Galera node is refused with a
// galeraError, and asked again by the next acquire. A server that cannot
// answer (no variables table it knows, or no privilege on one) is not
// asked again: a Galera node's own rejection of GET_LOCK is still mapped
// (see galeraRefusal). Any other error, such as a dropped connection, is
// returned as it is.
func (m *Locker) checkCluster(ctx context.Context, conn *sql.Conn) error {
	if m.clusterChecked.Load() {
		return nil
	}
	v, err := mysqlconn.GlobalValue(ctx, conn, mysqlconn.VariableQueries, "wsrep_on")
	var me *mysql.MySQLError
	switch {
	case errors.As(err, &me):
		m.clusterChecked.Store(true)
		return nil
	case err != nil:
		return err
	case strings.EqualFold(v, "ON"):
		return &galeraError{evidence: "wsrep_on=ON"}
	}
	m.clusterChecked.Store(true)
	return nil
}

// galeraRefusal turns a Galera node's rejection of GET_LOCK (MariaDB's
// ER_NOT_SUPPORTED_YET, "... GET_LOCK in cluster (WSREP_ON=ON)") into a
// galeraError; nil for any other error.
func galeraRefusal(err error) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) && me.Number == 1235 && strings.Contains(strings.ToUpper(me.Message), "WSREP") {
		return &galeraError{evidence: "the server refused GET_LOCK: " + me.Message}
	}
	return nil
}
