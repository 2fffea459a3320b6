//! Fixtures for the report tests: run, sweep and range-test folders written in the official
//! formats (the headers of `train::record` and `lr_find`), and small readers for what the
//! commands write (SVG text, PNG header and pixels).

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const EPOCHS_HEADER: &str =
    "epoch,step,lr,train_loss,train_acc,test_loss,test_acc,test_top5,time_s,images_per_sec";
pub const STEPS_HEADER: &str = "step,epoch,lr,momentum,loss,time_s";

/// Run the binary.
pub fn lrlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lrlab"))
        .args(args)
        .output()
        .expect("run lrlab")
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// One epoch row: (epoch, train_loss, train_acc, test_acc or None, time_s).
pub type Row = (u32, f64, f64, Option<f64>, f64);

/// A run folder with `epochs.csv`, `steps.csv` (4 steps per epoch, LR decaying linearly
/// from `lr`, momentum 0.9), `status.json`, `meta.json` and, when given, `config.toml`.
pub fn run_folder(dir: &Path, rows: &[Row], lr: f64, status: &str, config: Option<&str>) {
    let mut epochs = format!("{EPOCHS_HEADER}\n");
    for &(e, tl, ta, test, t) in rows {
        let (vl, va, v5) = match test {
            Some(a) => (format!("{}", 1.0 - a), format!("{a}"), "0.99".to_string()),
            None => (String::new(), String::new(), String::new()),
        };
        epochs.push_str(&format!(
            "{e},{},{lr},{tl},{ta},{vl},{va},{v5},{t},1000.5\n",
            e * 4
        ));
    }
    write(&dir.join("epochs.csv"), &epochs);
    let n = rows.len() as u32 * 4;
    let mut steps = format!("{STEPS_HEADER}\n");
    for k in 0..n {
        let lr_k = lr * (1.0 - k as f64 / n as f64);
        steps.push_str(&format!(
            "{k},{},{lr_k},0.9,2.0,{}\n",
            k as f64 / 4.0,
            k as f64 * 0.1
        ));
    }
    write(&dir.join("steps.csv"), &steps);
    write(
        &dir.join("status.json"),
        &format!(
            "{{\"status\": \"{status}\", \"reason\": \"\", \"epoch\": {}, \"step\": {n}, \"updated\": 1.0}}\n",
            rows.len()
        ),
    );
    write(
        &dir.join("meta.json"),
        "{\"device\": \"cpu\", \"seed\": 1, \"parameters\": 431080, \"lrlab_version\": \"0.1.0\"}\n",
    );
    if let Some(c) = config {
        write(&dir.join("config.toml"), c);
    }
}

/// Three epochs ending at test accuracy `acc`.
pub fn rows_ending_at(acc: f64) -> Vec<Row> {
    vec![
        (1, 1.5, 0.5, Some(acc - 0.2), 10.0),
        (2, 0.9, 0.7, Some(acc - 0.1), 20.0),
        (3, 0.5, 0.9, Some(acc), 30.0),
    ]
}

/// A sweep of two learning rates × two seeds (run names differ only in `seed=N`), final test
/// accuracies 0.80/0.90 (lr 0.1) and 0.70/0.74 (lr 0.2).
pub fn two_point_sweep(root: &Path) {
    for (lr, accs) in [("0.1", [0.80, 0.90]), ("0.2", [0.70, 0.74])] {
        for (seed, acc) in [1, 2].iter().zip(accs) {
            run_folder(
                &root.join(format!("lr={lr},seed={seed}")),
                &rows_ending_at(acc),
                lr.parse().unwrap(),
                "done",
                None,
            );
        }
    }
}

/// A range-test folder: an exponential ramp 1e-6..1 over 60 steps, a loss that falls then
/// blows up, suggestions `valley` and `steepest`, and held-out accuracy when asked.
pub fn range_folder(dir: &Path, with_accuracy: bool) {
    let mut csv = String::from("step,lr,loss,smoothed_loss\n");
    for i in 0..60 {
        let lr = 1e-6 * 10f64.powf(6.0 * i as f64 / 59.0);
        let loss = if i < 50 {
            2.3 - 0.03 * i as f64
        } else {
            0.8 * 3f64.powi(i - 49)
        };
        csv.push_str(&format!("{i},{lr},{loss},{}\n", loss * 1.01));
    }
    write(&dir.join("lr_find.csv"), &csv);
    if with_accuracy {
        write(
            &dir.join("accuracy.csv"),
            "step,lr,accuracy\n19,1e-4,0.2\n39,1e-2,0.6\n59,1,0.1\n",
        );
    }
    write(
        &dir.join("suggestion.json"),
        r#"{"stopped": "smoothed loss exceeded 4 x its best", "metric": "loss",
            "suggestions": [
              {"rule": "valley", "lr": 0.001, "index": 30, "how": "fastai valley"},
              {"rule": "steepest", "lr": 0.0002, "index": 20, "how": "steepest fall"}
            ]}"#,
    );
}

