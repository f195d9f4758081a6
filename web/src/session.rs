//! A bundle opened in the browser: embedding, search, zero-shot scoring, fine-tuning and
//! export, all through core (`xtal_core::bundle`, `xtal_core::train::fine_tune`) on WebGPU or
//! the CPU. Tensors are read back with `into_data_async` only.

use std::cell::RefCell;
use std::rc::Rc;

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde_json::json;
use wasm_bindgen::prelude::*;
use xtal_core::bundle::{
    Bundle, BundledModel, Limits, Provenance, RetrievalIndex, Side, WEIGHTS, rfc3339,
};
use xtal_core::device::{Flex, NdArray, Wgpu, copy_params_async};
use xtal_core::models::clip::Clip;
use xtal_core::models::ftcp_ssl::SslEncoder;
use xtal_core::models::property::PropertyModel;
use xtal_core::train::spec::Modality;
use xtal_core::train::{FineTune, FineTuneReport, FineTuneSettings, parse_pairs_csv};

use crate::{DeviceInfo, open_device};

/// The bundle's model on one backend: a CLIP model (embedding, search, zero-shot,
/// fine-tuning), a property model (prediction) or the SSL blocks (features).
// One per session, cloned only as tensor handles: boxing would save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Loaded<B: Backend> {
    Clip(Clip<B>),
    Property(PropertyModel<B>),
    Ssl(SslEncoder<B>),
}

impl<B: Backend> Loaded<B> {
    fn new(bundle: &Bundle, device: &B::Device) -> Result<Self, JsError> {
        Ok(match &bundle.manifest.model.model {
            BundledModel::Clip(_) => Self::Clip(bundle.model(device).map_err(js)?),
            BundledModel::Property(..) => {
                Self::Property(bundle.property_model(device).map_err(js)?)
            }
            BundledModel::Ssl(_) => Self::Ssl(bundle.ssl_model(device).map_err(js)?),
        })
    }

    fn clip(self) -> Result<Clip<B>, JsError> {
        match self {
            Self::Clip(m) => Ok(m),
            Self::Property(_) => Err(js(
                "this bundle holds a property model: it predicts a property from a CIF; embedding, search and fine-tuning need a CLIP bundle",
            )),
            Self::Ssl(_) => Err(js(
                "this bundle holds the SSL encoder: it turns a CIF into 2048-D features; embedding, search and fine-tuning need a CLIP bundle",
            )),
        }
    }

    fn property(self) -> Result<PropertyModel<B>, JsError> {
        match self {
            Self::Property(m) => Ok(m),
            Self::Clip(_) | Self::Ssl(_) => Err(js(
                "this bundle holds no property model; predicting a property needs a property bundle",
            )),
        }
    }

    fn ssl(self) -> Result<SslEncoder<B>, JsError> {
        match self {
            Self::Ssl(m) => Ok(m),
            _ => Err(js(
                "this bundle holds no SSL encoder; 2048-D features need an SSL bundle",
            )),
        }
    }
}

/// The current model on the chosen backend (inference only; fine-tunes wrap it in Autodiff).
// One per session, cloned only as tensor handles: boxing would save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Model {
    Flex(Loaded<Flex>),
    NdArray(Loaded<NdArray>),
    WebGpu(Loaded<Wgpu>),
}

impl From<Clip<Flex>> for Model {
    fn from(m: Clip<Flex>) -> Self {
        Self::Flex(Loaded::Clip(m))
    }
}
impl From<Clip<NdArray>> for Model {
    fn from(m: Clip<NdArray>) -> Self {
        Self::NdArray(Loaded::Clip(m))
    }
}
impl From<Clip<Wgpu>> for Model {
    fn from(m: Clip<Wgpu>) -> Self {
        Self::WebGpu(Loaded::Clip(m))
    }
}

/// Runs `$body` (an async expression over `$model: Loaded<B>`, `$device: B::Device`, with `B`
/// the backend) on whichever backend the session uses.
macro_rules! on_backend {
    ($model_value:expr, |$model:ident, $device:ident, $b:ident| $body:expr) => {
        match $model_value {
            Model::Flex($model) => {
                type $b = Flex;
                #[allow(unused_variables)]
                let $device = burn_flex::FlexDevice;
                $body.await
            }
            Model::NdArray($model) => {
                type $b = NdArray;
                #[allow(unused_variables)]
                let $device = burn_ndarray::NdArrayDevice::Cpu;
                $body.await
            }
            Model::WebGpu($model) => {
                type $b = Wgpu;
                #[allow(unused_variables)]
                let $device = burn_wgpu::WgpuDevice::DefaultDevice;
                $body.await
            }
        }
    };
}

