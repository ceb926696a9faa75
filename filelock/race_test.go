//go:build race

package filelock

// raceAllocs is what the race detector adds to an uncontended TryAcquire
// plus Release (TestTryReleaseAllocs).
const raceAllocs = 2
