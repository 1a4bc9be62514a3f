"""Input processing against the transformers reference: pixels, grids, prompt ids, video sampling."""
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from glmv.inputs.chat_template import find_chat_template, render_chat_template
from glmv.inputs.media import MediaError, MediaLimits, load_image, load_video
from glmv.inputs.processor import ProcessorConfig, process_image, process_video, sample_frame_indices, smart_resize
from glmv.llm import LLM
from media_files import random_image, write_video


@pytest.fixture(scope="module")
def reference_processor(moe_checkpoint):
    """transformers' Glm4vProcessor with its PIL image processor. Its constructor needs torchvision for the
    video processor lookup, so the parts are set directly; the processing code run is the reference's."""
    from transformers import Glm4vProcessor, PreTrainedTokenizerFast
    from transformers.models.glm4v.image_processing_pil_glm4v import Glm4vImageProcessorPil
    from transformers.models.glm4v.video_processing_glm4v import Glm4vVideoProcessor

    pre = json.loads((moe_checkpoint / "preprocessor_config.json").read_text())
    video = json.loads((moe_checkpoint / "video_preprocessor_config.json").read_text())
    tok = PreTrainedTokenizerFast.from_pretrained(moe_checkpoint)
    proc = Glm4vProcessor.__new__(Glm4vProcessor)
    proc.image_processor = Glm4vImageProcessorPil(size=pre["size"])
    proc.video_processor = Glm4vVideoProcessor(size=video["size"], fps=video["fps"])
    proc.tokenizer, proc.chat_template = tok, None
    proc.image_token, proc.video_token = "<|image|>", "<|video|>"
    proc.image_token_id, proc.video_token_id = (tok.convert_tokens_to_ids(t) for t in ("<|image|>", "<|video|>"))
    proc.video_start_id, proc.video_end_id = (tok.convert_tokens_to_ids(t) for t in ("<|begin_of_video|>", "<|end_of_video|>"))
    return proc


@pytest.fixture(scope="module")
def llm(moe_checkpoint):
    return LLM(moe_checkpoint, dtype="float32", progress=False)


IMAGES = {
    "square": lambda: random_image(224, 224, 1),
    "non_square": lambda: random_image(333, 150, 2),
    "tiny": lambda: random_image(20, 9, 3),
    "large": lambda: random_image(900, 700, 4),
    "rgba": lambda: random_image(120, 90, 5, "RGBA"),
    "greyscale": lambda: random_image(100, 140, 6, "L"),
    "palette": lambda: random_image(128, 96, 7, "P"),
}


@pytest.mark.parametrize("name", list(IMAGES))
def test_image_pixels_match_reference(name, reference_processor, llm):
    image = IMAGES[name]()
    expected = reference_processor.image_processor(images=[image], return_tensors="np")
    pixels, grid = process_image(image, llm.prompts.processor)
    assert grid == tuple(expected["image_grid_thw"][0])
    assert pixels.dtype == np.float32
    np.testing.assert_array_equal(pixels, expected["pixel_values"])


def test_smart_resize_worked_examples():
    budget = dict(temporal_factor=2, factor=28, min_pixels=12544, max_pixels=9633792)
    assert smart_resize(2, 480, 640, **budget) == (476, 644)
    assert smart_resize(2, 1080, 1920, **budget) == (1092, 1932)
    assert smart_resize(2, 50, 50, **budget) == (84, 84)
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(2, 10, 2500, **budget)


def test_prompt_ids_match_reference_for_several_images(reference_processor, llm, tmp_path):
    images = [IMAGES["square"](), IMAGES["non_square"](), IMAGES["tiny"]()]
    for i, img in enumerate(images):
        img.save(tmp_path / f"{i}.png")
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": str(tmp_path / f"{i}.png")}}
                                             for i in range(3)] + [{"type": "text", "text": "Which one is red?"}]}]
    prompt = llm.prompts.build(messages)
    text = llm.prompts.render(messages)
    expected = reference_processor(text=[text], images=images, return_tensors="np")
    assert prompt.token_ids == expected["input_ids"][0].tolist()
    np.testing.assert_array_equal(torch.cat([m.pixel_values for m in prompt.media]).numpy(), expected["pixel_values"])


def test_chat_template_renders_as_transformers(moe_checkpoint, reference_processor):
    template = find_chat_template(moe_checkpoint)
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]},
                {"role": "assistant", "content": "A cat.", "reasoning_content": "Fur and whiskers."},
                {"role": "user", "content": "Sure?"}]
    for thinking in (True, False):
        ours = render_chat_template(template, messages, enable_thinking=thinking)
        theirs = reference_processor.tokenizer.apply_chat_template(
            messages, chat_template=template, tokenize=False, add_generation_prompt=True, enable_thinking=thinking)
        assert ours == theirs
    assert ours.endswith("Sure?/nothink<|assistant|>\n<think></think>\n")


