//! Self-supervised encoders over the FTCP tensor: six blocks, each reading one part of the
//! tensor and trained alone on its own pretext tasks, whose outputs concatenate into 2048-D
//! features (256 + 256 + 512 + 256 + 512 + 256), optionally compressed by a [`bottleneck`].
//!
//! Every block file holds the block's batch (built from [`FtcpSample`]s, with the masking),
//! its config, module, features and pretext losses. Masking always *removes* the hidden
//! values from the input — they are zeroed and flagged, and a learned mask embedding stands
//! in — unlike the original, whose Blocks 3–6 predicted values they were shown.

pub mod bottleneck;
pub mod elements;
pub mod encoder;
pub mod lattice;
pub mod occupancy;
pub mod reciprocal;
pub mod sites;
pub mod structure_factors;

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use serde::{Deserialize, Serialize};

use crate::data::SeededRng;
use crate::featurize::{FtcpConfig, FtcpPart, RowMinMax};
use crate::structure::CrystalSystem;
use crate::structure::lattice::{Lattice, Vec3, norm};

pub use elements::{ElementsBatch, ElementsEncoder, ElementsEncoderConfig};
pub use encoder::{SslEncoder, SslEncoderConfig};
pub use lattice::{LatticeBatch, LatticeEncoder, LatticeEncoderConfig};
pub use occupancy::{OccupancyBatch, OccupancyEncoder, OccupancyEncoderConfig};
pub use reciprocal::{KDistanceBatch, KDistanceEncoder, KDistanceEncoderConfig};
pub use sites::{SitesBatch, SitesEncoder, SitesEncoderConfig};
pub use structure_factors::{
    StructureFactorBatch, StructureFactorEncoder, StructureFactorEncoderConfig,
};

/// The six blocks, in feature order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    Elements,
    Lattice,
    Sites,
    Occupancy,
    Reciprocal,
    StructureFactors,
}

impl BlockKind {
    pub const ALL: [BlockKind; 6] = [
        BlockKind::Elements,
        BlockKind::Lattice,
        BlockKind::Sites,
        BlockKind::Occupancy,
        BlockKind::Reciprocal,
        BlockKind::StructureFactors,
    ];

    /// 1-based block number, as the seed numbers them.
    pub fn number(self) -> usize {
        Self::ALL.iter().position(|k| *k == self).unwrap_or(0) + 1
    }

    pub fn from_number(n: usize) -> Option<Self> {
        n.checked_sub(1).and_then(|i| Self::ALL.get(i).copied())
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Elements => "elements",
            Self::Lattice => "lattice",
            Self::Sites => "sites",
            Self::Occupancy => "occupancy",
            Self::Reciprocal => "reciprocal",
            Self::StructureFactors => "structure_factors",
        }
    }

    /// Width of the block's features.
    pub fn output_dim(self) -> usize {
        match self {
            Self::Sites | Self::Reciprocal => 512,
            _ => 256,
        }
    }

    /// First feature column of the block in the 2048-D concatenation.
    pub fn offset(self) -> usize {
        Self::ALL
            .iter()
            .take_while(|k| **k != self)
            .map(|k| k.output_dim())
            .sum()
    }

    /// The block's pretext tasks and their default loss weights.
    pub fn tasks(self) -> &'static [(&'static str, f64)] {
        match self {
            Self::Elements => &[("masked_element", 1.0)],
            Self::Lattice => &[("crystal_system", 0.5), ("masked_lattice", 0.5)],
            Self::Sites => &[("masked_coordinates", 0.6), ("site_distances", 0.4)],
            Self::Occupancy => &[("masked_occupancy", 1.0)],
            Self::Reciprocal => &[("masked_k_distance", 0.5), ("k_interpolation", 0.5)],
            Self::StructureFactors => &[
                ("masked_structure_factors", 0.6),
                ("real_from_reciprocal", 0.4),
            ],
        }
    }

    /// FTCP parts the block reads.
    pub fn reads(self) -> &'static [FtcpPart] {
        match self {
            Self::Elements => &[FtcpPart::Elements],
            Self::Lattice => &[FtcpPart::Lattice],
            Self::Sites => &[FtcpPart::Sites, FtcpPart::Lattice],
            Self::Occupancy => &[FtcpPart::Occupancy, FtcpPart::Sites, FtcpPart::Lattice],
            Self::Reciprocal => &[FtcpPart::KDistances],
            Self::StructureFactors => &[FtcpPart::StructureFactors],
        }
    }
}