fn js(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

async fn read<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f32>, JsError> {
    let data = t
        .into_data_async()
        .await
        .map_err(|e| js(format!("reading a result from the device failed: {e:?}")))?;
    data.convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| js(format!("{e:?}")))
}

/// A verified bundle and its model on one device.
#[wasm_bindgen]
pub struct Session {
    bundle: Bundle,
    device: DeviceInfo,
    model: RefCell<Model>,
    /// The bundle's index with text embeddings as the current model makes them (replaced
    /// after a fine-tune: the bundle's own are then stale).
    index: RefCell<Option<Rc<RetrievalIndex>>>,
    /// Reports of the fine-tunes applied since loading.
    fine_tunes: RefCell<Vec<FineTuneReport>>,
}

#[wasm_bindgen]
impl Session {
    /// Verify `bytes` as a bundle and build its model on `device` (`"auto"`, `"webgpu"`,
    /// `"cpu"` or `"cpu:ndarray"`). A bad bundle throws an error naming the entry or field.
    pub async fn load(bytes: Vec<u8>, device: String) -> Result<Session, JsError> {
        let mut bundle = Bundle::from_bytes(&bytes, &Limits::default()).map_err(js)?;
        drop(bytes);
        let (info, model) = if device == "cpu:ndarray" {
            let info = DeviceInfo {
                kind: "cpu".into(),
                description: "CPU (burn-ndarray in wasm)".into(),
                fallback_reason: None,
            };
            let model = Loaded::new(&bundle, &burn_ndarray::NdArrayDevice::Cpu)?;
            (info, Model::NdArray(model))
        } else {
            let info = open_device(device).await?;
            let model = if info.kind == "webgpu" {
                Model::WebGpu(Loaded::new(&bundle, &burn_wgpu::WgpuDevice::DefaultDevice)?)
            } else {
                Model::Flex(Loaded::new(&bundle, &burn_flex::FlexDevice)?)
            };
            (info, model)
        };
        let index = bundle.index.take().map(Rc::new);
        Ok(Session {
            bundle,
            device: info,
            model: RefCell::new(model),
            index: RefCell::new(index),
            fine_tunes: RefCell::new(Vec::new()),
        })
    }

    /// Where the model runs.
    #[wasm_bindgen(getter)]
    pub fn device(&self) -> DeviceInfo {
        self.device.clone()
    }

    /// JSON: the manifest's essentials, what the bundle can do, its card.
    pub fn summary(&self) -> String {
        let m = &self.bundle.manifest;
        let (clip, property) = match &m.model.model {
            BundledModel::Clip(c) => (Some(c), None),
            BundledModel::Property(c, target) => (None, Some((c, target))),
            BundledModel::Ssl(_) => (None, None),
        };
        json!({
            "format_version": m.format_version,
            "xtal_version": m.xtal_version,
            "created": m.created,
            "kind": m.model.model.kind(),
            "parameters": m.model.parameters,
            "embed_dim": m.model.embed_dim,
            "weights_dtype": m.model.weights_dtype,
            "text": clip.map(|c| &c.text),
            "text_encoder": clip.map(|c| c.text.describe()),
            "target": property.map(|(_, t)| t),
            "structure_input": m.structure_input.kind,
            "graph": m.model.model.graph_encoder(),
            "can_embed_cif": clip.is_some() && self.bundle.structure_input.reads_cif(),
            "can_predict": property.is_some(),
            "can_extract_features": matches!(m.model.model, BundledModel::Ssl(_)),
            "tensor_head": m.tensor_head.as_ref().map(|h| json!({
                "modality": h.modality,
                "mode": h.targets.mode.name(),
                "components": h.targets.mode.component_names(),
            })),
            "blocks": self.bundle.ssl_config().ok().map(|c| {
                c.blocks
                    .iter()
                    .map(|b| json!({"kind": b.kind.name(), "width": b.width, "layers": b.layers, "dim": b.kind.output_dim()}))
                    .collect::<Vec<_>>()
            }),
            "index": m.index,
            "size": self.bundle.size,
            "card": self.bundle.card,
            "source": m.source,
            "fine_tunes": self.fine_tunes.borrow().len(),
        })
        .to_string()
    }

