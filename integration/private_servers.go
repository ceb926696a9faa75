package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
)

// StartPostgres starts a private PostgreSQL server for t and removes it
// when t ends. See [LaunchPostgres].
func StartPostgres(t testing.TB, opts ...Option) *Server {
	t.Helper()
	srv, err := LaunchPostgres(opts...)
	return register(t, srv, err)
}

// LaunchPostgres initialises a PostgreSQL cluster (initdb, trust
// authentication, user postgres) in a temporary directory and starts it on a
// free port, with fsync off and its unix socket in that directory. When the
// tests run as root the server runs as the postgres user. The binaries are
// found in PATH or in the newest /usr/lib/postgresql/VERSION/bin.
//
// [Server.DSN] is a pgx URL for the database postgres. The caller must
// [Server.Close] the server.
func LaunchPostgres(opts ...Option) (*Server, error) {
	o, err := applyOptions(opts)
	if err != nil {
		return nil, err
	}
	bin, err := postgresBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := runAs("postgres")
	if err != nil {
		return nil, err
	}
	dir, err := serverDir("lkpg", cred)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := run(cred, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	s := postgresServer(bin, dir, data, port, cred, o)
	if err := s.Start(); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// postgresServer makes the Server for the PostgreSQL data directory data
// (inside dir), to run on port; it does not start it.
func postgresServer(bin, dir, data string, port int, cred *syscall.Credential, o *serverOptions) *Server {
	s := &Server{
		kind:    "postgres",
		dir:     dir,
		port:    port,
		dsn:     fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port),
		logPath: filepath.Join(dir, "server.log"),
		cred:    cred,
		env:     o.env,
		stopSig: syscall.SIGINT, // fast shutdown
		args: func() (string, []string) {
			return filepath.Join(bin, "postgres"), append([]string{
				"-D", data, "-p", strconv.Itoa(port), "-k", dir,
				"-c", "listen_addresses=127.0.0.1",
				// No fsync, but every commit reaches the kernel before
				// it returns: a killed server keeps what it committed.
				"-c", "fsync=off", "-c", "full_page_writes=off",
				"-c", "shared_buffers=16MB", "-c", "max_connections=100",
				// Files in the data directory rather than /dev/shm, so
				// that a killed server leaves nothing outside it.
				"-c", "dynamic_shared_memory_type=mmap",
				"-c", "logging_collector=off", "-c", "log_min_messages=warning",
			}, o.args...)
		},
	}
	s.ready = func(ctx context.Context) error { return pingSQL(ctx, "pgx", s.dsn) }
	// A killed postmaster leaves its small System V shared memory segment
	// behind; a restart reuses it, Close removes it.
	s.onCrash = func() { removeSysVSegment(filepath.Join(data, "postmaster.pid")) }
	return s
}

// postgresBinDir finds the directory that holds initdb and postgres.
func postgresBinDir() (string, error) {
	if p, err := findBinary("initdb"); err == nil {
		// A link in PATH (/usr/local/bin/initdb) points into the
		// directory that holds the other binaries (pg_basebackup).
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { // newest major version first
		vi, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dirs[i])), 64)
		vj, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dirs[j])), 64)
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("integration: no PostgreSQL binaries (initdb) in PATH or /usr/lib/postgresql/*/bin")
}

// StartMariaDB starts a private MariaDB server for t and removes it when t
// ends. See [LaunchMariaDB].
func StartMariaDB(t testing.TB, opts ...Option) *Server {
	t.Helper()
	srv, err := LaunchMariaDB(opts...)
	return register(t, srv, err)
}

