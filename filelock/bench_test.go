//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package filelock

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// rawFloor does by hand what a lockkit TryAcquire plus Release does on an
// uncontended lock, with no lockkit code in between: the same system calls
// on a directory descriptor opened once, and a holder record of the same
// shape.
type rawFloor struct {
	dirfd  int
	prefix []byte
	buf    []byte
}

func newRawFloor(b *testing.B, dir string) *rawFloor {
	dirfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Close(dirfd) })
	host, _ := os.Hostname()
	p := []byte(`{"pid":` + strconv.Itoa(os.Getpid()) + `,"host":"` + host + `","owner":"root","app":"filelock.test","since":"`)
	return &rawFloor{dirfd: dirfd, prefix: p, buf: make([]byte, 0, 512)}
}

func (r *rawFloor) cycle(b *testing.B, file, name string) {
	fd, err := unix.Openat(r.dirfd, file, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	var st, st2 unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		b.Fatal(err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b.Fatal(err)
	}
	if err := unix.Fstatat(r.dirfd, file, &st2, unix.AT_SYMLINK_NOFOLLOW); err != nil || st2.Ino != st.Ino {
		b.Fatal(err)
	}
	rec := append(r.buf[:0], r.prefix...)
	rec = time.Now().UTC().AppendFormat(rec, time.RFC3339Nano)
	rec = append(rec, `","name":"`...)
	rec = append(rec, name...)
	rec = append(rec, "\"}\n"...)
	if _, err := unix.Pwrite(fd, rec, 0); err != nil {
		b.Fatal(err)
	}
	// release (no CheckInterval: no loss check; the close ends the flock)
	if _, err := unix.Pwrite(fd, []byte{' '}, 0); err != nil {
		b.Fatal(err)
	}
	unix.Close(fd)
}

// bareCycle is what naive flock code does: open by path, lock, close. No
// symlink or inode checks, no holder record.
func bareCycle(b *testing.B, path string) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b.Fatal(err)
	}
	unix.Close(fd)
}

func lockkitCycle(b *testing.B, l *Locker, name string) {
	ctx := context.Background()
	lk, err := l.TryAcquire(ctx, name)
	if err != nil {
		b.Fatal(err)
	}
	if err := lk.Release(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkFileTryRelease: an uncontended TryAcquire plus Release through
// lockkit, against the raw system calls doing the same work ("raw"), and
// against naive open+flock+close ("bare", which does less). "ratio"
// interleaves lockkit and raw cycles and reports lockkit's time as a
// multiple of raw's (x-raw).
func BenchmarkFileTryRelease(b *testing.B) {
	dir := b.TempDir()
	l := newLocker(b, dir, &Config{Owner: "root", App: "filelock.test"})
	const name = "bench"
	raw := newRawFloor(b, dir)
	b.Run("lockkit", func(b *testing.B) {
		for b.Loop() {
			lockkitCycle(b, l, name)
		}
	})
	b.Run("raw", func(b *testing.B) {
		for b.Loop() {
			raw.cycle(b, name+".lock", name)
		}
	})
	b.Run("bare", func(b *testing.B) {
		path := dir + "/" + name + ".lock"
		for b.Loop() {
			bareCycle(b, path)
		}
	})
	b.Run("ratio", func(b *testing.B) {
		const block = 64
		var tl, tr time.Duration
		for b.Loop() {
			t0 := time.Now()
			for range block {
				lockkitCycle(b, l, name)
			}
			t1 := time.Now()
			for range block {
				raw.cycle(b, name+".lock", name)
			}
			tl += t1.Sub(t0)
			tr += time.Since(t1)
		}
		b.ReportMetric(float64(tl)/float64(tr), "x-raw")
		b.ReportMetric(float64(tl)/float64(b.N*block), "lockkit-ns/op")
		b.ReportMetric(float64(tr)/float64(b.N*block), "raw-ns/op")
	})
}

// tryReleaseAllocs is what an uncontended TryAcquire plus Release
// allocated when TestTryReleaseAllocs's limit was set: the Lock, its Done
// channel, its unlock method value, the name's turn queue (its first
// waiter and state inside), the file name, and x/sys/unix's copies of the
// path for openat and fstatat. It was 11 before the Lock held its
// lockstate.Handle by value, the queue its first waiter, and the turn set
// its state by value.
const tryReleaseAllocs = 7

// An uncontended TryAcquire plus Release allocates no more than it did
// when the limit was set (one more is let through for toolchain changes,
// and the race detector's own on top):
// the per-lock work that BenchmarkFileTryRelease compares with the raw
// system calls.
func TestTryReleaseAllocs(t *testing.T) {
	l := newLocker(t, t.TempDir(), nil)
	ctx := context.Background()
	var opErr error
	got := testing.AllocsPerRun(200, func() {
		lk, err := l.TryAcquire(ctx, "allocs")
		if err == nil {
			err = lk.Release(ctx)
		}
		if err != nil && opErr == nil {
			opErr = err
		}
	})
	if opErr != nil {
		t.Fatal(opErr)
	}
	t.Logf("%.1f allocations per TryAcquire and Release", got)
	if limit := float64(tryReleaseAllocs + raceAllocs + 1); got > limit {
		t.Errorf("%.1f allocations per TryAcquire and Release, want at most %.0f", got, limit)
	}
}

// BenchmarkHandoff measures release -> a waiting Acquire holds, in a
// second Locker (the same kernel path as a second process). The waiter has
// been waiting for wait before the release. "notify" is the default
// (inotify wake-up on Linux, polling as the fallback); "poll" is polling
// alone. Reports the median and 90th percentile in microseconds.
func BenchmarkHandoff(b *testing.B) {
	for _, mode := range []struct {
		name   string
		notify bool
	}{{"notify", true}, {"poll", false}} {
		for _, wait := range []time.Duration{2 * time.Millisecond, 20 * time.Millisecond} {
			b.Run(mode.name+"/waited="+wait.String(), func(b *testing.B) {
				defer func(old bool) { notifyEnabled = old }(notifyEnabled)
				notifyEnabled = mode.notify
				dir := b.TempDir()
				a, w := newLocker(b, dir, nil), newLocker(b, dir, nil)
				ctx := context.Background()
				var lat []time.Duration
				for b.Loop() {
					held, err := a.TryAcquire(ctx, "handoff")
					if err != nil {
						b.Fatal(err)
					}
					got := make(chan time.Time, 1)
					released := make(chan error, 1)
					go func() {
						lk, err := w.Acquire(ctx, "handoff")
						got <- time.Now()
						if err == nil {
							err = lk.Release(ctx)
						}
						released <- err
					}()
					time.Sleep(wait)
					t0 := time.Now()
					if err := held.Release(ctx); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, (<-got).Sub(t0))
					if err := <-released; err != nil {
						b.Fatal(err)
					}
				}
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*9/10].Microseconds()), "p90-µs")
			})
		}
	}
}

