package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(workerEnv); spec != "" {
		// Re-executed by TestIndependentWorkers as a worker process.
		if err := workerMain(spec, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "bench worker:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	if raw := os.Getenv(foChildEnv); raw != "" {
		os.Exit(failoverChild(raw)) // a leader process of TestQuickFiles' failover scenario
	}
	goleak.VerifyTestMain(m)
}

// TestIndependentWorkers runs the files backend's "a Locker per worker",
// "16 processes" and "floor, 16 processes" variants (with 4 workers) and checks that every
// worker acquired, that the processes' acquisitions never overlapped, and
// that handoffs were measured.
func TestIndependentWorkers(t *testing.T) {
	tmp := t.TempDir()
	e := &env{runID: "t" + strconv.Itoa(os.Getpid()), tmp: tmp}
	vs, err := independentVariants(e, "files", nil)
	if err != nil {
		t.Fatal(err)
	}
	// With a warm-up slice, which counts nowhere, and twice the slices
	// for the first variant, as if it were a headline's.
	p := params{workers: 4, window: 600 * time.Millisecond, slices: 2, warmSlice: true, headFactor: 2}
	rs := runContended(context.Background(), vs, func(*variant) int { return 1 }, p, func(v *variant) bool { return v == vs[0] })
	for i, r := range rs {
		if r.Skipped != "" || r.Errors > 0 {
			t.Fatalf("%s: skipped %q, %d errors (%s)", r.Variant, r.Skipped, r.Errors, r.LastError)
		}
		nSlices := 2
		if i == 0 {
			nSlices = 4
		}
		total := 0
		for _, c := range r.PerSlice {
			total += c
		}
		if r.Starved > 0 || r.Acquisitions == 0 || len(r.PerSlice) != nSlices || len(r.PerSliceMaxHandoffNs) != nSlices ||
			slices.Max(r.PerSliceMaxHandoffNs) != int64(slices.Max(r.handoffs)) || r.WindowNs != int64(nSlices)*int64(300*time.Millisecond) ||
			r.Acquisitions != total || r.Handoffs == 0 || r.HandoffP50Ns <= 0 {
			t.Fatalf("%s: %+v", r.Variant, r)
		}
		// Exclusion: a handoff is measured from the previous holder's
		// release to the next acquisition, so none is negative.
		for _, d := range r.handoffs {
			if d < 0 {
				t.Fatalf("%s: an acquisition %v before the previous holder released", r.Variant, -d)
			}
		}
	}
}

// TestFlights checks the round-trip counting on a real loopback socket.
func TestFlights(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	push := make(chan struct{})
	srvDone := make(chan struct{})
	go func() {
		defer close(srvDone)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			switch string(buf[:n]) {
			case "push?":
				<-push
				_, _ = c.Write([]byte("pushed"))
			case "bc", "b", "c": // pipelined: answer once both arrived
				if string(buf[:n]) == "b" {
					continue
				}
				_, _ = c.Write([]byte("BC"))
			default:
				_, _ = c.Write(bytes.ToUpper(buf[:n]))
			}
		}
	}()
	var nc netCounter
	c, err := nc.dial(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	read := func(want string) {
		t.Helper()
		buf := make([]byte, len(want))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != want {
			t.Fatalf("read %q, %v; want %q", buf, err, want)
		}
	}
	if got := nc.open.Load(); got != 1 {
		t.Fatalf("open = %d, want 1", got)
	}
	c.Write([]byte("a"))
	read("A")
	if got := nc.flights.Load(); got != 1 {
		t.Fatalf("after one request: %d flights, want 1", got)
	}
	c.Write([]byte("b")) // two writes, one answer: one flight
	c.Write([]byte("c"))
	read("BC")
	if got := nc.flights.Load(); got != 2 {
		t.Fatalf("after a pipelined pair: %d flights, want 2", got)
	}
	c.Write([]byte("push?")) // one request, then data the server pushes later
	close(push)
	read("pushed")
	if got := nc.flights.Load(); got != 3 {
		t.Fatalf("after a pushed answer: %d flights, want 3", got)
	}
	c.Close()
	<-srvDone
	if got := nc.open.Load(); got != 0 {
		t.Fatalf("open after close = %d, want 0", got)
	}
	if got := nc.dials.Load(); got != 1 {
		t.Fatalf("dials = %d, want 1", got)
	}
}

func TestQuantile(t *testing.T) {
	var s samples
	for i := 100; i >= 1; i-- {
		s = append(s, time.Duration(i))
	}
	if s.median() != 50 || s.p99() != 99 || s.quantile(1) != 100 || s.quantile(0) != 1 {
		t.Fatalf("median %v p99 %v", s.median(), s.p99())
	}
	if (samples{}).median() != 0 {
		t.Fatal("median of nothing")
	}
}

