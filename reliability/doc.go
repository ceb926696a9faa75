// Package reliability holds lockkit's fault tests: it proves the promises
// of the backends under real faults, on real servers, and records what it
// found in RELIABILITY.md at the repository root.
//
// The package has no API; everything is in its tests:
//
//   - the fault matrix (matrix_*_test.go): for every backend where the
//     fault applies, the holder's session killed, the server restarted or
//     paused, the holder process killed with SIGKILL, the connection cut
//     mid-acquire, the pool exhausted, the clock shifted, the lock directory
//     removed or made read-only. Each checks that no two holders overlap,
//     that Done closes within the backend's documented bound, that a waiter
//     acquires afterwards, and that nothing leaks;
//   - the exclusion torture test (torture_test.go): N processes doing
//     read-modify-writes under a lock, with sessions killed at random;
//   - hostile input (hostile_test.go, fuzz_test.go): names that try SQL
//     injection, path traversal and symlinks, and passwords that must not
//     reach output;
//   - tests of the numbered failure modes in RELIABILITY.md that no other
//     package covers, named TestPitfallNN_... after the item's number.
//
// Faults that stop, pause or restart a server use private servers the tests
// start themselves (package integration); the shared servers named by the
// LOCKKIT_TEST_* variables only ever see sessions killed.
//
// Run it with the shared servers' variables set:
//
//	go test -race ./reliability
//
// and the long torture run with
//
//	LOCKKIT_TORTURE=long go test ./reliability -run Torture -v -timeout 60m
package reliability
