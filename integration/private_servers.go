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
	dir, err := serverDir("lkmy", cred)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	// A tmpdir of its own: servers bootstrapped at the same time in a
	// shared /tmp have collided on their temporary tables there.
	sizing := []string{"--innodb-buffer-pool-size=32M", "--innodb-log-file-size=8M", "--tmpdir=" + dir}
	installArgs := append([]string{"--no-defaults", "--datadir=" + data,
		"--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve"}, sizing...)
	if cred != nil {
		installArgs = append(installArgs, "--user=mysql")
	}
	if err := run(nil, installDB, installArgs...); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	s := &Server{
		kind:    "mariadb",
		dir:     dir,
		port:    port,
		dsn:     fmt.Sprintf("root@tcp(127.0.0.1:%d)/test", port),
		logPath: filepath.Join(dir, "server.log"),
		cred:    cred,
		env:     o.env,
		stopSig: syscall.SIGTERM,
		args: func() (string, []string) {
			return mariadbd, append([]string{"--no-defaults",
				"--datadir=" + data, "--socket=" + filepath.Join(dir, "mysqld.sock"),
				"--pid-file=" + filepath.Join(dir, "mysqld.pid"),
				"--port=" + strconv.Itoa(port), "--bind-address=127.0.0.1",
				"--skip-name-resolve", "--skip-log-bin", "--performance-schema=OFF",
				"--innodb-flush-log-at-trx-commit=2", // no fsync; a killed server keeps its commits "--innodb-doublewrite=0",
				"--log-error=" + filepath.Join(dir, "server.log"),
			}, append(sizing, o.args...)...)
		},
	}
	root := fmt.Sprintf("root@tcp(127.0.0.1:%d)/", port)
	s.ready = func(ctx context.Context) error { return pingSQL(ctx, "mysql", root) }
	s.firstRun = func(ctx context.Context) error {
		return pingSQL(ctx, "mysql", root, "CREATE DATABASE IF NOT EXISTS test")
	}
	if err := s.Start(); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
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
	bin, err := findBinary("redis-server", "/usr/bin", "/usr/local/bin")
	if err != nil {
		return nil, err
	}
	dir, err := serverDir("lkrd", nil)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{
		kind:    "redis",
		dir:     dir,
		port:    port,
		dsn:     fmt.Sprintf("redis://127.0.0.1:%d/0", port),
		logPath: filepath.Join(dir, "server.log"),
		env:     o.env,
		stopSig: syscall.SIGTERM,
		args: func() (string, []string) {
			return bin, append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
				"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no",
				"--loglevel", "warning"}, o.args...)
		},
	}
	s.ready = func(ctx context.Context) error { return pingRedis(ctx, s.Addr()) }
	if err := s.Start(); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}