    /// JSON `{ids, formulas, descriptions, has_structure}` of the index (or `null`). The
    /// structures themselves stay here until one is asked for ([`Session::structure_cif`]):
    /// an index's CIFs can be tens of megabytes.
    pub fn records(&self) -> String {
        match self.current_index() {
            Some(index) => {
                let r = &index.records;
                json!({
                    "ids": r.ids,
                    "formulas": r.formulas,
                    "descriptions": r.descriptions,
                    "has_structure": r.structures.as_ref().map(|s| {
                        s.iter().map(Option::is_some).collect::<Vec<_>>()
                    }),
                })
                .to_string()
            }
            None => "null".into(),
        }
    }

    /// The P1 CIF of index entry `row`, where the bundle carries it.
    #[wasm_bindgen(js_name = structureCif)]
    pub fn structure_cif(&self, row: usize) -> Option<String> {
        let index = self.current_index()?;
        index.records.structures.as_ref()?.get(row)?.clone()
    }

    /// The index's 2-D map, `[x0, y0, x1, y1, …]`, if it has one.
    #[wasm_bindgen(js_name = mapPoints)]
    pub fn map_points(&self) -> Option<Vec<f32>> {
        self.current_index().and_then(|i| i.map.clone())
    }

    /// Unit embeddings of `texts`, row-major `[texts, embed_dim]`.
    #[wasm_bindgen(js_name = embedTexts)]
    pub async fn embed_texts(&self, texts: Vec<String>) -> Result<Vec<f32>, JsError> {
        let model = self.model.borrow().clone();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        on_backend!(model, |model, device, B| async {
            read(
                self.bundle
                    .embed_texts::<B>(&model.clip()?, &refs, &device)
                    .map_err(js)?,
            )
            .await
        })
    }

    /// A bundle with a pretrained text encoder: its own unit sentence embeddings, row-major
    /// `[texts, hidden]` (pooled, before CLIP's projection: for all-MiniLM-L6-v2, what
    /// sentence-transformers and transformers.js return).
    #[wasm_bindgen(js_name = sentenceEmbeddings)]
    pub async fn sentence_embeddings(&self, texts: Vec<String>) -> Result<Vec<f32>, JsError> {
        let model = self.model.borrow().clone();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        on_backend!(model, |model, device, B| async {
            read(
                self.bundle
                    .sentence_embeddings::<B>(&model.clip()?, &refs, &device)
                    .map_err(js)?,
            )
            .await
        })
    }

    /// Unit embedding `[embed_dim]` of the first structure in a CIF.
    #[wasm_bindgen(js_name = embedCif)]
    pub async fn embed_cif(&self, cif: String) -> Result<Vec<f32>, JsError> {
        let item = self.bundle.structure_input.from_cif(&cif).map_err(js)?;
        let model = self.model.borrow().clone();
        on_backend!(model, |model, device, B| async {
            let embedded = self
                .bundle
                .embed_structures::<B>(&model.clip()?, &[item], &device)
                .map_err(js)?;
            read(embedded).await
        })
    }

    /// A property bundle's prediction for the first structure in a CIF. JSON
    /// `{target, source, prediction}` (the target's units).
    pub async fn predict(&self, cif: String) -> Result<String, JsError> {
        let (_, target) = self.bundle.property().map_err(js)?;
        let item = self.bundle.structure_input.from_cif(&cif).map_err(js)?;
        let model = self.model.borrow().clone();
        let standardized = on_backend!(model, |model, device, B| async {
            let z = self
                .bundle
                .predict_standardized::<B>(&model.property()?, &[item], &device)
                .map_err(js)?;
            read(z).await
        })?;
        let z = standardized.first().copied().unwrap_or(f32::NAN);
        Ok(json!({
            "target": target.name,
            "source": target.source,
            "prediction": target.scale.invert(f64::from(z)),
        })
        .to_string())
    }

