//! PNG plots (plotters): the training curves of a run folder and a heatmap.
//!
//! Text is drawn with the DejaVu Sans font compiled into the crate (`assets/`), so plots need
//! no system fonts. Every PNG is rendered in memory and written atomically.

use std::io::Cursor;
use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::run_dir::{latest_epochs, RunDir};
use crate::TrainError;

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const SIZE: (u32, u32) = (1200, 450);

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is compiled in and valid; a failure would only lose the text.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn plot_error(path: &Path, error: impl ToString) -> TrainError {
    TrainError::Io {
        path: path.to_path_buf(),
        reason: format!("cannot draw the plot: {}", error.to_string()),
    }
}

/// What drawing on a canvas ends with: plotters' errors are generic over the backend.
type DrawResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Renders `draw` on a `size` RGB canvas and writes it to `path` as a PNG, atomically.
fn render_png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> DrawResult,
) -> Result<(), TrainError> {
    register_font();
    let mut pixels = vec![0u8; (size.0 * size.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
        draw(root.clone()).map_err(|e| plot_error(path, e))?;
        root.present().map_err(|e| plot_error(path, e))?;
    }
    let image = image::RgbImage::from_raw(size.0, size.1, pixels)
        .ok_or_else(|| plot_error(path, "canvas size"))?;
    let mut png = Cursor::new(Vec::new());
    image
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| plot_error(path, e))?;
    sskd_models::atomic::write_atomically(path, png.get_ref())?;
    Ok(())
}

/// A named series of (epoch, value) points.
pub type Series = (String, Vec<(f64, f64)>);

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    y_label: &str,
    series: &[Series],
) -> DrawResult {
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x_min, mut x_max) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut y_min, mut y_max) = (f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in points {
        x_min = x_min.min(x);
        x_max = x_max.max(x);
        y_min = y_min.min(y);
        y_max = y_max.max(y);
    }
    if !y_min.is_finite() {
        (x_min, x_max, y_min, y_max) = (1.0, 2.0, 0.0, 1.0);
    }
    if x_max <= x_min {
        x_max = x_min + 1.0;
    }
    let pad = ((y_max - y_min) * 0.05).max(1e-3);
    // Ticks at whole epochs: at most one per epoch, at most 12 (plotters then steps by 2, 5,
    // 10, ... — whole numbers too).
    let ticks = ((x_max - x_min).round() as usize + 1).clamp(2, 12);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(x_min..x_max, (y_min - pad)..(y_max + pad))
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_labels(ticks)
        .x_label_formatter(&|epoch| format!("{epoch:.0}"))
        .x_desc("epoch")
        .y_desc(y_label)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| e.to_string())?;
    for (index, (name, points)) in series.iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The curves of one stage from its log lines: loss terms, and accuracies.
fn stage_series(lines: &[&serde_json::Value]) -> (Vec<Series>, Vec<Series>) {
    let mut losses: Vec<Series> = Vec::new();
    let mut accuracies: Vec<Series> = Vec::new();
    let push = |set: &mut Vec<Series>, name: String, x: f64, y: f64| match set
        .iter_mut()
        .find(|(n, _)| *n == name)
    {
        Some((_, points)) => points.push((x, y)),
        None => set.push((name, vec![(x, y)])),
    };
    for line in lines {
        let epoch = line["epoch"].as_f64().unwrap_or(0.0);
        if let Some(terms) = line["train"]["terms"].as_object() {
            for (name, value) in terms {
                if let Some(value) = value.as_f64() {
                    push(&mut losses, name.clone(), epoch, value);
                }
            }
        }
        for (name, value) in [
            ("train top-1", &line["train"]["top1"]),
            ("test top-1", &line["test"]["top1"]),
            ("test SS head", &line["test"]["ss_top1"]),
        ] {
            if let Some(value) = value.as_f64() {
                push(&mut accuracies, name.to_string(), epoch, value);
            }
        }
    }
    (losses, accuracies)
}

