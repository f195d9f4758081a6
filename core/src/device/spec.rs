use std::fmt;

/// The CPU backends xtal ships. `xtal bench` compares them; the faster is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuBackend {
    /// burn-flex: SIMD kernels and `gemm` matrix products (the default: see `xtal bench`).
    Flex,
    /// burn-ndarray: the long-standing portable reference backend.
    NdArray,
}

impl CpuBackend {
    /// What plain `cpu` means: the fastest CPU backend on the benchmark (see README).
    pub const DEFAULT: CpuBackend = CpuBackend::Flex;

    pub fn name(self) -> &'static str {
        match self {
            CpuBackend::Flex => "flex",
            CpuBackend::NdArray => "ndarray",
        }
    }
}

/// One device as the user names it on the command line or in a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// A CPU backend.
    Cpu(CpuBackend),
    /// A wgpu adapter by its position in `xtal devices`; `None` takes the first one.
    Wgpu(Option<usize>),
    /// A CUDA device by ordinal.
    Cuda(usize),
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu(backend) if *backend == CpuBackend::DEFAULT => write!(f, "cpu"),
            DeviceSpec::Cpu(backend) => write!(f, "cpu:{}", backend.name()),
            DeviceSpec::Wgpu(None) => write!(f, "wgpu"),
            DeviceSpec::Wgpu(Some(i)) => write!(f, "wgpu:{i}"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// Parse `cpu`, `cpu:flex`, `cpu:ndarray`, `wgpu`, `wgpu:N`, `cuda`, `cuda:N`, or a comma
/// list of them.
///
/// `available` is called only for an error, to say what the user could have asked for:
/// listing the devices loads the GPU drivers, which a `cpu` run should not pay for (nor see
/// their start-up messages).
pub fn parse_device_list(
    text: &str,
    available: impl Fn() -> String,
) -> Result<Vec<DeviceSpec>, super::DeviceError> {
    let unknown = |given: &str| super::DeviceError::Unknown {
        given: given.to_string(),
        available: available(),
    };
    let mut specs = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let lower = part.to_ascii_lowercase();
        let (name, suffix) = match lower.split_once(':') {
            Some((name, suffix)) => (name, Some(suffix)),
            None => (lower.as_str(), None),
        };
        let index = || -> Result<Option<usize>, super::DeviceError> {
            suffix
                .map(|s| s.parse::<usize>().map_err(|_| unknown(part)))
                .transpose()
        };
        let spec = match (name, suffix) {
            ("cpu", None) => DeviceSpec::Cpu(CpuBackend::DEFAULT),
            ("cpu", Some("flex")) => DeviceSpec::Cpu(CpuBackend::Flex),
            ("cpu", Some("ndarray")) => DeviceSpec::Cpu(CpuBackend::NdArray),
            ("wgpu", _) => DeviceSpec::Wgpu(index()?),
            ("cuda", _) => DeviceSpec::Cuda(index()?.unwrap_or(0)),
            _ => return Err(unknown(part)),
        };
        specs.push(spec);
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        // A valid spec never lists the devices (that would load the GPU drivers).
        let parse = |s| parse_device_list(s, || unreachable!("devices listed for `{s}`"));
        assert_eq!(
            parse("cpu").unwrap(),
            vec![DeviceSpec::Cpu(CpuBackend::DEFAULT)]
        );
        assert_eq!(
            parse("cpu:ndarray").unwrap(),
            vec![DeviceSpec::Cpu(CpuBackend::NdArray)]
        );
        assert_eq!(
            parse("CPU:Flex").unwrap(),
            vec![DeviceSpec::Cpu(CpuBackend::Flex)]
        );
        assert_eq!(parse("wgpu").unwrap(), vec![DeviceSpec::Wgpu(None)]);
        assert_eq!(parse("WGPU:1").unwrap(), vec![DeviceSpec::Wgpu(Some(1))]);
        assert_eq!(parse("cuda").unwrap(), vec![DeviceSpec::Cuda(0)]);
        assert_eq!(
            parse("cuda:0, cuda:3").unwrap(),
            vec![DeviceSpec::Cuda(0), DeviceSpec::Cuda(3)]
        );
    }

    #[test]
    fn rejects_nonsense_and_names_what_exists() {
        for bad in ["gpu", "cpu:1", "cpu:blas", "cuda:x", "", "cuda:-1", "wgpu,"] {
            let err = parse_device_list(bad, || "cpu, wgpu:0".into())
                .unwrap_err()
                .to_string();
            assert!(err.contains("available here: cpu, wgpu:0"), "{bad}: {err}");
        }
    }

    #[test]
    fn display_round_trips() {
        for spec in [
            DeviceSpec::Cpu(CpuBackend::Flex),
            DeviceSpec::Cpu(CpuBackend::NdArray),
            DeviceSpec::Wgpu(None),
            DeviceSpec::Wgpu(Some(2)),
            DeviceSpec::Cuda(1),
        ] {
            assert_eq!(
                parse_device_list(&spec.to_string(), String::new).unwrap(),
                vec![spec]
            );
        }
    }
}