/// Width of all six blocks' features together.
pub const FEATURE_DIM: usize = 2048;

/// One material as the blocks read it: its raw FTCP tensor and the row scaling fitted on the
/// training rows.
#[derive(Debug, Clone, Copy)]
pub struct FtcpSample<'a> {
    /// Row-major `layout.rows() × layout.cols()`, as `xtal prepare` stores it.
    pub raw: &'a [f32],
    pub normalizer: &'a RowMinMax,
    pub layout: &'a FtcpConfig,
    /// From the structure's space group; `None` when unknown (the task then skips it).
    pub crystal_system: Option<CrystalSystem>,
}

impl FtcpSample<'_> {
    /// The values of `part`, scaled as in training, row-major.
    pub fn scaled(&self, part: FtcpPart) -> Vec<f32> {
        let region = self.layout.region(part);
        let cols = self.layout.cols();
        let mut out = region.extract(self.raw, cols);
        let width = region.cols.len();
        for (k, v) in out.iter_mut().enumerate() {
            *v = self
                .normalizer
                .scale(region.rows.start + k / width, *v as f64) as f32;
        }
        out
    }

    /// Which element column each occupied site holds (sites without an element are padding).
    pub fn occupied_sites(&self) -> Vec<(usize, usize)> {
        let region = self.layout.region(FtcpPart::Occupancy);
        let occupancy = region.extract(self.raw, self.layout.cols());
        let width = region.cols.len();
        occupancy
            .chunks(width)
            .enumerate()
            .filter_map(|(site, row)| {
                let best = (0..width).max_by(|&a, &b| row[a].total_cmp(&row[b]))?;
                (row[best] > 0.5).then_some((site, best))
            })
            .collect()
    }

    /// Raw fractional coordinates of `site`.
    pub fn coordinates(&self, site: usize) -> Vec3 {
        let region = self.layout.region(FtcpPart::Sites);
        let row = (region.rows.start + site) * self.layout.cols();
        [0, 1, 2].map(|c| self.raw[row + c] as f64)
    }

    /// The cell from the raw lattice rows (lengths in Å, angles in degrees).
    pub fn lattice(&self) -> Lattice {
        let region = self.layout.region(FtcpPart::Lattice);
        let p = region.extract(self.raw, self.layout.cols());
        let p: Vec<f64> = p.iter().map(|&v| v as f64).collect();
        Lattice::from_parameters(p[0], p[1], p[2], p[3], p[4], p[5])
    }
}

/// Shortest periodic distance (Å) between two fractional positions.
pub fn periodic_distance(lattice: &Lattice, a: Vec3, b: Vec3) -> f64 {
    let d = [0, 1, 2].map(|k| {
        let x = b[k] - a[k];
        x - x.round()
    });
    let mut best = f64::INFINITY;
    // The rounded difference plus every neighbouring image: exact for reduced-enough cells.
    for i in -1..=1 {
        for j in -1..=1 {
            for k in -1..=1 {
                let f = [d[0] + i as f64, d[1] + j as f64, d[2] + k as f64];
                best = best.min(norm(lattice.to_cartesian(f)));
            }
        }
    }
    best
}

/// Which items of a sample the masking hides: at least one of `n` when there are two or
/// more (a lone item is hidden with probability `fraction`).
pub(crate) fn choose_masked(n: usize, fraction: f64, rng: &mut SeededRng) -> Vec<bool> {
    let mut masked: Vec<bool> = (0..n).map(|_| rng.unit() < fraction).collect();
    if n >= 2 && !masked.contains(&true) {
        masked[rng.below(n)] = true;
    }
    masked
}

