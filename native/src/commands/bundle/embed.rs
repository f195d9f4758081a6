//! `xtal embed`: texts or CIFs through a bundle, CIFs or a dataset through a graph-encoder run,
//! or texts through a HuggingFace model folder.

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::tensor::backend::AutodiffBackend;
use xtal_core::bundle::Bundle;
use xtal_core::device::{OnDevice, run_on};
use xtal_core::models::hf::Pooling;
use xtal_core::train::to_host;

use super::common::{LimitArgs, open_kind, preview};
use crate::exit::BadInput;
use crate::output::write_npy;

#[derive(clap::Args)]
pub struct EmbedArgs {
    /// The bundle whose model embeds.
    #[arg(long, global = true)]
    bundle: Option<PathBuf>,
    /// Or a HuggingFace model folder (config.json, tokenizer.json, model.safetensors): embeds
    /// texts with the pretrained encoder alone.
    #[arg(long, global = true, conflicts_with = "bundle")]
    model: Option<PathBuf>,
    /// Or a run with a graph encoder (a CLIP run with model.graph_backbone cgcnn/painn, or
    /// `xtal train property`): embeds CIFs or a whole dataset.
    #[arg(long, global = true, conflicts_with_all = ["bundle", "model"])]
    run: Option<PathBuf>,
    /// With --model: how token states become one vector (mean, first, last, max).
    #[arg(long, global = true, default_value = "mean")]
    pooling: Pooling,
    /// With --model: scale each vector to unit length.
    #[arg(long, global = true)]
    normalize: bool,
    /// With --model: longest input in tokens (texts are truncated).
    #[arg(long, global = true, default_value_t = 512)]
    max_tokens: usize,
    #[command(subcommand)]
    what: EmbedWhat,
    /// Write the embeddings as float32 `.npy` `[n, dim]`.
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    /// Print a JSON array with one vector per input.
    #[arg(long, global = true)]
    json: bool,
    #[arg(long, default_value = "cpu", global = true)]
    device: String,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(clap::Subcommand)]
pub enum EmbedWhat {
    /// Embed sentences: `xtal embed --bundle B text "a layered oxide" …`.
    Text {
        #[arg(required = true)]
        texts: Vec<String>,
    },
    /// Embed the first structure of each CIF (bundles that read structures, or --run).
    Cif {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Embed every structure of an `xtal prepare` dataset with --run into DIR/graph_emb/{id}.npy
    /// plus DIR/dataset.jsonl (the original CLIP layout, readable by `xtal train clip --data DIR`).
    Dataset {
        /// The prepared dataset directory.
        data: PathBuf,
        /// Output directory (created atomically).
        #[arg(long = "out-dir", short = 'o')]
        out_dir: PathBuf,
        /// Replace an existing output directory.
        #[arg(long)]
        force: bool,
    },
}

pub(super) enum Query<'a> {
    Texts(&'a [String]),
    /// (file name, CIF text)
    Cifs(Vec<(String, String)>),
}

pub(super) struct EmbedQueries<'a>(pub(super) &'a Bundle, pub(super) Query<'a>);

impl OnDevice for EmbedQueries<'_> {
    type Output = anyhow::Result<Vec<f32>>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let bundle = self.0;
        let model = bundle.model::<B::InnerBackend>(&device)?;
        Ok(match self.1 {
            Query::Texts(texts) => {
                let t: Vec<&str> = texts.iter().map(String::as_str).collect();
                to_host(bundle.embed_texts(&model, &t, &device)?)?
            }
            Query::Cifs(files) => {
                let items = cif_items(bundle, &files)?;
                to_host(bundle.embed_structures(&model, &items, &device)?)?
            }
        })
    }
}

/// An SSL bundle's 2048-D features of each CIF's first structure.
struct SslFeatures<'a>(&'a Bundle, Vec<(String, String)>);

impl OnDevice for SslFeatures<'_> {
    type Output = anyhow::Result<Vec<f32>>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let bundle = self.0;
        let model = bundle.ssl_model::<B::InnerBackend>(&device)?;
        let items = cif_items(bundle, &self.1)?;
        Ok(to_host(bundle.ssl_features(&model, &items, &device)?)?)
    }
}