// LaunchMariaDB initialises a MariaDB data directory (mariadb-install-db,
// user root with an empty password) in a temporary directory and starts
// mariadbd on a free port with a small InnoDB and no binary log. When the
// tests run as root the server runs as the mysql user. A database named test
// is created.
//
// [Server.DSN] is a go-sql-driver/mysql DSN for root on database test. The
// caller must [Server.Close] the server.
func LaunchMariaDB(opts ...Option) (*Server, error) {
	o, err := applyOptions(opts)
	if err != nil {
		return nil, err
	}
	m, err := installMariaDB("lkmy")
	if err != nil {
		return nil, err
	}
	s := m.server(m.dir, m.port, o, nil)
	root := fmt.Sprintf("root@tcp(127.0.0.1:%d)/", m.port)
	s.firstRun = func(ctx context.Context) error {
		return pingSQL(ctx, "mysql", root, "CREATE DATABASE IF NOT EXISTS test")
	}
	if err := s.Start(); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// mariaDBInstall is a MariaDB data directory made by mariadb-install-db,
// not yet served.
type mariaDBInstall struct {
	mariadbd string
	cred     *syscall.Credential // nil: run as the current user
	dir      string              // the temporary directory; the data is in dir/data
	port     int
}

// mariaDBSizing is the small InnoDB every private MariaDB server runs with,
// and its tmpdir.
func mariaDBSizing(dir string) []string {
	// A tmpdir of its own: servers bootstrapped at the same time in a
	// shared /tmp have collided on their temporary tables there.
	return []string{"--innodb-buffer-pool-size=32M", "--innodb-log-file-size=8M", "--tmpdir=" + dir}
}

// installMariaDB initialises a data directory in a new temporary directory
// named after prefix and picks a free port for it.
func installMariaDB(prefix string) (*mariaDBInstall, error) {
	installDB, err := findBinary("mariadb-install-db", "/usr/bin", "/usr/local/mysql/scripts")
	if err != nil {
		return nil, err
	}
	mariadbd, err := findBinary("mariadbd", "/usr/sbin", "/usr/local/mysql/bin")
	if err != nil {
		return nil, err
	}
	cred, err := runAs("mysql")
	if err != nil {
		return nil, err
	}
	dir, err := serverDir(prefix, cred)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	installArgs := append([]string{"--no-defaults", "--datadir=" + filepath.Join(dir, "data"),
		"--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve"}, mariaDBSizing(dir)...)
	if cred != nil {
		installArgs = append(installArgs, "--user=mysql")
	}
	if err := run(nil, installDB, installArgs...); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return &mariaDBInstall{mariadbd: mariadbd, cred: cred, dir: dir, port: port}, nil
}

// server returns the Server that runs mariadbd on the data directory in
// dir (which may be a copy of m's) on port, with o's options; extra, when
// not nil, adds arguments before o's at every start. It waits for a root
// connection to answer; the caller sets firstRun.
func (m *mariaDBInstall) server(dir string, port int, o *serverOptions, extra func() []string) *Server {
	s := &Server{
		kind:    "mariadb",
		dir:     dir,
		port:    port,
		dsn:     fmt.Sprintf("root@tcp(127.0.0.1:%d)/test", port),
		logPath: filepath.Join(dir, "server.log"),
		cred:    m.cred,
		env:     o.env,
		stopSig: syscall.SIGTERM,
		args: func() (string, []string) {
			args := []string{"--no-defaults",
				"--datadir=" + filepath.Join(dir, "data"), "--socket=" + filepath.Join(dir, "mysqld.sock"),
				"--pid-file=" + filepath.Join(dir, "mysqld.pid"),
				"--port=" + strconv.Itoa(port), "--bind-address=127.0.0.1",
				"--skip-name-resolve", "--skip-log-bin", "--performance-schema=OFF",
				"--innodb-flush-log-at-trx-commit=2", // no fsync; a killed server keeps its commits "--innodb-doublewrite=0",
				"--log-error=" + filepath.Join(dir, "server.log"),
			}
			args = append(args, mariaDBSizing(dir)...)
			if extra != nil {
				args = append(args, extra()...)
			}
			return m.mariadbd, append(args, o.args...)
		},
	}
	root := fmt.Sprintf("root@tcp(127.0.0.1:%d)/", port)
	s.ready = func(ctx context.Context) error { return pingSQL(ctx, "mysql", root) }
	return s
}

// StartRedis starts a private Redis server for t and removes it when t
// ends. See [LaunchRedis].
func StartRedis(t testing.TB, opts ...Option) *Server {
	t.Helper()
	srv, err := LaunchRedis(opts...)
	return register(t, srv, err)
}

// LaunchRedis starts redis-server on a free port with no persistence (no
// RDB snapshots, no AOF): a restart loses every key, as a Redis without
// persistence does in production.
//
// [Server.DSN] is a Redis URL for database 0. The caller must
// [Server.Close] the server.
func LaunchRedis(opts ...Option) (*Server, error) {
	o, err := applyOptions(opts)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	return launchRedis("redis", port, nil, o)
}

// launchRedis starts redis-server on port; conf, when not nil, is written
// to redis.conf in the server's directory and named first on the command
// line (Sentinel needs a configuration file it can rewrite).
func launchRedis(kind string, port int, conf func(dir string) string, o *serverOptions) (*Server, error) {
	bin, err := findBinary("redis-server", "/usr/bin", "/usr/local/bin")
	if err != nil {
		return nil, err
	}
	dir, err := serverDir("lkrd", nil)
	if err != nil {
		return nil, err
	}
	var first []string
	if conf != nil {
		path := filepath.Join(dir, "redis.conf")
		if err := os.WriteFile(path, []byte(conf(dir)), 0o644); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		first = []string{path}
	}
	s := &Server{
		kind:    kind,
		dir:     dir,
		port:    port,
		dsn:     fmt.Sprintf("redis://127.0.0.1:%d/0", port),
		logPath: filepath.Join(dir, "server.log"),
		env:     o.env,
		stopSig: syscall.SIGTERM,
		args: func() (string, []string) {
			args := append(first, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
				"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no",
				"--loglevel", "warning")
			return bin, append(args, o.args...)
		},
	}
	s.ready = func(ctx context.Context) error { return pingRedis(ctx, s.Addr()) }
	if err := s.Start(); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}
