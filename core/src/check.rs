//! A small, fully specified computation — one linear layer, its loss, its gradients
//! and one SGD step — that every backend must reproduce. `xtal devices --check` and the
//! browser tests run it to prove that CPU, wgpu, CUDA and WebGPU compute the same thing.

use burn::module::{AutodiffModule, Param};
use burn::nn::Linear;
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// Inputs and parameters of the check, all row-major; the weight is `[in, out]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinearStepCase {
    pub batch: usize,
    pub in_features: usize,
    pub out_features: usize,
    pub input: Vec<f32>,
    pub target: Vec<f32>,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub learning_rate: f64,
}

/// What the check produces: forward, mean-squared-error loss, gradients, the
/// parameters after one SGD step and the forward pass with them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LinearStepResult {
    pub output: Vec<f32>,
    pub loss: f32,
    pub grad_weight: Vec<f32>,
    pub grad_bias: Vec<f32>,
    pub new_weight: Vec<f32>,
    pub new_bias: Vec<f32>,
    pub new_output: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("check case field `{field}` has {got} values, expected {expected}")]
    Shape {
        field: &'static str,
        got: usize,
        expected: usize,
    },
    #[error("reading a result back from the device failed: {0}")]
    Read(String),
}

impl LinearStepCase {
    fn validate(&self) -> Result<(), CheckError> {
        let (n, i, o) = (self.batch, self.in_features, self.out_features);
        for (field, got, expected) in [
            ("input", self.input.len(), n * i),
            ("target", self.target.len(), n * o),
            ("weight", self.weight.len(), i * o),
            ("bias", self.bias.len(), o),
        ] {
            if got != expected {
                return Err(CheckError::Shape {
                    field,
                    got,
                    expected,
                });
            }
        }
        Ok(())
    }
}

impl LinearStepResult {
    /// Largest absolute difference over every value of the two results.
    pub fn max_abs_diff(&self, other: &Self) -> f32 {
        let pairs = [
            (&self.output, &other.output),
            (&self.grad_weight, &other.grad_weight),
            (&self.grad_bias, &other.grad_bias),
            (&self.new_weight, &other.new_weight),
            (&self.new_bias, &other.new_bias),
            (&self.new_output, &other.new_output),
        ];
        let mut worst = (self.loss - other.loss).abs();
        for (a, b) in pairs {
            if a.len() != b.len() {
                return f32::INFINITY;
            }
            for (x, y) in a.iter().zip(b.iter()) {
                worst = worst.max((x - y).abs());
            }
        }
        if worst.is_nan() { f32::INFINITY } else { worst }
    }
}

/// The check's tensors on the device, not yet read back (reading is sync natively,
/// async in the browser).
pub struct LinearStepTensors<B: Backend> {
    output: Tensor<B, 2>,
    loss: Tensor<B, 1>,
    grad_weight: Tensor<B, 2>,
    grad_bias: Tensor<B, 1>,
    new_weight: Tensor<B, 2>,
    new_bias: Tensor<B, 1>,
    new_output: Tensor<B, 2>,
}

/// Run the check on `device`.
pub fn linear_step<B: AutodiffBackend>(
    case: &LinearStepCase,
    device: &B::Device,
) -> Result<LinearStepTensors<B::InnerBackend>, CheckError> {
    case.validate()?;
    let (n, i, o) = (case.batch, case.in_features, case.out_features);
    let matrix = |values: &[f32], rows, cols| {
        Tensor::<B, 2>::from_data(TensorData::new(values.to_vec(), [rows, cols]), device)
    };
    let input = matrix(&case.input, n, i);
    let target = matrix(&case.target, n, o);
    let linear = Linear {
        weight: Param::from_tensor(matrix(&case.weight, i, o)),
        bias: Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(case.bias.clone(), [o]),
            device,
        ))),
    };

    let output = linear.forward(input.clone());
    let loss = (output.clone() - target).powi_scalar(2).mean();
    let grads = loss.backward();
    let grad_weight = linear.weight.grad(&grads).expect("weight is tracked");
    let bias = linear.bias.as_ref().expect("bias was set above");
    let grad_bias = bias.grad(&grads).expect("bias is tracked");

    let grads = GradientsParams::from_grads(grads, &linear);
    let mut optimizer = SgdConfig::new().init();
    let stepped = optimizer.step(case.learning_rate, linear, grads).valid();
    let new_output = stepped.forward(input.inner());
    Ok(LinearStepTensors {
        output: output.inner(),
        loss: loss.inner(),
        grad_weight,
        grad_bias,
        new_weight: stepped.weight.val(),
        new_bias: stepped.bias.expect("bias was set above").val(),
        new_output,
    })
}

fn values(data: TensorData) -> Result<Vec<f32>, CheckError> {
    data.to_vec::<f32>()
        .map_err(|e| CheckError::Read(format!("{e:?}")))
}

impl<B: Backend> LinearStepTensors<B> {
    /// Read the results back synchronously (native only: a browser must use [`Self::read_async`]).
    pub fn read(self) -> Result<LinearStepResult, CheckError> {
        Self::assemble([
            self.output.into_data(),
            self.loss.into_data(),
            self.grad_weight.into_data(),
            self.grad_bias.into_data(),
            self.new_weight.into_data(),
            self.new_bias.into_data(),
            self.new_output.into_data(),
        ])
    }

    /// Read the results back without blocking (required for WebGPU in a browser).
    pub async fn read_async(self) -> Result<LinearStepResult, CheckError> {
        let read = |e: burn::tensor::backend::ExecutionError| CheckError::Read(format!("{e:?}"));
        Self::assemble([
            self.output.into_data_async().await.map_err(read)?,
            self.loss.into_data_async().await.map_err(read)?,
            self.grad_weight.into_data_async().await.map_err(read)?,
            self.grad_bias.into_data_async().await.map_err(read)?,
            self.new_weight.into_data_async().await.map_err(read)?,
            self.new_bias.into_data_async().await.map_err(read)?,
            self.new_output.into_data_async().await.map_err(read)?,
        ])
    }

    fn assemble(data: [TensorData; 7]) -> Result<LinearStepResult, CheckError> {
        let [
            output,
            loss,
            grad_weight,
            grad_bias,
            new_weight,
            new_bias,
            new_output,
        ] = data;
        Ok(LinearStepResult {
            output: values(output)?,
            loss: values(loss)?.first().copied().unwrap_or(f32::NAN),
            grad_weight: values(grad_weight)?,
            grad_bias: values(grad_bias)?,
            new_weight: values(new_weight)?,
            new_bias: values(new_bias)?,
            new_output: values(new_output)?,
        })
    }
}
