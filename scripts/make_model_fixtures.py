#!/usr/bin/env python3
"""Make the model fidelity fixtures in tests/fixtures/model/ with the reference implementations.

Every checkpoint here has tiny random weights; every expected output is computed by the reference
(OpenAI's `clip` package, or `open_clip` / `transformers` for their own formats, cross-checked against
`clip.model.CLIP`) in fp32 on the CPU. Run from anywhere:

    "$(scripts/ref_python.sh numpy safetensors open_clip_torch transformers)" scripts/make_model_fixtures.py

Fixtures (each `<name>.expected.safetensors` holds the fixed inputs and expected outputs):

- `vit_jit.pt`         ViT (width 128, 2 heads, 2 layers), fp16 like OpenAI's, `torch.jit.trace` + `jit.save`
- `rn_jit.pt`          ModifiedResNet (width 4, attention pool with 2 heads), fp16, traced likewise
- `vit_zip.pt`         ViT (width 64), fp16 state_dict, `torch.save` zip format
- `rn_legacy.pt`       ModifiedResNet (width 4), fp16 state_dict, `torch.save` legacy (pre-1.6) format
                       (its bytes change on every run — legacy storage keys are Python object ids —
                       but its tensors and expected outputs do not; keep the committed file)
- `hf_real_vocab/`     transformers `CLIPModel`: config.json + model.safetensors (fp16), real 49408 vocab;
                       also expects the tokenized labels and `tiny.png` preprocessed
- `hf_gelu_bin/`       transformers `CLIPModel` with `hidden_act: gelu`: config.json + pytorch_model.bin
- `openclip_vit_gelu/` open_clip (quick_gelu false): open_clip_config.json + open_clip_model.safetensors
- `openclip_rn_quickgelu/` open_clip ResNet (quick_gelu true): open_clip_config.json + open_clip_pytorch_model.bin

Expected keys: `pixels` [n,3,r,r] f32, `input_ids` [m,77] i64, `image_embeds`, `text_embeds`,
`logits_per_image` (all f32). The real-vocab fixture adds `label_ids`, `label_text_embeds`,
`png_pixels`, `png_image_embeds`, `png_logits_per_image` (labels "a diagram", "a dog", "a cat").
"""

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

import clip
from clip.model import CLIP, VisionTransformer, build_model, convert_weights
from PIL import Image
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "model"
CONTEXT = 77
LABELS = ["a diagram", "a dog", "a cat"]
TOL_CROSS = 2e-5  # agreement demanded between two Python implementations of the same weights


def perturb(model: nn.Module, gen: torch.Generator) -> None:
    """Make every parameter and buffer non-trivial: CLIP's init leaves biases, norms and bn3 at 0/1."""
    norms = set()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
                norms.update(id(p) for p in module.parameters())
                module.weight.copy_(1 + 0.1 * torch.randn(module.weight.shape, generator=gen))
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=gen))
                if isinstance(module, nn.BatchNorm2d):
                    module.running_mean.copy_(0.1 * torch.randn(module.running_mean.shape, generator=gen))
                    module.running_var.uniform_(0.5, 1.5, generator=gen)
                    module.num_batches_tracked.fill_(7)
        for name, p in model.named_parameters():
            if name.endswith("logit_scale"):
                continue
            if id(p) in norms:
                continue
            if name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
            else:
                std = float(p.detach().std()) if p.numel() > 1 and float(p.detach().std()) > 0 else 0.02
                p.add_(0.1 * std * torch.randn(p.shape, generator=gen))


def synth_ids(vocab: int, lengths, gen: torch.Generator) -> torch.Tensor:
    """Token rows like `clip.tokenize`'s: SOT, body, EOT (the largest id), zero padding."""
    sot, eot = vocab - 2, vocab - 1
    ids = torch.zeros(len(lengths), CONTEXT, dtype=torch.long)
    for row, n in enumerate(lengths):
        body = torch.randint(1, vocab - 2, (n,), generator=gen)
        ids[row, 0] = sot
        ids[row, 1 : n + 1] = body
        ids[row, n + 1] = eot
    return ids