/// One block's pretext losses, named, before weighting.
pub struct PretextLosses<B: Backend> {
    pub tasks: Vec<(&'static str, Tensor<B, 1>)>,
}

impl<B: Backend> PretextLosses<B> {
    /// Σ weight · loss, the weights looked up by task name (absent: 0).
    pub fn weighted(&self, weights: &[(String, f64)]) -> Tensor<B, 1> {
        let mut total: Option<Tensor<B, 1>> = None;
        for (name, loss) in &self.tasks {
            let w = weights
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0.0, |(_, w)| *w);
            if w != 0.0 {
                let term = loss.clone() * w;
                total = Some(match total {
                    Some(t) => t + term,
                    None => term,
                });
            }
        }
        total.unwrap_or_else(|| self.tasks[0].1.clone() * 0.0)
    }
}

/// The six encoders as one module type, so that one trainer and one checkpoint format
/// serve them all. (One block lives at a time; boxing the variants would buy nothing.)
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum SslBlock<B: Backend> {
    Elements(ElementsEncoder<B>),
    Lattice(LatticeEncoder<B>),
    Sites(SitesEncoder<B>),
    Occupancy(OccupancyEncoder<B>),
    Reciprocal(KDistanceEncoder<B>),
    StructureFactors(StructureFactorEncoder<B>),
}

/// A batch for one block (built by [`BlockBatch::build`] for that block's kind).
pub enum BlockBatch<B: Backend> {
    Elements(ElementsBatch<B>),
    Lattice(LatticeBatch<B>),
    Sites(SitesBatch<B>),
    Occupancy(OccupancyBatch<B>),
    Reciprocal(KDistanceBatch<B>),
    StructureFactors(StructureFactorBatch<B>),
}

/// Architecture settings shared by the blocks.
#[derive(Config, Debug, PartialEq)]
pub struct SslBlockConfig {
    pub kind: BlockKind,
    /// Width of the block's hidden representations.
    #[config(default = 64)]
    pub width: usize,
    /// Transformer / message-passing / residual layers.
    #[config(default = 2)]
    pub layers: usize,
    #[config(default = 4)]
    pub heads: usize,
    /// Element columns of the FTCP layout (`max_elements`, at least 3).
    #[config(default = 4)]
    pub element_columns: usize,
}

impl SslBlockConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> SslBlock<B> {
        let (w, l, h) = (self.width, self.layers, self.heads);
        let out = self.kind.output_dim();
        match self.kind {
            BlockKind::Elements => {
                SslBlock::Elements(ElementsEncoderConfig::new(w, h, l, out).init(device))
            }
            BlockKind::Lattice => {
                SslBlock::Lattice(LatticeEncoderConfig::new(w, h, l, out).init(device))
            }
            BlockKind::Sites => SslBlock::Sites(SitesEncoderConfig::new(w, l, out).init(device)),
            BlockKind::Occupancy => SslBlock::Occupancy(
                OccupancyEncoderConfig::new(w, h, l, out)
                    .with_columns(self.element_columns)
                    .init(device),
            ),
            BlockKind::Reciprocal => {
                SslBlock::Reciprocal(KDistanceEncoderConfig::new(w, h, l, out).init(device))
            }
            BlockKind::StructureFactors => SslBlock::StructureFactors(
                StructureFactorEncoderConfig::new(w / 4, l, out)
                    .with_columns(self.element_columns)
                    .init(device),
            ),
        }
    }

    /// Checks the settings a user (or a hostile file) can set.
    pub fn check(&self) -> Result<(), String> {
        if !(8..=1024).contains(&self.width) || !self.width.is_multiple_of(self.heads.max(1)) {
            return Err(format!(
                "width {} must be 8–1024 and divisible by heads {}",
                self.width, self.heads
            ));
        }
        if !(3..=16).contains(&self.element_columns) {
            return Err(format!(
                "element_columns {} must be 3–16",
                self.element_columns
            ));
        }
        if !(1..=12).contains(&self.layers) || !(1..=16).contains(&self.heads) {
            return Err("layers must be 1–12 and heads 1–16".into());
        }
        Ok(())
    }
}

