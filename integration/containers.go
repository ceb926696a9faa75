package integration

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Containers come from the launcher in ./containers, a module of its own
// (package main) that holds Testcontainers, so that Testcontainers, the
// Docker client and their dependencies stay out of lockkit's go.mod and so
// out of every build that depends on lockkit. The first test of a test
// binary that needs a container builds the launcher with the go command
// (cached by the build cache after the first time) and starts it; it
// serves every container of that test binary, one JSON line each way, and
// terminates them when its stdin closes, which the kernel does when the
// test process ends, however it ends.

// launcherTimeout bounds one answer of the launcher; it bounds its own
// work at 3 minutes and a few seconds.
const launcherTimeout = 4 * time.Minute

type launcherRequest struct {
	Image  string            `json:"image"`
	Port   string            `json:"port"`
	Env    map[string]string `json:"env,omitempty"`
	Ready  string            `json:"ready,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
}

type launcherResponse struct {
	Host  string `json:"host"`
	Port  string `json:"port"`
	Error string `json:"error"`
	Log   string `json:"log"`
}

var (
	launcherOnce sync.Once
	launcherErr  error
	launcherMu   sync.Mutex
	// The write end of the launcher's stdin stays open, and reachable so
	// that no finalizer closes it, until the test process exits.
	launcherIn  *os.File
	launcherOut *os.File
	launcherR   *bufio.Reader
)

// startContainer runs s's image in a container when a Docker engine
// answers. The container lives as long as the test process.
func startContainer(s spec) (string, error) {
	image, err := imageOf(s)
	if err != nil {
		return "", err
	}
	if err := dockerCandidate(); err != nil {
		return "", err
	}
	launcherOnce.Do(func() { launcherErr = startLauncher() })
	if launcherErr != nil {
		return "", launcherErr
	}

	launcherMu.Lock()
	defer launcherMu.Unlock()
	if launcherR == nil {
		return "", errors.New("the container launcher has stopped")
	}
	req, err := json.Marshal(launcherRequest{Image: image, Port: s.port, Env: s.envs, Ready: s.ready, Labels: labels()})
	if err != nil {
		return "", err
	}
	var resp launcherResponse
	err = func() error {
		if _, err := launcherIn.Write(append(req, '\n')); err != nil {
			return err
		}
		// Pipes from os.Pipe take deadlines where the runtime polls them;
		// elsewhere the launcher's own timeouts are the bound.
		_ = launcherOut.SetReadDeadline(time.Now().Add(launcherTimeout))
		line, err := launcherR.ReadBytes('\n')
		if err != nil {
			return err
		}
		return json.Unmarshal(line, &resp)
	}()
	if err != nil {
		launcherR = nil
		return "", fmt.Errorf("container launcher: %w", err)
	}
	if resp.Log != "" {
		fmt.Fprint(os.Stderr, resp.Log)
	}
	if resp.Error != "" {
		return "", errors.New(resp.Error)
	}
	return s.url(resp.Host, resp.Port), nil
}

// dockerCandidate reports an error when no Docker engine can be there:
// none of the places Testcontainers looks for one (DOCKER_HOST,
// ~/.testcontainers.properties, the default and the rootless sockets)
// holds anything. That spares building the launcher on machines without
// Docker. Where something is found, the launcher's Testcontainers decides.
func dockerCandidate() error {
	if runtime.GOOS == "windows" || os.Getenv("DOCKER_HOST") != "" {
		return nil
	}
	paths := []string{"/var/run/docker.sock", filepath.Join("/run/user", strconv.Itoa(os.Getuid()), "docker.sock")}
	if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" {
		paths = append(paths, filepath.Join(dir, "docker.sock"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		paths = append(paths,
			filepath.Join(home, ".testcontainers.properties"),
			filepath.Join(home, ".docker", "run", "docker.sock"),
			filepath.Join(home, ".docker", "desktop", "docker.sock"))
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return nil
		}
	}
	return errors.New("no Docker engine: no DOCKER_HOST, no ~/.testcontainers.properties and no Docker socket")
}

// startLauncher builds the launcher into a temporary directory and starts
// it. The directory is removed as soon as the launcher runs.
func startLauncher() error {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return errors.New("container launcher: cannot locate its source")
	}
	src := filepath.Join(filepath.Dir(file), "containers")
	if _, err := os.Stat(filepath.Join(src, "go.mod")); err != nil {
		return fmt.Errorf("container launcher: no source: %w", err)
	}
	dir, err := os.MkdirTemp("", "lockkit-containers-")
	if err != nil {
		return fmt.Errorf("container launcher: %w", err)
	}
	defer os.RemoveAll(dir)
	exe := filepath.Join(dir, "containers")
	if runtime.GOOS == "windows" {
		exe += ".exe"
	}
	build := exec.Command("go", "build", "-o", exe, ".")
	build.Dir = src
	build.Env = append(os.Environ(), "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build the container launcher: %v: %s", err, strings.TrimSpace(string(out)))
	}

	inR, inW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("container launcher: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		_ = inR.Close()
		_ = inW.Close()
		return fmt.Errorf("container launcher: %w", err)
	}
	// *os.File streams: no copying goroutine. Stderr is /dev/null: a child
	// holding the test's stderr after the test exits would make go test
	// wait for it and fail with "Test I/O incomplete".
	cmd := exec.Command(exe)
	cmd.Stdin, cmd.Stdout = inR, outW
	err = cmd.Start()
	_ = inR.Close()
	_ = outW.Close()
	if err != nil {
		_ = inW.Close()
		_ = outR.Close()
		return fmt.Errorf("container launcher: %w", err)
	}
	launcherIn, launcherOut, launcherR = inW, outR, bufio.NewReader(outR)
	return nil
}
