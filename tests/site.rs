//! The site (`www/`) in headless Chromium, driven through ChromeDriver the way a user clicks:
//! a bundle packed by the native CLI answers fixed queries in the page with the native CLI's
//! top 10, on WebGPU and on the CPU fallback; a CIF finds the CLI's nearest descriptions; a
//! fine-tune in the page lowers the loss and its exported bundle, loaded by the CLI, embeds
//! like the page; a bundle with a graph encoder embeds a CIF in the page as the CLI does; a
//! bundle with a pretrained HuggingFace text encoder embeds and searches as the CLI does and
//! exports a fine-tune the CLI reads; a property bundle predicts for a pasted CIF what
//! `xtal predict` prints; an SSL bundle extracts the 2048 features `xtal embed` writes; a
//! corrupt bundle shows an error. Screenshots of each view are
//! written to `tests/screenshots/`.
//!
//! Needs `www/pkg` (web/build.sh), the `xtal` binary of this profile, Chromium and
//! ChromeDriver: `tests/run.sh` runs it after building those (`--ignored` here).
#![cfg(not(target_family = "wasm"))]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

const QUERIES: [&str; 3] = [
    "a cubic perovskite oxide",
    "a layered material with octahedra",
    "carbon allotrope in the triclinic system",
];

pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `xtal` binary of the profile these tests were built with (target/<profile>/xtal).
fn xtal_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join(format!("xtal{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build --release -p xtal)",
        bin.display()
    );
    bin
}

/// `xtal <train> --out run`, then `xtal bundle pack --run run -o bundle`.
fn train_and_pack(train: &[&str], run: &Path, bundle: &Path) {
    let (run, bundle) = (run.to_str().unwrap(), bundle.to_str().unwrap());
    xtal(&[train, &["--out", run]].concat());
    xtal(&["bundle", "pack", "--run", run, "-o", bundle]);
}

pub(crate) fn xtal(args: &[&str]) -> String {
    let out = Command::new(xtal_binary())
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "xtal {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

// ---- a static file server (what `python3 -m http.server -d www` does, for the test) ---------

/// Serves `www/` at `/` and `extra` at `/t/`, on a free port; returns the port.
fn serve(www: PathBuf, extra: PathBuf) -> u16 {
    serve_mounts(vec![("/t/".into(), extra), ("/".into(), www)], "")
}

/// Serves each `(prefix, folder)` of `mounts` (the first whose prefix a path starts with;
/// `/` is `index.html`) on a free port, adding `headers` (`Name: value\r\n` lines) to every
/// response; returns the port.
pub(crate) fn serve_mounts(mounts: Vec<(String, PathBuf)>, headers: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mounts = std::sync::Arc::new(mounts);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mounts = mounts.clone();
            std::thread::spawn(move || {
                let _ = answer(stream, &mounts, headers);
            });
        }
    });
    port
}

fn answer(
    mut stream: TcpStream,
    mounts: &[(String, PathBuf)],
    headers: &str,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    let mut parts = request.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let path = target.split('?').next().unwrap_or("/");
    let file = mounts.iter().find_map(|(prefix, dir)| {
        let rest = path.strip_prefix(prefix.as_str())?;
        Some(dir.join(if rest.is_empty() { "index.html" } else { rest }))
    });
    let body = match file.as_ref() {
        Some(file) if !path.contains("..") => std::fs::read(file).ok(),
        _ => None,
    };
    let (Some(file), Some(body)) = (file, body) else {
        return stream.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    };
    let kind = match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript",
        Some("css") => "text/css",
        Some("json") => "application/json",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    };
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{headers}Connection: close\r\n\r\n",
        body.len()
    )?;
    if method != "HEAD" {
        stream.write_all(&body)?;
    }
    stream.flush()
}

// ---- a minimal WebDriver client -------------------------------------------------------------

pub(crate) struct Browser {
    driver: Child,
    base: String,
}

