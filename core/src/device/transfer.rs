//! Moving a module's values between backends without a synchronous read, which WebGPU in a
//! browser cannot do: e.g. a model fine-tuned on WebGPU copied to the CPU before it is packed
//! (burn-store serialises by reading each tensor synchronously).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;

/// `to` (the same architecture as `from`) with every float parameter's values taken from
/// `from`, in visiting order, read asynchronously.
pub async fn copy_params_async<B1: Backend, B2: Backend, M1: Module<B1>, M2: Module<B2>>(
    from: &M1,
    to: M2,
    device: &B2::Device,
) -> Result<M2, String> {
    let mut collect = Collect::<B1>(Vec::new());
    from.visit(&mut collect);
    let mut values = Vec::with_capacity(collect.0.len());
    for tensor in collect.0 {
        let data = tensor
            .into_data_async()
            .await
            .map_err(|e| format!("reading parameters from the device: {e:?}"))?;
        values.push(data.convert::<f32>());
    }
    values.reverse();
    let mut fill = Fill::<B2> {
        values,
        device: device.clone(),
        error: None,
    };
    let module = to.map(&mut fill);
    match (fill.error, fill.values.is_empty()) {
        (Some(e), _) => Err(e),
        (None, false) => Err("the source has more parameters than the target".into()),
        (None, true) => Ok(module),
    }
}

struct Collect<B: Backend>(Vec<Tensor<B, 1>>);

impl<B: Backend> ModuleVisitor<B> for Collect<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let value = param.val();
        let n = value.shape().num_elements();
        self.0.push(value.reshape([n]));
    }
}

struct Fill<B: Backend> {
    /// Flat values, next one last.
    values: Vec<TensorData>,
    device: B::Device,
    error: Option<String>,
}

impl<B: Backend> ModuleMapper<B> for Fill<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let shape = tensor.shape();
        let replacement = match self.values.pop() {
            Some(data) if data.num_elements() == shape.num_elements() => {
                match data.into_vec::<f32>() {
                    Ok(values) => Tensor::from_data(TensorData::new(values, shape), &self.device),
                    Err(e) => {
                        self.error.get_or_insert(format!("parameter {id}: {e}"));
                        tensor
                    }
                }
            }
            found => {
                self.error.get_or_insert(format!(
                    "parameter {id}: {} values for a tensor of shape {:?}",
                    found.map_or(0, |d| d.num_elements()),
                    shape.dims::<D>()
                ));
                tensor
            }
        };
        Param::from_mapped_value(id, replacement, mapper)
    }
}