/// What the bundle's structure input makes of each (file name, CIF text); every CIF is read
/// before anything is computed, so a bad file fails fast by name.
pub(super) fn cif_items(
    bundle: &Bundle,
    files: &[(String, String)],
) -> anyhow::Result<Vec<xtal_core::data::StructureItem>> {
    Ok(files
        .iter()
        .map(|(name, text)| {
            bundle
                .structure_input
                .from_cif(text)
                .map_err(|e| BadInput(format!("{name}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?)
}

pub(super) fn read_cifs(files: &[PathBuf]) -> anyhow::Result<Vec<(String, String)>> {
    files
        .iter()
        .map(|f| {
            let bytes =
                std::fs::read(f).with_context(|| format!("{}: cannot read", f.display()))?;
            let text = xtal_core::structure::cif::syntax::decode(&bytes)
                .0
                .into_owned();
            Ok((f.display().to_string(), text))
        })
        .collect()
}

pub fn embed(args: EmbedArgs) -> anyhow::Result<()> {
    if let Some(run) = &args.run {
        return embed_with_run(&args, run);
    }
    if let EmbedWhat::Dataset { .. } = &args.what {
        return Err(
            BadInput("`embed dataset` needs --run R (a run with a graph encoder)".into()).into(),
        );
    }
    let Some(bundle_path) = &args.bundle else {
        return embed_with_model(&args);
    };
    let bundle = open_kind(bundle_path, &args.limits.limits(), &["clip", "ssl"])?;
    let device = crate::commands::one_device(&args.device)?;
    if bundle.manifest.model.model.kind() == "ssl" {
        let EmbedWhat::Cif { files } = &args.what else {
            return Err(BadInput(format!(
                "{}: an SSL bundle turns CIFs into features (`xtal embed --bundle B cif FILE…`); texts need a CLIP bundle",
                bundle_path.display()
            ))
            .into());
        };
        let cifs = read_cifs(files)?;
        let labels: Vec<String> = cifs.iter().map(|c| c.0.clone()).collect();
        let features = run_on(&device, SslFeatures(&bundle, cifs))??;
        return write_embeddings(&args, &labels, &features, bundle.manifest.model.embed_dim);
    }
    let (query, labels) = match &args.what {
        EmbedWhat::Text { texts } => (Query::Texts(texts), texts.clone()),
        EmbedWhat::Cif { files } => {
            let cifs = read_cifs(files)?;
            let labels = cifs.iter().map(|c| c.0.clone()).collect();
            (Query::Cifs(cifs), labels)
        }
        EmbedWhat::Dataset { .. } => unreachable!("refused above"),
    };
    let vectors = run_on(&device, EmbedQueries(&bundle, query))??;
    write_embeddings(&args, &labels, &vectors, bundle.manifest.model.embed_dim)
}

/// `xtal embed --run R cif …` and `xtal embed --run R dataset D -o OUT`.
fn embed_with_run(args: &EmbedArgs, run: &Path) -> anyhow::Result<()> {
    use super::embed_structures::{embed_dataset, embed_structures, read_structures};
    match &args.what {
        EmbedWhat::Text { .. } => Err(BadInput(
            "--run embeds structures (`cif FILE…` or `dataset DIR -o OUT`); texts need a bundle"
                .into(),
        )
        .into()),
        EmbedWhat::Cif { files } => {
            let cifs = read_cifs(files)?;
            let structures = read_structures(&cifs)?;
            let labels: Vec<String> = cifs.into_iter().map(|c| c.0).collect();
            let (vectors, d) = embed_structures(run, &structures, &args.device)?;
            write_embeddings(args, &labels, &vectors, d)
        }
        EmbedWhat::Dataset {
            data,
            out_dir,
            force,
        } => embed_dataset(run, data, out_dir, *force, &args.device),
    }
}

/// `xtal embed text --model DIR …`: a pretrained HF encoder with pooling.
fn embed_with_model(args: &EmbedArgs) -> anyhow::Result<()> {
    let (Some(dir), EmbedWhat::Text { texts }) = (&args.model, &args.what) else {
        return Err(BadInput(match &args.model {
            None => "embed needs --bundle B (a packed model) or --model DIR (a HuggingFace text encoder)".into(),
            Some(_) => "--model embeds texts only (`xtal embed text --model DIR \"…\"`); CIFs need a bundle".into(),
        })
        .into());
    };
    let (vectors, d) = crate::commands::text_model::embed(
        dir,
        texts,
        args.pooling,
        args.normalize,
        args.max_tokens,
        &args.device,
    )?;
    write_embeddings(args, texts, &vectors, d)
}

/// `--out` as `.npy [n, d]` (atomically), `--json` as one array per input, or a preview.
fn write_embeddings(
    args: &EmbedArgs,
    labels: &[String],
    vectors: &[f32],
    d: usize,
) -> anyhow::Result<()> {
    if let Some(out) = &args.out {
        let tmp = crate::output::temp_sibling(out, ".npy");
        write_npy(&tmp, &[labels.len() as u64, d as u64], vectors)?;
        std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))?;
        eprintln!(
            "{} embeddings of {d} values → {}",
            labels.len(),
            out.display()
        );
    }
    if args.json {
        let rows: Vec<&[f32]> = vectors.chunks(d).collect();
        println!("{}", serde_json::to_string(&rows)?);
    } else if args.out.is_none() {
        for (label, v) in labels.iter().zip(vectors.chunks(d)) {
            let head: Vec<String> = v.iter().take(6).map(|x| format!("{x:+.4}")).collect();
            println!(
                "{}  [{} …] ({d} values)",
                preview(label, 40),
                head.join(" ")
            );
        }
    }
    Ok(())
}