// TestQuickFiles runs the harness in-process in quick mode on the file
// backend (no server needed) and checks every output.
func TestQuickFiles(t *testing.T) {
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"-quick", "-backends", "files", "-out", out}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	tables := stdout.String()
	for _, want := range []string{"| files | 1 key |", "| files | lockkit |", "gofrs/flock", "## Scale", "## Ratios with 95 % intervals", "| files | contended, throughput | gofrs/flock | peer |"} {
		if !strings.Contains(tables, want) {
			t.Errorf("tables lack %q:\n%s", want, tables)
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Backends) != 1 || rep.Backends[0].Backend != "files" || rep.Backends[0].Skipped != "" {
		t.Fatalf("backends: %+v", rep.Backends)
	}
	br := rep.Backends[0]
	if len(br.Single) != 3 || br.Single[0].N == 0 || br.Single[0].MedianNs <= 0 {
		t.Fatalf("single-key results: %+v", br.Single)
	}
	if got := len(br.Single[0].RoundMedianNs); got != quickParams.rounds {
		t.Fatalf("single key: %d round medians, want one per round (%d)", got, quickParams.rounds)
	}
	// Every lockkit variant against every other one, in each of the
	// single-key, new-key and contended scenarios.
	if len(rep.Ratios) != 2+2+3 {
		t.Fatalf("ratios: %+v", rep.Ratios)
	}
	for _, r := range rep.Ratios {
		want := quickParams.rounds // latency: one pair per round
		if r.Scenario == "contended" {
			want = quickParams.slices
		}
		if r.Repeats != want || !(r.Lo <= r.Ratio && r.Ratio <= r.Hi) || r.Ratio <= 0 {
			t.Errorf("ratio row %+v: want %d repeats and lo <= ratio <= hi", r, want)
		}
	}
	// lockkit, floor, gofrs/flock, and the floor behind a local queue
	if len(br.Contended) != 4 || br.Contended[0].Acquisitions == 0 {
		t.Fatalf("contended results: %+v", br.Contended)
	}
	for _, png := range []string{"latency.png", "handoff.png", "scale.png"} {
		b, err := os.ReadFile(filepath.Join(out, png))
		if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
			t.Errorf("%s: not a PNG (%v)", png, err)
		}
	}
}

func TestRatioCI(t *testing.T) {
	est, lo, hi, n := ratioCI([]float64{2, 4, 0, 8}, []float64{1, 2, 5, 4})
	if n != 3 || math.Abs(est-2) > 1e-9 || math.Abs(lo-2) > 1e-9 || math.Abs(hi-2) > 1e-9 {
		t.Fatalf("constant ratio 2: %v [%v, %v] n=%d", est, lo, hi, n)
	}
	// Ratios 1, 2, 4: geometric mean 2; logs have sd ln 2, so the
	// interval is 2·exp(±4.303·ln2/√3).
	est, lo, hi, n = ratioCI([]float64{1, 2, 4}, []float64{1, 1, 1})
	w := math.Exp(4.303 * math.Ln2 / math.Sqrt(3))
	if n != 3 || math.Abs(est-2) > 1e-9 || math.Abs(lo-2/w) > 1e-6 || math.Abs(hi-2*w) > 1e-6 {
		t.Fatalf("ratios 1,2,4: %v [%v, %v] n=%d, want 2 [%v, %v]", est, lo, hi, n, 2/w, 2*w)
	}
	// One disturbed repeat in ten moves nothing: it is trimmed, and the
	// winsorized spread of the rest is nil.
	est, lo, hi, n = ratioCI([]float64{1, 1, 1, 1, 100, 1, 1, 1, 1, 1}, []float64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1})
	if n != 10 || est != 1 || lo != 1 || hi != 1 {
		t.Fatalf("nine ratios 1 and one 100: %v [%v, %v] n=%d, want 1 [1, 1]", est, lo, hi, n)
	}
	// Logs -5, 0, 1, 2, 9: one trimmed at each end, mean of 0, 1, 2 is 1;
	// winsorized 0, 0, 1, 2, 2 has squares summing to 4, so the standard
	// error is √(4/(3·2)) and the interval e^(1 ± 4.303·√(2/3)).
	a := []float64{math.Exp(-5), 1, math.E, math.Exp(2), math.Exp(9)}
	est, lo, hi, n = ratioCI(a, []float64{1, 1, 1, 1, 1})
	hw := 4.303 * math.Sqrt(2.0/3)
	if n != 5 || math.Abs(est-math.E) > 1e-9 || math.Abs(lo-math.Exp(1-hw)) > 1e-9 || math.Abs(hi-math.Exp(1+hw)) > 1e-9 {
		t.Fatalf("logs -5,0,1,2,9: %v [%v, %v] n=%d, want e [%v, %v]", est, lo, hi, n, math.Exp(1-hw), math.Exp(1+hw))
	}
}

// TestInterleaved checks that runLatency mixes the variants' operations
// within each round rather than running them in blocks.
func TestInterleaved(t *testing.T) {
	vs := []*variant{{name: "a"}, {name: "b"}}
	var seq []int
	runLatency(context.Background(), vs, 5, 40, time.Minute, func(ctx context.Context, vi int, v *variant, i int) error {
		seq = append(seq, vi)
		return nil
	})
	switches := 0
	for i := 1; i < len(seq); i++ {
		if seq[i] != seq[i-1] {
			switches++
		}
	}
	// 5 rounds of 80 ops plus a warm-up of 16: in blocks there would be
	// at most 11 switches; shuffled, about half the ops switch.
	if len(seq) != 5*80+16 || switches < 100 {
		t.Fatalf("%d ops, %d switches between variants", len(seq), switches)
	}
}

