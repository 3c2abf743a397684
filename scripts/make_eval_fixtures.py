#!/usr/bin/env python3
"""Make the `zeroclip eval` fixture in tests/fixtures/eval/ with the reference.

A small synthetic ImageFolder (6 classes of coloured, textured images of assorted sizes, plus one
unreadable file) and what the reference says about it: OpenAI's `clip` package runs the tiny
real-vocabulary checkpoint tests/fixtures/model/hf_real_vocab (converted back to OpenAI's names)
with the template "a photo of a {}.", in fp32 on the CPU, and scikit-learn computes the metrics the
way LAION CLIP_benchmark does (`balanced_accuracy_score` for mean per-class recall, top-k from the
logits, `precision_recall_fscore_support` and `confusion_matrix` per class). ECE (15 bins) and NLL
follow Guo et al. 2017. Run with the reference interpreter:

    $ZEROCLIP_REF_PYTHON scripts/make_eval_fixtures.py      (or scripts/make_eval_fixtures.sh)

Writes tests/fixtures/eval/images/<class>/*.png and tests/fixtures/eval/expected.json, which holds
the reference logits and metrics for all 6 classes ("all") and for the first 3 class folders alone
("first3", where acc5 is absent as in CLIP_benchmark).
"""

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, precision_recall_fscore_support

import clip
from clip.model import CLIP, VisionTransformer

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "tests" / "fixtures" / "model" / "hf_real_vocab"
OUT = ROOT / "tests" / "fixtures" / "eval"
TEMPLATE = "a photo of a {}."
PER_CLASS = 5
ECE_BINS = 15


def from_hf_state_dict(hf: dict) -> dict:
    """transformers `CLIPModel` names -> OpenAI names (the inverse of make_model_fixtures.py's map)."""
    sd = {}

    def blocks(src, dst):
        n = 0
        while f"{src}.{n}.layer_norm1.weight" in hf:
            s, d = f"{src}.{n}", f"{dst}.{n}"
            for kind in ("weight", "bias"):
                sd[f"{d}.attn.in_proj_{kind}"] = torch.cat(
                    [hf[f"{s}.self_attn.{p}_proj.{kind}"] for p in ("q", "k", "v")])
                for a, b in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"),
                             ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
                    sd[f"{d}.{b}.{kind}"] = hf[f"{s}.{a}.{kind}"]
            n += 1

    sd["token_embedding.weight"] = hf["text_model.embeddings.token_embedding.weight"]
    sd["positional_embedding"] = hf["text_model.embeddings.position_embedding.weight"]
    blocks("text_model.encoder.layers", "transformer.resblocks")
    sd["ln_final.weight"] = hf["text_model.final_layer_norm.weight"]
    sd["ln_final.bias"] = hf["text_model.final_layer_norm.bias"]
    sd["text_projection"] = hf["text_projection.weight"].t()
    sd["visual.class_embedding"] = hf["vision_model.embeddings.class_embedding"]
    sd["visual.conv1.weight"] = hf["vision_model.embeddings.patch_embedding.weight"]
    sd["visual.positional_embedding"] = hf["vision_model.embeddings.position_embedding.weight"]
    sd["visual.ln_pre.weight"] = hf["vision_model.pre_layrnorm.weight"]
    sd["visual.ln_pre.bias"] = hf["vision_model.pre_layrnorm.bias"]
    blocks("vision_model.encoder.layers", "visual.transformer.resblocks")
    sd["visual.ln_post.weight"] = hf["vision_model.post_layernorm.weight"]
    sd["visual.ln_post.bias"] = hf["vision_model.post_layernorm.bias"]
    sd["visual.proj"] = hf["visual_projection.weight"].t()
    sd["logit_scale"] = hf["logit_scale"]
    return {k: v.float().contiguous() for k, v in sd.items()}


def reference_model() -> CLIP:
    cfg = json.loads((MODEL / "config.json").read_text())
    t, v = cfg["text_config"], cfg["vision_config"]
    model = CLIP(cfg["projection_dim"], v["image_size"], v["num_hidden_layers"], 64, v["patch_size"],
                 t["max_position_embeddings"], t["vocab_size"], t["hidden_size"], t["num_attention_heads"],
                 t["num_hidden_layers"])
    # Head counts the reference derives as width // 64 cannot express this width: set it directly.
    model.visual = VisionTransformer(v["image_size"], v["patch_size"], v["hidden_size"],
                                     v["num_hidden_layers"], v["num_attention_heads"], cfg["projection_dim"])
    model.load_state_dict(from_hf_state_dict(load_file(str(MODEL / "model.safetensors"))), strict=True)
    return model.eval()


