import sys

import torch
import clip
from PIL import Image

model_path, image_path = sys.argv[1], sys.argv[2]  # the README's "ViT-B/32" and "CLIP.png"
device = "cuda" if torch.cuda.is_available() else "cpu"
model, preprocess = clip.load(model_path, device=device)

image = preprocess(Image.open(image_path)).unsqueeze(0).to(device)
text = clip.tokenize(["a diagram", "a dog", "a cat"]).to(device)

with torch.no_grad():
    image_features = model.encode_image(image)
    text_features = model.encode_text(text)

    logits_per_image, logits_per_text = model(image, text)
    probs = logits_per_image.softmax(dim=-1).cpu().numpy()

print("Label probs:", probs)  # prints: [[0.9927937  0.00421068 0.00299572]] with OpenAI's weights
