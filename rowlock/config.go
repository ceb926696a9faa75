package rowlock

import (
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/invalid"
)

// Dialect names the SQL dialect of the database behind the *sql.DB.
type Dialect string

// The supported dialects.
const (
	// Postgres is PostgreSQL 12 or later, through pgx's database/sql
	// driver (github.com/jackc/pgx/v5/stdlib). Waiters are woken by
	// LISTEN/NOTIFY; other drivers work but their waiters poll.
	Postgres Dialect = "postgres"
	// MySQL is MySQL 8.0 or later, or MariaDB 10.3 or later, through
	// github.com/go-sql-driver/mysql. Waiters poll with backoff; the
	// heads of different Lockers take turns in a GET_LOCK waiting room
	// outside Galera (see the package documentation, "Waiting").
	MySQL Dialect = "mysql"
)

// Defaults and limits.
const (
	// DefaultTable is the lock table the migrations package creates.
	DefaultTable = "lockkit_locks"
	// DefaultTTL is the lease length when Config.TTL is 0.
	DefaultTTL = 30 * time.Second
	// MinTTL and MaxTTL bound a lease. Leases are stored with microsecond
	// precision and never rounded to seconds.
	MinTTL = time.Millisecond
	MaxTTL = 100 * 365 * 24 * time.Hour
	// MaxNameBytes is the longest lock name, in bytes.
	MaxNameBytes = 255
	// MaxOwnerChars is the longest owner or host, in characters.
	MaxOwnerChars = 255
	// MaxDataBytes is the longest holder data, in bytes (MySQL's TEXT).
	MaxDataBytes = 65535
	// DefaultMaxPoll is the longest pause between two attempts of a
	// waiter that polls (MySQL, or PostgreSQL without notifications).
	DefaultMaxPoll = 100 * time.Millisecond
	// minPoll is the first pause of a polling waiter.
	minPoll = 2 * time.Millisecond
)

// NoRenew as a RenewInterval turns automatic lease renewal off: the lease
// ends after its TTL unless Lock.Renew extends it.
const NoRenew time.Duration = -1

// Config configures a [Locker]. A nil *Config, like zero fields, means the
// defaults; the dialect is then detected from the *sql.DB's driver, and New
// refuses a driver it does not know unless Dialect is set.
type Config struct {
	// Dialect of the database. Empty means: detect it from db's driver
	// (pgx's stdlib driver or go-sql-driver/mysql).
	Dialect Dialect

	// Table is the lock table, a plain identifier (letters, digits,
	// underscores; at most 63 characters) in the connection's current
	// schema or database. Default [DefaultTable]. A table of another name
	// must have the same columns; copy the migration files to make one.
	// On PostgreSQL, releases notify the channel "lockkit.<table>" (for a
	// table name over 55 bytes, its first bytes and a hash of the name,
	// 63 bytes in all).
	Table string

	// Owner identifies this Locker's holders in the table and in
	// HeldError messages, at most 255 characters. Default
	// "host:pid:random", unique per Locker. Release, renew and resume
	// match owner and fencing token together.
	Owner string

	// TTL is the lease length, from MinTTL to MaxTTL. Default
	// [DefaultTTL]. The lease is measured on the database clock.
	TTL time.Duration

	// RenewInterval is how often a lock from Acquire or TryAcquire renews
	// its lease in the background. 0 means TTL/3; [NoRenew] turns
	// automatic renewal off. An interval above TTL/2 is rejected: a lease
	// renewed that late is lost to the first slow round trip.
	RenewInterval time.Duration

	// Host and PID describe the holder in the table. Defaults: the host
	// name (at most 255 characters) and the process id.
	Host string
	PID  int

	// Data is free-form holder metadata stored with each lease, such as
	// the user name shown in "being edited by ...". At most
	// [MaxDataBytes] bytes.
	Data string

	// MaxPoll bounds the pause between two attempts of a waiter that
	// polls. Default [DefaultMaxPoll]. See the package documentation on
	// waiting.
	MaxPoll time.Duration

	// Telemetry says where the Locker's metrics, spans and logs go; nil
	// means OpenTelemetry's global providers and no logs. See
	// [lockkit.Telemetry]. Handles made by Resume count renewals but not
	// holds: the lease was acquired elsewhere.
	Telemetry *lockkit.Telemetry
}

