// Package interop holds lockkit's tests against other tools' own locks
// whose modules lockkit does not otherwise need, such as goose's
// PostgreSQL session locker.
//
// It is a module of its own, like bench, so that those tools stay out of
// lockkit's go.mod and so out of the builds of lockkit's users. Its tests
// take their servers from package integration: set LOCKKIT_TEST_POSTGRES.
package interop
