package cli

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/lockkit/lockkit"
)

// Backend kinds, by URL scheme.
const (
	kindFile     = "file"
	kindPostgres = "postgres"
	kindMySQL    = "mysql"
	kindRedis    = "redis"
	kindEtcd     = "etcd"
)

// backendURL is a parsed --backend URL.
type backendURL struct {
	kind    string   // kindFile, kindPostgres, ...
	u       *url.URL // as given
	display string   // the URL with its secrets replaced, for messages
	dir     string   // the lock directory, for kindFile
}

// usageError is a bad flag, argument or backend URL: exit status 64.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

func isUsage(err error) bool {
	var ue *usageError
	return errors.As(err, &ue) || errors.Is(err, lockkit.ErrInvalid) || errors.Is(err, lockkit.ErrUnsupported)
}

func isNotAcquired(err error) bool { return errors.Is(err, lockkit.ErrNotAcquired) }

// resolveBackend picks the backend URL: the --backend flag, else
// LOCKKIT_BACKEND, else the file backend in the per-user lock directory.
// The URL's secrets are registered with the scrubber before anything can
// print them.
func (e *env) resolveBackend(flagValue string, flagGiven bool) (*backendURL, error) {
	raw := flagValue
	from := "--backend"
	if !flagGiven {
		raw = e.getenv(EnvBackend)
		from = EnvBackend
	}
	if !flagGiven && raw == "" {
		dir, err := defaultFileDir()
		if err != nil {
			return nil, fmt.Errorf("no backend given and no default lock directory: %w (set --backend or %s)", err, EnvBackend)
		}
		return &backendURL{kind: kindFile, u: &url.URL{Scheme: "file", Path: dir}, display: "file://" + dir, dir: dir}, nil
	}
	b, err := parseBackendURL(raw, e.scrub)
	if err != nil {
		return nil, usagef("%s: %v", from, err)
	}
	return b, nil
}

// parseBackendURL parses a backend URL and registers its secrets with sc.
// Its errors never quote the URL, which may hold a password.
func parseBackendURL(raw string, sc *scrubber) (*backendURL, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, errors.New("empty backend URL")
	}
	scheme, _, ok := strings.Cut(raw, ":")
	if !ok || strings.ContainsAny(scheme, "/@") {
		return nil, errors.New("a backend is a URL: file:///DIR, postgres://..., mysql://..., redis://..., etcd://...")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the URL, and its cause may quote parts of it
		// (a password mistaken for a port): say what is wrong without it.
		return nil, fmt.Errorf("cannot parse the %s URL; its form is %s (percent-encode special characters in the password)", scheme, urlForm(scheme))
	}
	if u.Opaque != "" && !strings.EqualFold(u.Scheme, "file") {
		// "mysql:user:pass@host/db" parses with no user or password, all
		// of it opaque, which redactURL cannot redact: refuse it unquoted.
		return nil, fmt.Errorf("the %s URL must start with %s://; its form is %s", scheme, scheme, urlForm(scheme))
	}
	for _, s := range urlSecrets(u) {
		sc.add(s)
	}
	b := &backendURL{u: u, display: redactURL(u)}
	switch strings.ToLower(u.Scheme) {
	case "file":
		b.kind = kindFile
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("file URL %s names host %q; a file lock is local: use file:///DIR", b.display, u.Host)
		}
		b.dir = u.Path
		if u.Opaque != "" { // file:relative/dir
			b.dir = u.Opaque
		}
		if b.dir == "" {
			return nil, fmt.Errorf("file URL %s names no directory: use file:///DIR", b.display)
		}
	case "postgres", "postgresql":
		b.kind = kindPostgres
	case "mysql":
		b.kind = kindMySQL
		if u.Host == "" {
			return nil, fmt.Errorf("mysql URL %s names no host: use %s", b.display, urlForm("mysql"))
		}
	case "redis", "rediss":
		b.kind = kindRedis
	case "etcd", "etcds":
		b.kind = kindEtcd
		if u.Host == "" {
			return nil, fmt.Errorf("etcd URL %s names no endpoint: use %s", b.display, urlForm("etcd"))
		}
	default:
		return nil, fmt.Errorf("unknown backend scheme %q: use file, postgres, postgresql, mysql, redis, rediss, etcd or etcds", u.Scheme)
	}
	return b, nil
}

