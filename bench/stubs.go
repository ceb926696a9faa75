package main

import (
	"context"
	"errors"
)

func setupPGRowlock(ctx context.Context, e *env) (*backendSetup, error) {
	return nil, errors.New("todo")
}
func setupMySQLRowlock(ctx context.Context, e *env) (*backendSetup, error) {
	return nil, errors.New("todo")
}
func serverVersions(ctx context.Context, e *env) map[string]string { return nil }