impl Browser {
    pub(crate) fn start() -> Self {
        let chromedriver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {chromedriver}: {e} (tests/setup.sh installs it)")
            });
        let root = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while ureq::get(&format!("{root}/status")).call().is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let options: Value = serde_json::from_str(include_str!("webdriver.json")).unwrap();
        let mut options = options["goog:chromeOptions"].clone();
        options["args"]
            .as_array_mut()
            .unwrap()
            .push("--window-size=1100,1400".into());
        let session: Value = ureq::post(&format!("{root}/session"))
            .send_json(json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": options}}}))
            .unwrap()
            .into_json()
            .unwrap();
        let id = session["value"]["sessionId"].as_str().unwrap().to_string();
        let mut browser = Browser {
            driver,
            base: format!("{root}/session/{id}"),
        };
        browser.command(
            "POST",
            "timeouts",
            json!({"script": 300_000, "pageLoad": 120_000}),
        );
        browser
    }

    fn command(&mut self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/{path}", self.base);
        let response = match method {
            "GET" => ureq::get(&url).call(),
            _ => ureq::post(&url).send_json(body),
        };
        let value: Value = match response {
            Ok(r) => r.into_json().unwrap(),
            Err(ureq::Error::Status(_, r)) => {
                let v: Value = r.into_json().unwrap_or(Value::Null);
                panic!("webdriver {path}: {}", v["value"]["message"]);
            }
            Err(e) => panic!("webdriver {path}: {e}"),
        };
        value["value"].clone()
    }

    pub(crate) fn open(&mut self, url: &str) {
        self.command("POST", "url", json!({ "url": url }));
    }

    /// Runs `body` (an async function body with `app = window.xtalApp`) and returns its value.
    pub(crate) fn run(&mut self, body: &str, args: Value) -> Value {
        let script = format!(
            "const done = arguments[arguments.length - 1]; const args = arguments[0]; \
             const app = window.xtalApp; \
             (async () => {{ {body} }})().then(v => done({{ok: v}}), e => done({{error: String(e && e.message || e)}}));"
        );
        let out = self.command(
            "POST",
            "execute/async",
            json!({"script": script, "args": [args]}),
        );
        if let Some(e) = out.get("error") {
            panic!("in the page: {e}");
        }
        out["ok"].clone()
    }

    /// Waits until the page's state is one of `states`; returns it.
    fn wait_state(&mut self, states: &[&str]) -> String {
        let body = format!(
            "for (let i = 0; i < 2400; i++) {{ const s = document.body.dataset.state; \
             if ({states:?}.includes(s)) return s; await new Promise(r => setTimeout(r, 100)); }} \
             return document.body.dataset.state;"
        );
        self.run(&body, Value::Null)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Opens the page at `url` and waits until its bundle is open ("ready") or refused
    /// ("error"); returns which.
    fn open_bundle(&mut self, url: &str) -> String {
        self.open(url);
        self.wait_state(&["ready", "error"])
    }

    /// The page's `exportBundle()` written to `path`, which `xtal bundle verify` accepts.
    fn export_bundle(&mut self, path: &Path) {
        let exported = self.run(
            "const b = await app.exportBundle(); let s = ''; \
             for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000)); \
             return btoa(s);",
            Value::Null,
        );
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(exported.as_str().unwrap())
            .unwrap();
        std::fs::write(path, bytes).unwrap();
        xtal(&["bundle", "verify", path.to_str().unwrap()]);
    }

    fn screenshot(&mut self, name: &str) {
        let png = self.command("GET", "screenshot", Value::Null);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{name}: not a PNG");
        let dir = repo().join("tests/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
    }

    fn scroll_to(&mut self, id: &str) {
        self.run(
            "document.getElementById(args).scrollIntoView(); await new Promise(r => setTimeout(r, 200));",
            json!(id),
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = ureq::delete(&self.base).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

// ---- the bundle the page opens --------------------------------------------------------------

struct Fixture {
    dir: PathBuf,
    bundle: PathBuf,
    cif: String,
    /// Another material's CIF.
    other_cif: String,
    /// Whose CIF `cif` is.
    cif_id: String,
    pairs: String,
    /// The Materials Project's atom count and element list of each material, by id.
    atoms: std::collections::HashMap<String, (usize, String)>,
}

/// 64 sample materials → prepare → a tiny CLIP → a bundle with its index; a CIF of one of
/// them; 24 `id,text` pairs for the fine-tune.
fn fixture() -> Fixture {
    let dir = std::env::temp_dir().join(format!("xtal-site-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut reader = csv::Reader::from_path(repo().join("data/sample/materials.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (id, cif_col, formula) = (col("id"), col("cif"), col("formula"));
    let (n_atoms, elements) = (col("n_atoms"), col("elements"));
    let mut atoms = std::collections::HashMap::new();
    let csv_path = dir.join("materials.csv");
    let mut writer = csv::Writer::from_path(&csv_path).unwrap();
    // A 3×3 tensor per row for the tensor head (any numbers do: the page must reproduce the CLI).
    writer
        .write_record(headers.iter().chain(["tensor"]))
        .unwrap();
    let (mut cif, mut other_cif, mut cif_id, mut pairs) = (
        String::new(),
        String::new(),
        String::new(),
        String::from("id,text\n"),
    );
    for (i, row) in reader.records().take(64).enumerate() {
        let row = row.unwrap();
        let n: f64 = row[n_atoms].parse().unwrap();
        let k = (i % 5) as f64;
        let tensor = format!("[{n}, {k}, 0, {k}, {}, 1, 0, 1, {}]", 2.0 * n, n + k);
        writer
            .write_record(row.iter().chain([tensor.as_str()]))
            .unwrap();
        atoms.insert(
            row[id].to_string(),
            (row[n_atoms].parse().unwrap(), row[elements].to_string()),
        );
        if i == 41 {
            other_cif = row[cif_col].to_string();
        }
        if i == 20 {
            cif = row[cif_col].to_string();
            cif_id = row[id].to_string();
        }
        if i % 2 == 0 && i < 48 {
            pairs.push_str(&format!(
                "{},\"{} material, entry {i}\"\n",
                &row[id], &row[formula]
            ));
        }
    }
    writer.flush().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (data, run, bundle) = (dir.join("data"), dir.join("run"), dir.join("tiny.xtal"));
    xtal(&["prepare", &s(&csv_path), "-o", &s(&data)]);
    tiny_clip_bundle(&data, &run, &bundle, &[]);
    Fixture {
        dir,
        bundle,
        cif,
        other_cif,
        cif_id,
        pairs,
        atoms,
    }
}

/// A tiny CLIP trained on `data` (3 epochs; `extra` adds `--set` options) packed with its
/// index into `bundle`.
fn tiny_clip_bundle(data: &Path, run: &Path, bundle: &Path, extra: &[&str]) {
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (data, run, bundle) = (s(data), s(run), s(bundle));
    let mut args = vec![
        "train",
        "clip",
        "--data",
        &data,
        "--out",
        &run,
        "--no-plots",
    ];
    for set in [
        "model.text_width=32",
        "model.text_layers=1",
        "model.text_heads=2",
        "model.max_seq_length=128",
        "model.clip_dim=16",
        "training.val_split=0.25",
    ]
    .iter()
    .chain(extra)
    {
        args.extend(["--set", set]);
    }
    args.extend(["--batch-size", "8", "--epochs", "3"]);
    xtal(&args);
    xtal(&[
        "bundle", "pack", "--run", &run, "--index", &data, "-o", &bundle,
    ]);
}

/// The phrases in the page's zero-shot box (www/index.html).
const PAGE_PHRASES: [&str; 5] = [
    "a metal oxide",
    "a perovskite",
    "a layered material",
    "an elemental solid",
    "a cubic crystal",
];

/// `xtal search --bundle B QUERY… -k 10 --json`'s results.
fn native_top10(bundle: &str, query: &[&str]) -> Value {
    let mut args = vec!["search", "--bundle", bundle, "-k", "10", "--json"];
    args.extend_from_slice(query);
    serde_json::from_str::<Value>(&xtal(&args)).unwrap()["results"].clone()
}

/// The CLI's embeddings of `QUERIES` with `bundle`, flattened.
fn native_embeddings(bundle: &str) -> Vec<f64> {
    let mut args = vec!["embed", "--bundle", bundle, "--json", "text"];
    args.extend(QUERIES);
    vectors(&serde_json::from_str(&xtal(&args)).unwrap())
}

fn ids(results: &Value) -> Vec<String> {
    results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// The native CLI's top k: the same ids in the same order, except that entries whose native
/// scores tie within 1e-5 may swap; scores within 1e-4.
fn assert_same_results(page: &Value, native: &Value, what: &str) {
    let (page, native) = (page.as_array().unwrap(), native.as_array().unwrap());
    assert_eq!(page.len(), native.len(), "{what}");
    let score = |r: &Value| r["score"].as_f64().unwrap();
    for (i, (p, n)) in page.iter().zip(native).enumerate() {
        assert!(
            (score(p) - score(n)).abs() <= 1e-4,
            "{what}: rank {} score {p} vs {n}",
            i + 1
        );
        if p["id"] != n["id"] {
            let tie = native
                .iter()
                .any(|m| m["id"] == p["id"] && (score(m) - score(n)).abs() <= 1e-5);
            assert!(
                tie,
                "{what}: rank {} is {} in the page, {} natively\npage {:?}\nnative {:?}",
                i + 1,
                p["id"],
                n["id"],
                ids(&Value::Array(page.clone())),
                ids(&Value::Array(native.clone()))
            );
        }
    }
}

fn vectors(v: &Value) -> Vec<f64> {
    fn flat(v: &Value, out: &mut Vec<f64>) {
        match v {
            Value::Array(a) => a.iter().for_each(|x| flat(x, out)),
            x => out.push(x.as_f64().unwrap()),
        }
    }
    let mut out = Vec::new();
    flat(v, &mut out);
    out
}

fn got_first_id(results: &Value) -> String {
    results[0]["id"].as_str().unwrap().to_string()
}

/// The page's 3-D view (`app.viewed`) holds `n_atoms` atoms of exactly `elements`.
fn assert_viewed(viewed: &Value, (n_atoms, elements): &(usize, String), what: &str) {
    assert_eq!(
        viewed["atoms"].as_u64(),
        Some(*n_atoms as u64),
        "{what}: {viewed}"
    );
    let mut shown: Vec<&str> = viewed["elements"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut want: Vec<&str> = elements.split_whitespace().collect();
    shown.sort_unstable();
    want.sort_unstable();
    assert_eq!(shown, want, "{what}: {viewed}");
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
#[ignore = "needs www/pkg, the xtal binary, Chromium and ChromeDriver: tests/run.sh runs it"]
fn site_in_headless_chromium() {
    assert!(
        repo().join("www/pkg/xtal_web_bg.wasm").exists(),
        "www/pkg is missing: run web/build.sh"
    );
    let fx = fixture();
    let bundle_s = fx.bundle.to_str().unwrap().to_string();
    let cif_path = fx.dir.join("query.cif");
    std::fs::write(&cif_path, &fx.cif).unwrap();
    let cif_s = cif_path.to_str().unwrap();
    let native: Vec<Value> = QUERIES
        .iter()
        .map(|q| native_top10(&bundle_s, &[q]))
        .collect();
    let native_cif = native_top10(&bundle_s, &["--cif", cif_s]);
    let mut zero_shot = vec!["zero-shot", "--bundle", &bundle_s, "--cif", cif_s, "--json"];
    zero_shot.extend(PAGE_PHRASES);
    let native_zero_shot: Value = serde_json::from_str(&xtal(&zero_shot)).unwrap();

    let port = serve(repo().join("www"), fx.dir.clone());
    let page = |device: &str, bundle: &str| {
        format!("http://127.0.0.1:{port}/index.html?bundle=/t/{bundle}&device={device}")
    };
    let mut browser = Browser::start();

    for device in ["webgpu", "cpu"] {
        assert_eq!(
            browser.open_bundle(&page(device, "tiny.xtal")),
            "ready",
            "{device}: the bundle did not open"
        );
        let opened = browser.run("return app.bundle.device;", Value::Null);
        assert_eq!(
            opened["kind"], device,
            "{device}: the page computes on {opened}"
        );
        // The page runs its default query on open; wait for that first result.
        let first_ms = browser.run(
            "while (app.firstResultMs === null) await new Promise(r => setTimeout(r, 50)); return app.firstResultMs;",
            Value::Null,
        );
        eprintln!("{device}: page open → first search result {first_ms} ms (tiny bundle)");
        for (q, want) in QUERIES.iter().zip(&native) {
            let got = browser.run("return (await app.search(args, 10)).results;", json!(q));
            assert_same_results(&got, want, &format!("{device} \"{q}\""));
        }
        browser.screenshot(&format!("search-{device}"));
        // A click on a result shows its structure in 3-D (3Dmol.js over the bundle's P1 CIF):
        // the atoms and elements of the Materials Project's record.
        let top = got_first_id(&browser.run(
            "return (await app.search(args, 10)).results;",
            json!(QUERIES[0]),
        ));
        let viewed = browser.run(
            "app.viewed = null; \
             document.querySelector('#search-results tr[data-row]').click(); \
             while (!app.viewed) await new Promise(r => setTimeout(r, 50)); \
             return app.viewed;",
            Value::Null,
        );
        assert_viewed(&viewed, &fx.atoms[&top], &format!("{device}: result {top}"));
        browser.scroll_to("viewer-panel");
        browser.screenshot(&format!("structure-{device}"));
        browser.scroll_to("map-panel");
        browser.screenshot(&format!("map-{device}"));

        browser.run(
            "document.getElementById('cif').value = args;",
            json!(fx.cif),
        );
        let got = browser.run("return (await app.cifSearch()).results;", Value::Null);
        assert_same_results(&got, &native_cif, &format!("{device} CIF"));
        let viewed = browser.run(
            "app.viewed = null; document.getElementById('view-cif').click(); \
             while (!app.viewed) await new Promise(r => setTimeout(r, 50)); \
             return app.viewed;",
            Value::Null,
        );
        assert_viewed(
            &viewed,
            &fx.atoms[&fx.cif_id],
            &format!("{device}: pasted CIF"),
        );
        // The page's zero-shot scores of its default phrases are the CLI's.
        let scores = browser.run("return await app.zeroShot();", Value::Null);
        let (page_rows, native_rows) = (
            scores.as_array().unwrap(),
            native_zero_shot.as_array().unwrap(),
        );
        assert_eq!(page_rows.len(), PAGE_PHRASES.len(), "{device}: {scores}");
        for n in native_rows {
            let p = page_rows
                .iter()
                .find(|r| r["phrase"] == n["phrase"])
                .unwrap_or_else(|| panic!("{device}: no {} in {scores}", n["phrase"]));
            for key in ["score", "probability"] {
                let (a, b) = (p[key].as_f64().unwrap(), n[key].as_f64().unwrap());
                assert!(
                    (a - b).abs() < 1e-4,
                    "{device}: zero-shot {key} of {}: page {a}, CLI {b}",
                    n["phrase"]
                );
            }
        }
        browser.scroll_to("cif-panel");
        browser.screenshot(&format!("cif-{device}"));

        // Fine-tune in the page, export, and load the export with the native CLI.
        let report = browser.run(
            "document.getElementById('pairs').value = args; \
             return await app.fineTune(args, {steps: 20, learning_rate: 0.01, batch_size: 8});",
            json!(fx.pairs),
        );
        let (before, after) = (
            report["loss_before"].as_f64().unwrap(),
            report["loss_after"].as_f64().unwrap(),
        );
        assert!(
            after < before,
            "{device}: fine-tune loss {before} → {after}"
        );
        assert_eq!(report["losses"].as_array().unwrap().len(), 20);
        let plotted = browser.run("return app.losses.length;", Value::Null);
        assert_eq!(plotted, 20, "{device}: the loss curve has every step");
        browser.scroll_to("tune-panel");
        browser.screenshot(&format!("fine-tune-{device}"));
        let tuned = fx.dir.join(format!("tuned-{device}.xtal"));
        browser.export_bundle(&tuned);
        let tuned_s = tuned.to_str().unwrap();
        let page_vectors =
            vectors(&browser.run("return await app.client.embedTexts(args);", json!(QUERIES)));
        let native_vectors = native_embeddings(tuned_s);
        let diff = max_abs_diff(&page_vectors, &native_vectors);
        assert!(
            diff <= 1e-4,
            "{device}: exported bundle embeds {diff:e} away from the page"
        );
        // After the fine-tune, the page's CIF search uses the new description embeddings,
        // as the native CLI does with the exported bundle.
        let tuned_cif = native_top10(tuned_s, &["--cif", cif_s]);
        // The export's index holds the tuned model's description embeddings: a description
        // searched against the text side finds itself at cosine 1.
        for hit in tuned_cif.as_array().unwrap().iter().take(3) {
            let text = hit["description"].as_str().unwrap();
            let own = native_top10(tuned_s, &["--against", "text", text]);
            let score = own[0]["score"].as_f64().unwrap();
            assert!(
                score > 0.9999,
                "{device}: exported index text is stale ({score})"
            );
        }
        let got = browser.run("return (await app.cifSearch()).results;", Value::Null);
        assert_same_results(
            &got,
            &tuned_cif,
            &format!("{device} CIF after the fine-tune"),
        );
        let untuned = native_embeddings(&bundle_s);
        assert!(
            max_abs_diff(&untuned, &native_vectors) > 1e-3,
            "{device}: the fine-tune changed nothing"
        );
    }

    // A CLIP with a CGCNN structure encoder: the page builds the CIF's crystal graph and runs
    // the encoder itself, and finds what the native CLI finds.
    let graph_bundle = fx.dir.join("graph.xtal");
    tiny_clip_bundle(
        &fx.dir.join("data"),
        &fx.dir.join("graph-run"),
        &graph_bundle,
        &[
            "model.graph_backbone=cgcnn",
            "model.graph_width=16",
            "model.graph_layers=2",
        ],
    );
    let native_graph_cif = native_top10(graph_bundle.to_str().unwrap(), &["--cif", cif_s]);
    for device in ["webgpu", "cpu"] {
        assert_eq!(
            browser.open_bundle(&page(device, "graph.xtal")),
            "ready",
            "{device}: the graph bundle did not open"
        );
        let kind = browser.run("return app.bundle.summary.structure_input;", Value::Null);
        assert_eq!(kind, "graph", "{device}");
        browser.run(
            "document.getElementById('cif').value = args;",
            json!(fx.cif),
        );
        let got = browser.run("return (await app.cifSearch()).results;", Value::Null);
        assert_same_results(&got, &native_graph_cif, &format!("{device} graph CIF"));
        browser.scroll_to("cif-panel");
        browser.screenshot(&format!("graph-cif-{device}"));
    }

    // A CLIP with a pretrained HuggingFace text encoder (the BERT fixture), packed with int8
    // matrices: the page runs the bundle's BERT with its tokenizer.json and finds what the CLI
    // finds with the same bundle; a fine-tune's export (f32) keeps the tokenizer and embeds in
    // the CLI as in the page.
    let (hf_run, hf_bundle) = (fx.dir.join("hf-run"), fx.dir.join("hf.xtal"));
    let bert = format!(
        "model.text_model_name={}",
        repo().join("tests/fixtures/hf/bert").display()
    );
    let data_s = fx.dir.join("data").to_str().unwrap().to_string();
    let (hf_run_s, hf_s) = (
        hf_run.to_str().unwrap().to_string(),
        hf_bundle.to_str().unwrap().to_string(),
    );
    xtal(&[
        "train",
        "clip",
        "--data",
        &data_s,
        "--out",
        &hf_run_s,
        "--no-plots",
        "--set",
        "model.text_backend=huggingface",
        "--set",
        &bert,
        "--set",
        "model.text_pooling=mean",
        "--set",
        "model.clip_dim=16",
        "--set",
        "training.val_split=0.25",
        "--batch-size",
        "8",
        "--epochs",
        "2",
    ]);
    xtal(&[
        "bundle", "pack", "--run", &hf_run_s, "--index", &data_s, "--int8", "-o", &hf_s,
    ]);
    let hf_vectors = native_embeddings(&hf_s);
    let hf_top: Vec<Value> = QUERIES.iter().map(|q| native_top10(&hf_s, &[q])).collect();
    for device in ["webgpu", "cpu"] {
        assert_eq!(
            browser.open_bundle(&page(device, "hf.xtal")),
            "ready",
            "{device}: the HF bundle did not open"
        );
        let page_vectors =
            vectors(&browser.run("return await app.client.embedTexts(args);", json!(QUERIES)));
        let diff = max_abs_diff(&page_vectors, &hf_vectors);
        assert!(
            diff <= 1e-4,
            "{device}: HF text embeddings differ by {diff:e}"
        );
        for (q, want) in QUERIES.iter().zip(&hf_top) {
            let got = browser.run("return (await app.search(args, 10)).results;", json!(q));
            assert_same_results(&got, want, &format!("{device} HF \"{q}\""));
        }
        browser.screenshot(&format!("hf-search-{device}"));
        let report = browser.run(
            "return await app.fineTune(args, {steps: 5, learning_rate: 0.01, batch_size: 8});",
            json!(fx.pairs),
        );
        assert_eq!(report["losses"].as_array().unwrap().len(), 5, "{device}");
        let tuned = fx.dir.join(format!("hf-tuned-{device}.xtal"));
        browser.export_bundle(&tuned);
        let tuned_s = tuned.to_str().unwrap();
        let page_vectors =
            vectors(&browser.run("return await app.client.embedTexts(args);", json!(QUERIES)));
        let native_vectors = native_embeddings(tuned_s);
        let diff = max_abs_diff(&page_vectors, &native_vectors);
        assert!(
            diff <= 1e-4,
            "{device}: exported HF bundle embeds {diff:e} away from the page"
        );
        assert!(
            max_abs_diff(&native_vectors, &hf_vectors) > 1e-4,
            "{device}: the HF fine-tune changed nothing"
        );
    }

    // A property model (CGCNN → energy per atom): the page predicts from the pasted CIF what
    // `xtal predict` prints, on WebGPU and on the CPU.
    let (prop_run, prop_bundle) = (fx.dir.join("prop-run"), fx.dir.join("prop.xtal"));
    let s = |p: &Path| p.to_str().unwrap().to_string();
    train_and_pack(
        &[
            "train",
            "property",
            "--data",
            &s(&fx.dir.join("data")),
            "--target",
            "energy_per_atom",
            "--source",
            "carbon24",
            "--width",
            "16",
            "--layers",
            "2",
            "--embedding-dim",
            "12",
            "--epochs",
            "2",
            "--batch-size",
            "8",
        ],
        &prop_run,
        &prop_bundle,
    );
    let cif_file = fx.dir.join("query.cif");
    std::fs::write(&cif_file, &fx.cif).unwrap();
    let native: Value = serde_json::from_str(&xtal(&[
        "predict",
        "--bundle",
        &s(&prop_bundle),
        "--json",
        &s(&cif_file),
    ]))
    .unwrap();
    let want = native[0]["prediction"].as_f64().unwrap();
    for device in ["webgpu", "cpu"] {
        assert_eq!(
            browser.open_bundle(&page(device, "prop.xtal")),
            "ready",
            "{device}: the property bundle did not open"
        );
        let kind = browser.run("return app.bundle.summary.kind;", Value::Null);
        assert_eq!(kind, "property", "{device}");
        // Opening it runs no search (it has no index), so no error is shown.
        let shown = browser.run(
            "const e = document.getElementById('error'); return e.hidden ? '' : e.textContent;",
            Value::Null,
        );
        assert_eq!(shown, "", "{device}");
        browser.run(
            "document.getElementById('cif').value = args;",
            json!(fx.cif),
        );
        let got = browser.run("return await app.predict();", Value::Null);
        assert_eq!(got["target"], "energy_per_atom", "{device}");
        let p = got["prediction"].as_f64().unwrap();
        assert!(
            (p - want).abs() <= 1e-4 * want.abs().max(1.0),
            "{device}: page {p} vs CLI {want}"
        );
        // What a property bundle cannot do is refused by name, not attempted.
        let err = browser.run(
            "try { await app.client.search('an oxide', 3); return ''; } catch (e) { return e.message; }",
            Value::Null,
        );
        assert!(
            err.as_str().unwrap().contains("property model"),
            "{device}: {err}"
        );
        browser.scroll_to("cif-panel");
        browser.screenshot(&format!("property-{device}"));
    }

    // The SSL encoder (six tiny blocks): the page extracts from the pasted CIF the 2048
    // features `xtal embed --bundle B cif` writes, on WebGPU and on the CPU.
    let (ssl_run, ssl_bundle) = (fx.dir.join("ssl-run"), fx.dir.join("ssl.xtal"));
    train_and_pack(
        &[
            "ssl",
            "train",
            "--data",
            &s(&fx.dir.join("data")),
            "--epochs",
            "1",
            "--width",
            "16",
            "--layers",
            "1",
            "--batch-size",
            "16",
            "--limit",
            "32",
        ],
        &ssl_run,
        &ssl_bundle,
    );
    let native: Value = serde_json::from_str(&xtal(&[
        "embed",
        "--bundle",
        &s(&ssl_bundle),
        "--json",
        "cif",
        &s(&cif_file),
    ]))
    .unwrap();
    let want = vectors(&native);
    assert_eq!(want.len(), 2048);
    for device in ["webgpu", "cpu"] {
        assert_eq!(
            browser.open_bundle(&page(device, "ssl.xtal")),
            "ready",
            "{device}: the SSL bundle did not open"
        );
        let kind = browser.run("return app.bundle.summary.kind;", Value::Null);
        assert_eq!(kind, "ssl", "{device}");
        browser.run(
            "document.getElementById('cif').value = args;",
            json!(fx.cif),
        );
        let got = vectors(&browser.run("return await app.extractFeatures();", Value::Null));
        let diff = max_abs_diff(&got, &want);
        eprintln!("site: SSL features on {device}: max |page - CLI| {diff:.2e}");
        // Each block's features are scaled to unit variance per material, which magnifies
        // a GPU's float differences (SwiftShader: 4.7e-4); the CPU path must match to 1e-4.
        let tolerance = if device == "webgpu" { 1e-3 } else { 1e-4 };
        assert!(
            diff <= tolerance,
            "{device}: page features {diff:e} from the CLI's"
        );
        let shown = browser.run(
            "return [document.querySelectorAll('#features-blocks tbody tr').length, document.getElementById('features-download').href.startsWith('blob:')];",
            Value::Null,
        );
        assert_eq!(shown, json!([6, true]), "{device}");
        let err = browser.run(
            "try { await app.client.search('an oxide', 3); return ''; } catch (e) { return e.message; }",
            Value::Null,
        );
        assert!(
            err.as_str().unwrap().contains("SSL encoder"),
            "{device}: {err}"
        );
        browser.scroll_to("cif-panel");
        browser.screenshot(&format!("ssl-features-{device}"));
    }

    // A tensor head over the tiny CLIP's structure embeddings, packed with it: the page
    // predicts from the pasted CIF what `xtal predict` prints, on WebGPU and on the CPU.
    let (head_run, head_bundle) = (fx.dir.join("tensor-run"), fx.dir.join("tensor.xtal"));
    let other_file = fx.dir.join("other.cif");
    std::fs::write(&other_file, &fx.other_cif).unwrap();
    train_and_pack(
        &[
            "train",
            "tensor",
            "--clip-run",
            &s(&fx.dir.join("run")),
            "--mode",
            "2d",
            "--epochs",
            "10",
            "--batch-size",
            "8",
        ],
        &head_run,
        &head_bundle,
    );
    let native: Value = serde_json::from_str(&xtal(&[
        "predict",
        "--bundle",
        &s(&head_bundle),
        "--json",
        &s(&cif_file),
        &s(&other_file),
    ]))
    .unwrap();
    let want = &native[0]["components"];
    // Another structure's prediction differs by five times the looser tolerance (1e-3) or
    // more, so the comparison below can tell structures apart.
    let spread = want
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, w)| {
            let (w, o) = (
                w.as_f64().unwrap(),
                native[1]["components"][k].as_f64().unwrap(),
            );
            (w - o).abs() / w.abs().max(1.0)
        })
        .fold(0f64, f64::max);
    assert!(spread > 5e-3, "{spread:e}: {native}");
    for device in ["webgpu", "cpu"] {
        assert_eq!(
            browser.open_bundle(&page(device, "tensor.xtal")),
            "ready",
            "{device}: the tensor-head bundle did not open"
        );
        let head = browser.run("return app.bundle.summary.tensor_head;", Value::Null);
        assert_eq!(head["modality"], "graph", "{device}");
        browser.run(
            "document.getElementById('cif').value = args;",
            json!(fx.cif),
        );
        let got = browser.run("return await app.predict();", Value::Null);
        let components = got["components"].as_array().unwrap();
        assert_eq!(components.len(), 4, "{device}: {got}");
        let mut worst = 0f64;
        for c in components {
            let (v, w) = (
                c["value"].as_f64().unwrap(),
                want[c["name"].as_str().unwrap()].as_f64().unwrap(),
            );
            worst = worst.max((v - w).abs() / w.abs().max(1.0));
        }
        eprintln!("site: tensor head on {device}: max relative |page - CLI| {worst:.2e}");
        let tolerance = if device == "webgpu" { 1e-3 } else { 1e-4 };
        assert!(worst <= tolerance, "{device}: {worst:e}");
        let rows = browser.run(
            "return document.querySelectorAll('#cif-tensor tbody tr').length;",
            Value::Null,
        );
        assert_eq!(rows, json!(4), "{device}");
        browser.scroll_to("cif-panel");
        browser.screenshot(&format!("tensor-head-{device}"));
    }

    // A corrupt bundle: one flipped byte in the weights.
    let mut bytes = std::fs::read(&fx.bundle).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(fx.dir.join("corrupt.xtal"), bytes).unwrap();
    assert_eq!(browser.open_bundle(&page("auto", "corrupt.xtal")), "error");
    let shown = browser.run(
        "const e = document.getElementById('error'); return e.hidden ? '' : e.textContent;",
        Value::Null,
    );
    let shown = shown.as_str().unwrap();
    assert!(
        shown.contains("corrupt.xtal")
            && (shown.contains("sha256") || shown.contains("entry") || shown.contains("zip")),
        "the page says: {shown}"
    );
    browser.screenshot("corrupt-bundle");

    // With the demo bundle (www/make-demo.sh) present, the page opens it by itself and runs
    // its example query: report how long a visitor waits for that first result.
    if repo().join("www/demo.xtal").exists() {
        for device in ["webgpu", "cpu"] {
            assert_eq!(
                browser.open_bundle(&format!(
                    "http://127.0.0.1:{port}/index.html?device={device}"
                )),
                "ready",
                "demo on {device}"
            );
            let ms = browser.run(
                "while (app.firstResultMs === null) await new Promise(r => setTimeout(r, 50)); return app.firstResultMs;",
                Value::Null,
            );
            eprintln!("demo bundle on {device}: page open → first search result {ms} ms");
            // Per-query latency once warm: the median of nine queries (three, thrice), each
            // embedded and searched over the whole index.
            let per_query = browser.run(
                "const times = [];
                 for (const q of [...args, ...args, ...args]) {
                     const t = performance.now();
                     await app.search(q, 10);
                     times.push(performance.now() - t);
                 }
                 times.sort((a, b) => a - b);
                 return times[Math.floor(times.length / 2)];",
                json!(QUERIES),
            );
            eprintln!("demo bundle on {device}: median query → results {per_query} ms");
            browser.screenshot(&format!("demo-{device}"));
        }
    }
    let _ = std::fs::remove_dir_all(&fx.dir);
}