func urlForm(scheme string) string {
	switch strings.ToLower(scheme) {
	case "file":
		return "file:///DIR"
	case "postgres", "postgresql":
		return "postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?PARAMS]"
	case "mysql":
		return "mysql://USER[:PASSWORD]@HOST[:PORT]/DB[?PARAMS]"
	case "redis", "rediss":
		return "redis://[USER[:PASSWORD]@]HOST[:PORT][/DB][?master_name=NAME[&addr=HOST:PORT...]]"
	case "etcd", "etcds":
		return "etcd://[USER[:PASSWORD]@]HOST[:PORT][,HOST[:PORT]...][/PREFIX]"
	}
	return "SCHEME://[USER[:PASSWORD]@]HOST[:PORT]/..."
}

// lockOptions say what kind of lock run wants.
type lockOptions struct {
	table  bool          // the lock table (rowlock) instead of advisory locks
	ttl    time.Duration // lease for the lock table, Redis and etcd; 0: the backend's default
	shared bool          // a shared lock
	owner  string        // holder info recorded where the backend keeps it
}

// backend is an opened backend.
type backend interface {
	// locker returns a Locker for opts, or an error matching
	// lockkit.ErrUnsupported or a usageError when the backend cannot give
	// that kind of lock.
	locker(opts lockOptions) (lockkit.Locker, error)
	// lister returns what lists the backend's locks: the lock table's
	// with table, else the backend's own locks'.
	lister(table bool) (lockkit.Lister, error)
	// close frees the backend's connections.
	close() error
}

// pingTimeout bounds the check that a server answers before lockkit waits
// on it.
const pingTimeout = 15 * time.Second

// checkOptions rejects lock options the backend kind cannot honour, before
// any I/O.
func checkOptions(b *backendURL, opts lockOptions) error {
	switch b.kind {
	case kindFile:
		if opts.table {
			return usagef("--table needs a postgres:// or mysql:// backend, not %s", b.display)
		}
		if opts.ttl != 0 {
			return usagef("--ttl needs --table or a redis:// or etcd:// backend; a file lock lasts while lockkit runs")
		}
	case kindPostgres, kindMySQL:
		if opts.ttl != 0 && !opts.table {
			return usagef("--ttl needs --table on %s: an advisory lock lasts as long as its session", b.kind)
		}
	case kindRedis, kindEtcd:
		if opts.table {
			return usagef("--table needs a postgres:// or mysql:// backend, not %s", b.display)
		}
	}
	if opts.shared {
		switch {
		case b.kind == kindMySQL && !opts.table:
			return usagef("--shared: MySQL user locks (GET_LOCK) have no shared mode")
		case b.kind == kindRedis:
			return usagef("--shared: the Redis backend has no shared locks")
		case b.kind == kindEtcd:
			return usagef("--shared: the etcd backend has no shared locks")
		case opts.table:
			return usagef("--shared: the lock table has no shared locks")
		}
	}
	return nil
}

// openBackend connects to b and checks that it answers.
func (e *env) openBackend(ctx context.Context, b *backendURL) (backend, error) {
	switch b.kind {
	case kindFile:
		return openFile(ctx, e, b)
	case kindPostgres:
		return openPostgres(ctx, e, b)
	case kindMySQL:
		return openMySQL(ctx, e, b)
	case kindRedis:
		return openRedis(ctx, e, b)
	case kindEtcd:
		return openEtcd(ctx, e, b)
	}
	return nil, fmt.Errorf("the %s backend is not built into this lockkit", b.kind)
}