def make_images(rng: np.random.Generator) -> None:
    """6 classes of 5 images: colour and texture differ per class; sizes and noise per image."""
    images = OUT / "images"
    if images.exists():
        shutil.rmtree(images)
    classes = {
        "red_apple": lambda y, x: np.stack([220 + 0 * x, 40 + 0 * x, 30 + 0 * x], -1),
        "green_leaf": lambda y, x: np.stack([30 + 0 * x, 170 + 40 * ((x // 4) % 2), 40 + 0 * x], -1),
        "blue_sky": lambda y, x: np.stack([60 + 0 * x, 120 + 2 * y, 230 + 0 * x], -1),
        "yellow_sun": lambda y, x: np.stack([240 + 0 * x, 220 + 0 * x, 40 + 60 * (((x - 12) ** 2 + (y - 12) ** 2) < 64)], -1),
        "zebra_stripes": lambda y, x: np.stack([255 * ((x // 3) % 2)] * 3, -1),
        "checker_board": lambda y, x: np.stack([200 * ((x // 5 + y // 5) % 2) + 20] * 3, -1),
    }
    for name, draw in classes.items():
        d = images / name
        d.mkdir(parents=True)
        for i in range(PER_CLASS):
            h, w = int(rng.integers(20, 49)), int(rng.integers(20, 49))
            y, x = np.mgrid[0:h, 0:w]
            px = draw(y, x).astype(np.float64) + rng.normal(0, 12, (h, w, 3))
            img = Image.fromarray(np.clip(px, 0, 255).astype(np.uint8), "RGB")
            if i == 4:
                img = img.convert("L")  # one grayscale image per class: converted to RGB on load
            img.save(d / f"{i}.png")
    # Not an image: must be reported as unreadable, not dropped.
    (images / "blue_sky" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")


def metrics(logits: np.ndarray, targets: np.ndarray, classes: int) -> dict:
    order = np.argsort(-logits, axis=1, kind="stable")
    pred = order[:, 0]
    n = len(targets)
    out = {"acc1": float((pred == targets).sum()) / n}
    if classes >= 5:
        out["acc5"] = float((order[:, :5] == targets[:, None]).any(axis=1).sum()) / n
    out["mean_per_class_recall"] = float(balanced_accuracy_score(targets, pred))
    p, r, f, s = precision_recall_fscore_support(targets, pred, labels=list(range(classes)), zero_division=0)
    out["per_class"] = [dict(precision=float(a), recall=float(b), f1=float(c), support=int(d))
                        for a, b, c, d in zip(p, r, f, s)]
    out["confusion"] = confusion_matrix(targets, pred, labels=list(range(classes))).tolist()
    # Calibration, in float64 from the float32 logits.
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    out["nll"] = float(-logp[np.arange(n), targets].mean())
    conf = np.exp(logp.max(axis=1))
    correct = (logp.argmax(axis=1) == targets).astype(np.float64)
    ece = 0.0
    for b in range(ECE_BINS):
        lo, hi = b / ECE_BINS, (b + 1) / ECE_BINS
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    out["ece"] = float(ece)
    return out


@torch.no_grad()
def main() -> None:
    torch.set_num_threads(2)
    make_images(np.random.default_rng(13))
    model = reference_model()
    preprocess = clip.clip._transform(model.visual.input_resolution)
    folders = sorted(p.name for p in (OUT / "images").iterdir() if p.is_dir())
    names = [f.replace("_", " ") for f in folders]
    text = model.encode_text(clip.tokenize([TEMPLATE.format(c) for c in names])).float()
    text = text / text.norm(dim=-1, keepdim=True)
    paths, targets, unreadable, feats = [], [], [], []
    for c, folder in enumerate(folders):
        for f in sorted((OUT / "images" / folder).iterdir()):
            rel = f.relative_to(OUT / "images").as_posix()
            try:
                px = preprocess(Image.open(f)).unsqueeze(0)
            except Exception as e:  # noqa: BLE001 - every failure is reported, whatever it is
                unreadable.append(dict(path=rel, error=type(e).__name__))
                continue
            img = model.encode_image(px).float()
            feats.append(img / img.norm(dim=-1, keepdim=True))
            paths.append(rel)
            targets.append(c)
    feats = torch.cat(feats)
    scale = float(model.logit_scale.exp())
    targets = np.array(targets)
    expected = dict(template=TEMPLATE, classes=names, images=paths, targets=targets.tolist(),
                    unreadable=unreadable, logit_scale=scale)
    logits = (scale * feats @ text.t()).numpy()
    expected["all"] = dict(logits=logits.tolist(), **metrics(logits, targets, len(names)))
    keep = targets < 3
    sub = (scale * feats[torch.from_numpy(keep)] @ text[:3].t()).numpy()
    expected["first3"] = dict(logits=sub.tolist(), **metrics(sub, targets[keep], 3))
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(f"{len(paths)} images, {len(unreadable)} unreadable; acc1 {expected['all']['acc1']:.3f}, "
          f"acc5 {expected['all']['acc5']:.3f}, mean per-class recall "
          f"{expected['all']['mean_per_class_recall']:.3f}")


if __name__ == "__main__":
    main()