    /// A CLIP bundle's tensor head on `input`: the first structure of a CIF (a head over
    /// structure embeddings) or a description (over text embeddings). JSON `{modality, mode,
    /// components: [{name, value}]}` in the tensor's units, as `xtal predict` prints them.
    #[wasm_bindgen(js_name = predictTensor)]
    pub async fn predict_tensor(&self, input: String) -> Result<String, JsError> {
        let head = self.bundle.tensor_head().map_err(js)?;
        if !self.fine_tunes.borrow().is_empty() {
            return Err(js(
                "the tensor head was trained on the original model's embeddings; open the bundle again to use it",
            ));
        }
        let item = match head.modality {
            Modality::Graph => Some(self.bundle.structure_input.from_cif(&input).map_err(js)?),
            Modality::Text => None,
        };
        let model = self.model.borrow().clone();
        let normalised = on_backend!(model, |model, device, B| async {
            let clip = model.clip()?;
            let embeddings = match item {
                Some(item) => self.bundle.embed_structures::<B>(&clip, &[item], &device),
                None => self
                    .bundle
                    .embed_texts::<B>(&clip, &[input.as_str()], &device),
            }
            .map_err(js)?;
            let head = self.bundle.tensor_head_model::<B>(&device).map_err(js)?;
            read(head.forward(embeddings)).await
        })?;
        let values = head.targets.decode(&normalised);
        let components: Vec<_> = head
            .targets
            .mode
            .component_names()
            .iter()
            .zip(values)
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect();
        Ok(json!({
            "modality": head.modality,
            "mode": head.targets.mode.name(),
            "components": components,
        })
        .to_string())
    }

    /// An SSL bundle's 2048-D features of the first structure in a CIF (each block's part
    /// in feature order, as `xtal embed --bundle B cif` and `xtal ssl extract` write them).
    pub async fn features(&self, cif: String) -> Result<Vec<f32>, JsError> {
        self.bundle.ssl_config().map_err(js)?;
        let item = self.bundle.structure_input.from_cif(&cif).map_err(js)?;
        let model = self.model.borrow().clone();
        on_backend!(model, |model, device, B| async {
            let features = self
                .bundle
                .ssl_features::<B>(&model.ssl()?, &[item], &device)
                .map_err(js)?;
            read(features).await
        })
    }

    /// Top-`k` index entries for a text query (against structure embeddings). JSON
    /// `{results: [{rank, row, id, formula, score, description}], map_position}`.
    pub async fn search(&self, query: String, k: usize) -> Result<String, JsError> {
        let vector = self.embed_texts(vec![query]).await?;
        self.search_vector(&vector, k, Side::Structure, Side::Structure)
    }

    /// Nearest descriptions for a CIF (against the index's text embeddings); same JSON.
    #[wasm_bindgen(js_name = searchCif)]
    pub async fn search_cif(&self, cif: String, k: usize) -> Result<String, JsError> {
        let vector = self.embed_cif(cif).await?;
        self.search_vector(&vector, k, Side::Text, Side::Structure)
    }

    /// Zero-shot scoring: how well each phrase describes the CIF's structure. JSON list of
    /// `{phrase, score (cosine), probability (softmax at the model's temperature)}`, best first.
    #[wasm_bindgen(js_name = zeroShot)]
    pub async fn zero_shot(&self, cif: String, phrases: Vec<String>) -> Result<String, JsError> {
        if phrases.is_empty() {
            return Err(js("give at least one phrase"));
        }
        let structure = self.embed_cif(cif).await?;
        let texts = self.embed_texts(phrases.clone()).await?;
        let scale = self.logit_scale().await?;
        let rows = xtal_core::bundle::zero_shot(&structure, &phrases, &texts, scale);
        serde_json::to_string(&rows).map_err(js)
    }

    /// Fine-tune the text projection and temperature (and, with `layer_norms`, the text
    /// LayerNorms) on a CSV of pairs (`id,text` or `text_a,text_b`). `settings` is JSON
    /// (`steps`, `batch_size`, `learning_rate`, `weight_decay`, `layer_norms`, `seed`; all
    /// optional); `on_step(step, loss)` is called after every step. Returns the report (JSON).
    #[wasm_bindgen(js_name = fineTune)]
    pub async fn fine_tune(
        &self,
        csv: String,
        settings: String,
        on_step: js_sys::Function,
    ) -> Result<String, JsError> {
        let settings: FineTuneSettings = if settings.trim().is_empty() {
            FineTuneSettings::default()
        } else {
            serde_json::from_str(&settings).map_err(|e| js(format!("fine-tune settings: {e}")))?
        };
        let pairs = parse_pairs_csv(&csv, self.current_index().as_deref()).map_err(js)?;
        let model = self.model.borrow().clone();
        let (tuned, report) = on_backend!(model, |model, device, B| async {
            let (tuned, report) = self
                .fine_tune_on::<Autodiff<B>>(
                    Clip::from_inner(model.clip()?),
                    pairs,
                    settings,
                    &on_step,
                )
                .await?;
            Ok::<_, JsError>((Model::from(tuned), report))
        })?;
        *self.model.borrow_mut() = tuned;
        let index = self.current_index();
        if let Some(index) = index {
            let described: Vec<String> = index
                .described_texts()
                .into_iter()
                .map(String::from)
                .collect();
            let text = self.embed_texts(described).await?;
            let refreshed = index.with_text_embeddings(&text).map_err(js)?;
            *self.index.borrow_mut() = Some(Rc::new(refreshed));
        }
        let json = serde_json::to_string(&report).map_err(js)?;
        self.fine_tunes.borrow_mut().push(report);
        Ok(json)
    }

