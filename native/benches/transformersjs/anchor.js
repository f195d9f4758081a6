// One side of the anchor per page load: opens all-MiniLM-L6-v2 with xtal (a bundle) or with
// transformers.js (the ONNX export), then embeds the reference sentences one at a time and all
// at once. Times are performance.now() (milliseconds since the page's navigation began), so
// `readyMs` is page open → model ready. The result lands in window.anchorResult.
const params = new URLSearchParams(location.search);
const side = params.get("side");
const device = params.get("device");
const status = document.getElementById("status");

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

// Each side: a function from sentences to their unit embeddings (one Float32Array per call).
async function openXtal() {
  const { default: init, Session } = await import("/www/pkg/xtal_web.js");
  await init();
  const bytes = new Uint8Array(await (await fetch(params.get("bundle"))).arrayBuffer());
  const session = await Session.load(bytes, device);
  return {
    describe: `xtal ${session.device.kind}: ${session.device.description}`,
    embed: async (texts) => session.sentenceEmbeddings(texts),
  };
}

async function openTransformersJs() {
  const root = "/native/benches/transformersjs/node_modules";
  const { env, pipeline } = await import(`${root}/@huggingface/transformers/dist/transformers.min.js`);
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = params.get("models");
  env.useBrowserCache = false; // every load is a cold one, as for xtal
  env.backends.onnx.wasm.wasmPaths = `${root}/onnxruntime-web/dist/`;
  const threads = Number(params.get("threads") || "1");
  env.backends.onnx.wasm.numThreads = threads;
  const dtype = params.get("dtype");
  const extractor = await pipeline("feature-extraction", "all-MiniLM-L6-v2", { device, dtype });
  return {
    describe: `transformers.js ${env.version} ${device} ${dtype}, ${threads} thread(s)`,
    embed: async (texts) => (await extractor(texts, { pooling: "mean", normalize: true })).data,
  };
}

async function run() {
  // `limit` keeps the first sentences only (SwiftShader's WebGPU takes seconds a sentence);
  // `passes` timed passes of one sentence per call and of the batch.
  const all = (await (await fetch(params.get("sentences"))).json()).sentences;
  const sentences = all.slice(0, Number(params.get("limit") || all.length));
  const passes = Number(params.get("passes") || "3");
  const model = side === "xtal" ? await openXtal() : await openTransformersJs();
  const readyMs = performance.now();
  status.textContent = `${model.describe}: embedding…`;

  let t = performance.now();
  await model.embed([sentences[0]]);
  const firstMs = performance.now() - t;

  // A warm-up pass, then the timed passes.
  const embeddings = [];
  for (const s of sentences) embeddings.push(Array.from(await model.embed([s])));
  const perSentence = [];
  for (let pass = 0; pass < passes; pass++) {
    for (const s of sentences) {
      t = performance.now();
      await model.embed([s]);
      perSentence.push(performance.now() - t);
    }
  }
  const batchMs = [];
  let batched = null;
  for (let pass = 0; pass < passes; pass++) {
    t = performance.now();
    batched = await model.embed(sentences);
    batchMs.push(performance.now() - t);
  }

  const resources = performance.getEntriesByType("resource").map((r) => ({
    url: new URL(r.name).pathname,
    bytes: r.encodedBodySize,
  }));
  return {
    side, device, describe: model.describe, readyMs, firstMs,
    perSentenceMedianMs: median(perSentence),
    batchMedianMs: median(batchMs),
    batchSize: sentences.length,
    embeddings,
    batched: Array.from(batched),
    resources,
    crossOriginIsolated: self.crossOriginIsolated,
  };
}

run().then(
  (result) => { status.textContent = "done"; window.anchorResult = { ok: result }; },
  (e) => { status.textContent = `failed: ${e}`; window.anchorResult = { error: String(e && e.stack || e) }; },
);
