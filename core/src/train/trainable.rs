//! Which parameters a training run may change: a predicate over module paths
//! (`text.projection.weight`, `text.encoder.layers.0.norm_1.gamma`, …; enum variants are
//! not part of a path) decides, and burn then
//! computes no gradients for the rest, so frozen parts cost no backward pass.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;

/// `module` with exactly the parameters whose path satisfies `trainable` requiring gradients.
pub fn set_trainable<B: Backend, M: Module<B>>(module: M, trainable: impl Fn(&str) -> bool) -> M {
    module.map(&mut Mark {
        path: Vec::new(),
        trainable,
    })
}

/// Number of values in parameters that require gradients.
pub fn trainable_parameters<B: Backend, M: Module<B>>(module: &M) -> usize {
    let mut count = Count(0);
    module.visit(&mut count);
    count.0
}

struct Mark<F> {
    path: Vec<String>,
    trainable: F,
}

impl<B: Backend, F: Fn(&str) -> bool> ModuleMapper<B> for Mark<F> {
    // Enum variants (`HfEncoder::Bert`) are not part of a path, as in saved weights.
    fn enter_module(&mut self, name: &str, container: &str) {
        if !container.starts_with("Enum:") {
            self.path.push(name.to_string());
        }
    }

    fn exit_module(&mut self, _name: &str, container: &str) {
        if !container.starts_with("Enum:") {
            self.path.pop();
        }
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let path = self.path.join(".");
        param.set_require_grad((self.trainable)(&path))
    }
}

struct Count(usize);

impl<B: Backend> ModuleVisitor<B> for Count {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let value = param.val();
        if value.is_require_grad() {
            self.0 += value.shape().num_elements();
        }
    }
}
