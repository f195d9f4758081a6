//! CIF → [`Structure`]: the syntax layer ([`syntax`]) reads blocks, loops and values with their
//! line numbers; [`build`] turns a block into a structure (cell, symmetry expansion, sites).

mod build;
pub mod symop;
pub mod syntax;

pub use build::{CifOptions, CifStructure, read_cif};
pub use symop::SymOp;

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
