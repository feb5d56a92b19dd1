from PIL import Image

from emocurate.tiny import resolve


def test_tiny_clip_loads_through_from_pretrained():
    import torch
    from transformers import CLIPModel, CLIPProcessor

    path = resolve("tiny:clip")
    assert resolve("tiny:clip") == path  # built once
    model, processor = CLIPModel.from_pretrained(path), CLIPProcessor.from_pretrained(path)
    batch = processor(images=[Image.new("RGB", (40, 30), "red")], text=["a calm lake"], return_tensors="pt", padding=True)
    with torch.no_grad():
        image = model.get_image_features(pixel_values=batch["pixel_values"]).pooler_output
    assert image.shape == (1, 32)
    assert resolve("openai/clip-vit-large-patch14") == "openai/clip-vit-large-patch14"


def test_tiny_sd_is_a_stock_pipeline():
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(resolve("tiny:sd"), safety_checker=None)
    images = pipe("a calm lake", num_inference_steps=2, height=32, width=32, output_type="np",
                  generator=torch.Generator().manual_seed(0)).images
    assert images.shape == (1, 32, 32, 3)