impl<B: Backend> BlockBatch<B> {
    /// A batch of `samples` for `kind`; with `rng` the pretext masking is drawn, without it
    /// nothing is hidden (feature extraction).
    pub fn build(
        kind: BlockKind,
        samples: &[FtcpSample],
        rng: Option<&mut SeededRng>,
        device: &B::Device,
    ) -> Self {
        match kind {
            BlockKind::Elements => Self::Elements(ElementsBatch::build(samples, rng, device)),
            BlockKind::Lattice => Self::Lattice(LatticeBatch::build(samples, rng, device)),
            BlockKind::Sites => Self::Sites(SitesBatch::build(samples, rng, device)),
            BlockKind::Occupancy => Self::Occupancy(OccupancyBatch::build(samples, rng, device)),
            BlockKind::Reciprocal => Self::Reciprocal(KDistanceBatch::build(samples, rng, device)),
            BlockKind::StructureFactors => {
                Self::StructureFactors(StructureFactorBatch::build(samples, rng, device))
            }
        }
    }
}

impl<B: Backend> SslBlock<B> {
    pub fn kind(&self) -> BlockKind {
        match self {
            Self::Elements(_) => BlockKind::Elements,
            Self::Lattice(_) => BlockKind::Lattice,
            Self::Sites(_) => BlockKind::Sites,
            Self::Occupancy(_) => BlockKind::Occupancy,
            Self::Reciprocal(_) => BlockKind::Reciprocal,
            Self::StructureFactors(_) => BlockKind::StructureFactors,
        }
    }

    /// Features `[batch, output_dim]`, each material's centred and scaled to unit variance
    /// (a layer norm without gain or bias, applied to what the block outputs).
    ///
    /// Why: unnormalised, a material unlike the probe's training rows could sit far out along
    /// a direction the ridge weights, and a few such rows dominated the error. Pretrained
    /// encoders were better than their random-init control on most perov5 heats but far worse
    /// on about 20 (12.2 of a 5.9 total absolute-error excess over 1,367 rows). Normalising
    /// bounds every row and keeps its direction. The pretext heads read the raw outputs, so
    /// training is unchanged.
    pub fn features(&self, batch: &BlockBatch<B>) -> Tensor<B, 2> {
        per_material_normalized(self.raw_features(batch))
    }

    fn raw_features(&self, batch: &BlockBatch<B>) -> Tensor<B, 2> {
        match (self, batch) {
            (Self::Elements(m), BlockBatch::Elements(b)) => m.forward(b).0,
            (Self::Lattice(m), BlockBatch::Lattice(b)) => m.forward(b).0,
            (Self::Sites(m), BlockBatch::Sites(b)) => m.forward(b).0,
            (Self::Occupancy(m), BlockBatch::Occupancy(b)) => m.forward(b).0,
            (Self::Reciprocal(m), BlockBatch::Reciprocal(b)) => m.forward(b).0,
            (Self::StructureFactors(m), BlockBatch::StructureFactors(b)) => m.forward(b),
            _ => unreachable!("a batch is built for the block's own kind"),
        }
    }

    /// The pretext losses of a masked batch.
    pub fn pretext(&self, batch: &BlockBatch<B>) -> PretextLosses<B> {
        let tasks = match (self, batch) {
            (Self::Elements(m), BlockBatch::Elements(b)) => m.pretext(b),
            (Self::Lattice(m), BlockBatch::Lattice(b)) => m.pretext(b),
            (Self::Sites(m), BlockBatch::Sites(b)) => m.pretext(b),
            (Self::Occupancy(m), BlockBatch::Occupancy(b)) => m.pretext(b),
            (Self::Reciprocal(m), BlockBatch::Reciprocal(b)) => m.pretext(b),
            (Self::StructureFactors(m), BlockBatch::StructureFactors(b)) => m.pretext(b),
            _ => unreachable!("a batch is built for the block's own kind"),
        };
        PretextLosses { tasks }
    }
}

// ---- small pieces the blocks share ----

/// Rows centred and scaled to unit (population) variance; a constant row becomes zeros. The
/// floor is far below any block's feature scale (Block 6's is about 1e-3).
fn per_material_normalized<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let (variance, mean) = x.clone().var_mean_bias(1);
    (x - mean) / variance.add_scalar(1e-12).sqrt()
}

/// A fresh mask embedding: one learned vector standing in for every hidden item.
pub(crate) fn mask_embedding<B: Backend>(width: usize, device: &B::Device) -> Param<Tensor<B, 1>> {
    Param::from_tensor(Tensor::random(
        [width],
        burn::tensor::Distribution::Normal(0.0, 0.02),
        device,
    ))
}