@torch.no_grad()
def outputs(encode_image, encode_text, logit_scale, pixels, ids):
    img = encode_image(pixels).float()
    txt = encode_text(ids).float()
    img_n = img / img.norm(dim=1, keepdim=True)
    txt_n = txt / txt.norm(dim=1, keepdim=True)
    logits = float(logit_scale) * img_n @ txt_n.t()
    return img, txt, logits


def save_expected(name: str, tensors: dict) -> None:
    clean = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    save_file(clean, str(OUT / f"{name}.expected.safetensors"))


def check_close(what: str, a: torch.Tensor, b: torch.Tensor, tol: float = TOL_CROSS) -> None:
    d = float((a - b).abs().max())
    print(f"  cross-check {what}: max |d| = {d:.2e}")
    if not d <= tol:
        sys.exit(f"{what}: implementations disagree by {d}")


def describe(img, txt, logits) -> None:
    print(
        f"  |image| max {float(img.abs().max()):.3f}, |text| max {float(txt.abs().max()):.3f}, "
        f"logits {logits.flatten().tolist()[:3]}"
    )


def reference_clip(seed, embed_dim, resolution, vision_layers, vision_width, patch, vocab, t_width,
                   t_heads, t_layers, vision_heads=None):
    torch.manual_seed(seed)
    placeholder = 64 if vision_heads is not None else vision_width
    model = CLIP(embed_dim, resolution, vision_layers, placeholder, patch, CONTEXT, vocab, t_width,
                 t_heads, t_layers)
    if vision_heads is not None:  # widths the reference cannot express (heads = width // 64)
        model.visual = VisionTransformer(resolution, patch, vision_width, vision_layers, vision_heads,
                                         embed_dim)
    gen = torch.Generator().manual_seed(seed + 1)
    perturb(model, gen)
    return model.eval()


# --- OpenAI formats -------------------------------------------------------------------------------


def openai_fixture(name, model, fmt, pixels, ids):
    """Save `model` as OpenAI does (fp16 weights) and compute the expected outputs with `clip.load`."""
    convert_weights(model)
    path = OUT / f"{name}.pt"
    if fmt == "jit":
        # OpenAI's archives carry these as tensors; `build_model` deletes them again.
        for attr, value in (("input_resolution", model.visual.input_resolution),
                            ("context_length", model.context_length), ("vocab_size", model.vocab_size)):
            if hasattr(model, attr):
                delattr(model, attr)
            model.register_buffer(attr, torch.tensor(value))
        traced = torch.jit.trace_module(
            model,
            {"forward": (pixels, ids), "encode_image": (pixels,), "encode_text": (ids,)},
            check_trace=False,
        )
        torch.jit.save(traced, str(path))
    elif fmt == "zip":
        torch.save(model.state_dict(), str(path))
    elif fmt == "legacy":
        torch.save(model.state_dict(), str(path), _use_new_zipfile_serialization=False)
    else:
        raise ValueError(fmt)
    if fmt == "jit":
        ref, _ = clip.load(str(path), device="cpu", jit=False)
    else:
        # `clip.load`'s own fallback to `torch.load` fails on current PyTorch (it reuses the file
        # object the failed `torch.jit.load` consumed), so take the same steps it takes.
        ref = build_model(torch.load(str(path), map_location="cpu")).float()
    img, txt, logits = outputs(ref.encode_image, ref.encode_text, ref.logit_scale.exp(), pixels, ids)
    lpi, _ = ref(pixels, ids)
    check_close(f"{name} forward vs encode", lpi, logits, 1e-5)
    describe(img, txt, logits)
    save_expected(name, dict(pixels=pixels, input_ids=ids, image_embeds=img, text_embeds=txt,
                             logits_per_image=logits))
    return ref


# --- Hugging Face transformers --------------------------------------------------------------------