/// Draws `S.png` in the run folder for every stage `S` of its `metrics.jsonl`: the loss terms
/// (left) and the train/test accuracies (right) per epoch, the latest line of each epoch.
pub fn plot_run(run: &RunDir) -> Result<(), TrainError> {
    let lines = latest_epochs(&run.log().read()?);
    let mut stages: Vec<&str> = lines.iter().filter_map(|l| l["stage"].as_str()).collect();
    stages.dedup();
    for stage in stages {
        let stage_lines: Vec<&serde_json::Value> =
            lines.iter().filter(|l| l["stage"] == stage).collect();
        let (losses, accuracies) = stage_series(&stage_lines);
        render_png(&run.path(&format!("{stage}.png")), SIZE, |root| {
            let panels = root.split_evenly((1, 2));
            draw_panel(
                &panels[0],
                &format!("{stage}: training loss terms"),
                "loss",
                &losses,
            )?;
            draw_panel(&panels[1], &format!("{stage}: accuracy"), "%", &accuracies)
        })?;
    }
    Ok(())
}

/// One panel of `series` (x: epoch) titled `title`, the y axis `y_label`, written to `path`.
pub fn plot_curves(
    path: &Path,
    title: &str,
    y_label: &str,
    series: &[Series],
) -> Result<(), TrainError> {
    render_png(path, (1000, 600), |root| {
        draw_panel(&root, title, y_label, series)
    })
}

/// A `rows × cols` heatmap of `values` (row-major) with a colour bar, written to `path`.
pub fn plot_heatmap(
    path: &Path,
    title: &str,
    values: &[f32],
    (rows, cols): (usize, usize),
) -> Result<(), TrainError> {
    if values.len() != rows * cols || values.is_empty() {
        return Err(plot_error(
            path,
            format!("{} values for a {rows}×{cols} heatmap", values.len()),
        ));
    }
    let max = values.iter().copied().fold(f32::MIN, f32::max).max(1e-12);
    let color = |v: f32| ViridisRGB::get_color_normalized(v, 0.0, max);
    render_png(path, (760, 700), |root| {
        let (map_area, bar_area) = root.split_horizontally(660);
        let mut chart = ChartBuilder::on(&map_area)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d(0..cols, 0..rows)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_mesh()
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(
                (0..rows)
                    .flat_map(|r| (0..cols).map(move |c| (r, c)))
                    .map(|(r, c)| {
                        Rectangle::new(
                            [(c, rows - 1 - r), (c + 1, rows - r)],
                            color(values[r * cols + c]).filled(),
                        )
                    }),
            )
            .map_err(|e| e.to_string())?;
        let mut bar = ChartBuilder::on(&bar_area)
            .margin_top(44)
            .margin_bottom(42)
            .y_label_area_size(50)
            .build_cartesian_2d(0..1, 0.0..f64::from(max))
            .map_err(|e| e.to_string())?;
        bar.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| e.to_string())?;
        let steps = 100;
        bar.draw_series((0..steps).map(|i| {
            let low = f64::from(max) * i as f64 / steps as f64;
            let high = f64::from(max) * (i + 1) as f64 / steps as f64;
            Rectangle::new([(0, low), (1, high)], color(low as f32).filled())
        }))
        .map_err(|e| e.to_string())?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_a_run_and_a_heatmap_as_png() {
        let dir = std::env::temp_dir().join(format!("sskd-plot-{}", std::process::id()));
        let run = RunDir::create(&dir).unwrap();
        for epoch in 0..3 {
            run.log()
                .append(&serde_json::json!({
                    "stage": "student", "epoch": epoch + 1,
                    "train": {"terms": {"ce": 2.0 - epoch as f64 * 0.5, "total": 3.0}, "top1": 20.0},
                    "test": {"top1": 10.0 + epoch as f64, "top5": 50.0, "ss_top1": 30.0},
                }))
                .unwrap();
        }
        plot_run(&run).unwrap();
        let png = image::open(run.path("student.png")).unwrap();
        assert_eq!((png.width(), png.height()), SIZE);
        // Something besides the white background was drawn.
        assert!(png.to_rgb8().pixels().any(|p| p.0 != [255, 255, 255]));

        let heatmap = dir.join("heatmap.png");
        plot_heatmap(&heatmap, "difference", &[0.0, 0.5, 1.0, 0.25], (2, 2)).unwrap();
        assert!(image::open(&heatmap).is_ok());
        assert!(plot_heatmap(&heatmap, "bad", &[0.0; 3], (2, 2)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