// BenchmarkContended: 16 goroutines take and release one name through one
// Locker, as the bench harness's contended scenario does ("lockkit"), and
// the same with each goroutine making the raw system calls with a blocking
// flock(LOCK_EX), the kernel's own wait ("floor"). Reports acquisitions per
// second, the spread of acquisitions per worker (max/min), the share of
// acquisitions taken by the worker that released last ("rewin-%"), and the
// median time from a release to the next holder's acquire returning when
// that holder is another worker.
func BenchmarkContended(b *testing.B) {
	const workers = 16
	for _, variant := range []string{"lockkit", "floor"} {
		b.Run(variant, func(b *testing.B) {
			dir := b.TempDir()
			l := newLocker(b, dir, &Config{Owner: "root", App: "filelock.test"})
			raw := newRawFloor(b, dir)
			const name = "contended"
			// As the bench harness: a cancellable context for the
			// wait, a timeout for each release.
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var (
				mu       sync.Mutex
				last     = -1
				released time.Time
				handoffs []time.Duration
				rewins   int
				counts   [workers]int
				left     atomic.Int64
				wg       sync.WaitGroup
			)
			acquire := func() (func() error, error) {
				if variant == "floor" {
					return raw.blocking(name+".lock", name)
				}
				lk, err := l.Acquire(ctx, name)
				if err != nil {
					return nil, err
				}
				return func() error {
					rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer rcancel()
					return lk.Release(rctx)
				}, nil
			}
			left.Store(int64(b.N))
			gate := make(chan struct{})
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-gate
					for left.Add(-1) >= 0 {
						release, err := acquire()
						if err != nil {
							b.Error(err)
							return
						}
						mu.Lock()
						if last == w {
							rewins++
						} else if last >= 0 {
							handoffs = append(handoffs, time.Since(released))
						}
						last = w
						counts[w]++
						released = time.Now()
						mu.Unlock()
						if err := release(); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			b.ResetTimer()
			start := time.Now()
			close(gate)
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			slices.Sort(handoffs)
			lo, hi := slices.Min(counts[:]), slices.Max(counts[:])
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "acq/s")
			b.ReportMetric(float64(hi)/float64(max(lo, 1)), "spread")
			b.ReportMetric(100*float64(rewins)/float64(b.N), "rewin-%")
			if len(handoffs) > 0 {
				b.ReportMetric(float64(handoffs[len(handoffs)/2].Nanoseconds())/1e3, "handoff-p50-µs")
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}

// blocking is the raw system calls of an Acquire with the kernel's blocking
// flock as the wait; it returns the release.
func (r *rawFloor) blocking(file, name string) (func() error, error) {
	fd, err := unix.Openat(r.dirfd, file, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, 0o644)
	if err != nil {
		return nil, err
	}
	var st, st2 unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := flock(fd, unix.LOCK_EX); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := unix.Fstatat(r.dirfd, file, &st2, unix.AT_SYMLINK_NOFOLLOW); err != nil || st2.Ino != st.Ino {
		unix.Close(fd)
		return nil, fmt.Errorf("lock file replaced: %v", err)
	}
	var buf [512]byte
	rec := append(buf[:0], r.prefix...)
	rec = time.Now().UTC().AppendFormat(rec, time.RFC3339Nano)
	rec = append(rec, `","name":"`...)
	rec = append(rec, name...)
	rec = append(rec, "\"}\n"...)
	if _, err := unix.Pwrite(fd, rec, 0); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return func() error {
		err := unix.Fstatat(r.dirfd, file, &st2, unix.AT_SYMLINK_NOFOLLOW)
		if err == nil {
			_, err = unix.Pwrite(fd, []byte{' '}, 0)
		}
		_ = unix.Flock(fd, unix.LOCK_UN)
		if cerr := unix.Close(fd); err == nil {
			err = cerr
		}
		return err
	}, nil
}
