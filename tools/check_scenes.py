#!/usr/bin/python3
"""Independent check of a shapes-world data set written by xcaption::scenes::render_scenes.

Re-derives the caption rules of models/shapes-small/README-grammar.md in Python and checks every
scene of a scenes.jsonl against them and against its PNG:
  - grammar (regular expression), canonical caption first, relation from the centres (dominant axis
    with a ratio >= 1.3 in pixels and in canvas-normalised units), 3 objects named left to right with
    x gaps >= 12% of the width, size words present exactly when the 3 sizes are mixed;
  - boxes inside the canvas and separated, sizes in their classes;
  - the pixels around each centre are nearest (in RGB) to the object's colour anchor among the eight
    anchors, and the image size matches.
Usage: /usr/bin/python3 tools/check_scenes.py DIR [--limit N]
Exits 1 and prints the first problems when a check fails.
"""
import argparse
import json
import os
import re
import sys

from PIL import Image

ANCHORS = {
    "red": (215, 35, 35), "green": (40, 165, 55), "blue": (35, 75, 215), "yellow": (235, 215, 40),
    "purple": (135, 55, 175), "orange": (240, 135, 25), "white": (243, 243, 243), "black": (22, 22, 22),
}
SHAPES = "circle|square|triangle|star|diamond|cross"
COLORS = "|".join(ANCHORS)
OBJ = rf"an? (?:(?:small|large) )?(?:{COLORS}) (?:{SHAPES})"
CAPTION = re.compile(rf"^{OBJ}(?:| (?:to the left of|to the right of|above|below) {OBJ}|, {OBJ} and {OBJ})$")


def phrase(o, with_size):
    body = f"{o['size']} {o['color']} {o['shape']}" if with_size else f"{o['color']} {o['shape']}"
    return ("an " if body[0] in "aeiou" else "a ") + body


def expected_captions(scene):
    objs = scene["objects"]
    if len(objs) == 1:
        return [phrase(objs[0], True)]
    if len(objs) == 2:
        a, b = objs
        dx, dy = b["center"][0] - a["center"][0], b["center"][1] - a["center"][1]
        if abs(dx) > abs(dy):
            first, second = (a, b) if dx > 0 else (b, a)
            rel, inv = "to the left of", "to the right of"
        else:
            first, second = (a, b) if dy > 0 else (b, a)
            rel, inv = "above", "below"
        p, q = phrase(first, True), phrase(second, True)
        return [f"{p} {rel} {q}", f"{q} {inv} {p}"]
    ordered = sorted(objs, key=lambda o: o["center"][0])
    mixed = len({o["size"] for o in objs}) > 1
    p = [phrase(o, mixed) for o in ordered]
    return [f"{p[0]}, {p[1]} and {p[2]}"]


def check_scene(root, scene, problems):
    w, h, objs = scene["width"], scene["height"], scene["objects"]
    name = scene["file"]
    for c in scene["captions"]:
        if not CAPTION.match(c):
            problems.append(f"{name}: caption outside the grammar: {c!r}")
    if scene["captions"] != expected_captions(scene):
        problems.append(f"{name}: captions {scene['captions']} != expected {expected_captions(scene)}")
    if not 1 <= len(objs) <= 3:
        problems.append(f"{name}: {len(objs)} objects")
    if not (96 <= w <= 320 and 96 <= h <= 320 and max(w, h) * 4 <= min(w, h) * 5):
        problems.append(f"{name}: canvas {w}x{h}")
    for i, o in enumerate(objs):
        x0, y0, x1, y1 = o["bbox"]
        if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
            problems.append(f"{name}: bbox {o['bbox']} outside canvas")
        ext = max((x1 - x0 - 6) / w, (y1 - y0 - 6) / h)
        lo, hi = (0.135, 0.215) if o["size"] == "small" else (0.285, 0.395)
        if not lo < ext < hi:
            problems.append(f"{name}: {o['size']} object with normalised extent {ext:.3f}")
        for o2 in objs[i + 1:]:
            a, b = o["bbox"], o2["bbox"]
            if not (a[2] + 3 <= b[0] or b[2] + 3 <= a[0] or a[3] + 3 <= b[1] or b[3] + 3 <= a[1]):
                problems.append(f"{name}: boxes {a} and {b} too close")
    if len(objs) == 2:
        dx = abs(objs[0]["center"][0] - objs[1]["center"][0])
        dy = abs(objs[0]["center"][1] - objs[1]["center"][1])
        ndx, ndy = dx / w, dy / h
        if max(dx, dy) < 1.3 * min(dx, dy) or max(ndx, ndy) < 1.3 * min(ndx, ndy) or (dx > dy) != (ndx > ndy):
            problems.append(f"{name}: ambiguous relation dx={dx} dy={dy}")
    if len(objs) == 3:
        xs = sorted(o["center"][0] for o in objs)
        if min(xs[1] - xs[0], xs[2] - xs[1]) < 0.12 * w - 1e-9:
            problems.append(f"{name}: centres too close in x: {xs}")

    image = Image.open(os.path.join(root, name)).convert("RGB")
    if image.size != (w, h):
        problems.append(f"{name}: image is {image.size}, JSON says {w}x{h}")
        return
    px = image.load()
    for o in objs:
        cx, cy = round(o["center"][0]), round(o["center"][1])
        acc = [0, 0, 0]
        for yy in range(cy - 1, cy + 2):
            for xx in range(cx - 1, cx + 2):
                for c in range(3):
                    acc[c] += px[xx, yy][c]
        mean = [v / 9 for v in acc]
        nearest = min(ANCHORS, key=lambda k: sum((mean[c] - ANCHORS[k][c]) ** 2 for c in range(3)))
        if nearest != o["color"]:
            problems.append(f"{name}: centre of the {o['color']} {o['shape']} looks {nearest} ({mean})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()
    problems = []
    count = 0
    with open(os.path.join(args.dir, "scenes.jsonl")) as f:
        for line in f:
            if not line.strip():
                continue
            check_scene(args.dir, json.loads(line), problems)
            count += 1
            if args.limit and count >= args.limit:
                break
    print(f"checked {count} scenes, {len(problems)} problems")
    for p in problems[:20]:
        print("  " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
