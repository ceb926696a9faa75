package integration

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// startContainer runs s's image through Testcontainers when a Docker engine
// answers. The container lives as long as the test process; Testcontainers'
// reaper removes it afterwards.
func startContainer(s spec) (url string, err error) {
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
		return "", fmt.Errorf("no Docker engine: %w", err)
	}
	defer provider.Close()
	if err := provider.Health(ctx); err != nil {
		return "", errors.New("no Docker engine answers")
	}

	ctx, cancel = context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	strategies := []wait.Strategy{wait.ForListeningPort(s.port)}
	if s.ready != "" {
		strategies = append(strategies, wait.ForLog(s.ready).WithOccurrence(2))
	}
	c, err := testcontainers.Run(ctx, s.image,
		testcontainers.WithExposedPorts(s.port),
		testcontainers.WithEnv(s.envs),
		testcontainers.WithWaitStrategyAndDeadline(2*time.Minute, strategies...),
	)
	if err != nil {
		return "", fmt.Errorf("start %s: %w", s.image, err)
	}
	host, err := c.Host(ctx)
	if err != nil {
		return "", err
	}
	port, err := c.MappedPort(ctx, s.port)
	if err != nil {
		return "", err
	}
	return s.url(host, port.Port()), nil
}