/// `tokens [b, t, w]` with each hidden one (`masked [b, t]` = 1) replaced by the mask
/// embedding.
pub(crate) fn hide<B: Backend>(
    tokens: Tensor<B, 3>,
    masked: Tensor<B, 2>,
    mask: &Param<Tensor<B, 1>>,
) -> Tensor<B, 3> {
    let w = tokens.dims()[2];
    let m = masked.unsqueeze_dim::<3>(2);
    tokens * (m.clone().neg() + 1.0) + mask.val().reshape([1, 1, w]) * m
}

pub(crate) fn float2<B: Backend>(v: Vec<f32>, shape: [usize; 2], d: &B::Device) -> Tensor<B, 2> {
    Tensor::from_data(TensorData::new(v, shape), d)
}

pub(crate) fn float3<B: Backend>(v: Vec<f32>, shape: [usize; 3], d: &B::Device) -> Tensor<B, 3> {
    Tensor::from_data(TensorData::new(v, shape), d)
}

pub(crate) fn ints1<B: Backend>(v: Vec<i64>, d: &B::Device) -> Tensor<B, 1, Int> {
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), d)
}

pub(crate) fn bools2<B: Backend>(
    v: Vec<bool>,
    shape: [usize; 2],
    d: &B::Device,
) -> Tensor<B, 2, Bool> {
    Tensor::from_data(TensorData::new(v, shape), d)
}

/// Σ values·weights / Σ weights (0 when nothing is weighted).
pub(crate) fn weighted_mean<B: Backend, const D: usize>(
    values: Tensor<B, D>,
    weights: Tensor<B, D>,
) -> Tensor<B, 1> {
    (values * weights.clone()).sum() / weights.sum().clamp_min(1e-6)
}

/// Each token's state beside the material's features, `[b, t, w]` and `[b, o]` →
/// `[b, t, w + o]`: the input of the blocks' per-token pretext heads.
pub(crate) fn beside_features<B: Backend>(
    states: Tensor<B, 3>,
    features: Tensor<B, 2>,
) -> Tensor<B, 3> {
    let tokens = states.dims()[1];
    let repeated = features.unsqueeze_dim::<3>(1).repeat_dim(1, tokens);
    Tensor::cat(vec![states, repeated], 2)
}

/// Cross-entropy of `logits [n, classes]` against `targets [n]`, weighted per row.
pub(crate) fn weighted_cross_entropy<B: Backend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    weights: Tensor<B, 1>,
) -> Tensor<B, 1> {
    let n = targets.dims()[0];
    let nll = log_softmax(logits, 1)
        .gather(1, targets.reshape([n, 1]))
        .reshape([n])
        .neg();
    weighted_mean(nll, weights)
}

/// Mean over the items where `valid` is 1: `[b, t, d]`, `[b, t]` → `[b, d]`.
pub(crate) fn masked_mean<B: Backend>(x: Tensor<B, 3>, valid: Tensor<B, 2>) -> Tensor<B, 2> {
    let w = valid.unsqueeze_dim::<3>(2);
    (x * w.clone()).sum_dim(1).squeeze_dim::<2>(1) / w.sum_dim(1).squeeze_dim::<2>(1).clamp_min(1.0)
}

/// Gaussian radial basis of distances `[...]` → `[..., k]` on centres 0…`max` Å.
pub(crate) fn radial_basis<B: Backend>(dist: Tensor<B, 3>, k: usize, max: f64) -> Tensor<B, 4> {
    let device = dist.device();
    let step = max / (k - 1) as f64;
    let centres: Vec<f32> = (0..k).map(|i| (i as f64 * step) as f32).collect();
    let centres =
        Tensor::<B, 1>::from_data(TensorData::new(centres, [k]), &device).reshape([1, 1, 1, k]);
    let d = dist.unsqueeze_dim::<4>(3) - centres;
    (d.powi_scalar(2) * (-0.5 / (step * step))).exp()
}

