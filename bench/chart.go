package main

import (
	"fmt"
	"image/color"
	"os"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// roleColors keeps a variant's colour stable across panels: lockkit is
// always blue, the floor black, peers warm colours.
var (
	colLockkit  = color.RGBA{R: 0x1f, G: 0x5f, B: 0xd0, A: 0xff}
	colLockkit2 = color.RGBA{R: 0x17, G: 0xbe, B: 0xcf, A: 0xff} // further lockkit variants
	colFloor    = color.RGBA{A: 0xff}
	colOthers   = []color.RGBA{
		{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
		{R: 0xff, G: 0x8c, B: 0x00, A: 0xff},
		{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
		{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
	}
)

// series is one curve.
type series struct {
	name string
	role role
	xy   plotter.XYs
}

// cdf turns samples into a cumulative distribution in µs, at most ~300
// points.
func cdf(s samples) plotter.XYs {
	if len(s) == 0 {
		return nil
	}
	c := s.sorted()
	step := max(1, len(c)/300)
	var xy plotter.XYs
	for i := 0; i < len(c); i += step {
		xy = append(xy, plotter.XY{X: float64(c[i]) / 1e3, Y: float64(i+1) / float64(len(c))})
	}
	xy = append(xy, plotter.XY{X: float64(c[len(c)-1]) / 1e3, Y: 1})
	return xy
}

// panel makes one plot.
func panel(title, xlabel, ylabel string, ss []series, logX, logY bool) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xlabel
	p.Y.Label.Text = ylabel
	// CDFs rise to the upper right; the curves of the scale chart are
	// flat: the legend goes where the lines are not.
	p.Legend.Top = !logX || logY
	p.Legend.Left = !logX || logY
	p.Legend.TextStyle.Font.Size = vg.Points(8)
	if logX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	if logY {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	p.Add(plotter.NewGrid())
	other, floorSeen, lkSeen := 0, false, false
	for _, s := range ss {
		if len(s.xy) == 0 {
			continue
		}
		l, err := plotter.NewLine(s.xy)
		if err != nil {
			continue
		}
		var c color.Color
		switch {
		case s.role == roleLockkit && !lkSeen:
			c, lkSeen = colLockkit, true
		case s.role == roleLockkit:
			c = colLockkit2
		case s.role == roleFloor && !floorSeen:
			c, floorSeen = colFloor, true
		default:
			c = colOthers[other%len(colOthers)]
			other++
		}
		l.Color = c
		l.Width = vg.Points(1.6)
		if s.role == roleFloor {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
		}
		p.Add(l)
		p.Legend.Add(s.name, l)
		if len(s.xy) <= 12 { // few points: mark them
			if sc, err := plotter.NewScatter(s.xy); err == nil {
				sc.Color = c
				p.Add(sc)
			}
		}
	}
	return p
}

// grid draws panels in a grid into a PNG file.
func grid(path string, ps []*plot.Plot, cols int) error {
	if len(ps) == 0 {
		return nil
	}
	rows := (len(ps) + cols - 1) / cols
	w, h := vg.Length(cols)*4.2*vg.Inch, vg.Length(rows)*3.2*vg.Inch
	img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(110))
	dc := draw.New(img)
	t := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	table := make([][]*plot.Plot, rows)
	for r := range rows {
		table[r] = make([]*plot.Plot, cols)
		for c := range cols {
			if i := r*cols + c; i < len(ps) {
				table[r][c] = ps[i]
			}
		}
	}
	canvases := plot.Align(table, t, dc)
	for r := range rows {
		for c := range cols {
			if table[r][c] != nil {
				table[r][c].Draw(canvases[r][c])
			}
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeCharts draws latency.png (uncontended latency distributions, one key),
// handoff.png (contended handoff distributions) and scale.png (latency
// against locks held).
func writeCharts(rep *report, add func(string) string) error {
	var lat, hand, scale []*plot.Plot
	for _, br := range rep.Backends {
		if br.Skipped != "" {
			continue
		}
		var ss []series
		for _, r := range br.Single {
			if r.Skipped == "" {
				ss = append(ss, series{r.Variant, r.Role, cdf(r.s)})
			}
		}
		if len(ss) > 0 {
			lat = append(lat, panel(br.Backend+": try + release, 1 key", "latency (µs, log)", "fraction of operations", ss, true, false))
		}
		ss = nil
		for _, c := range br.Contended {
			if c.Skipped == "" && len(c.others) > 0 {
				ss = append(ss, series{fmt.Sprintf("%s (%.0f/s, %.0f%% to another)", shortName(c.Variant), c.Throughput, 100*c.OtherShare), c.Role, cdf(c.others)})
			}
		}
		if len(ss) > 0 {
			hand = append(hand, panel(fmt.Sprintf("%s: handoff to another worker, %d workers", br.Backend, br.Contended[0].Workers),
				"release → another worker holds (µs, log)", "fraction of such handoffs", ss, true, false))
		}
		ss = nil
		for _, s := range br.Scale {
			var xy plotter.XYs
			for _, pt := range s.Points {
				xy = append(xy, plotter.XY{X: float64(pt.Held), Y: float64(pt.MedianNs) / 1e3})
			}
			if len(xy) > 0 {
				ss = append(ss, series{s.Variant + " p50", s.Role, xy})
			}
		}
		if len(ss) > 0 {
			scale = append(scale, panel(br.Backend+": try + release with N held", "locks held (log)", "p50 latency (µs)", ss, true, false))
			scale[len(scale)-1].Y.Min = 0
		}
	}
	for _, c := range []struct {
		name string
		ps   []*plot.Plot
	}{{"latency.png", lat}, {"handoff.png", hand}, {"scale.png", scale}} {
		if len(c.ps) == 0 {
			continue
		}
		if err := grid(add(c.name), c.ps, 2); err != nil {
			return err
		}
	}
	return nil
}

// shortName drops a diagnostic variant's explanation from a legend.
func shortName(n string) string {
	return strings.Replace(n, " (diagnostic)", " (diag.)", 1)
}
