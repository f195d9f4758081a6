//! The configuration against the original system's files and its refusals.

use super::*;
use crate::models::tensor_head::{RegressionLoss, TensorMode};

#[test]
fn the_original_transformer_spec_is_accepted() {
    let original = r#"{"data_dir": "data_preparation/clip_dataset", "model": {"clip_dim": 512,
      "text_backend": "custom", "text_model_name": null, "text_model_id": "customTx",
      "graph_backbone": "equiformer", "graph_backbone_name": null, "graph_backbone_id": "equiformer",
      "graph_projector": "linear", "graph_projector_id": "linear", "text_width": 512,
      "text_layers": 6, "text_heads": 8, "max_seq_length": 256, "vocab_size": 256, "dropout": 0.0},
      "training": {"epochs": 100, "batch_size": 64, "learning_rate": 2e-4, "use_validation": true,
      "val_split": 0.1, "early_stopping": true, "early_stopping_patience": 10,
      "early_stopping_metric": "val_loss", "use_wandb": true, "wandb_project": "graph-text-clip",
      "visualize_during_training": true, "visualize_interval": 10, "visualize_n_samples": 800}}"#;
    let (s, ignored) = RunSpec::from_json(original, "run_spec.json", &[]).unwrap();
    assert_eq!(s.training.epochs, 100);
    assert_eq!(s.model.text_layers, 6);
    assert_eq!(s.model.graph_backbone, StructureSource::Equiformer);
    // Set, and not to what xtal does anyway: named. Defaults (visualize_n_samples 800,
    // null names) and keys xtal acts on are not.
    let keys: Vec<&str> = ignored.iter().map(|k| k.key).collect();
    assert_eq!(
        keys,
        [
            "model.text_model_id",
            "model.graph_backbone_id",
            "model.graph_projector_id",
            "training.use_wandb",
            "training.wandb_project"
        ]
    );
    assert!(
        ignored[3]
            .to_string()
            .contains("Weights & Biases is not supported"),
        "{}",
        ignored[3]
    );
}

#[test]
fn mistyped_choices_are_errors_naming_the_key_and_the_choices() {
    for (set, named) in [
        ("model.graph_backbone=painnn", "model.graph_backbone"),
        ("model.graph_readout=max", "model.graph_readout"),
        ("model.graph_projector=MLP", "model.graph_projector"),
        ("model.text_backend=hf", "model.text_backend"),
        ("model.text_pooling=median", "model.text_pooling"),
        (
            "tensor_regression.modality=image",
            "tensor_regression.modality",
        ),
        (
            "tensor_regression.head_type=cnn",
            "tensor_regression.head_type",
        ),
        (
            "tensor_regression.training_phase=3",
            "tensor_regression.training_phase",
        ),
        (
            "tensor_regression.tensor_mode=3d",
            "tensor_regression.tensor_mode",
        ),
    ] {
        let e = RunSpec::from_json("{}", "c.json", &[set.into()])
            .unwrap_err()
            .to_string();
        let value = set.split_once('=').unwrap().1;
        assert!(
            e.starts_with(&format!("c.json: {named}: ")) && e.contains(&format!("`{value}`")),
            "{set}: {e}"
        );
    }
    let e = RunSpec::from_json("{}", "c.json", &["model.graph_backbone=painnn".into()])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cgcnn") && e.contains("painn") && e.contains("precomputed"),
        "{e}"
    );
    let (s, _) =
        RunSpec::from_json("{}", "c.json", &["model.graph_backbone=painn".into()]).unwrap();
    assert_eq!(
        s.model.graph_encoder().map(|g| g.backbone),
        Some(GraphBackbone::Painn)
    );
}

#[test]
fn a_configuration_written_back_parses_to_itself_without_warnings() {
    let (s, _) = RunSpec::from_json(
        r#"{"model": {"text_backend": "huggingface", "text_model_name": "models/bert",
                      "text_pooling": "cls", "graph_backbone": "cgcnn"},
            "training": {"use_wandb": true}, "tensor_regression": {"loss_fn": "l1"}}"#,
        "c.json",
        &[],
    )
    .unwrap();
    let written = serde_json::to_string(&s).unwrap();
    let (again, ignored) = RunSpec::from_json(&written, "config.json", &[]).unwrap();
    assert_eq!(again, s);
    assert_eq!(again.model.text_pooling, Pooling::First);
    assert_eq!(again.tensor_regression.unwrap().loss(), RegressionLoss::Mae);
    // The run's own copy still carries what was ignored.
    assert_eq!(ignored.len(), 1);
    assert_eq!(ignored[0].key, "training.use_wandb");
}

