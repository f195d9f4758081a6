//! `xtal cif FILE…`: read CIFs and print what each structure is.

use std::path::{Path, PathBuf};

use anyhow::Context;
use xtal_core::structure::{
    CifOptions, CifWarning, StructureSummary, SymmetryTolerance, read_cif_bytes,
};

use crate::exit::BadInput;
use crate::panic_guard::guarded;

#[derive(clap::Args)]
pub struct Args {
    /// CIF files (several data blocks per file are all printed).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// One JSON object per structure and line.
    #[arg(long)]
    json: bool,
    /// Symmetry tolerance in Å (pymatgen's SpacegroupAnalyzer default).
    #[arg(long, default_value_t = 0.01)]
    symprec: f64,
    /// Angle tolerance of the symmetry search in degrees.
    #[arg(long, default_value_t = 5.0)]
    angle_tolerance: f64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if !super::positive(args.symprec) || !super::positive(args.angle_tolerance) {
        return Err(BadInput("--symprec and --angle-tolerance must be positive".into()).into());
    }
    let tolerance = SymmetryTolerance {
        symprec: args.symprec,
        angle_tolerance: args.angle_tolerance,
    };
    let mut failed = Vec::new();
    for file in &args.files {
        match summarize(file, tolerance) {
            Ok(list) => {
                for (block, s, warnings) in list {
                    print_one(file, &block, &s, &warnings, args.json);
                }
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                failed.push(file.display().to_string());
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(BadInput(format!(
            "{} of {} file(s) could not be read: {}",
            failed.len(),
            args.files.len(),
            failed.join(", ")
        ))
        .into())
    }
}

type Summaries = Vec<(String, StructureSummary, Vec<CifWarning>)>;

fn summarize(file: &PathBuf, tolerance: SymmetryTolerance) -> anyhow::Result<Summaries> {
    let bytes = std::fs::read(file).with_context(|| format!("{}: cannot read", file.display()))?;
    // A panic anywhere below is this file's error, not the end of the command.
    let summaries = guarded(|| {
        let structures = read_cif_bytes(&bytes, &CifOptions::default())
            .map_err(|e| format!("{}: {e}", file.display()))?;
        structures
            .into_iter()
            .map(|s| {
                let summary = StructureSummary::of(&s.structure, tolerance)
                    .map_err(|e| format!("{} (data_{}): {e}", file.display(), s.block))?;
                Ok((s.block, summary, s.warnings))
            })
            .collect()
    });
    summaries.map_err(|e| BadInput(e).into())
}

fn print_one(file: &Path, block: &str, s: &StructureSummary, warnings: &[CifWarning], json: bool) {
    if json {
        let mut value = serde_json::to_value(s).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.insert("file".into(), file.display().to_string().into());
            map.insert("block".into(), block.into());
            map.insert(
                "warnings".into(),
                serde_json::to_value(warnings).unwrap_or_default(),
            );
        }
        println!("{value}");
    } else {
        // Every assumption the reader made, on stderr, before the structure it concerns.
        for w in warnings {
            eprintln!("warning: {} data_{block}: {w}", file.display());
        }
        println!(
            "{} data_{block}: {} | a {:.4} b {:.4} c {:.4} Å | α {:.3} β {:.3} γ {:.3}° | V {:.3} Å³ | ρ {:.4} g/cm³ | {} sites | {} (No. {}) {}",
            file.display(),
            s.reduced_formula,
            s.a,
            s.b,
            s.c,
            s.alpha,
            s.beta,
            s.gamma,
            s.volume,
            s.density,
            s.nsites,
            s.spacegroup_symbol,
            s.spacegroup_number,
            s.crystal_system
        );
    }
}
