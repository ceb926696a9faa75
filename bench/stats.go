package main

import (
	"math"
	"slices"
	"time"
)

// samples is a set of measured durations.
type samples []time.Duration

// quantile returns the q-quantile (0..1) by the nearest-rank method; 0 for
// no samples.
func (s samples) quantile(q float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	c := slices.Clone(s)
	slices.Sort(c)
	i := int(math.Ceil(q*float64(len(c)))) - 1
	i = max(0, min(i, len(c)-1))
	return c[i]
}

func (s samples) median() time.Duration { return s.quantile(0.5) }
func (s samples) p99() time.Duration    { return s.quantile(0.99) }

func (s samples) mean() time.Duration {
	if len(s) == 0 {
		return 0
	}
	var t time.Duration
	for _, d := range s {
		t += d
	}
	return t / time.Duration(len(s))
}

// sorted returns a sorted copy.
func (s samples) sorted() samples {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// trimShare is the share of repeats ratioCI drops at each end: one slice
// or round that the shared machine disturbed (a descheduled process, a
// first slice on a cold pool) moves a plain mean of a dozen repeats by
// several per cent, and two runs then disagree.
const trimShare = 0.2

// ratioCI summarises paired repeats: the i-th ratio is a[i]/b[i], both
// measured in the same repeat (interleaved), pairs where either is not
// positive are left out. It returns the 20 % trimmed mean of the ratios'
// logarithms, as a ratio, and its 95 % confidence interval (Tukey and
// McLaughlin: the winsorized variance, Student's t with the kept count
// less one degrees of freedom), and how many pairs went in. With fewer
// than five pairs nothing is trimmed (the plain geometric mean and its
// t interval); with fewer than two the interval is the estimate itself.
func ratioCI(a, b []float64) (est, lo, hi float64, n int) {
	var logs []float64
	for i := range min(len(a), len(b)) {
		if a[i] > 0 && b[i] > 0 {
			logs = append(logs, math.Log(a[i]/b[i]))
		}
	}
	n = len(logs)
	if n == 0 {
		return 0, 0, 0, 0
	}
	slices.Sort(logs)
	g := int(trimShare * float64(n)) // dropped at each end
	kept := logs[g : n-g]
	h := len(kept)
	var sum float64
	for _, x := range kept {
		sum += x
	}
	m := sum / float64(h)
	if h < 2 {
		e := math.Exp(m)
		return e, e, e, n
	}
	// Winsorized: the dropped values count as the nearest kept one.
	wmean := (sum + float64(g)*(kept[0]+kept[h-1])) / float64(n)
	var ss float64
	for i := range n {
		x := logs[min(max(i, g), n-g-1)]
		ss += (x - wmean) * (x - wmean)
	}
	se := math.Sqrt(ss / float64(h*(h-1)))
	hw := tQuantile975(h-1) * se
	return math.Exp(m), math.Exp(m - hw), math.Exp(m + hw), n
}

// tQuantile975 is the 97.5th percentile of Student's t with df degrees of
// freedom (two-sided 95 %).
func tQuantile975(df int) float64 {
	table := []float64{0, 12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262,
		2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093,
		2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042}
	switch {
	case df < 1:
		return math.Inf(1)
	case df < len(table):
		return table[df]
	case df < 60:
		return 2.01
	case df < 120:
		return 1.99
	}
	return 1.96
}
