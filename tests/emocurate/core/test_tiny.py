from PIL import Image

from emocurate.core.tiny import resolve


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


def test_tiny_captioner_is_a_stock_qwen2_5_vl_chat_model():
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = resolve("tiny:captioner")
    processor, model = AutoProcessor.from_pretrained(path), AutoModelForImageTextToText.from_pretrained(path)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    text = "This image evokes a strong emotion of awe. Ünïcode too: 3.5 m, 日本."
    assert processor.tokenizer.decode(processor.tokenizer(text)["input_ids"]) == text  # byte-level: lossless
    chat = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}], add_generation_prompt=True, tokenize=False
    )
    assert chat == "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>hi<|im_end|>\n<|im_start|>assistant\n"
    batch = processor(text=[chat], images=[Image.new("RGB", (300, 300), "red")], return_tensors="pt")
    n_tokens = int((batch["input_ids"] == model.config.image_token_id).sum())
    assert n_tokens == int(batch["image_grid_thw"].prod()) // 4 and 1 <= n_tokens <= 4  # pixels capped at 56x56
