package main

import (
	"context"
	"errors"
	"slices"
	"time"
)

// backendResult is everything measured on one backend.
type backendResult struct {
	Backend string `json:"backend"`
	Title   string `json:"title"`
	Skipped string `json:"skipped,omitempty"`
	// Optional: the skip is no failure, even under -strict (an etcd
	// nobody asked for and that is not installed).
	Optional  bool               `json:"optional,omitempty"`
	Seconds   float64            `json:"seconds"`
	Variants  []variantInfo      `json:"variants"`
	Notes     []string           `json:"notes,omitempty"`
	Single    []*latencyResult   `json:"single_key,omitempty"`
	Distinct  []*latencyResult   `json:"distinct_keys,omitempty"`
	Multi     []*latencyResult   `json:"multi_key,omitempty"`
	Contended []*contendedResult `json:"contended,omitempty"`
	Memory    []*memoryResult    `json:"memory,omitempty"`
	Scale     []*scaleResult     `json:"scale,omitempty"`
}

type variantInfo struct {
	Name string `json:"name"`
	Role role   `json:"role"`
	Note string `json:"note,omitempty"`
}

func runBackend(ctx context.Context, e *env, b backend, scenarios []string) *backendResult {
	br := &backendResult{Backend: b.name, Title: b.title}
	bs, err := b.setup(ctx, e)
	if err != nil {
		br.Skipped, br.Optional = err.Error(), errors.Is(err, errOptional)
		return br
	}
	defer bs.cleanup()
	var vs []*variant
	for _, v := range bs.variants {
		if !(e.quick && v.fullOnly) {
			vs = append(vs, v)
		}
	}
	br.Notes = bs.notes
	for _, v := range vs {
		br.Variants = append(br.Variants, variantInfo{v.name, v.role, v.note})
	}
	index := func(v *variant) int { return slices.Index(vs, v) }
	with := func(has func(*variant) bool) []*variant {
		var out []*variant
		for _, v := range vs {
			if has(v) {
				out = append(out, v)
			}
		}
		return out
	}
	p := e.p
	last := time.Now()
	do := func(s string) bool {
		e.logf("  %s: %.1fs", b.name, time.Since(last).Seconds())
		last = time.Now()
		return slices.Contains(scenarios, s) && ctx.Err() == nil
	}
	defer do("")

	if do("single") {
		e.logf("  %s: single key", b.name)
		tv := with(func(v *variant) bool { return v.try != nil })
		br.Single = runLatency(ctx, tv, p.rounds, p.batch, p.batchBudget, func(ctx context.Context, vi int, v *variant, i int) error {
			return tryRelease(ctx, v, keyBase(index(v), scSingle))
		})
	}
	if do("distinct") {
		e.logf("  %s: distinct keys", b.name)
		tv := with(func(v *variant) bool { return v.try != nil && !v.singleKey && !v.diagnostic })
		br.Distinct = runLatency(ctx, tv, p.rounds, max(1, p.distinct/p.rounds), p.batchBudget, func(ctx context.Context, vi int, v *variant, i int) error {
			return tryRelease(ctx, v, keyBase(index(v), scDistinct)+i)
		})
	}
	if do("contended") {
		e.logf("  %s: contended", b.name)
		cv := with(func(v *variant) bool { return v.contended != nil || v.procs != nil })
		br.Contended = runContended(ctx, cv, func(v *variant) int { return keyBase(index(v), scContended) }, p, func(v *variant) bool { return contendedHeadline(b.name, v.name) })
	}
	if do("multi") {
		mv := with(func(v *variant) bool { return v.multi != nil })
		if len(mv) > 0 {
			e.logf("  %s: multi-key", b.name)
			br.Multi = runLatency(ctx, mv, p.rounds, max(1, p.multiOps/p.rounds), p.batchBudget, func(ctx context.Context, vi int, v *variant, i int) error {
				base := keyBase(index(v), scMulti) + (i%2)*p.multiN
				ks := make([]int, p.multiN)
				for j := range ks {
					ks[j] = base + j
				}
				rel, err := v.multi(ctx, ks)
				if err != nil {
					return err
				}
				return rel(ctx)
			})
		}
	}
	if do("memory") {
		e.logf("  %s: memory", b.name)
		for _, v := range with(func(v *variant) bool { return v.try != nil && !v.diagnostic }) {
			br.Memory = append(br.Memory, runMemory(ctx, index(v), v, p.memOps, p.memBudget, p.heldN))
		}
	}
	if do("scale") {
		for _, v := range with(func(v *variant) bool { return v.try != nil && v.role != rolePeer && !v.singleKey && !v.diagnostic }) {
			e.logf("  %s: scale: %s", b.name, v.name)
			br.Scale = append(br.Scale, runScale(ctx, index(v), v, p.scaleSteps, p.scaleOps, p.scaleBudget, e.logf))
		}
	}
	return br
}
