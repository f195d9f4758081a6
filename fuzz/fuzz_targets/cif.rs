//! Any bytes through the CIF reader and on to everything built from a structure: it must
//! return a value or an error, never panic, hang or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xtal_core::featurize::{CrystalGraph, ElementTable, FtcpConfig, GraphConfig, ftcp};
use xtal_core::structure::{CifOptions, StructureSummary, SymmetryTolerance, read_cif_bytes};

fuzz_target!(|data: &[u8]| {
    // Bytes as a file holds them: UTF-8, Latin-1, CR line ends, Ctrl-Z.
    let Ok(structures) = read_cif_bytes(data, &CifOptions::default()) else {
        return;
    };
    let table = ElementTable::default_table();
    for s in structures.iter().take(2) {
        let s = &s.structure;
        // Keep each input cheap: the work of one structure grows with its sites and cell.
        if s.sites.len() > 64 || s.volume() > 5e3 || s.volume() < 1.0 {
            continue;
        }
        let _ = StructureSummary::of(s, SymmetryTolerance::default());
        let _ = ftcp(s, &FtcpConfig::default(), &table);
        let _ = CrystalGraph::build(
            s,
            &GraphConfig {
                cutoff: 4.0,
                ..GraphConfig::default()
            },
        );
    }
});