def to_hf_state_dict(sd: dict) -> dict:
    """OpenAI names -> transformers `CLIPModel` names (the inverse of crates/zeroclip/src/weights/hf.rs)."""
    out = {}

    def block(src, dst):
        n = 0
        while f"{src}.{n}.ln_1.weight" in sd:
            s, d = f"{src}.{n}", f"{dst}.{n}"
            q, k, v = sd[f"{s}.attn.in_proj_weight"].chunk(3)
            qb, kb, vb = sd[f"{s}.attn.in_proj_bias"].chunk(3)
            for p, w, b in (("q", q, qb), ("k", k, kb), ("v", v, vb)):
                out[f"{d}.self_attn.{p}_proj.weight"] = w
                out[f"{d}.self_attn.{p}_proj.bias"] = b
            for a, b in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"),
                         ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
                out[f"{d}.{b}.weight"] = sd[f"{s}.{a}.weight"]
                out[f"{d}.{b}.bias"] = sd[f"{s}.{a}.bias"]
            n += 1

    out["text_model.embeddings.token_embedding.weight"] = sd["token_embedding.weight"]
    out["text_model.embeddings.position_embedding.weight"] = sd["positional_embedding"]
    block("transformer.resblocks", "text_model.encoder.layers")
    out["text_model.final_layer_norm.weight"] = sd["ln_final.weight"]
    out["text_model.final_layer_norm.bias"] = sd["ln_final.bias"]
    out["text_projection.weight"] = sd["text_projection"].t()
    out["vision_model.embeddings.class_embedding"] = sd["visual.class_embedding"]
    out["vision_model.embeddings.patch_embedding.weight"] = sd["visual.conv1.weight"]
    out["vision_model.embeddings.position_embedding.weight"] = sd["visual.positional_embedding"]
    out["vision_model.pre_layrnorm.weight"] = sd["visual.ln_pre.weight"]
    out["vision_model.pre_layrnorm.bias"] = sd["visual.ln_pre.bias"]
    block("visual.transformer.resblocks", "vision_model.encoder.layers")
    out["vision_model.post_layernorm.weight"] = sd["visual.ln_post.weight"]
    out["vision_model.post_layernorm.bias"] = sd["visual.ln_post.bias"]
    out["visual_projection.weight"] = sd["visual.proj"].t()
    out["logit_scale"] = sd["logit_scale"]
    return {k: v.contiguous().clone() for k, v in out.items()}