#[test]
fn unknown_keys_are_named() {
    let e = RunSpec::from_json(r#"{"model": {"max_seq_len": 512}}"#, "c.json", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("c.json") && e.contains("max_seq_len"), "{e}");
    let e = RunSpec::from_json("{}", "c.json", &["training.epoch=3".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("`epoch`"), "{e}");
}

#[test]
fn overrides_apply_before_validation() {
    let (s, _) = RunSpec::from_json(
        r#"{"training": {"epochs": 3}}"#,
        "c",
        &[
            "training.epochs=7".into(),
            "model.graph_projector=mlp".into(),
        ],
    )
    .unwrap();
    assert_eq!(s.training.epochs, 7);
    assert_eq!(s.clip_config(10).structure.hidden, vec![512]);
    let e = RunSpec::from_json(
        "{}",
        "c",
        &[
            "training.early_stopping=true".into(),
            "training.early_stopping_metric=acc".into(),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("unknown metric `acc`"), "{e}");
}

#[test]
fn the_original_tensor_section_is_accepted_and_unavailable_tasks_are_named() {
    let original = r#"{"model": {"clip_dim": 512, "text_backend": "custom"},
      "training": {"epochs": 100000, "batch_size": 32, "learning_rate": 1e-3},
      "tensor_regression": {"task": "regression", "modality": "text", "tensor_dim": 9,
      "tensor_mode": "voigt2d", "normalize": true, "clip_checkpoint_path":
      "runs/x/checkpoints/graph_text_clip.pt", "log_parity_plot": true, "interval": 10,
      "head_type": "mlp", "head_hidden_dims": [256, 128], "head_dropout": 0.1,
      "training_phase": "phase1", "freeze_clip": true, "clip_loss_weight": 0.1,
      "regression_loss_weight": 1.0, "loss_fn": "huber", "regression_lr": null,
      "beta_prior": 1.0, "lambda_sym": 0.1, "lambda_sym_schedule": null,
      "freeze_alpha_head": false, "phase1_epochs": 30}}"#;
    let (s, ignored) = RunSpec::from_json(original, "tensor.json", &[]).unwrap();
    // Every phase-2 key holds its default here: nothing to warn about; another value is.
    assert_eq!(ignored, []);
    let (_, ignored) = RunSpec::from_json(
        original,
        "tensor.json",
        &["tensor_regression.lambda_sym=0.5".into()],
    )
    .unwrap();
    assert_eq!(ignored.len(), 1);
    assert!(
        ignored[0]
            .to_string()
            .starts_with("tensor_regression.lambda_sym is ignored: "),
        "{}",
        ignored[0]
    );
    let t = s.tensor_regression.as_ref().unwrap();
    assert_eq!(t.mode(), TensorMode::Voigt2d);
    assert_eq!(t.head_config(128).output_dim, 6);
    assert_eq!(t.loss(), RegressionLoss::Huber { delta: 1.0 });
    assert_eq!(s.tracked_metrics(), TENSOR_METRICS);
    for (o, named) in [
        (
            "tensor_regression.task=elastic_2d_symmetry",
            "elastic_2d_symmetry",
        ),
        ("tensor_regression.freeze_clip=false", "freeze_clip"),
        ("tensor_regression.tensor_mode=3d", "`3d`"),
        ("tensor_regression.loss_fn=l2", "`l2`"),
    ] {
        let e = RunSpec::from_json(original, "tensor.json", &[o.into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains(named), "{o}: {e}");
    }
    let e = RunSpec::from_json(
        original,
        "tensor.json",
        &[
            "training.early_stopping=true".into(),
            "training.early_stopping_metric=val_mrr_t2g".into(),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("val_mae"), "{e}");
}
