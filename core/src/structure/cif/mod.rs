//! CIF → [`Structure`]: the syntax layer ([`syntax`]) reads blocks, loops and values with their
//! line numbers; [`build`] turns a block into a structure (cell, symmetry expansion, sites).

mod build;
mod operations;
pub mod symop;
pub mod syntax;
pub mod values;

pub use build::{CifOptions, CifStructure, read_cif, read_cif_bytes};
pub use symop::SymOp;

/// Something the reader assumed or tolerated (legacy syntax, a default, a symbol variant), with
/// the line it concerns: shown by `xtal cif`, kept in `prepare`'s report, never silent.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CifWarning {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for CifWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Why a CIF could not be read; always names a line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CifError {
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("line {line} (data_{block}): {message}")]
    Content {
        block: String,
        line: usize,
        message: String,
    },
}

impl CifError {
    pub(crate) fn syntax(line: usize, message: String) -> Self {
        Self::Syntax { line, message }
    }

    /// 1-based line the problem was found on.
    pub fn line(&self) -> usize {
        match self {
            Self::Syntax { line, .. } | Self::Content { line, .. } => *line,
        }
    }
}