func TestFlags(t *testing.T) {
	if _, err := parseFlags([]string{"-backends", "nope"}, io.Discard); err == nil {
		t.Fatal("unknown backend accepted")
	}
	c, err := parseFlags([]string{"-quick"}, io.Discard)
	if err != nil || c.out != filepath.Join("results", "quick") || len(c.backends) != len(backends) {
		t.Fatalf("%+v %v", c, err)
	}
}

func TestCompareRuns(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, ratio float64) string {
		p := filepath.Join(dir, name)
		rep := &report{Ratios: []ratioRow{
			{Backend: "files", Scenario: "contended", Metric: "throughput", Lockkit: "lockkit", Other: "gofrs/flock", Ratio: ratio, Lo: ratio * 0.9, Hi: ratio * 1.1, Repeats: 6},
			{Backend: "files", Scenario: "1 key", Metric: "p50", Lockkit: "lockkit", Other: "floor", Ratio: 1.0, Lo: 0.99, Hi: 1.01, Repeats: 10},
			{Backend: "files", Scenario: "1 key", Metric: "p50", Lockkit: "lockkit", Other: "gofrs/flock", Ratio: 1.0, Lo: 0.99, Hi: 1.01, Repeats: 10},
		}}
		if err := writeJSON(p, rep); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a, b := write("a.json", 2.0), write("b.json", 2.2)
	var out bytes.Buffer
	h, n, err := compareRuns(a, b, &out)
	if err != nil {
		t.Fatal(err)
	}
	// Headlines: one agrees, one differs, the others are in neither run
	// and not counted.
	if h != 1 || !strings.Contains(out.String(), "1 of 2 headline ratios agree") ||
		!strings.Contains(out.String(), "| files contended / gofrs/flock | 2.00× (1.80–2.20) | 2.20× (1.98–2.42) | +10.0 % | **no** |") ||
		!strings.Contains(out.String(), "| files 1 key / gofrs/flock | 1.00× (0.99–1.01) | 1.00× (0.99–1.01) | +0.0 % | yes |") ||
		!strings.Contains(out.String(), "| Redis 1 key / floor | — | — | — | in neither run |") {
		t.Fatalf("%d headlines disagree:\n%s", h, out.String())
	}
	if n != 1 || !strings.Contains(out.String(), "+10.0 %") || !strings.Contains(out.String(), "| files | 1 key, p50 | floor | 1.00× (0.99–1.01) | 1.00× (0.99–1.01) | +0.0 % | yes | yes |") {
		t.Fatalf("%d disagree:\n%s", n, out.String())
	}
}

// TestSliceOrder checks that a contended slice runs every variant once,
// the headline ones back to back, in either order, anywhere in the slice.
func TestSliceOrder(t *testing.T) {
	vs := make([]*variant, 8)
	for i := range vs {
		vs[i] = &variant{name: strconv.Itoa(i)}
	}
	head := func(v *variant) bool { return v == vs[2] || v == vs[5] }
	firsts, places := map[int]bool{}, map[int]bool{}
	for range 200 {
		o := sliceOrder(vs, head)
		seen := map[int]bool{}
		for _, vi := range o {
			seen[vi] = true
		}
		i := slices.IndexFunc(o, func(vi int) bool { return head(vs[vi]) })
		if len(o) != len(vs) || len(seen) != len(vs) || i < 0 || i+1 >= len(o) || !head(vs[o[i+1]]) {
			t.Fatalf("order %v: want every variant once, 2 and 5 adjacent", o)
		}
		firsts[o[i]], places[i] = true, true
	}
	if len(firsts) != 2 || len(places) < 5 {
		t.Fatalf("in 200 orders the pair led with %v and started at %v", firsts, places)
	}
}

// TestFailuresOptional: a backend skipped as optional (an etcd nobody asked
// for and that is not installed) does not fail a -strict run; any other
// skip does. And -etcd, or -backends naming etcd, asks for etcd.
func TestFailuresOptional(t *testing.T) {
	rep := &report{Backends: []*backendResult{
		{Backend: "etcd", Skipped: "not available: no etcd", Optional: true},
		{Backend: "redis", Skipped: "no Redis"},
	}}
	if got := failures(rep); len(got) != 1 || !strings.HasPrefix(got[0], "redis: skipped") {
		t.Errorf("failures = %q, want the Redis skip only", got)
	}
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"-etcd", ""}, false},
		{[]string{"-etcd", "", "-backends", "all"}, false},
		{[]string{"-etcd", "", "-backends", "files,etcd"}, true},
		{[]string{"-etcd", "127.0.0.1:2379"}, true},
	} {
		c, err := parseFlags(tc.args, io.Discard)
		if err != nil || c.etcdRequested != tc.want {
			t.Errorf("parseFlags(%q): etcd requested %v (%v), want %v", tc.args, c != nil && c.etcdRequested, err, tc.want)
		}
	}
}
