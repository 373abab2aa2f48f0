#!/usr/bin/python3
"""Independent reference for xcaption's caption metrics (src/eval/metrics.cpp).

Computes corpus BLEU-1..4 (coco-caption's "closest" reference length, its 1e-15 / 1e-9 guards) and
CIDEr-D (n = 1..4, sigma 6, document frequencies over the evaluated set's references, clipped
tf-idf, bigram-count length, x10) for a few small caption sets, and writes them as a JSON fixture
for tests/unit/test_eval.cpp.

usage: /usr/bin/python3 tools/eval_metrics_reference.py > tests/data/eval/metrics_reference.json
"""
import json
import math
import re
import sys
from collections import Counter


def words(caption):
    # lower-case; "," a token of its own; "." dropped; whitespace separates
    spaced = re.sub(r",", " , ", caption.lower().replace(".", " "))
    return spaced.split()


def grams(tokens, n):
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu(cands, refsets, max_n=4):
    correct = [0] * max_n
    total = [0] * max_n
    c_len = 0
    r_len = 0
    for cand, refs in zip(cands, refsets):
        c = words(cand)
        rs = [words(r) for r in refs]
        c_len += len(c)
        # closest reference length, the shorter one on a tie
        r_len += sorted((abs(len(r) - len(c)), len(r)) for r in rs)[0][1]
        for n in range(1, max_n + 1):
            cg = grams(c, n)
            best = Counter()
            for r in rs:
                best |= grams(r, n)  # element-wise max
            correct[n - 1] += sum(min(k, best[g]) for g, k in cg.items())
            total[n - 1] += max(0, len(c) - n + 1)
    ratio = (c_len + 1e-15) / (r_len + 1e-9)
    bp = math.exp(1 - 1 / ratio) if ratio < 1 else 1.0
    out = []
    log_sum = 0.0
    for n in range(max_n):
        log_sum += math.log((correct[n] + 1e-15) / (total[n] + 1e-9))
        out.append(math.exp(log_sum / (n + 1)) * bp)
    return {"bleu": out, "correct": correct, "guess": total, "candidate_length": c_len,
            "reference_length": r_len, "brevity_penalty": bp}


def cider_d(cands, refsets, sigma=6.0, max_n=4):
    images = len(refsets)
    df = Counter()
    for refs in refsets:
        present = set()
        for r in refs:
            t = words(r)
            for n in range(1, max_n + 1):
                present.update(grams(t, n).keys())
        df.update(present)
    log_images = math.log(images)

    def vectors(tokens):
        vecs = []
        for n in range(1, max_n + 1):
            vecs.append({g: k * (log_images - math.log(max(1.0, df[g]))) for g, k in grams(tokens, n).items()})
        return vecs, max(0, len(tokens) - 1)

    scores = []
    for cand, refs in zip(cands, refsets):
        cv, cl = vectors(words(cand))
        acc = 0.0
        for r in refs:
            rv, rl = vectors(words(r))
            penalty = math.exp(-((cl - rl) ** 2) / (2 * sigma * sigma))
            per_n = []
            for a, b in zip(cv, rv):
                na = math.sqrt(sum(v * v for v in a.values()))
                nb = math.sqrt(sum(v * v for v in b.values()))
                if na == 0 or nb == 0:
                    per_n.append(0.0)
                    continue
                dot = sum(min(v, b.get(g, 0.0)) * b.get(g, 0.0) for g, v in a.items())
                per_n.append(dot / (na * nb) * penalty)
            acc += sum(per_n) / max_n
        scores.append(10.0 * acc / len(refs))
    return {"mean": sum(scores) / len(scores), "per_image": scores}


CASES = [
    {
        "name": "shapes mixed",
        "candidates": [
            "a large red circle",
            "a small blue square to the left of a large green star",
            "a red circle, a blue square and a green triangle",
            "an orange diamond",
            "a small white cross above a large black circle.",
            "a yellow star",
        ],
        "references": [
            ["a large red circle"],
            ["a small blue square to the left of a large green star",
             "a large green star to the right of a small blue square"],
            ["a red circle, a blue square and a green triangle"],
            ["a small orange diamond"],
            ["a large black circle below a small white cross",
             "a small white cross above a large black circle"],
            ["a large purple star"],
        ],
    },
    {
        "name": "partial matches and length penalty",
        "candidates": [
            "a large red circle to the left of a small red circle",
            "a circle",
            "a large blue square and a large blue square, a red star",
        ],
        "references": [
            ["a large red circle to the left of a small green circle",
             "a small green circle to the right of a large red circle"],
            ["a large red circle", "a small red circle"],
            ["a blue square, a red star and a green cross"],
        ],
    },
    {
        "name": "no overlap",
        "candidates": ["purple", "cross cross cross"],
        "references": [["a large red circle"], ["a small green star", "a green star"]],
    },
]


def main():
    out = []
    for case in CASES:
        out.append({
            "name": case["name"],
            "candidates": case["candidates"],
            "references": case["references"],
            "bleu": bleu(case["candidates"], case["references"]),
            "cider_d": cider_d(case["candidates"], case["references"]),
        })
    json.dump({"generator": "tools/eval_metrics_reference.py", "cases": out}, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