    /// The current model (fine-tuned or not) as a new bundle: f32 weights, the index's text
    /// embeddings as the current model makes them, the fine-tunes recorded in the manifest
    /// and the card.
    #[wasm_bindgen(js_name = exportBundle)]
    pub async fn export_bundle(&self) -> Result<Vec<u8>, JsError> {
        let index = self.current_index();
        let reports = self.fine_tunes.borrow().clone();
        let note: String = reports
            .iter()
            .map(|r| r.card_section("in the browser"))
            .collect::<Vec<_>>()
            .join("\n");
        let provenance = Provenance {
            created: rfc3339((js_sys::Date::now() / 1000.0) as u64),
            xtal_version: env!("CARGO_PKG_VERSION").into(),
            source: json!({"fine_tune": reports, "base": self.bundle.manifest.source}),
        };
        let model = self.model.borrow().clone();
        let bytes = match model {
            Model::Flex(m) => self
                .bundle
                .repack(&m.clip()?, index.as_deref(), &note, provenance),
            Model::NdArray(m) => {
                self.bundle
                    .repack(&m.clip()?, index.as_deref(), &note, provenance)
            }
            // burn-store reads tensors synchronously, which WebGPU cannot: copy to the CPU first.
            Model::WebGpu(m) => {
                let cpu = self
                    .bundle
                    .clip_config()
                    .map_err(js)?
                    .init::<Flex>(&burn_flex::FlexDevice);
                let cpu = copy_params_async(&m.clip()?, cpu, &burn_flex::FlexDevice)
                    .await
                    .map_err(js)?;
                self.bundle
                    .repack(&cpu, index.as_deref(), &note, provenance)
            }
        };
        bytes.map_err(js)
    }
}

impl Session {
    fn current_index(&self) -> Option<Rc<RetrievalIndex>> {
        self.index.borrow().clone()
    }

    async fn logit_scale(&self) -> Result<f64, JsError> {
        let model = self.model.borrow().clone();
        let scale = on_backend!(model, |model, device, B| async {
            read::<B, 1>(model.clip()?.logit_scale.val()).await
        })?;
        Ok(xtal_core::bundle::temperature_scale(
            scale.first().copied().unwrap_or(0.0),
        ))
    }

    fn search_vector(
        &self,
        vector: &[f32],
        k: usize,
        against: Side,
        placed_by: Side,
    ) -> Result<String, JsError> {
        let index = self
            .current_index()
            .ok_or_else(|| js("this bundle has no retrieval index"))?;
        let hits = index.search(vector, k, against).map_err(js)?;
        // The map is of structure embeddings: place a query by its structure-side neighbours.
        let neighbours = index.search(vector, 10, placed_by).unwrap_or_default();
        let results: Vec<_> = hits.iter().map(|h| index.hit_json(h)).collect();
        Ok(json!({
            "results": results,
            "against": against,
            "map_position": index.map_position(&neighbours),
        })
        .to_string())
    }

    async fn fine_tune_on<B: AutodiffBackend>(
        &self,
        model: Clip<B>,
        pairs: xtal_core::train::FineTunePairs,
        settings: FineTuneSettings,
        on_step: &js_sys::Function,
    ) -> Result<(Clip<B::InnerBackend>, FineTuneReport), JsError> {
        let mut tune = FineTune::new(
            model,
            self.bundle.tokenizer().map_err(js)?.clone(),
            pairs,
            self.current_index().as_deref(),
            settings,
        )
        .map_err(js)?;
        let base = self
            .bundle
            .manifest
            .entry(WEIGHTS)
            .map(|e| e.sha256.clone());
        let report = tune
            .run(base, |step, loss| {
                on_step
                    .call2(
                        &JsValue::NULL,
                        &JsValue::from(step as u32),
                        &JsValue::from(loss),
                    )
                    .map(|_| ())
                    .map_err(|e| format!("the step callback threw: {e:?}"))
            })
            .await
            .map_err(js)?;
        Ok((tune.model().map_err(js)?, report))
    }
}
