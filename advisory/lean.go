package advisory

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// The lean statements (one key on a connection known to reach its own
// server session: the lock or unlock call and pg_backend_pid(), see
// sessionLock and sessionUnlock) are the hot path of a contended lock:
// every acquisition sends one of each. Where pgx would cache them as
// prepared statements anyway (its default QueryExecModeCacheStatement),
// they run through pgconn directly: prepared once per connection
// (pgx.Conn.Prepare, named by their text), their parameters encoded in
// binary into the operation's own buffer, their one row read from pgconn's
// buffer. The server's answer is checked as before, column by column, and
// more strictly (the columns' types, exactly one row). What this skips is
// pgx's per-query machinery (the statement cache's lookup, the argument
// encoding plans, a Rows object, the scan plans), which cost 5–10 µs of
// CPU per acquisition and release and 6 of its allocations (advisory's
// BenchmarkPostgresContended, 16 workers, loaded machine).
//
// A connection whose pgx config asks for another exec mode (exec, simple
// protocol: for poolers that keep no prepared statements), or that has a
// pgx Tracer (a user's query tracing), runs the lean statements through
// pgx as configured (runLean), so that the tracer sees them.

// preparedKey marks, in a connection's pgconn CustomData, whether its pgx
// config caches prepared statements (leanPrepared).
const preparedKey = "github.com/lockkit/lockkit/advisory.prepared"

// leanPrepared reports whether c runs statements as cached prepared
// statements (pgx's default exec mode) with no tracer, so that the lean
// statements may be prepared on it. It looks at c's config once per
// connection.
func leanPrepared(c *pgx.Conn) bool {
	data := c.PgConn().CustomData()
	ok, known := data[preparedKey].(bool)
	if !known {
		cfg := c.Config()
		ok = cfg.DefaultQueryExecMode == pgx.QueryExecModeCacheStatement && cfg.Tracer == nil
		data[preparedKey] = ok
	}
	return ok
}

// leanBuf holds the encoded parameters of one lean statement: at most
// four (the unlock of a pair: pid, a, b; a fenced lock of a pair: a, b,
// the sequence's oid), each at most 8 bytes.
type leanBuf struct {
	bytes  [4 * 8]byte
	params [4][]byte
}

var (
	binaryFormat = []int16{pgtype.BinaryFormatCode} // one code: every parameter, every column
	leanColOIDs  = [3]uint32{pgtype.BoolOID, pgtype.Int4OID, pgtype.Int8OID}
)

// runLean runs st, a lean lock or unlock statement, on c (execLean where
// c caches prepared statements, else pgx's QueryRow in c's exec mode) and
// puts its columns in col.r, *pid and, for a fenced lock, col.tok.
func runLean(c *pgx.Conn, st sessionStmt, buf *leanBuf, col *oneCols, pid *int32) error {
	if leanPrepared(c) {
		return execLean(c, st, buf, col, pid)
	}
	dest := []any{&col.r, pid, &col.tok}
	if !st.fence {
		dest = dest[:2]
	}
	return c.QueryRow(context.Background(), st.sql, st.args...).Scan(dest...)
}

// execLean runs st, a lean lock or unlock statement, on c as a prepared
// statement and puts its row's columns in col.r, *pid and, for a fenced
// lock, col.tok. It fails unless the statement returned exactly one row of
// those columns in binary.
func execLean(c *pgx.Conn, st sessionStmt, buf *leanBuf, col *oneCols, pid *int32) error {
	bg := context.Background()
	sd, err := c.Prepare(bg, st.sql, st.sql)
	if err != nil {
		return err
	}
	if len(st.args) > len(buf.params) || len(sd.ParamOIDs) != len(st.args) {
		return fmt.Errorf("lean statement: %d parameters for %d arguments", len(sd.ParamOIDs), len(st.args))
	}
	for i, a := range st.args {
		b := buf.bytes[8*i : 8*i]
		switch v := a.(type) {
		case int64:
			if sd.ParamOIDs[i] != pgtype.Int8OID {
				return fmt.Errorf("lean statement: parameter %d is of type %d, not bigint", i+1, sd.ParamOIDs[i])
			}
			b = binary.BigEndian.AppendUint64(b, uint64(v))
		case int32:
			if sd.ParamOIDs[i] != pgtype.Int4OID {
				return fmt.Errorf("lean statement: parameter %d is of type %d, not integer", i+1, sd.ParamOIDs[i])
			}
			b = binary.BigEndian.AppendUint32(b, uint32(v))
		default:
			return fmt.Errorf("lean statement: argument %d is a %T", i+1, a)
		}
		buf.params[i] = b
	}
	ncol := 2
	if st.fence {
		ncol = 3
	}
	rr := c.PgConn().ExecStatement(bg, sd, buf.params[:len(st.args)], binaryFormat, binaryFormat)
	rows := 0
	var rowErr error
	for rr.NextRow() {
		rows++
		if rows == 1 {
			rowErr = scanLean(rr.FieldDescriptions(), rr.Values(), ncol, col, pid)
		}
	}
	if _, err := rr.Close(); err != nil {
		return err
	}
	if rowErr != nil {
		return rowErr
	}
	if rows != 1 {
		return fmt.Errorf("lean statement: %d rows, want 1", rows)
	}
	return nil
}

// scanLean checks and decodes the binary row of a lean statement: a
// boolean (NULL allowed), an integer pid, and with ncol 3 a bigint token
// (NULL allowed).
func scanLean(fields []pgconn.FieldDescription, vals [][]byte, ncol int, col *oneCols, pid *int32) error {
	if len(fields) != ncol || len(vals) != ncol {
		return fmt.Errorf("lean statement: %d columns, want %d", len(vals), ncol)
	}
	for i := range ncol {
		if fields[i].DataTypeOID != leanColOIDs[i] || fields[i].Format != pgtype.BinaryFormatCode {
			return fmt.Errorf("lean statement: column %d is of type %d in format %d", i+1, fields[i].DataTypeOID, fields[i].Format)
		}
	}
	switch v := vals[0]; {
	case v == nil:
		col.r = pgtype.Bool{}
	case len(v) == 1:
		col.r = pgtype.Bool{Bool: v[0] != 0, Valid: true}
	default:
		return fmt.Errorf("lean statement: a boolean of %d bytes", len(v))
	}
	if v := vals[1]; len(v) == 4 {
		*pid = int32(binary.BigEndian.Uint32(v))
	} else {
		return fmt.Errorf("lean statement: a pid of %d bytes", len(v))
	}
	if ncol == 3 {
		switch v := vals[2]; {
		case v == nil:
			col.tok = pgtype.Int8{}
		case len(v) == 8:
			col.tok = pgtype.Int8{Int64: int64(binary.BigEndian.Uint64(v)), Valid: true}
		default:
			return fmt.Errorf("lean statement: a token of %d bytes", len(v))
		}
	}
	return nil
}
