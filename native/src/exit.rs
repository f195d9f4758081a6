//! Exit codes and error reports: 0 success, 2 bad usage or bad input, 1 internal failure.

use xtal_core::bundle::BundleError;
use xtal_core::check::CheckError;
use xtal_core::device::DeviceError;
use xtal_core::featurize::GraphError;
use xtal_core::models::hf::HfError;
use xtal_core::train::property::PredictError;

/// Marks an error as the user's to fix (bad flag value, missing or malformed file).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// Print `error` as one sentence plus its causes and return the exit code for it.
pub fn report(error: &anyhow::Error) -> i32 {
    eprintln!("error: {error}");
    for cause in error.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    if is_bad_input(error) { 2 } else { 1 }
}

fn is_bad_input(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.is::<BadInput>()
            || cause.is::<DeviceError>()
            || cause.is::<HfError>()
            // A structure without a graph (disordered, unknown element, …) is the data's.
            || cause.is::<GraphError>()
            || matches!(
                cause.downcast_ref::<PredictError>(),
                Some(PredictError::Graph(_))
            )
            || cause
                .downcast_ref::<BundleError>()
                .is_some_and(|e| !matches!(e, BundleError::Write(_)))
            || matches!(
                cause.downcast_ref::<CheckError>(),
                Some(CheckError::Shape { .. })
            )
            || cause.downcast_ref::<std::io::Error>().is_some_and(names_a_bad_path)
            // The csv crate wraps the io error of a missing file, and reports malformed CSV.
            || cause.downcast_ref::<csv::Error>().is_some_and(|e| match e.kind() {
                csv::ErrorKind::Io(io) => names_a_bad_path(io),
                _ => true,
            })
    })
}

/// A file the user named that is missing or unreadable to them.
fn names_a_bad_path(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
    )
}
