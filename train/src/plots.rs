//! Parity plots (predicted vs. true), histograms (`hydragnn screen`) and ensemble calibration
//! plots (`hydragnn eval` on an ensemble) as PNG, drawn with plotters' bitmap backend. Labels use a
//! built-in 5x7 bitmap font (upper-case letters, digits, a few signs) instead of plotters' font
//! support, which needs fontconfig and system fonts: the plots render on any machine.

use std::path::Path;

use plotters::prelude::*;

use crate::error::{Error, Result};

const W: i32 = 640;
const H: i32 = 640;
const LEFT: i32 = 100;
const RIGHT: i32 = 24;
const TOP: i32 = 56;
const BOTTOM: i32 = 80;
const SCALE: i32 = 2;

/// 5x7 glyphs, one string of 35 cells (`#` = ink) per character.
fn glyph(c: char) -> Option<&'static str> {
    Some(match c.to_ascii_uppercase() {
        '0' => ".###.#...##..###.#.###..##...#.###.",
        '1' => "..#...##....#....#....#....#...###.",
        '2' => ".###.#...#....#...#...#...#...#####",
        '3' => "#####...#...#.....#.....##...#.###.",
        '4' => "...#...##..#.#.#..#.#####...#....#.",
        '5' => "######....####.....#....##...#.###.",
        '6' => "..##..#...#....####.#...##...#.###.",
        '7' => "#####....#...#...#...#....#....#...",
        '8' => ".###.#...##...#.###.#...##...#.###.",
        '9' => ".###.#...##...#.####....#...#..##..",
        'A' => ".###.#...##...#######...##...##...#",
        'B' => "####.#...##...#####.#...##...#####.",
        'C' => ".###.#...##....#....#....#...#.###.",
        'D' => "###..#..#.#...##...##...##..#.###..",
        'E' => "######....#....####.#....#....#####",
        'F' => "######....#....####.#....#....#....",
        'G' => ".###.#...##....#.####...##...#.####",
        'H' => "#...##...##...#######...##...##...#",
        'I' => ".###...#....#....#....#....#...###.",
        'J' => "..###...#....#....#....#.#..#..##..",
        'K' => "#...##..#.#.#..##...#.#..#..#.#...#",
        'L' => "#....#....#....#....#....#....#####",
        'M' => "#...###.###.#.##.#.##...##...##...#",
        'N' => "#...##...###..##.#.##..###...##...#",
        'O' => ".###.#...##...##...##...##...#.###.",
        'P' => "####.#...##...#####.#....#....#....",
        'Q' => ".###.#...##...##...##.#.##..#..##.#",
        'R' => "####.#...##...#####.#.#..#..#.#...#",
        'S' => ".#####....#.....###.....#....#####.",
        'T' => "#####..#....#....#....#....#....#..",
        'U' => "#...##...##...##...##...##...#.###.",
        'V' => "#...##...##...##...##...#.#.#...#..",
        'W' => "#...##...##...##.#.##.#.##.#.#.#.#.",
        'X' => "#...##...#.#.#...#...#.#.#...##...#",
        'Y' => "#...##...#.#.#...#....#....#....#..",
        'Z' => "#####....#...#...#...#...#....#####",
        '.' => "..........................##...##..",
        ',' => ".....................##....#...#...",
        '-' => "...............#####...............",
        '+' => ".......#....#..#####..#....#.......",
        '/' => ".........#...#...#...#...#.........",
        ':' => "......##...##........##...##.......",
        '=' => "..........#####.....#####..........",
        '(' => "...#...#...#....#....#.....#.....#.",
        ')' => ".#.....#.....#....#....#...#...#...",
        '_' => "..............................#####",
        '%' => "##...##..#...#...#...#...#..##...##",
        ' ' => "...................................",

        _ => return None,
    })
}

