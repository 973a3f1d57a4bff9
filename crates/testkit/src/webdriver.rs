//! A small W3C WebDriver client for end-to-end tests of the status page: Debian's `chromedriver`
//! runs inside a test host (namespace) on a loopback port, and every command goes to it through
//! `curl` run in that same namespace, so nothing ever leaves the test's namespaces. Dropping the
//! [`Browser`] ends the session and kills chromedriver by pid (the namespace's teardown kills any
//! browser process left behind).
//!
//! Also [`png_stats`]: decodes a screenshot (8-bit RGB/RGBA PNG) to tell a blank one from a page.

use crate::{Host, KitError, Result, wait_for};
use base64::Engine;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// WebDriver's code points for special keys.
pub const ENTER: &str = "\u{E007}";
pub const TAB: &str = "\u{E004}";

/// A headless Chromium session driven through chromedriver inside `host`.
#[derive(Debug)]
pub struct Browser {
    host: Host,
    port: u16,
    session: String,
    chromedriver: Child,
    log: PathBuf,
}

/// One entry of the browser's console log.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// `SEVERE`, `WARNING`, `INFO`, ...
    pub level: String,
    pub message: String,
}

fn wd_error(what: &str, detail: impl std::fmt::Display) -> KitError {
    KitError::Command {
        cmd: format!("webdriver {what}"),
        stderr: detail.to_string(),
    }
}

impl Browser {
    /// Starts chromedriver on `127.0.0.1:port` inside `host` (its log and the browser profile go
    /// under `dir`) and opens a session with a `width`×`height` window.
    pub fn start(host: &Host, dir: &Path, port: u16, width: u32, height: u32) -> Result<Browser> {
        std::fs::create_dir_all(dir).map_err(|error| KitError::Spawn {
            cmd: format!("mkdir {}", dir.display()),
            error,
        })?;
        let log = dir.join("chromedriver.log");
        let file = std::fs::File::create(&log).map_err(|error| KitError::Spawn {
            cmd: "create chromedriver.log".into(),
            error,
        })?;
        let err = file.try_clone().map_err(|error| KitError::Spawn {
            cmd: "chromedriver.log".into(),
            error,
        })?;
        let args = [
            "chromedriver".to_string(),
            format!("--port={port}"),
            "--allowed-ips=".into(),
        ];
        let chromedriver = host
            .command(&args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|error| KitError::Spawn {
                cmd: "chromedriver".into(),
                error,
            })?;
        let mut b = Browser {
            host: host.clone(),
            port,
            session: String::new(),
            chromedriver,
            log,
        };
        wait_for(Duration::from_secs(15), "chromedriver to answer", || {
            b.raw("GET", "/status", None)
                .ok()
                .filter(|v| v["value"]["ready"].as_bool() == Some(true))
        })?;
        let profile = dir.join("profile");
        let caps = json!({
            "capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        format!("--window-size={width},{height}"),
                        format!("--user-data-dir={}", profile.display()),
                        "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                        "--disable-background-networking", "--disable-sync",
                        "--disable-component-update", "--disable-default-apps",
                        "--hide-scrollbars", "--force-color-profile=srgb",
                    ],
                },
                "goog:loggingPrefs": {"browser": "ALL"},
            }}
        });
        let v = b.raw("POST", "/session", Some(&caps))?;
        b.session = v["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| wd_error("new session", format!("{v}\n{}", b.chromedriver_log())))?
            .to_string();
        b.viewport(width, height, false)?;
        Ok(b)
    }

    /// chromedriver's own log so far.
    pub fn chromedriver_log(&self) -> String {
        crate::slurp(&self.log)
    }

    /// One HTTP request to chromedriver, from inside the namespace; the whole JSON reply.
    fn raw(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let mut args = vec![
            "curl",
            "-sS",
            "--max-time",
            "60",
            "-X",
            method,
            "-H",
            "Content-Type: application/json",
        ];
        if body.is_some() {
            args.extend(["--data-binary", "@-"]);
        }
        args.push(&url);
        let mut child = self
            .host
            .command(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| KitError::Spawn {
                cmd: "curl (webdriver)".into(),
                error,
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            let text = body.map(Value::to_string).unwrap_or_default();
            stdin
                .write_all(text.as_bytes())
                .map_err(|e| wd_error(path, e))?;
        }
        let out = child.wait_with_output().map_err(|e| wd_error(path, e))?;
        if !out.status.success() {
            return Err(wd_error(
                &format!("{method} {path}"),
                String::from_utf8_lossy(&out.stderr),
            ));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| {
            wd_error(
                &format!("{method} {path}"),
                format!("{e}: {}", String::from_utf8_lossy(&out.stdout)),
            )
        })
    }

    /// A command of the session; its `value`, or the WebDriver error.
    pub fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let full = format!("/session/{}{path}", self.session);
        let body = body.or_else(|| (method == "POST").then(|| json!({})));
        let v = self.raw(method, &full, body.as_ref())?;
        if let Some(error) = v["value"]["error"].as_str() {
            return Err(wd_error(
                &format!("{method} {path}"),
                format!(
                    "{error}: {}",
                    v["value"]["message"].as_str().unwrap_or_default()
                ),
            ));
        }
        Ok(v["value"].clone())
    }

    pub fn goto(&self, url: &str) -> Result<()> {
        self.cmd("POST", "/url", Some(json!({ "url": url })))
            .map(|_| ())
    }

    pub fn refresh(&self) -> Result<()> {
        self.cmd("POST", "/refresh", None).map(|_| ())
    }

    /// The element matching a CSS selector (an error if none does).
    pub fn find(&self, css: &str) -> Result<String> {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        )?;
        v[ELEMENT]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| wd_error("find", format!("{css}: {v}")))
    }

    /// Types `text` into an element, as a keyboard would (focusing it first).
    pub fn send_keys(&self, element: &str, text: &str) -> Result<()> {
        self.cmd(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .map(|_| ())
    }

    /// Runs a synchronous script (`return ...`) in the page.
    pub fn execute(&self, script: &str) -> Result<Value> {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Polls a script until it returns something truthy (not null, false, "" or 0).
    pub fn wait_script(&self, timeout: Duration, what: &str, script: &str) -> Result<Value> {
        wait_for(timeout, what, || {
            let v = self.execute(script).ok()?;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            truthy.then_some(v)
        })
    }

    /// Sets the viewport exactly (DevTools device metrics), `mobile` for a phone's.
    pub fn viewport(&self, width: u32, height: u32, mobile: bool) -> Result<()> {
        self.cmd(
            "POST",
            "/goog/cdp/execute",
            Some(json!({
                "cmd": "Emulation.setDeviceMetricsOverride",
                "params": {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
            })),
        )
        .map(|_| ())
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Result<Vec<u8>> {
        let v = self.cmd("GET", "/screenshot", None)?;
        let b64 = v
            .as_str()
            .ok_or_else(|| wd_error("screenshot", "no image"))?;
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| wd_error("screenshot", e))
    }

    /// The browser console's entries since the last call.
    pub fn console_log(&self) -> Result<Vec<LogEntry>> {
        let v = self.cmd("POST", "/se/log", Some(json!({"type": "browser"})))?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .map(|e| LogEntry {
                level: e["level"].as_str().unwrap_or_default().to_string(),
                message: e["message"].as_str().unwrap_or_default().to_string(),
            })
            .collect())
    }

    /// The page's DOM as HTML, with the values of form fields.
    pub fn dom(&self) -> Result<String> {
        let v = self.execute(
            "return document.documentElement.outerHTML + '\\n' + \
             Array.from(document.querySelectorAll('input, textarea')).map(i => i.value).join('\\n');",
        )?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = self.raw("DELETE", &path, None);
        }
        let _ = self.chromedriver.kill();
        let _ = self.chromedriver.wait();
    }
}

