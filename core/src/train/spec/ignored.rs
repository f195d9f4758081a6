//! Keys of the original configuration that xtal accepts but does not act on, each with the
//! reason a warning gives.

/// A key of the original configuration that xtal accepts but does not act on: set to
/// anything but its default, it is a warning naming the key and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IgnoredKey {
    pub key: &'static str,
    pub reason: &'static str,
}

impl std::fmt::Display for IgnoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is ignored: {}", self.key, self.reason)
    }
}

const fn ignored(key: &'static str, reason: &'static str) -> IgnoredKey {
    IgnoredKey { key, reason }
}

const NAME_ONLY: &str = "it names the run in the original system; xtal's run directory is --out";
const NO_WANDB: &str = "Weights & Biases is not supported; log to TensorBoard (--tensorboard) or \
     an MLflow server (--mlflow URI); every metric is in RUN/metrics.jsonl";
const PHASE2: &str =
    "it belongs to joint CLIP fine-tuning (phase 2) or the 2-D elastic task, not available";

/// Every key xtal accepts and does not act on (README: "Configuration").
pub const IGNORED_KEYS: &[IgnoredKey] = &[
    ignored("model.text_model_id", NAME_ONLY),
    ignored("model.graph_backbone_name", NAME_ONLY),
    ignored("model.graph_backbone_id", NAME_ONLY),
    ignored("model.graph_projector_id", NAME_ONLY),
    ignored(
        "model.text_dropout",
        "HuggingFace encoders run without dropout; model.dropout sets the byte-level encoder's",
    ),
    ignored(
        "training.num_workers",
        "batches are gathered in the training process",
    ),
    ignored("training.use_wandb", NO_WANDB),
    ignored("training.wandb_project", NO_WANDB),
    ignored("training.wandb_entity", NO_WANDB),
    ignored("training.wandb_run_name", NO_WANDB),
    ignored("training.wandb_tags", NO_WANDB),
    ignored(
        "visualization.n_samples_metrics",
        "retrieval metrics use the whole validation set (the original never read this key)",
    ),
    ignored("visualization.output_dir", "plots are written to RUN/plots"),
    ignored("visualization.dpi", "plots are PNG at a fixed size and SVG"),
    ignored(
        "tokenizer.pad_token",
        "the byte-level tokenizer's ids are fixed: PAD 0, SOT 1, EOT 2, bytes from 3",
    ),
    ignored(
        "tokenizer.sot_token",
        "the byte-level tokenizer's ids are fixed: PAD 0, SOT 1, EOT 2, bytes from 3",
    ),
    ignored(
        "tokenizer.eot_token",
        "the byte-level tokenizer's ids are fixed: PAD 0, SOT 1, EOT 2, bytes from 3",
    ),
    ignored(
        "tokenizer.tokenizer_padding",
        "texts are padded to max_seq_length, and padding is masked out",
    ),
    ignored(
        "tensor_regression.interval",
        "the parity plot is drawn once, from the best checkpoint",
    ),
    ignored("tensor_regression.clip_loss_weight", PHASE2),
    ignored("tensor_regression.regression_loss_weight", PHASE2),
    ignored("tensor_regression.beta_prior", PHASE2),
    ignored("tensor_regression.lambda_sym", PHASE2),
    ignored("tensor_regression.lambda_sym_schedule", PHASE2),
    ignored("tensor_regression.freeze_alpha_head", PHASE2),
    ignored("tensor_regression.phase1_epochs", PHASE2),
];