def hf_fixture(name, model, dims, act, fmt, pixels, ids, eos):
    """Convert `model` (fp16-rounded weights) to a transformers directory; expected from the reference."""
    from transformers import CLIPConfig, CLIPModel

    if act == "gelu":  # the reference hard-codes QuickGELU; open_clip/transformers allow exact GELU
        for blocks in (model.transformer.resblocks, model.visual.transformer.resblocks):
            for b in blocks:
                b.mlp.gelu = nn.GELU()
    convert_weights(model)
    if fmt == "safetensors":
        # Stored entirely in fp16 below (as Hub uploads often are), so round every parameter.
        model.half()
    model.float()  # the reference on CPU: fp16-rounded weights, computed in fp32
    sd = model.state_dict()
    hf_sd = to_hf_state_dict(sd)
    d = OUT / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir()
    t, v = dims["text"], dims["vision"]
    config = CLIPConfig(
        text_config=dict(vocab_size=t["vocab"], hidden_size=t["width"], intermediate_size=4 * t["width"],
                         num_hidden_layers=t["layers"], num_attention_heads=t["heads"],
                         max_position_embeddings=CONTEXT, hidden_act=act, layer_norm_eps=1e-5,
                         bos_token_id=eos - 1, eos_token_id=eos, pad_token_id=0),
        vision_config=dict(hidden_size=v["width"], intermediate_size=4 * v["width"],
                           num_hidden_layers=v["layers"], num_attention_heads=v["heads"],
                           image_size=v["resolution"], patch_size=v["patch"], hidden_act=act,
                           layer_norm_eps=1e-5),
        projection_dim=dims["embed"],
        logit_scale_init_value=float(sd["logit_scale"]),
    )
    hf = CLIPModel(config).eval()
    missing, unexpected = hf.load_state_dict(hf_sd, strict=False)
    assert not unexpected and all("position_ids" in k for k in missing), (missing, unexpected)
    config.save_pretrained(str(d))
    if fmt == "safetensors":
        # fp16 storage like the Hub's: exact, every value was rounded to fp16 above.
        half = {k: (v if k == "logit_scale" else v.half()) for k, v in hf_sd.items()}
        save_file(half, str(d / "model.safetensors"))
    else:
        torch.save(hf_sd, str(d / "pytorch_model.bin"))
    json.dump({"crop_size": {"height": v["resolution"], "width": v["resolution"]},
               "image_mean": [0.48145466, 0.4578275, 0.40821073],
               "image_std": [0.26862954, 0.26130258, 0.27577711],
               "size": {"shortest_edge": v["resolution"]}},
              open(d / "preprocessor_config.json", "w"), indent=2)

    img, txt, logits = outputs(model.encode_image, model.encode_text, model.logit_scale.exp(), pixels, ids)
    with torch.no_grad():
        h_img = hf.get_image_features(pixel_values=pixels)
        h_txt = hf.get_text_features(input_ids=ids)
        h_img = getattr(h_img, "pooler_output", h_img)
        h_txt = getattr(h_txt, "pooler_output", h_txt)
        h_logits = hf(input_ids=ids, pixel_values=pixels).logits_per_image
    check_close(f"{name} HF vs reference image", h_img, img)
    check_close(f"{name} HF vs reference text", h_txt, txt)
    check_close(f"{name} HF vs reference logits", h_logits, logits, 1e-4)
    describe(img, txt, logits)
    return model, dict(pixels=pixels, input_ids=ids, image_embeds=img, text_embeds=txt,
                       logits_per_image=logits)


# --- open_clip ------------------------------------------------------------------------------------


def openclip_fixture(name, model_cfg, fmt, pixels, ids, seed):
    import open_clip
    from open_clip.model import CLIP as OpenClipCLIP

    torch.manual_seed(seed)
    cfg = dict(model_cfg)
    quick_gelu = cfg.pop("quick_gelu", False)
    model = OpenClipCLIP(**cfg, quick_gelu=quick_gelu).eval()
    perturb(model, torch.Generator().manual_seed(seed + 1))
    d = OUT / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir()
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    if fmt == "safetensors":
        save_file(sd, str(d / "open_clip_model.safetensors"))
    else:
        torch.save(sd, str(d / "open_clip_pytorch_model.bin"))
    json.dump({"model_cfg": model_cfg,
               "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073],
                                  "std": [0.26862954, 0.26130258, 0.27577711]}},
              open(d / "open_clip_config.json", "w"), indent=2)
    # Load it back the way open_clip users do, so the directory itself is proven valid.
    loaded, _, _ = open_clip.create_model_and_transforms(f"local-dir:{d}")
    loaded.eval()
    img, txt, logits = outputs(loaded.encode_image, loaded.encode_text, loaded.logit_scale.exp(),
                               pixels, ids)
    o_img, o_txt, o_logits = outputs(model.encode_image, model.encode_text, model.logit_scale.exp(),
                                     pixels, ids)
    check_close(f"{name} reloaded vs built", img, o_img, 0)
    describe(img, txt, logits)
    save_expected(name, dict(pixels=pixels, input_ids=ids, image_embeds=img, text_embeds=txt,
                             logits_per_image=logits))


