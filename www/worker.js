// xtal's WebAssembly runs here, off the page's thread, so the page stays responsive while a
// bundle loads, a query embeds or a fine-tune trains. One request at a time, in order.
import init, { openDevice, Session } from "./pkg/xtal_web.js";

Error.stackTraceLimit = 64;
let session = null;
let ready = null;
let queue = Promise.resolve();
let current = null;
let panicMessage = null;

// A panic is a bug in xtal: report its message for the request that hit it. The module's
// state is not trusted afterwards; the page starts a new worker.
globalThis.xtalPanic = (message) => { panicMessage = message; };
addEventListener("error", (e) => {
  e.preventDefault();
  postMessage({ id: current, ok: false, fatal: true, error: panicMessage ?? String(e.message) });
});

const ops = {
  async load({ bytes, device }) {
    if (session) session.free();
    session = null;
    session = await Session.load(new Uint8Array(bytes), device);
    const d = session.device;
    return {
      device: { kind: d.kind, description: d.description, fallbackReason: d.fallbackReason ?? null },
      summary: JSON.parse(session.summary()),
      records: JSON.parse(session.records()),
      map: session.mapPoints() ?? null,
    };
  },
  async probeDevice({ device }) {
    const d = await openDevice(device);
    return { kind: d.kind, description: d.description, fallbackReason: d.fallbackReason ?? null };
  },
  async embedTexts({ texts }) { return Array.from(await need().embedTexts(texts)); },
  async embedCif({ cif }) { return Array.from(await need().embedCif(cif)); },
  async search({ query, k }) { return JSON.parse(await need().search(query, k)); },
  async searchCif({ cif, k }) { return JSON.parse(await need().searchCif(cif, k)); },
  async zeroShot({ cif, phrases }) { return JSON.parse(await need().zeroShot(cif, phrases)); },
  async predict({ cif }) { return JSON.parse(await need().predict(cif)); },
  async predictTensor({ input }) { return JSON.parse(await need().predictTensor(input)); },
  async structure({ row }) { return need().structureCif(row) ?? null; },
  async features({ cif }) { return Array.from(await need().features(cif)); },
  async fineTune({ csv, settings }, id) {
    const onStep = (step, loss) => postMessage({ id, progress: { step, loss } });
    const report = JSON.parse(await need().fineTune(csv, JSON.stringify(settings), onStep));
    return { report, summary: JSON.parse(session.summary()) };
  },
  async exportBundle() { return await need().exportBundle(); },
};

function need() {
  if (!session) throw new Error("no bundle is open");
  return session;
}

onmessage = ({ data: { id, op, args } }) => {
  queue = queue.then(async () => {
    current = id;
    try {
      ready ??= init();
      await ready;
      const result = await ops[op](args, id);
      const transfer = result instanceof Uint8Array ? [result.buffer] : [];
      postMessage({ id, ok: true, result }, transfer);
    } catch (e) {
      postMessage({ id, ok: false, error: panicMessage ?? String(e?.message ?? e) });
    }
  });
};