fn draw_text<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    text: &str,
    x: i32,
    y: i32,
) {
    let mut cx = x;
    for ch in text.chars() {
        let g = glyph(ch).or_else(|| glyph('_')).unwrap_or("");
        for (k, cell) in g.chars().take(35).enumerate() {
            if cell == '#' {
                let (gx, gy) = ((k % 5) as i32, (k / 5) as i32);
                let (px, py) = (cx + gx * SCALE, y + gy * SCALE);
                let _ = area.draw(&Rectangle::new(
                    [(px, py), (px + SCALE - 1, py + SCALE - 1)],
                    BLACK.filled(),
                ));
            }
        }
        cx += 6 * SCALE;
    }
}

fn text_width(text: &str) -> i32 {
    text.chars().count() as i32 * 6 * SCALE
}

fn fmt_tick(v: f64, span: f64) -> String {
    let digits = if span > 0.0 {
        (2.0 - span.log10().floor()).clamp(0.0, 6.0) as usize
    } else {
        3
    };
    let s = format!("{v:.digits$}");
    if s.starts_with("-0") && s.trim_start_matches(['-', '0', '.']).is_empty() {
        s[1..].to_string()
    } else {
        s
    }
}

/// Writes a parity plot of `pred` against `truth` to `path` (PNG), with `title` and the MAE.
pub fn parity_png(path: &Path, title: &str, truth: &[f64], pred: &[f64]) -> Result<()> {
    let n = truth.len().min(pred.len());
    let err = |e: String| {
        Error::Invalid(format!(
            "{}: cannot draw the parity plot: {e}",
            path.display()
        ))
    };
    let tmp = path.with_extension("tmp.png");
    {
        let root = BitMapBackend::new(&tmp, (W as u32, H as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in truth[..n].iter().chain(&pred[..n]) {
            if v.is_finite() {
                lo = lo.min(*v);
                hi = hi.max(*v);
            }
        }
        if !lo.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        if hi - lo < 1e-12 {
            (lo, hi) = (lo - 0.5, hi + 0.5);
        }
        let pad = 0.05 * (hi - lo);
        let (lo, hi) = (lo - pad, hi + pad);
        let (x0, x1, y0, y1) = (LEFT, W - RIGHT, TOP, H - BOTTOM);
        let side = (x1 - x0).min(y1 - y0);
        let (x1, y0) = (x0 + side, y1 - side);
        let px = |v: f64| x0 + ((v - lo) / (hi - lo) * side as f64).round() as i32;
        let py = |v: f64| y1 - ((v - lo) / (hi - lo) * side as f64).round() as i32;
        let grey = RGBColor(200, 200, 200);
        // Frame, diagonal, ticks.
        root.draw(&Rectangle::new([(x0, y0), (x1, y1)], BLACK.stroke_width(1)))
            .map_err(|e| err(e.to_string()))?;
        root.draw(&PathElement::new(
            vec![(x0, y1), (x1, y0)],
            grey.stroke_width(1),
        ))
        .map_err(|e| err(e.to_string()))?;
        for k in 0..=4 {
            let v = lo + (hi - lo) * k as f64 / 4.0;
            let label = fmt_tick(v, hi - lo);
            let (tx, ty) = (px(v), py(v));
            let _ = root.draw(&PathElement::new(vec![(tx, y1), (tx, y1 + 6)], BLACK));
            let _ = root.draw(&PathElement::new(vec![(x0 - 6, ty), (x0, ty)], BLACK));
            draw_text(&root, &label, tx - text_width(&label) / 2, y1 + 12);
            draw_text(&root, &label, (x0 - 10 - text_width(&label)).max(2), ty - 7);
        }
        // Points.
        let blue = RGBColor(31, 119, 180).mix(0.5);
        for i in 0..n {
            if truth[i].is_finite() && pred[i].is_finite() {
                let _ = root.draw(&Circle::new((px(truth[i]), py(pred[i])), 2, blue.filled()));
            }
        }
        let mae = if n > 0 {
            truth[..n]
                .iter()
                .zip(&pred[..n])
                .map(|(a, b)| (a - b).abs())
                .sum::<f64>()
                / n as f64
        } else {
            0.0
        };
        draw_text(&root, title, LEFT, 10);
        draw_text(&root, &format!("MAE {mae:.4}  N {n}"), LEFT, 32);
        let xl = "TRUE";
        draw_text(&root, xl, x0 + side / 2 - text_width(xl) / 2, y1 + 40);
        draw_text(&root, "PRED", 4, y0 - 24);
        root.present().map_err(|e| err(e.to_string()))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Writes a histogram of `values` (non-finite ones left out) in `bins` equal bins to `path`
/// (PNG), with `title`, the count and the range; the screened property of `hydragnn screen`.
pub fn histogram_png(path: &Path, title: &str, values: &[f64], bins: usize) -> Result<()> {
    let err = |e: String| {
        Error::Invalid(format!(
            "{}: cannot draw the histogram: {e}",
            path.display()
        ))
    };
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let bins = bins.max(1);
    let (mut lo, mut hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        (lo, hi) = (lo - 0.5, hi + 0.5);
    }
    let mut counts = vec![0usize; bins];
    for &x in &v {
        let b = (((x - lo) / (hi - lo)) * bins as f64).floor() as usize;
        counts[b.min(bins - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(0).max(1);
    let tmp = path.with_extension("tmp.png");
    {
        let root = BitMapBackend::new(&tmp, (W as u32, H as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let (x0, x1, y0, y1) = (LEFT, W - RIGHT, TOP, H - BOTTOM);
        let blue = RGBColor(31, 119, 180);
        let bw = (x1 - x0) as f64 / bins as f64;
        for (b, &c) in counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let xa = x0 + (b as f64 * bw).round() as i32;
            let xb = x0 + ((b + 1) as f64 * bw).round() as i32;
            let yt = y1 - ((c as f64 / top as f64) * (y1 - y0) as f64).round() as i32;
            root.draw(&Rectangle::new(
                [(xa, yt), (xb.max(xa + 1), y1)],
                blue.filled(),
            ))
            .map_err(|e| err(e.to_string()))?;
        }
        root.draw(&Rectangle::new([(x0, y0), (x1, y1)], BLACK.stroke_width(1)))
            .map_err(|e| err(e.to_string()))?;
        for k in 0..=4 {
            let x = lo + (hi - lo) * k as f64 / 4.0;
            let label = fmt_tick(x, hi - lo);
            let tx = x0 + ((x1 - x0) as f64 * k as f64 / 4.0).round() as i32;
            let _ = root.draw(&PathElement::new(vec![(tx, y1), (tx, y1 + 6)], BLACK));
            draw_text(&root, &label, tx - text_width(&label) / 2, y1 + 12);
            let c = (top as f64 * k as f64 / 4.0).round() as usize;
            let ty = y1 - ((y1 - y0) as f64 * k as f64 / 4.0).round() as i32;
            let cl = c.to_string();
            let _ = root.draw(&PathElement::new(vec![(x0 - 6, ty), (x0, ty)], BLACK));
            draw_text(&root, &cl, (x0 - 10 - text_width(&cl)).max(2), ty - 7);
        }
        draw_text(&root, title, LEFT, 10);
        let stats = format!("N {}  BINS {bins}", v.len());
        draw_text(&root, &stats, x1 - text_width(&stats), 32);
        draw_text(&root, "COUNT", 4, y0 - 24);
        root.present().map_err(|e| err(e.to_string()))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Writes the plot of a hyperparameter search (`hydragnn hpo`) to `path` (PNG): the validation
/// loss of every trial against its index (dots; pruned trials in grey) and the best so far (line),
/// on a log10 scale when every loss is positive.
pub fn search_png(path: &Path, title: &str, trials: &[(f64, f64, bool)]) -> Result<()> {
    let err = |e: String| {
        Error::Invalid(format!(
            "{}: cannot draw the search plot: {e}",
            path.display()
        ))
    };
    let pts: Vec<(f64, f64, bool)> = trials.iter().filter(|t| t.1.is_finite()).copied().collect();
    let log = !pts.is_empty() && pts.iter().all(|t| t.1 > 0.0);
    let fy = |v: f64| if log { v.log10() } else { v };
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for t in &pts {
        lo = lo.min(fy(t.1));
        hi = hi.max(fy(t.1));
    }
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        (lo, hi) = (lo - 0.5, hi + 0.5);
    }
    let pad = 0.05 * (hi - lo);
    let (lo, hi) = (lo - pad, hi + pad);
    let n = trials.len().max(1) as f64;
    let tmp = path.with_extension("tmp.png");
    {
        let root = BitMapBackend::new(&tmp, (W as u32, H as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let (x0, x1, y0, y1) = (LEFT, W - RIGHT, TOP, H - BOTTOM);
        let px = |v: f64| x0 + ((v + 0.5) / n * (x1 - x0) as f64).round() as i32;
        let py = |v: f64| y1 - ((fy(v) - lo) / (hi - lo) * (y1 - y0) as f64).round() as i32;
        root.draw(&Rectangle::new([(x0, y0), (x1, y1)], BLACK.stroke_width(1)))
            .map_err(|e| err(e.to_string()))?;
        for k in 0..=4 {
            let v = lo + (hi - lo) * k as f64 / 4.0;
            let ty = y1 - (k as f64 / 4.0 * (y1 - y0) as f64).round() as i32;
            let label = if log {
                format!("{:.1e}", 10f64.powf(v))
            } else {
                fmt_tick(v, hi - lo)
            };
            let _ = root.draw(&PathElement::new(vec![(x0 - 6, ty), (x0, ty)], BLACK));
            draw_text(&root, &label, (x0 - 10 - text_width(&label)).max(2), ty - 7);
        }
        let step = (trials.len() / 8).max(1);
        for i in (0..trials.len()).step_by(step) {
            let tx = px(i as f64);
            let label = i.to_string();
            let _ = root.draw(&PathElement::new(vec![(tx, y1), (tx, y1 + 6)], BLACK));
            draw_text(&root, &label, tx - text_width(&label) / 2, y1 + 12);
        }
        let blue = RGBColor(31, 119, 180);
        let grey = RGBColor(160, 160, 160);
        let mut best = f64::INFINITY;
        let mut line = Vec::new();
        for (i, t) in trials.iter().enumerate() {
            if t.1.is_finite() {
                let c = if t.2 { grey } else { blue };
                let _ = root.draw(&Circle::new((px(i as f64), py(t.1)), 4, c.filled()));
                if !t.2 {
                    best = best.min(t.1);
                }
            }
            if best.is_finite() {
                line.push((px(i as f64), py(best)));
            }
        }
        let _ = root.draw(&PathElement::new(
            line,
            RGBColor(214, 39, 40).stroke_width(2),
        ));
        draw_text(&root, title, LEFT, 10);
        // The y label sits left of x = LEFT on this line; the legend starts clear of it.
        draw_text(&root, "LINE: BEST SO FAR  GREY: PRUNED", LEFT + 120, 32);
        let xl = "TRIAL";
        draw_text(&root, xl, (x0 + x1) / 2 - text_width(xl) / 2, y1 + 40);
        draw_text(&root, "VAL LOSS", 4, y0 - 24);
        root.present().map_err(|e| err(e.to_string()))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Writes a calibration plot to `path` (PNG): each bin's mean predicted deviation (x) against
/// the observed RMS error in it (y), joined by a line, with y = x (a calibrated ensemble lies on
/// it) and the Spearman rank correlation `rho` in the subtitle; both axes from 0.
pub fn calibration_png(
    path: &Path,
    title: &str,
    bins: &[(f64, f64)],
    rho: Option<f64>,
) -> Result<()> {
    let err = |e: String| {
        Error::Invalid(format!(
            "{}: cannot draw the calibration plot: {e}",
            path.display()
        ))
    };
    let pts: Vec<(f64, f64)> = bins
        .iter()
        .copied()
        .filter(|(a, b)| a.is_finite() && b.is_finite())
        .collect();
    let tmp = path.with_extension("tmp.png");
    {
        let root = BitMapBackend::new(&tmp, (W as u32, H as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let hi = pts
            .iter()
            .flat_map(|&(a, b)| [a, b])
            .fold(0.0f64, f64::max)
            .max(1e-12)
            * 1.05;
        let (x0, x1, y0, y1) = (LEFT, W - RIGHT, TOP, H - BOTTOM);
        let side = (x1 - x0).min(y1 - y0);
        let (x1, y0) = (x0 + side, y1 - side);
        let px = |v: f64| x0 + (v / hi * side as f64).round() as i32;
        let py = |v: f64| y1 - (v / hi * side as f64).round() as i32;
        let grey = RGBColor(160, 160, 160);
        root.draw(&Rectangle::new([(x0, y0), (x1, y1)], BLACK.stroke_width(1)))
            .map_err(|e| err(e.to_string()))?;
        root.draw(&PathElement::new(
            vec![(x0, y1), (x1, y0)],
            grey.stroke_width(1),
        ))
        .map_err(|e| err(e.to_string()))?;
        for k in 0..=4 {
            let v = hi * k as f64 / 4.0;
            let label = fmt_tick(v, hi);
            let (tx, ty) = (px(v), py(v));
            let _ = root.draw(&PathElement::new(vec![(tx, y1), (tx, y1 + 6)], BLACK));
            let _ = root.draw(&PathElement::new(vec![(x0 - 6, ty), (x0, ty)], BLACK));
            draw_text(&root, &label, tx - text_width(&label) / 2, y1 + 12);
            draw_text(&root, &label, (x0 - 10 - text_width(&label)).max(2), ty - 7);
        }
        let blue = RGBColor(31, 119, 180);
        let line: Vec<(i32, i32)> = pts.iter().map(|&(a, b)| (px(a), py(b))).collect();
        let _ = root.draw(&PathElement::new(line.clone(), blue.stroke_width(2)));
        for p in line {
            let _ = root.draw(&Circle::new(p, 4, blue.filled()));
        }
        draw_text(&root, title, LEFT, 10);
        let sub = match rho {
            Some(r) => format!("Y: RMS ERROR  SPEARMAN {r:.3}  BINS {}", pts.len()),
            None => format!("Y: RMS ERROR  BINS {}", pts.len()),
        };
        draw_text(&root, &sub, LEFT, 32);
        let xl = "PREDICTED DEVIATION";
        draw_text(&root, xl, x0 + side / 2 - text_width(xl) / 2, y1 + 40);
        root.present().map_err(|e| err(e.to_string()))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glyphs_are_5x7() {
        for c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ.,-+/:=()_% ".chars() {
            assert_eq!(glyph(c).map(str::len), Some(35), "glyph {c:?}");
        }
    }

    #[test]
    fn writes_a_png_without_fonts() {
        let dir = std::env::temp_dir().join(format!("hgnn_plot_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("parity.png");
        parity_png(
            &p,
            "metals energy_per_atom (eV/atom)",
            &[0.0, 1.0, 2.0],
            &[0.1, 0.9, 2.2],
        )
        .unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn histogram_writes_a_png() {
        let dir = std::env::temp_dir().join(format!("hgnn_hist_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("hist.png");
        let v: Vec<f64> = (0..100).map(|i| (i as f64 * 0.37).sin()).collect();
        histogram_png(&p, "energy_per_atom", &v, 20).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        histogram_png(&p, "empty", &[f64::NAN], 20).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