/// Per-site (cos 2πx, sin 2πx) of fractional coordinates: continuous across the cell edge.
pub(crate) fn periodic_coordinates(frac: Vec3) -> [f32; 6] {
    let t = std::f64::consts::TAU;
    [
        (t * frac[0]).cos() as f32,
        (t * frac[0]).sin() as f32,
        (t * frac[1]).cos() as f32,
        (t * frac[1]).sin() as f32,
        (t * frac[2]).cos() as f32,
        (t * frac[2]).sin() as f32,
    ]
}

/// Occupied sites of each sample (first `max` of them), with pairwise periodic distances;
/// what Blocks 3 and 4 both start from.
pub(crate) struct SiteGraphs {
    /// Sites per sample: (site row, element column).
    pub sites: Vec<Vec<(usize, usize)>>,
    /// Padded width: the most sites in the batch (at least 1).
    pub width: usize,
    /// `[b, width, width]` distances in Å (0 for padding).
    pub distances: Vec<f32>,
    pub coordinates: Vec<Vec<Vec3>>,
}

impl SiteGraphs {
    pub fn new(samples: &[FtcpSample]) -> Self {
        let sites: Vec<Vec<(usize, usize)>> = samples.iter().map(|s| s.occupied_sites()).collect();
        let width = sites.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut distances = vec![0f32; samples.len() * width * width];
        let mut coordinates = Vec::with_capacity(samples.len());
        for (b, (s, list)) in samples.iter().zip(&sites).enumerate() {
            let lattice = s.lattice();
            let frac: Vec<Vec3> = list.iter().map(|&(site, _)| s.coordinates(site)).collect();
            for i in 0..frac.len() {
                for j in 0..frac.len() {
                    if i != j {
                        distances[(b * width + i) * width + j] =
                            periodic_distance(&lattice, frac[i], frac[j]) as f32;
                    }
                }
            }
            coordinates.push(frac);
        }
        Self {
            sites,
            width,
            distances,
            coordinates,
        }
    }

    /// `[b, width]`: 1 for a real site.
    pub fn valid(&self) -> Vec<f32> {
        let mut v = vec![0f32; self.sites.len() * self.width];
        for (b, list) in self.sites.iter().enumerate() {
            for i in 0..list.len() {
                v[b * self.width + i] = 1.0;
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_fill_2048_columns_in_order() {
        let dims: Vec<usize> = BlockKind::ALL.iter().map(|k| k.output_dim()).collect();
        assert_eq!(dims, [256, 256, 512, 256, 512, 256]);
        assert_eq!(dims.iter().sum::<usize>(), FEATURE_DIM);
        assert_eq!(BlockKind::StructureFactors.offset(), 2048 - 256);
        assert_eq!(BlockKind::from_number(3), Some(BlockKind::Sites));
        assert_eq!(BlockKind::from_number(7), None);
    }

    #[test]
    fn each_materials_features_are_centred_to_unit_variance() {
        type B = crate::device::NdArray;
        // Block 6's scale (about 1e-3), a constant row, and a large one; expected values
        // from numpy's (r - r.mean()) / r.std().
        let rows = [
            [1e-3f32, 3e-3, -2e-3, 2e-3],
            [5.0, 5.0, 5.0, 5.0],
            [10.0, -10.0, 0.0, 40.0],
        ];
        let x =
            Tensor::<B, 2>::from_data(TensorData::new(rows.concat(), [3, 4]), &Default::default());
        let got = per_material_normalized(x)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let expected = [
            0.0, 1.06904, -1.60357, 0.53452, 0.0, 0.0, 0.0, 0.0, 0.0, -1.06904, -0.53452, 1.60357,
        ];
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-4, "{got:?}");
        }
    }

    #[test]
    fn periodic_distance_takes_the_nearest_image() {
        let cubic = Lattice::from_parameters(4.0, 4.0, 4.0, 90.0, 90.0, 90.0);
        let d = periodic_distance(&cubic, [0.05, 0.0, 0.0], [0.95, 0.0, 0.0]);
        assert!((d - 0.4).abs() < 1e-9, "{d}");
        let d = periodic_distance(&cubic, [0.0; 3], [0.5, 0.5, 0.5]);
        assert!((d - 12f64.sqrt()).abs() < 1e-9, "{d}");
    }
}