/// What a screenshot holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PngStats {
    pub width: u32,
    pub height: u32,
    /// Variance of the pixels' luma (0 for a single flat colour).
    pub luma_variance: f64,
    /// The share of pixels that differ from the most common colour.
    pub non_background: f64,
}

/// Decodes an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium's screenshots are).
pub fn png_stats(png: &[u8]) -> Result<PngStats> {
    let bad = |why: &str| wd_error("png", why);
    if png.len() < 8 || &png[..8] != b"\x89PNG\r\n\x1a\n" {
        return Err(bad("not a PNG"));
    }
    let mut pos = 8;
    let (mut width, mut height, mut channels) = (0u32, 0u32, 0usize);
    let mut idat = Vec::new();
    while pos + 8 <= png.len() {
        let len = u32::from_be_bytes([png[pos], png[pos + 1], png[pos + 2], png[pos + 3]]) as usize;
        let kind = &png[pos + 4..pos + 8];
        let data = png
            .get(pos + 8..pos + 8 + len)
            .ok_or_else(|| bad("truncated chunk"))?;
        match kind {
            b"IHDR" => {
                if data.len() < 13 {
                    return Err(bad("short IHDR"));
                }
                width = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                height = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
                let (depth, colour, interlace) = (data[8], data[9], data[12]);
                channels = match (depth, colour, interlace) {
                    (8, 2, 0) => 3,
                    (8, 6, 0) => 4,
                    _ => return Err(bad("not 8-bit RGB(A) non-interlaced")),
                };
            }
            b"IDAT" => idat.extend_from_slice(data),
            b"IEND" => break,
            _ => {}
        }
        pos += 12 + len;
    }
    if channels == 0 || width == 0 || height == 0 {
        return Err(bad("no image header"));
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(idat.as_slice())
        .read_to_end(&mut raw)
        .map_err(|e| wd_error("png inflate", e))?;
    let stride = width as usize * channels;
    if raw.len() < (stride + 1) * height as usize {
        return Err(bad("short image data"));
    }
    // Undo the per-line filters (PNG spec §9).
    let mut pixels = vec![0u8; stride * height as usize];
    for y in 0..height as usize {
        let filter = raw[y * (stride + 1)];
        let line = &raw[y * (stride + 1) + 1..(y + 1) * (stride + 1)];
        for x in 0..stride {
            let a = if x >= channels {
                pixels[y * stride + x - channels]
            } else {
                0
            };
            let b = if y > 0 {
                pixels[(y - 1) * stride + x]
            } else {
                0
            };
            let c = if x >= channels && y > 0 {
                pixels[(y - 1) * stride + x - channels]
            } else {
                0
            };
            let predict = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((a as u16 + b as u16) / 2) as u8,
                4 => {
                    let p = a as i16 + b as i16 - c as i16;
                    let (pa, pb, pc) = (
                        (p - a as i16).abs(),
                        (p - b as i16).abs(),
                        (p - c as i16).abs(),
                    );
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                _ => return Err(bad("unknown filter")),
            };
            pixels[y * stride + x] = line[x].wrapping_add(predict);
        }
    }
    let n = (width * height) as f64;
    let (mut sum, mut sum2) = (0f64, 0f64);
    let mut counts = std::collections::HashMap::new();
    for px in pixels.chunks_exact(channels) {
        let luma = 0.2126 * px[0] as f64 + 0.7152 * px[1] as f64 + 0.0722 * px[2] as f64;
        sum += luma;
        sum2 += luma * luma;
        *counts.entry([px[0], px[1], px[2]]).or_insert(0u64) += 1;
    }
    let mean = sum / n;
    let top = counts.values().copied().max().unwrap_or(0) as f64;
    Ok(PngStats {
        width,
        height,
        luma_variance: sum2 / n - mean * mean,
        non_background: 1.0 - top / n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PNG made here: `w`×`h` RGB, every line with filter `filter` (0 or 1) from `pixel`.
    fn make_png(w: u32, h: u32, filter: u8, pixel: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
        let mut raw = Vec::new();
        for y in 0..h {
            raw.push(filter);
            let mut prev = [0u8; 3];
            for x in 0..w {
                let p = pixel(x, y);
                for i in 0..3 {
                    raw.push(if filter == 1 {
                        p[i].wrapping_sub(prev[i])
                    } else {
                        p[i]
                    });
                }
                prev = p;
            }
        }
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&raw).expect("deflate");
        let idat = z.finish().expect("deflate");
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut chunk = |kind: &[u8], data: &[u8]| {
            png.extend_from_slice(&(data.len() as u32).to_be_bytes());
            png.extend_from_slice(kind);
            png.extend_from_slice(data);
            png.extend_from_slice(&[0, 0, 0, 0]); // CRC: not checked by the reader
        };
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        chunk(b"IHDR", &ihdr);
        chunk(b"IDAT", &idat);
        chunk(b"IEND", &[]);
        png
    }

    #[test]
    fn a_flat_image_has_no_variance() {
        let s = png_stats(&make_png(20, 10, 0, |_, _| [250, 250, 250])).expect("decode");
        assert_eq!((s.width, s.height), (20, 10));
        assert!(s.luma_variance.abs() < 1e-6);
        assert!(s.non_background.abs() < 1e-9);
    }

    #[test]
    fn content_shows_as_variance_through_the_sub_filter() {
        // Half the lines black: variance (255/2)^2 and half the pixels off the background.
        let png = make_png(
            16,
            8,
            1,
            |_, y| if y < 4 { [0, 0, 0] } else { [255, 255, 255] },
        );
        let s = png_stats(&png).expect("decode");
        assert!((s.luma_variance - 127.5f64.powi(2)).abs() < 1.0, "{s:?}");
        assert!((s.non_background - 0.5).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn rejects_what_is_not_a_png() {
        assert!(png_stats(b"GIF89a").is_err());
        let png = make_png(4, 4, 0, |_, _| [1, 2, 3]);
        assert!(png_stats(&png[..30]).is_err());
    }
}