def test_video_sampling_and_prompt_match_reference(reference_processor, llm, tmp_path):
    from transformers.video_utils import VideoMetadata

    path = write_video(tmp_path / "clip.mp4", frames=25, fps=5)  # 5 s at 5 fps
    cfg = llm.prompts.processor
    metadata = VideoMetadata(total_num_frames=25, fps=5.0, duration=5.0, width=112, height=112)
    expected_indices = reference_processor.video_processor.sample_frames(metadata).tolist()
    assert sample_frame_indices(25, 5.0, 5.0, cfg) == expected_indices

    video = load_video(str(path), cfg)
    assert len(video.frames) == len(expected_indices) == 10
    pixels, grid = process_video(video.frames, cfg)
    # Reference layout: its own rescale/normalise (PIL path) and patchify. The frames are already at the
    # smart_resize size (112x112 fits the budget), so the torchvision resize it would run is the identity.
    assert smart_resize(10, 112, 112, 2, 28, cfg.video_min_pixels, cfg.video_max_pixels) == (112, 112)
    ip = reference_processor.image_processor
    normed = np.stack([ip.normalize(ip.rescale(f.transpose(2, 0, 1), 1 / 255), ip.image_mean, ip.image_std)
                       for f in video.frames])
    patches, *ref_grid = reference_processor.video_processor.patchify(torch.from_numpy(normed)[None], 14, 2, 2)
    assert grid == tuple(ref_grid)
    np.testing.assert_allclose(pixels, patches[0].numpy(), atol=1e-6)

    # Prompt: the reference's own frame-group expansion, with timestamps from the sampled indices.
    metadata.frames_indices = expected_indices
    expansion = reference_processor.replace_video_token({"video_grid_thw": torch.tensor([grid]),
                                                         "video_metadata": [metadata]}, 0)
    messages = [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": str(path)}},
                                             {"type": "text", "text": "Describe this video."}]}]
    prompt = llm.prompts.build(messages)
    text = llm.prompts.render(messages).replace("<|video|>", expansion)
    assert prompt.token_ids == reference_processor.tokenizer(text)["input_ids"]
    assert "<|end_of_image|>0<|begin_of_image|>" in prompt.text and "<|end_of_image|>4<|end_of_video|>" in prompt.text


def test_long_video_is_capped_at_max_duration():
    cfg = ProcessorConfig(video_max_duration=10)
    indices = sample_frame_indices(total_frames=3000, video_fps=30.0, duration=100.0, cfg=cfg)
    assert len(indices) == 20 and indices[0] == 0 and indices[-1] == 2999


def test_exif_rotation_is_applied(tmp_path):
    image = random_image(160, 80, 8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    image.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    loaded = load_image(str(tmp_path / "rot.jpg"))
    assert loaded.size == (80, 160)


def test_image_sources(tmp_path):
    import base64

    image = random_image(64, 48, 9)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    b64 = base64.b64encode(buf.getvalue()).decode()
    (tmp_path / "a.png").write_bytes(buf.getvalue())
    for source in (str(tmp_path / "a.png"), f"file://{tmp_path / 'a.png'}", f"data:image/png;base64,{b64}", b64):
        assert np.array_equal(np.asarray(load_image(source)), np.asarray(image))
    with pytest.raises(MediaError, match="base64"):
        load_image("%% not an image %%")
    with pytest.raises(MediaError, match="cannot decode image"):
        load_image(base64.b64encode(b"not a png at all").decode())
    with pytest.raises(MediaError, match="not a public address"):
        load_image("http://127.0.0.1:9/x.png")
    with pytest.raises(MediaError, match="not a public address"):
        load_image("http://169.254.169.254/latest/meta-data")


def test_per_request_video_sampling(llm, tmp_path):
    path = write_video(tmp_path / "long.mp4", frames=40, fps=4)  # 10 s
    cfg = llm.prompts.processor
    assert len(load_video(str(path), cfg).frames) == 20  # the checkpoint's 2 fps
    assert len(load_video(str(path), cfg, fps=1).frames) == 10
    thinned = load_video(str(path), cfg, max_frames=7)
    assert len(thinned.frames) == 6 and thinned.timestamps == sorted(thinned.timestamps)
    for bad in ({"fps": 0}, {"fps": -1}, {"fps": "2"}, {"fps": 100}, {"max_frames": 1}, {"max_frames": 2.5},
                {"max_frames": 10**6}, {"max_frames": True}):
        with pytest.raises(MediaError, match="fps|max_frames"):
            load_video(str(path), cfg, **bad)
    capped = load_video(str(path), cfg, fps=4, limits=MediaLimits(max_video_frames=12))
    assert len(capped.frames) == 12  # the server's cap holds whatever the request asks
