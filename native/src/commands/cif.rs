//! `xtal cif FILE…`: read CIFs and print what each structure is.

use std::path::{Path, PathBuf};

use anyhow::Context;
use xtal_core::structure::{CifOptions, StructureSummary, SymmetryTolerance, read_cif};

use crate::exit::BadInput;

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
                for (block, s) in list {
                    print_one(file, &block, &s, args.json);
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

fn summarize(
    file: &PathBuf,
    tolerance: SymmetryTolerance,
) -> anyhow::Result<Vec<(String, StructureSummary)>> {
    let bytes = std::fs::read(file).with_context(|| format!("{}: cannot read", file.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let structures = read_cif(&text, &CifOptions::default())
        .map_err(|e| BadInput(format!("{}: {e}", file.display())))?;
    structures
        .into_iter()
        .map(|s| {
            let summary = StructureSummary::of(&s.structure, tolerance)
                .map_err(|e| BadInput(format!("{} (data_{}): {e}", file.display(), s.block)))?;
            Ok((s.block, summary))
        })
        .collect()
}

fn print_one(file: &Path, block: &str, s: &StructureSummary, json: bool) {
    if json {
        let mut value = serde_json::to_value(s).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.insert("file".into(), file.display().to_string().into());
            map.insert("block".into(), block.into());
        }
        println!("{value}");
    } else {
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
