//! An MLflow tracking server's REST API (`/api/2.0/mlflow/...`): a run with parameters,
//! metrics by step, and artifacts uploaded through the server's artifact proxy
//! (`mlflow server`, which serves artifacts by default).

use std::time::Duration;

use serde_json::{Value, json};

use crate::exit::BadInput;

/// MLflow's limits per `runs/log-batch` request.
const PARAMS_PER_BATCH: usize = 100;
const METRICS_PER_BATCH: usize = 1000;
/// Longest parameter value MLflow stores.
const PARAM_VALUE_CHARS: usize = 6000;

/// A run on an MLflow server.
pub struct MlflowRun {
    agent: ureq::Agent,
    /// The server, without a trailing slash.
    base: String,
    pub experiment_id: String,
    pub run_id: String,
    artifact_uri: String,
}

/// A metric at an optimiser step.
pub struct Metric {
    pub key: String,
    pub value: f64,
    pub step: i64,
}

impl MlflowRun {
    /// Starts a run named `name` in `experiment` (created when missing) on the server at
    /// `uri`, or continues the run `resume_id` there. An unreachable server or a refused
    /// request is bad input naming the URI.
    pub fn start(
        uri: &str,
        experiment: &str,
        name: &str,
        resume_id: Option<&str>,
    ) -> anyhow::Result<Self> {
        let base = uri.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(BadInput(format!(
                "--mlflow {uri}: expected a tracking server's address, http://HOST:PORT \
                 (start one with `mlflow server --host 127.0.0.1 --port 5000`)"
            ))
            .into());
        }
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build();
        let mut run = Self {
            agent,
            base,
            experiment_id: String::new(),
            run_id: String::new(),
            artifact_uri: String::new(),
        };
        let started = match resume_id {
            Some(id) => run
                .call("GET", &format!("runs/get?run_id={id}"), None)
                .and_then(|r| {
                    run.call(
                        "POST",
                        "runs/update",
                        Some(json!({"run_id": id, "status": "RUNNING"})),
                    )?;
                    Ok(r)
                }),
            None => run.experiment(experiment).and_then(|experiment_id| {
                run.call(
                    "POST",
                    "runs/create",
                    Some(json!({
                        "experiment_id": experiment_id,
                        "run_name": name,
                        "start_time": now_ms(),
                        "tags": [{"key": "mlflow.source.name", "value": "xtal"},
                                 {"key": "mlflow.source.type", "value": "LOCAL"}],
                    })),
                )
            }),
        };
        let info = started
            .map_err(|e| BadInput(format!("--mlflow {uri}: {e}")))?
            .pointer("/run/info")
            .cloned()
            .unwrap_or_default();
        let text = |k: &str| info.get(k).and_then(Value::as_str).map(str::to_string);
        match (text("run_id"), text("experiment_id")) {
            (Some(run_id), Some(experiment_id)) => {
                run.run_id = run_id;
                run.experiment_id = experiment_id;
                run.artifact_uri = text("artifact_uri").unwrap_or_default();
                Ok(run)
            }
            _ => Err(BadInput(format!("--mlflow {uri}: the server's answer has no run")).into()),
        }
    }

    /// The id of the experiment `name`, created when missing.
    fn experiment(&self, name: &str) -> Result<String, String> {
        let found = self.call(
            "GET",
            &format!("experiments/get-by-name?experiment_name={}", encode(name)),
            None,
        );
        let id = match found {
            Ok(v) => v.pointer("/experiment/experiment_id").cloned(),
            Err(e) if e.contains("RESOURCE_DOES_NOT_EXIST") => self
                .call("POST", "experiments/create", Some(json!({"name": name})))?
                .get("experiment_id")
                .cloned(),
            Err(e) => return Err(e),
        };
        id.and_then(|v| v.as_str().map(str::to_string))
            .ok_or_else(|| format!("no id for experiment {name}"))
    }

    /// Logs parameters (long values cut to MLflow's limit).
    pub fn log_params(&self, params: &[(String, String)]) -> Result<(), String> {
        for chunk in params.chunks(PARAMS_PER_BATCH) {
            let params: Vec<Value> = chunk
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v.chars().take(PARAM_VALUE_CHARS).collect::<String>()}))
                .collect();
            self.call(
                "POST",
                "runs/log-batch",
                Some(json!({"run_id": self.run_id, "params": params})),
            )?;
        }
        Ok(())
    }

    pub fn log_metrics(&self, metrics: &[Metric]) -> Result<(), String> {
        let timestamp = now_ms();
        for chunk in metrics.chunks(METRICS_PER_BATCH) {
            let metrics: Vec<Value> = chunk
                .iter()
                .map(|m| json!({"key": m.key, "value": m.value, "step": m.step, "timestamp": timestamp}))
                .collect();
            self.call(
                "POST",
                "runs/log-batch",
                Some(json!({"run_id": self.run_id, "metrics": metrics})),
            )?;
        }
        Ok(())
    }

    /// Where artifacts are uploaded, when the server proxies them (`mlflow-artifacts:` URIs).
    fn artifact_base(&self) -> Option<String> {
        let rest = self.artifact_uri.strip_prefix("mlflow-artifacts:")?;
        // `mlflow-artifacts:/1/RUN/artifacts` or `mlflow-artifacts://host:port/1/RUN/artifacts`.
        let path = match rest.strip_prefix("//") {
            Some(hosted) => hosted.split_once('/').map_or("", |(_, p)| p),
            None => rest.trim_start_matches('/'),
        };
        Some(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{path}",
            self.base
        ))
    }

    /// Uploads `bytes` as the artifact `path` (e.g. `plots/loss.png`).
    pub fn upload(&self, path: &str, bytes: &[u8]) -> Result<(), String> {
        let Some(base) = self.artifact_base() else {
            return Err(format!(
                "the server keeps this run's artifacts at {}, which it does not serve; \
                 start it with --serve-artifacts",
                self.artifact_uri
            ));
        };
        let url = format!(
            "{base}/{}",
            path.split('/').map(encode).collect::<Vec<_>>().join("/")
        );
        self.agent
            .put(&url)
            .set("Content-Type", "application/octet-stream")
            .send_bytes(bytes)
            .map(drop)
            .map_err(|e| describe(e, &url))
    }

    /// Ends the run: FINISHED or FAILED.
    pub fn end(&self, status: &str) -> Result<(), String> {
        self.call(
            "POST",
            "runs/update",
            Some(json!({"run_id": self.run_id, "status": status, "end_time": now_ms()})),
        )
        .map(drop)
    }

    /// A request to `/api/2.0/mlflow/{path}`; errors carry the server's message.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        let request = self.agent.request(method, &url);
        let response = match body {
            Some(body) => request.send_json(body),
            None => request.call(),
        };
        let response = response.map_err(|e| describe(e, &url))?;
        response
            .into_json::<Value>()
            .map_err(|e| format!("{url}: not a JSON answer ({e})"))
    }
}

fn describe(e: ureq::Error, url: &str) -> String {
    match e {
        ureq::Error::Status(code, response) => {
            let body = response.into_string().unwrap_or_default();
            let message = serde_json::from_str::<Value>(&body)
                .ok()
                .map(|v| {
                    format!(
                        "{} {}",
                        v["error_code"].as_str().unwrap_or(""),
                        v["message"].as_str().unwrap_or("")
                    )
                })
                .unwrap_or(body);
            format!("{url}: HTTP {code}: {}", message.trim())
        }
        ureq::Error::Transport(t) => format!("{url}: {t}"),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// A path segment or query value, percent-encoded.
fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}