def tiny_png(path: Path) -> None:
    """A small RGB image with structure in every channel (deterministic)."""
    h, w = 40, 52
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 255 // (w - 1)).astype(np.uint8)
    g = (y * 255 // (h - 1)).astype(np.uint8)
    b = (((x // 6 + y // 6) % 2) * 200 + 30).astype(np.uint8)
    Image.fromarray(np.stack([r, g, b], axis=-1), "RGB").save(path)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    gen = torch.Generator().manual_seed(2024)
    lengths = [3, 8, 14]

    print("vit_jit")
    vocab = 300
    ids = synth_ids(vocab, lengths, gen)
    px32 = torch.randn(2, 3, 32, 32, generator=gen)
    m = reference_clip(10, 64, 32, 2, 128, 8, vocab, 128, 2, 2)
    openai_fixture("vit_jit", m, "jit", px32, ids)

    print("rn_jit")
    px64 = torch.randn(2, 3, 64, 64, generator=gen)
    m = reference_clip(20, 64, 64, (2, 1, 1, 2), 4, None, vocab, 128, 2, 2)
    openai_fixture("rn_jit", m, "jit", px64, ids)

    print("vit_zip")
    vocab_s = 200
    ids_s = synth_ids(vocab_s, lengths, gen)
    m = reference_clip(30, 32, 32, 2, 64, 16, vocab_s, 64, 1, 2)
    openai_fixture("vit_zip", m, "zip", px32, ids_s)

    print("rn_legacy")
    m = reference_clip(40, 32, 64, (1, 2, 1, 1), 4, None, vocab_s, 64, 1, 2)
    openai_fixture("rn_legacy", m, "legacy", px64, ids_s)

    print("hf_real_vocab")
    real_vocab = 49408
    label_ids = clip.tokenize(LABELS).long()
    text_ids = torch.cat([label_ids, clip.tokenize(["a photo of a tiny diagram, with dogs and cats."]).long()])
    dims = dict(embed=32, text=dict(vocab=real_vocab, width=16, heads=2, layers=2),
                vision=dict(width=32, heads=2, layers=2, resolution=32, patch=8))
    m = reference_clip(50, 32, 32, 2, 32, 8, real_vocab, 16, 2, 2, vision_heads=2)
    m, exp = hf_fixture("hf_real_vocab", m, dims, "quick_gelu", "safetensors", px32, text_ids, 49407)
    png = OUT / "tiny.png"
    tiny_png(png)
    preprocess = clip.clip._transform(32)
    png_px = preprocess(Image.open(png)).unsqueeze(0)
    l_img, l_txt, l_logits = outputs(m.encode_image, m.encode_text, m.logit_scale.exp(), png_px, label_ids)
    print(f"  png probs {l_logits.softmax(dim=-1).tolist()}")
    exp.update(label_ids=label_ids, label_text_embeds=l_txt, png_pixels=png_px, png_image_embeds=l_img,
               png_logits_per_image=l_logits)
    save_expected("hf_real_vocab", exp)

    print("hf_gelu_bin")
    dims = dict(embed=24, text=dict(vocab=vocab, width=32, heads=2, layers=2),
                vision=dict(width=32, heads=2, layers=2, resolution=32, patch=16))
    m = reference_clip(60, 24, 32, 2, 32, 16, vocab, 32, 2, 2, vision_heads=2)
    _, exp = hf_fixture("hf_gelu_bin", m, dims, "gelu", "bin", px32, ids, vocab - 1)
    save_expected("hf_gelu_bin", exp)

    print("openclip_vit_gelu")
    openclip_fixture("openclip_vit_gelu", {
        "embed_dim": 32, "quick_gelu": False,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": CONTEXT, "vocab_size": vocab, "width": 32, "heads": 2, "layers": 2},
    }, "safetensors", px32, ids, 70)

    print("openclip_rn_quickgelu")
    openclip_fixture("openclip_rn_quickgelu", {
        "embed_dim": 32, "quick_gelu": True,
        "vision_cfg": {"image_size": 64, "layers": [1, 1, 2, 1], "width": 4, "head_width": 32,
                       "patch_size": None},
        "text_cfg": {"context_length": CONTEXT, "vocab_size": vocab, "width": 32, "heads": 4, "layers": 2},
    }, "bin", px64, ids, 80)

    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"tests/fixtures/model: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
