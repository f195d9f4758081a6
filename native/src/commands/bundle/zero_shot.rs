//! `xtal zero-shot`: how well each phrase describes a CIF's structure, by a bundle's model
//! (the scoring is core's `xtal_core::bundle::zero_shot`, as on the page).

use std::path::PathBuf;

use burn::tensor::backend::AutodiffBackend;
use xtal_core::bundle::{Bundle, PhraseScore, temperature_scale, zero_shot as score};
use xtal_core::device::{OnDevice, run_on};
use xtal_core::train::to_host;

use super::common::{LimitArgs, open_kind};
use super::embed::read_cifs;
use crate::exit::BadInput;

#[derive(clap::Args)]
pub struct ZeroShotArgs {
    /// The bundle whose model scores.
    #[arg(long)]
    bundle: PathBuf,
    /// The structure.
    #[arg(long)]
    cif: PathBuf,
    /// Phrases to score, e.g. "a cubic perovskite" "a layered oxide".
    #[arg(required = true)]
    phrases: Vec<String>,
    /// Print JSON: [{phrase, score, probability}], best first.
    #[arg(long)]
    json: bool,
    #[arg(long, default_value = "cpu")]
    device: String,
    #[command(flatten)]
    limits: LimitArgs,
}

pub fn zero_shot(args: ZeroShotArgs) -> anyhow::Result<()> {
    let bundle = open_kind(&args.bundle, &args.limits.limits(), &["clip"])?;
    let device = crate::commands::one_device(&args.device)?;
    let (name, cif) = read_cifs(std::slice::from_ref(&args.cif))?
        .pop()
        .ok_or_else(|| BadInput(format!("{}: no CIF", args.cif.display())))?;
    let rows = run_on(
        &device,
        Scores {
            bundle: &bundle,
            cif: (&name, &cif),
            phrases: &args.phrases,
        },
    )??;
    if args.json {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    println!("{:>8}  {:>11}  phrase", "cosine", "probability");
    for r in &rows {
        println!("{:>8.4}  {:>11.4}  {}", r.score, r.probability, r.phrase);
    }
    Ok(())
}

struct Scores<'a> {
    bundle: &'a Bundle,
    cif: (&'a str, &'a str),
    phrases: &'a [String],
}

impl OnDevice for Scores<'_> {
    type Output = anyhow::Result<Vec<PhraseScore>>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let model = self.bundle.model::<B::InnerBackend>(&device)?;
        let (name, cif) = self.cif;
        let item = self
            .bundle
            .structure_input
            .from_cif(cif)
            .map_err(|e| BadInput(format!("{name}: {e}")))?;
        let structure = to_host(self.bundle.embed_structures(&model, &[item], &device)?)?;
        let phrases: Vec<&str> = self.phrases.iter().map(String::as_str).collect();
        let texts = to_host(self.bundle.embed_texts(&model, &phrases, &device)?)?;
        let logit_scale = to_host(model.logit_scale.val())?;
        let scale = temperature_scale(logit_scale.first().copied().unwrap_or(0.0));
        Ok(score(&structure, self.phrases, &texts, scale))
    }
}
