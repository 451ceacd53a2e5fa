package main

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Bar colours by kind of row.
var (
	colCeiling = color.RGBA{R: 150, G: 150, B: 150, A: 255}
	colCC      = color.RGBA{R: 52, G: 101, B: 164, A: 255}
	colRedis   = color.RGBA{R: 204, G: 102, B: 0, A: 255}
	colDB      = color.RGBA{R: 60, G: 140, B: 70, A: 255}
	colTarget  = color.RGBA{R: 200, G: 30, B: 30, A: 255}
)

// colorLegend names the bar colours in the legend.
var colorLegend = map[color.Color]string{
	colCeiling: "Caddy static respond",
	colCC:      "client_credentials (no refresh token)",
	colRedis:   "writes refresh-token state to Redis",
	colDB:      "authorization_code: the plugin's tables in MariaDB",
}

// barColor picks a bar's colour: grey for the ceiling, orange for rows that
// write refresh-token state to Redis, green for the authorization_code
// rows, blue for the client_credentials rows without refresh tokens.
func barColor(key string) color.Color {
	switch {
	case strings.HasPrefix(key, "ceiling"):
		return colCeiling
	case strings.HasPrefix(key, codeKey):
		return colDB
	case key == "refresh" || key == "revoke" || strings.HasPrefix(key, "es256rt"):
		return colRedis
	default:
		return colCC
	}
}

// writeChart renders requests/s per row as bars, with the ceiling of the
// run (the reference of every ratio) as a dashed line and, for rows with a
// ratio target, a short red tick at the target, into dir/results.svg and
// dir/results.png. It returns the files written.
func writeChart(r *Report, dir string) ([]string, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("moserver token endpoint vs Caddy's static ceiling — %d cores, concurrency %d, %s",
		r.Cores, r.Settings.Concurrency, r.Started.UTC().Format("2006-01-02"))
	p.Title.TextStyle.Font.Size = vg.Points(11)
	p.Y.Label.Text = "requests/s"
	p.Y.Min = 0
	p.Add(plotter.NewGrid())

	var labels []string
	var valueXYs plotter.XYs
	var valueTexts []string
	maxY := r.Ceiling.RPS
	legendHas := map[color.Color]bool{}
	i := 0
	for _, x := range r.Rows {
		label := x.Label
		if x.Failed != "" {
			label += " (failed)"
		}
		labels = append(labels, label)
		bar, err := plotter.NewBarChart(plotter.Values{x.RPS}, vg.Points(26))
		if err != nil {
			return nil, err
		}
		bar.XMin = float64(i)
		bar.Color = barColor(x.Key)
		bar.LineStyle.Width = 0
		p.Add(bar)
		if c := bar.Color; !legendHas[c] {
			legendHas[c] = true
			p.Legend.Add(colorLegend[c], bar)
		}
		valueXYs = append(valueXYs, plotter.XY{X: float64(i), Y: x.RPS})
		txt := fmt.Sprintf("%.0f", x.RPS)
		if x.VsRSA > 0 {
			txt += fmt.Sprintf("\n%.2f×RSA", x.VsRSA)
		} else if x.VsCeiling > 0 {
			txt += fmt.Sprintf("\n%.2f×", x.VsCeiling)
		}
		valueTexts = append(valueTexts, txt)
		maxY = math.Max(maxY, x.RPS)

		// The target of the row, as a short red tick across its bar.
		if y := targetRPS(r, x); y > 0 {
			tick, err := plotter.NewLine(plotter.XYs{{X: float64(i) - 0.35, Y: y}, {X: float64(i) + 0.35, Y: y}})
			if err != nil {
				return nil, err
			}
			tick.LineStyle.Color = colTarget
			tick.LineStyle.Width = vg.Points(2)
			p.Add(tick)
			if i == firstTargetIndex(r) {
				p.Legend.Add("target", tick)
			}
		}
		i++
	}
	if r.Ceiling.RPS > 0 {
		line, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: r.Ceiling.RPS}, {X: float64(i) - 0.5, Y: r.Ceiling.RPS}})
		if err != nil {
			return nil, err
		}
		line.LineStyle.Color = colCeiling
		line.LineStyle.Width = vg.Points(1.2)
		line.LineStyle.Dashes = []vg.Length{vg.Points(6), vg.Points(4)}
		p.Add(line)
		p.Legend.Add(fmt.Sprintf("ceiling %.0f req/s (static respond, mean of the ceiling rows)", r.Ceiling.RPS), line)
	}
	lbl, err := plotter.NewLabels(plotter.XYLabels{XYs: valueXYs, Labels: valueTexts})
	if err != nil {
		return nil, err
	}
	for j := range lbl.TextStyle {
		lbl.TextStyle[j].XAlign = draw.XCenter
		lbl.TextStyle[j].YAlign = draw.YBottom
		lbl.TextStyle[j].Font.Size = vg.Points(8)
	}
	lbl.Offset = vg.Point{Y: vg.Points(3)}
	p.Add(lbl)
	p.NominalX(labels...)
	p.X.Tick.Label.Rotation = math.Pi / 7
	p.X.Tick.Label.XAlign = draw.XRight
	p.X.Tick.Label.YAlign = draw.YCenter
	p.X.Tick.Label.Font.Size = vg.Points(9)
	p.X.Min, p.X.Max = -0.6, float64(i)-0.4
	p.Y.Max = maxY * 1.32 // room for the value labels and the legend
	p.Legend.Top = true
	p.Legend.Left = false
	p.Legend.TextStyle.Font.Size = vg.Points(8)

	var files []string
	for _, ext := range []string{"svg", "png"} {
		path := filepath.Join(dir, "results."+ext)
		if err := p.Save(11*vg.Inch, 5.5*vg.Inch, path); err != nil {
			return files, fmt.Errorf("chart %s: %w", path, err)
		}
		files = append(files, path)
	}
	return files, nil
}

// targetRPS is the requests/s a row must reach (0 if it has no throughput
// target).
func targetRPS(r *Report, x *Row) float64 {
	if x.Failed != "" {
		return 0
	}
	if t := ceilingTargets[x.Key]; t > 0 {
		return t * x.LocalCeilingRPS
	}
	switch {
	case rsaTargets[x.Key] > 0:
		if bound := r.rsaBoundOf(x); bound != nil {
			return rsaTargets[x.Key] * bound.PerSecond
		}
	case isFillRow(x.Key):
		if x.TwinAlongsideRPS > 0 {
			return sameTarget * x.TwinAlongsideRPS
		}
		if rr := r.fillReference(x.Key); rr != nil {
			return sameTarget * rr.VsCeiling * x.LocalCeilingRPS
		}
	}
	return 0
}

// firstTargetIndex is the index of the first row with a target (for the
// legend entry).
func firstTargetIndex(r *Report) int {
	for i, x := range r.Rows {
		if targetRPS(r, x) > 0 {
			return i
		}
	}
	return -1
}