// settings is a validated Config with its defaults filled in.
type settings struct {
	dialect Dialect
	table   string // validated, unquoted
	qtable  string // quoted for the dialect
	channel string // PostgreSQL notification channel
	owner   string
	ttl     time.Duration
	renew   time.Duration // < 0: none
	host    string
	pid     int
	data    string
	maxPoll time.Duration
	tel     *lockkit.Telemetry
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

func detectDialect(db *sql.DB) Dialect {
	switch db.Driver().(type) {
	case *stdlib.Driver:
		return Postgres
	case *mysql.MySQLDriver:
		return MySQL
	}
	return ""
}

func newSettings(db *sql.DB, cfg *Config) (*settings, error) {
	if db == nil {
		return nil, invalid.Errorf("rowlock: nil *sql.DB")
	}
	if cfg == nil {
		cfg = &Config{}
	}
	s := &settings{
		dialect: cfg.Dialect,
		table:   cfg.Table,
		owner:   cfg.Owner,
		ttl:     cfg.TTL,
		renew:   cfg.RenewInterval,
		host:    cfg.Host,
		pid:     cfg.PID,
		data:    cfg.Data,
		maxPoll: cfg.MaxPoll,
		tel:     cfg.Telemetry,
	}
	if s.dialect == "" {
		s.dialect = detectDialect(db)
		if s.dialect == "" {
			return nil, invalid.Errorf("rowlock: cannot detect the dialect of driver %T; set Config.Dialect", db.Driver())
		}
	}
	if s.table == "" {
		s.table = DefaultTable
	}
	if !identRE.MatchString(s.table) {
		return nil, invalid.Errorf("rowlock: table %q is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*, at most 63 characters)", s.table)
	}
	switch s.dialect {
	case Postgres:
		s.qtable = `"` + s.table + `"`
		s.channel = notifyChannel(s.table)
	case MySQL:
		s.qtable = "`" + s.table + "`"
	default:
		return nil, invalid.Errorf("rowlock: unknown dialect %q (want %q or %q)", s.dialect, Postgres, MySQL)
	}
	if s.host == "" {
		h, _ := os.Hostname()
		s.host = truncateChars(h, MaxOwnerChars)
	}
	if s.pid == 0 {
		s.pid = os.Getpid()
	}
	if s.owner == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		s.owner = truncateChars(s.host, 200) + ":" + strconv.Itoa(s.pid) + ":" + hex.EncodeToString(b[:])
	}
	if s.ttl == 0 {
		s.ttl = DefaultTTL
	}
	if s.maxPoll == 0 {
		s.maxPoll = DefaultMaxPoll
	}
	if s.maxPoll < minPoll {
		return nil, invalid.Errorf("rowlock: MaxPoll %v is below %v", s.maxPoll, minPoll)
	}
	if s.pid < 0 {
		return nil, invalid.Errorf("rowlock: negative PID %d", s.pid)
	}
	if err := checkText("owner", s.owner, MaxOwnerChars, false); err != nil {
		return nil, err
	}
	if err := checkText("host", s.host, MaxOwnerChars, true); err != nil {
		return nil, err
	}
	if err := checkData(s.data); err != nil {
		return nil, err
	}
	if err := checkTTL(s.ttl); err != nil {
		return nil, err
	}
	r, err := renewInterval(s.ttl, s.renew)
	if err != nil {
		return nil, err
	}
	s.renew = r
	return s, nil
}

// renewInterval validates a renewal interval against ttl and fills the
// default.
func renewInterval(ttl, renew time.Duration) (time.Duration, error) {
	switch {
	case renew == 0:
		return ttl / 3, nil
	case renew < 0:
		return NoRenew, nil
	case renew > ttl/2:
		return 0, invalid.Errorf("rowlock: renew interval %v is not well under the lease TTL %v (at most TTL/2)", renew, ttl)
	}
	return renew, nil
}

func checkTTL(ttl time.Duration) error {
	if ttl <= 0 {
		return invalid.Errorf("rowlock: lease TTL %v is not positive", ttl)
	}
	if ttl < MinTTL || ttl > MaxTTL {
		return invalid.Errorf("rowlock: lease TTL %v is outside [%v, %v]", ttl, MinTTL, MaxTTL)
	}
	return nil
}

func checkName(name string) error {
	switch {
	case name == "":
		return invalid.Errorf("rowlock: empty lock name")
	case len(name) > MaxNameBytes:
		return invalid.Errorf("rowlock: lock name is %d bytes long, longer than %d", len(name), MaxNameBytes)
	case !utf8.ValidString(name):
		return invalid.Errorf("rowlock: lock name %q is not valid UTF-8", name)
	case strings.IndexByte(name, 0) >= 0:
		return invalid.Errorf("rowlock: lock name %q contains a NUL byte", name)
	}
	return nil
}

// checkText validates an owner or host: UTF-8, no NUL, at most max
// characters, so that the database neither truncates nor rejects it.
func checkText(what, v string, max int, emptyOK bool) error {
	switch {
	case v == "" && !emptyOK:
		return invalid.Errorf("rowlock: empty %s", what)
	case !utf8.ValidString(v):
		return invalid.Errorf("rowlock: %s %q is not valid UTF-8", what, v)
	case strings.IndexByte(v, 0) >= 0:
		return invalid.Errorf("rowlock: %s %q contains a NUL byte", what, v)
	case utf8.RuneCountInString(v) > max:
		return invalid.Errorf("rowlock: %s is %d characters long, longer than %d", what, utf8.RuneCountInString(v), max)
	}
	return nil
}

func checkData(v string) error {
	switch {
	case len(v) > MaxDataBytes:
		return invalid.Errorf("rowlock: holder data is %d bytes long, longer than %d", len(v), MaxDataBytes)
	case !utf8.ValidString(v):
		return invalid.Errorf("rowlock: holder data is not valid UTF-8")
	case strings.IndexByte(v, 0) >= 0:
		return invalid.Errorf("rowlock: holder data contains a NUL byte")
	}
	return nil
}

func truncateChars(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}

// RecordName returns the lock name for one record of a table, for
// per-record locks in CRUD applications: RecordName("products", 42) is
// "products:42". Different (table, id) pairs give different names: a ':'
// or '%' in table is percent-encoded, so the first ':' always ends the
// table part. id is formatted with fmt's %v, so the int 42 and the string
// "42" name the same record. The result is checked like any name when a
// lock is taken (at most [MaxNameBytes] bytes).
func RecordName(table string, id any) string {
	t := strings.NewReplacer("%", "%25", ":", "%3A").Replace(table)
	return t + ":" + fmt.Sprint(id)
}

// notifyChannel returns the PostgreSQL notification channel of a lock
// table: "lockkit." + table, shortened with a hash of the table name when
// that would exceed PostgreSQL's 63-byte identifier limit (pg_notify
// refuses a longer channel, and LISTEN would truncate it).
func notifyChannel(table string) string {
	const maxIdent = 63
	c := "lockkit." + table
	if len(c) <= maxIdent {
		return c
	}
	sum := sha256.Sum256([]byte(table))
	h := hex.EncodeToString(sum[:8])
	return c[:maxIdent-1-len(h)] + "." + h
}