/// The text contents of an SVG's `<text>` elements, trimmed.
pub fn svg_texts(svg: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = svg;
    while let Some(i) = rest.find("<text") {
        rest = &rest[i..];
        let open_end = rest.find('>').unwrap();
        let close = rest.find("</text>").unwrap();
        out.push(rest[open_end + 1..close].trim().to_string());
        rest = &rest[close + 7..];
    }
    out
}

/// Check an SVG document's shape: one `<svg ...>` root of 900×600, balanced and closed.
pub fn assert_svg(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        text.starts_with("<svg"),
        "{}: does not start with <svg",
        path.display()
    );
    assert!(
        text.trim_end().ends_with("</svg>"),
        "{}: not closed",
        path.display()
    );
    assert!(text.contains("width=\"900\"") && text.contains("height=\"600\""));
    assert_eq!(
        text.matches("<text").count(),
        text.matches("</text>").count(),
        "unbalanced <text> in {}",
        path.display()
    );
    text
}

/// A decoded PNG: width, height, RGB pixels.
pub struct Png {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<[u8; 3]>,
}

impl Png {
    pub fn at(&self, x: u32, y: u32) -> [u8; 3] {
        self.rgb[(y * self.width + x) as usize]
    }

    /// Number of dark pixels (text, axes, lines) in a rectangle.
    pub fn dark_in(&self, x0: u32, y0: u32, x1: u32, y1: u32) -> usize {
        let mut n = 0;
        for y in y0..y1 {
            for x in x0..x1 {
                let p = self.at(x, y);
                if (p[0] as u32 + p[1] as u32 + p[2] as u32) < 300 {
                    n += 1;
                }
            }
        }
        n
    }
}

/// Check the PNG signature and decode an 8-bit RGB or RGBA, non-interlaced PNG.
pub fn read_png(path: &Path) -> Png {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        &data[..8],
        b"\x89PNG\r\n\x1a\n",
        "{}: no PNG signature",
        path.display()
    );
    let mut pos = 8;
    let (mut w, mut h, mut ctype) = (0u32, 0u32, 0u8);
    let mut idat = Vec::new();
    while pos + 8 <= data.len() {
        let n = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        let kind = &data[pos + 4..pos + 8];
        let body = &data[pos + 8..pos + 8 + n];
        if kind == b"IHDR" {
            w = u32::from_be_bytes(body[0..4].try_into().unwrap());
            h = u32::from_be_bytes(body[4..8].try_into().unwrap());
            assert_eq!(body[8], 8, "bit depth");
            ctype = body[9];
            assert_eq!(body[12], 0, "interlaced");
        } else if kind == b"IDAT" {
            idat.extend_from_slice(body);
        }
        pos += 12 + n;
    }
    let bpp = match ctype {
        2 => 3,
        6 => 4,
        other => panic!("unexpected PNG colour type {other}"),
    };
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .unwrap();
    let stride = w as usize * bpp;
    assert_eq!(raw.len(), h as usize * (stride + 1));
    let mut prev = vec![0u8; stride];
    let mut rgb = Vec::with_capacity((w * h) as usize);
    for y in 0..h as usize {
        let f = raw[y * (stride + 1)];
        let mut line = raw[y * (stride + 1) + 1..(y + 1) * (stride + 1)].to_vec();
        for x in 0..stride {
            let a = if x >= bpp { line[x - bpp] as i32 } else { 0 };
            let b = prev[x] as i32;
            let c = if x >= bpp { prev[x - bpp] as i32 } else { 0 };
            let add = match f {
                0 => 0,
                1 => a,
                2 => b,
                3 => (a + b) / 2,
                4 => {
                    let p = a + b - c;
                    let (pa, pb, pc) = ((p - a).abs(), (p - b).abs(), (p - c).abs());
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                other => panic!("bad PNG filter {other}"),
            };
            line[x] = (line[x] as i32 + add) as u8;
        }
        for x in 0..w as usize {
            rgb.push([line[x * bpp], line[x * bpp + 1], line[x * bpp + 2]]);
        }
        prev = line;
    }
    Png {
        width: w,
        height: h,
        rgb,
    }
}

/// Check a figure pair `<dir>/<stem>.svg` and `.png`; returns the SVG's text contents.
pub fn assert_figure(dir: &Path, stem: &str) -> Vec<String> {
    let svg = assert_svg(&dir.join(format!("{stem}.svg")));
    let png = read_png(&dir.join(format!("{stem}.png")));
    assert_eq!((png.width, png.height), (900, 600));
    // The title is drawn with the embedded font: dark pixels in the title band.
    assert!(
        png.dark_in(15, 5, 400, 35) > 100,
        "{stem}.png: no title text"
    );
    // The rotated y-axis label: dark pixels taller than wide at the left edge.
    assert!(
        png.dark_in(0, 60, 30, 590) > 50,
        "{stem}.png: no y-axis label"
    );
    svg_texts(&svg)
}

pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}
