// Command containers starts database servers in containers through
// Testcontainers, for package integration (github.com/lockkit/lockkit/integration).
//
// It is a module of its own so that Testcontainers and the Docker client stay
// out of lockkit's go.mod, and so out of the builds of lockkit's users.
// Package integration builds it with "go build" when a test needs a server
// whose environment variable is unset, and talks to it over stdin and
// stdout, one JSON object a line:
//
//	request:  {"image": "postgres:16-alpine", "port": "5432/tcp", "env": {...}, "ready": "...", "labels": {...}}
//	response: {"host": "127.0.0.1", "port": "32768"} or {"error": "..."}
//
// Before each start it checks, as Testcontainers' provider does, that a
// Docker engine answers; the response's error says so when none does.
//
// Test traffic stays on this machine's loopback: the container's port is
// published on 127.0.0.1 only, and a start is refused, before any
// container is created, when Testcontainers would reach containers at an
// address that is not loopback (a remote DOCKER_HOST, or the bridge's
// gateway that Testcontainers picks when it finds itself inside a
// container; TESTCONTAINERS_HOST_OVERRIDE=localhost overrides the latter).
// On a developer's machine with a local Docker engine nothing needs
// setting.
//
// When its stdin closes — the test process has ended, however it ended —
// it terminates every container it started and exits; Testcontainers'
// reaper is the backstop should it die first. Where the reaper's image
// cannot be pulled (TESTCONTAINERS_RYUK_DISABLED=true), the containers'
// labels (the request's, beside Testcontainers' own) let a sweep find
// what a killed launcher left.
//
// Nothing is written to stdout but responses, and its stderr is not read:
// Testcontainers' log lines of a request ride along in the response's "log".
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
	"github.com/testcontainers/testcontainers-go/wait"
)

type request struct {
	Image string            `json:"image"`
	Port  string            `json:"port"` // such as "5432/tcp"
	Env   map[string]string `json:"env,omitempty"`
	// Ready is a log line the server prints twice when ready (the
	// entrypoint restarts it once after initialising); "" to wait for the
	// port only.
	Ready string `json:"ready,omitempty"`
	// Labels are set on the container, beside Testcontainers' own.
	Labels map[string]string `json:"labels,omitempty"`
}

type response struct {
	Host  string `json:"host,omitempty"`
	Port  string `json:"port,omitempty"`
	Error string `json:"error,omitempty"`
	Log   string `json:"log,omitempty"`
}

// logBuffer collects Testcontainers' log lines until the next response.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Printf(format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.b, format, v...)
	if !strings.HasSuffix(l.b.String(), "\n") {
		l.b.WriteByte('\n')
	}
}

func (l *logBuffer) take() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.b.String()
	l.b.Reset()
	return s
}

func main() {
	// Responses own stdout; a library's stray print goes to stderr.
	out := json.NewEncoder(os.Stdout)
	os.Stdout = os.Stderr
	logs := &logBuffer{}
	tclog.SetDefault(logs)

	var started []testcontainers.Container
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var req request
		var resp response
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			resp.Error = fmt.Sprintf("bad request: %v", err)
		} else if c, host, port, err := start(req); err != nil {
			resp.Error = err.Error()
		} else {
			started = append(started, c)
			resp.Host, resp.Port = host, port
		}
		resp.Log = logs.take()
		if err := out.Encode(resp); err != nil {
			break
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, c := range started {
		_ = c.Terminate(ctx)
	}
}

// start runs req's image when a Docker engine answers.
func start(req request) (c testcontainers.Container, host, port string, err error) {
	defer func() {
		// Testcontainers panics on some broken Docker setups; treat that
		// as "no engine".
		if r := recover(); r != nil {
			err = fmt.Errorf("testcontainers: %v", r)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	provider, err := testcontainers.ProviderDefault.GetProvider()
	if err != nil {
		return nil, "", "", fmt.Errorf("no Docker engine: %w", err)
	}
	defer provider.Close()
	if err := provider.Health(ctx); err != nil {
		return nil, "", "", errors.New("no Docker engine answers")
	}
	if err := checkLoopback(ctx, provider); err != nil {
		return nil, "", "", err
	}
	cport, err := network.ParsePort(req.Port)
	if err != nil {
		return nil, "", "", fmt.Errorf("bad port %q: %w", req.Port, err)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	strategies := []wait.Strategy{wait.ForListeningPort(req.Port)}
	if req.Ready != "" {
		strategies = append(strategies, wait.ForLog(req.Ready).WithOccurrence(2))
	}
	dc, err := testcontainers.Run(ctx, req.Image,
		testcontainers.WithExposedPorts(req.Port),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			// Published on the IPv4 loopback only, on a port Docker picks.
			hc.PortBindings = network.PortMap{cport: {{HostIP: netip.AddrFrom4([4]byte{127, 0, 0, 1})}}}
		}),
		testcontainers.WithEnv(req.Env),
		testcontainers.WithLabels(req.Labels),
		testcontainers.WithWaitStrategyAndDeadline(2*time.Minute, strategies...),
	)
	if dc != nil {
		c = dc // terminated at exit even if it never became ready
	}
	if err != nil {
		if c != nil {
			_ = c.Terminate(context.Background())
		}
		if strings.Contains(err.Error(), "reaper") && os.Getenv("TESTCONTAINERS_RYUK_DISABLED") == "" {
			err = fmt.Errorf("%w (where the reaper's image cannot be pulled, set TESTCONTAINERS_RYUK_DISABLED=true)", err)
		}
		return nil, "", "", fmt.Errorf("start %s: %w", req.Image, err)
	}
	p, err := c.MappedPort(ctx, req.Port)
	if err != nil {
		_ = c.Terminate(context.Background())
		return nil, "", "", err
	}
	// The address the port is published on, whichever name of the
	// loopback Testcontainers dialled.
	return c, "127.0.0.1", p.Port(), nil
}

// checkLoopback refuses a Docker engine whose containers Testcontainers
// would reach at an address other than this machine's loopback: the tests
// send traffic to localhost only, and the ports are published there.
func checkLoopback(ctx context.Context, provider any) error {
	dh, ok := provider.(interface {
		DaemonHost(context.Context) (string, error)
	})
	if !ok {
		return fmt.Errorf("testcontainers: provider %T does not say where containers are reached", provider)
	}
	host, err := dh.DaemonHost(ctx)
	if err != nil {
		return fmt.Errorf("testcontainers: the Docker host's address: %w", err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.To4() != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("testcontainers would reach the containers at %s, not on this machine's loopback, "+
		"where lockkit's tests publish and dial them; where the Docker engine runs on this machine "+
		"(Testcontainers picks the bridge's gateway when it finds itself in a container), "+
		"set TESTCONTAINERS_HOST_OVERRIDE=localhost", host)
}
