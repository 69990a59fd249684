package main

import (
	"fmt"
	"html"
	"lorapte/core/export"
	"math"
	"strings"
)

// niceCeil rounds v up to 1, 2, 2.5 or 5 times a power of ten, so axis
// ticks (a fifth of it) are round numbers.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// svgBars draws one labelled bar chart at (x0, y0) of size w×h: one group
// per model, one bar per series, and an optional dashed target line.
type svgSeries struct {
	name   string
	color  string
	values []float64
}

func svgBars(b *strings.Builder, x0, y0, w, h float64, title, unit string, labels []string, series []svgSeries, target float64, targetLabel string, groupTargets []float64) {
	top := target
	for _, t := range groupTargets {
		top = math.Max(top, t)
	}
	for _, s := range series {
		for _, v := range s.values {
			top = math.Max(top, v)
		}
	}
	top = niceCeil(top * 1.1)
	const left, bottom, head = 52.0, 58.0, 34.0
	px, py, pw, ph := x0+left, y0+head, w-left-10, h-head-bottom
	y := func(v float64) float64 { return py + ph - v/top*ph }
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" class="title">%s</text>`+"\n", x0+w/2, y0+18, html.EscapeString(title))
	for i := 0; i <= 5; i++ {
		v := top * float64(i) / 5
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" class="grid"/>`+"\n", px, y(v), px+pw, y(v))
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" class="tick">%s</text>`+"\n", px-6, y(v)+4, fmtTick(v))
	}
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" class="unit" transform="rotate(-90 %.1f %.1f)">%s</text>`+"\n",
		x0+12, py+ph/2, x0+12, py+ph/2, html.EscapeString(unit))
	groupW := pw / float64(len(labels))
	barW := math.Min(46, groupW*0.7/float64(len(series)))
	for g, label := range labels {
		gx := px + groupW*float64(g) + (groupW-barW*float64(len(series)))/2
		for k, s := range series {
			v := s.values[g]
			bx := gx + barW*float64(k)
			fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %s %s</title></rect>`+"\n",
				bx, y(v), barW-2, py+ph-y(v), s.color, html.EscapeString(label), s.name, fmtTick(v), unit)
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" class="val">%s</text>`+"\n", bx+(barW-2)/2, y(v)-4, fmtVal(v))
		}
		if g < len(groupTargets) {
			t := groupTargets[g]
			x1, x2 := gx-6, gx+barW*float64(len(series))+4
			fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" class="target"/>`+"\n", x1, y(t), x2, y(t))
			if g == len(labels)-1 {
				fmt.Fprintf(b, `<text x="%.1f" y="%.1f" class="tlabel">%s</text>`+"\n", x2, y(t)-4, html.EscapeString(targetLabel))
			}
		}
		for i, line := range strings.Split(label, "\n") {
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" class="label">%s</text>`+"\n", px+groupW*(float64(g)+0.5), py+ph+16+14*float64(i), html.EscapeString(line))
		}
	}
	if target > 0 && groupTargets == nil {
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" class="target"/>`+"\n", px, y(target), px+pw, y(target))
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" class="tlabel">%s</text>`+"\n", px+pw-4, y(target)-4, html.EscapeString(targetLabel))
	}
	fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" class="axis"/>`+"\n", px, py+ph, px+pw, py+ph)
	lx := px + 4
	for _, s := range series {
		fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="10" height="10" fill="%s"/><text x="%.1f" y="%.1f" class="legend">%s</text>`+"\n",
			lx, py-2, s.color, lx+14, py+7, html.EscapeString(s.name))
		lx += 14 + 7*float64(len(s.name)) + 16
	}
}

func fmtTick(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%g", math.Round(v*100)/100)
}

func fmtVal(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// benchSVG draws time (export vs I/O floor) and peak RSS per model size.
func benchSVG(rs []benchResult) string {
	const w, h = 920.0, 360.0
	var labels []string
	var exp, floor, floor3, rss []float64
	for _, r := range rs {
		labels = append(labels, fmt.Sprintf("%s\n%s in\nexport/floor %.2f×", r.Shape.Name, export.HumanBytes(r.InputBytes), r.ratio()))
		exp = append(exp, r.Export.Seconds())
		floor = append(floor, r.floor().Seconds())
		floor3 = append(floor3, targetRatio*r.floor().Seconds())
		rss = append(rss, mib(r.RSS))
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	b.WriteString(`<style>
.title{font-size:14px;font-weight:bold;text-anchor:middle}
.tick{text-anchor:end;fill:#555}
.unit{text-anchor:middle;fill:#555}
.label{text-anchor:middle}
.val{text-anchor:middle;font-size:11px}
.legend{fill:#333}
.grid{stroke:#e4e4e4}
.axis{stroke:#333}
.target{stroke:#c0392b;stroke-dasharray:6 4;stroke-width:1.5}
.tlabel{text-anchor:end;fill:#c0392b;font-size:11px}
</style>
<rect width="100%" height="100%" fill="white"/>
`)
	svgBars(&b, 0, 0, w/2, h, "Native export time vs I/O floor", "seconds", labels,
		[]svgSeries{{"export", "#2e86c1", exp}, {"I/O floor", "#aab7b8", floor}}, 0, "target 3× floor", floor3)
	svgBars(&b, w/2, 0, w/2, h, "Peak RSS of the export", "MiB", labels,
		[]svgSeries{{"peak RSS", "#28b463", rss}}, targetRSSMiB, "target 1.5 GB", nil)
	b.WriteString("</svg>\n")
	return b.String()
}
