// The page's handle on worker.js: each call is a promise; fine-tunes also report every step.
export class XtalClient {
  constructor() {
    this.pending = new Map();
    this.next = 1;
    this.start();
  }

  start() {
    this.worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
    this.worker.onmessage = ({ data }) => {
      if (data.fatal) return this.crashed(data.error);
      const call = this.pending.get(data.id);
      if (!call) return;
      if (data.progress) return call.onProgress?.(data.progress);
      this.pending.delete(data.id);
      data.ok ? call.resolve(data.result) : call.reject(new Error(data.error));
    };
    this.worker.onerror = (e) => this.crashed(e.message);
  }

  /** A crash (a bug in xtal) fails every pending call; a fresh worker takes the next ones. */
  crashed(message) {
    for (const call of this.pending.values()) call.reject(new Error(`${message} (the bundle must be opened again)`));
    this.pending.clear();
    this.worker.terminate();
    this.start();
  }

  call(op, args = {}, { transfer = [], onProgress } = {}) {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      this.worker.postMessage({ id, op, args }, transfer);
    });
  }

  /** Verify and load bundle bytes (an ArrayBuffer, transferred) on "auto" | "webgpu" | "cpu". */
  load(bytes, device = "auto") { return this.call("load", { bytes, device }, { transfer: [bytes] }); }
  embedTexts(texts) { return this.call("embedTexts", { texts }); }
  embedCif(cif) { return this.call("embedCif", { cif }); }
  search(query, k = 10) { return this.call("search", { query, k }); }
  searchCif(cif, k = 10) { return this.call("searchCif", { cif, k }); }
  zeroShot(cif, phrases) { return this.call("zeroShot", { cif, phrases }); }
  /** A property bundle's prediction for a CIF: {target, source, prediction}. */
  predict(cif) { return this.call("predict", { cif }); }
  /** A CLIP bundle's tensor head on a CIF (structure head) or a description (text head):
   *  {modality, mode, components: [{name, value}]}. */
  predictTensor(input) { return this.call("predictTensor", { input }); }
  /** The P1 CIF of index entry `row` (null where the bundle has none). */
  structure(row) { return this.call("structure", { row }); }
  /** An SSL bundle's 2048-D features of a CIF (numbers, each block's part in order). */
  features(cif) { return this.call("features", { cif }); }
  fineTune(csv, settings, onStep) {
    return this.call("fineTune", { csv, settings }, { onProgress: ({ step, loss }) => onStep?.(step, loss) });
  }
  /** The current model as bundle bytes (Uint8Array). */
  exportBundle() { return this.call("exportBundle"); }
}
