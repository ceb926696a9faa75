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
