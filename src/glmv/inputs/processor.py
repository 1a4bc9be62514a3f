"""Image and video preprocessing, as the reference Glm4v processors do it (PIL path).

An image becomes rows of flat patches `[C * temporal_patch * patch * patch]` in merge-window-major
order (2x2 windows in raster order, raster inside each window), the frame duplicated to fill the
temporal patch. A video's frames share one resize; consecutive frames fill the temporal patch.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
MAX_ASPECT_RATIO = 200


@dataclass
class ProcessorConfig:
    patch_size: int = 14
    temporal_patch_size: int = 2
    merge_size: int = 2
    image_min_pixels: int = 112 * 112
    image_max_pixels: int = 28 * 28 * 15000
    video_min_pixels: int = 112 * 112
    video_max_pixels: int = 28 * 28 * 2 * 30000
    image_mean: tuple = CLIP_MEAN
    image_std: tuple = CLIP_STD
    rescale_factor: float = 1 / 255
    video_fps: float = 2.0
    video_max_duration: float = 300.0

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "ProcessorConfig":
        """Read preprocessor_config.json / video_preprocessor_config.json (transformers v4) or
        processor_config.json (v5, with image_processor and video_processor sections)."""
        path = Path(path)
        image, video = {}, {}
        if (path / "processor_config.json").is_file():
            raw = json.loads((path / "processor_config.json").read_text())
            image, video = raw.get("image_processor", {}), raw.get("video_processor", {})
        if (path / "preprocessor_config.json").is_file():
            image = json.loads((path / "preprocessor_config.json").read_text())
        if (path / "video_preprocessor_config.json").is_file():
            video = json.loads((path / "video_preprocessor_config.json").read_text())
        cfg = cls()
        for section, prefix in ((image, "image"), (video, "video")):
            lo, hi = _pixel_bounds(section)
            if lo is not None:
                setattr(cfg, f"{prefix}_min_pixels", lo)
            if hi is not None:
                setattr(cfg, f"{prefix}_max_pixels", hi)
        for key in ("patch_size", "temporal_patch_size", "merge_size", "rescale_factor"):
            if key in image:
                setattr(cfg, key, image[key])
        if "image_mean" in image:
            cfg.image_mean, cfg.image_std = tuple(image["image_mean"]), tuple(image["image_std"])
        cfg.video_fps = float(video.get("fps", cfg.video_fps))
        cfg.video_max_duration = float(video.get("max_duration", cfg.video_max_duration))
        return cfg


def _pixel_bounds(section: dict):
    size = section.get("size") or {}
    return (size.get("shortest_edge", section.get("min_pixels")), size.get("longest_edge", section.get("max_pixels")))


def smart_resize(num_frames: int, height: int, width: int, temporal_factor: int, factor: int,
                 min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Height and width, multiples of `factor`, closest to the input within the pixel budget
    (the budget counts every frame: num_frames x h x w)."""
    if height < factor or width < factor:
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(f"image aspect ratio {max(height, width) / min(height, width):.0f}:1 is beyond "
                         f"the supported {MAX_ASPECT_RATIO}:1")
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    t_bar = round(num_frames / temporal_factor) * temporal_factor
    if t_bar * h_bar * w_bar > max_pixels:
        beta = math.sqrt(num_frames * height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif t_bar * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (num_frames * height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited over white (as the reference does)."""
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _normalize(pixels: np.ndarray, cfg: ProcessorConfig) -> np.ndarray:
    """uint8 [..., H, W, C] -> float32 [..., C, H, W], rescaled and normalised."""
    x = (pixels.astype(np.float64) * cfg.rescale_factor).astype(np.float32)
    x = (x - np.array(cfg.image_mean, dtype=np.float32)) / np.array(cfg.image_std, dtype=np.float32)
    return np.moveaxis(x, -1, -3)


def image_grid(width: int, height: int, cfg: ProcessorConfig) -> tuple[int, int, int]:
    """(t, h, w) patch grid of an image of this size: no pixels needed."""
    h, w = smart_resize(cfg.temporal_patch_size, height, width, cfg.temporal_patch_size, cfg.factor,
                        cfg.image_min_pixels, cfg.image_max_pixels)
    return 1, h // cfg.patch_size, w // cfg.patch_size


def process_image(image: Image.Image, cfg: ProcessorConfig) -> tuple[np.ndarray, tuple[int, int, int]]:
    """-> (patches [h*w, C*T*p*p] float32, grid (1, h, w))."""
    image = to_rgb(image)
    _, gh, gw = image_grid(image.width, image.height, cfg)
    p, m, t = cfg.patch_size, cfg.merge_size, cfg.temporal_patch_size
    resized = image.resize((gw * p, gh * p), resample=Image.Resampling.BICUBIC)
    x = _normalize(np.asarray(resized), cfg)  # [C, H, W]
    c = x.shape[0]
    x = x.reshape(c, gh // m, m, p, gw // m, m, p).transpose(1, 4, 2, 5, 0, 3, 6)  # gh' gw' mh mw C ph pw
    x = np.broadcast_to(x[:, :, :, :, :, None], (*x.shape[:5], t, p, p))  # the frame, repeated in time
    return np.ascontiguousarray(x).reshape(gh * gw, c * t * p * p), (1, gh, gw)


def process_video(frames: np.ndarray, cfg: ProcessorConfig) -> tuple[np.ndarray, tuple[int, int, int]]:
    """frames uint8 [T, H, W, C] (T even) -> (patches [T/2*h*w, C*2*p*p] float32, grid (T/2, h, w))."""
    n, height, width, _ = frames.shape
    p, m, t = cfg.patch_size, cfg.merge_size, cfg.temporal_patch_size
    rh, rw = smart_resize(n, height, width, t, cfg.factor, cfg.video_min_pixels, cfg.video_max_pixels)
    if (rh, rw) != (height, width):
        frames = np.stack([np.asarray(Image.fromarray(f).resize((rw, rh), resample=Image.Resampling.BICUBIC))
                           for f in frames])
    if pad := -n % t:
        frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)])
        n += pad
    x = _normalize(frames, cfg)  # [T, C, H, W]
    c, gh, gw = x.shape[1], rh // p, rw // p
    x = x.reshape(n // t, t, c, gh // m, m, p, gw // m, m, p).transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return np.ascontiguousarray(x).reshape(n // t * gh * gw, c * t * p * p), (n // t, gh, gw)


def sample_frame_indices(total_frames: int, video_fps: float, duration: float | None, cfg: ProcessorConfig,
                         fps: float | None = None) -> list[int]:
    """Which frames to keep: `fps` per second (the checkpoint's by default) within the maximum
    duration, no duplicates, an even count (the last repeated)."""
    fps = fps or cfg.video_fps
    last = total_frames - 1
    duration = duration or round(last / video_fps) + 1
    if duration <= cfg.video_max_duration:
        count = max(int(math.floor(duration * fps)), 1)
        indices = [min(last, int(math.ceil(i * video_fps / fps))) for i in range(count)]
    else:
        count = int(cfg.video_max_duration * fps)
        if count >= total_frames:
            indices = list(range(total_frames))
        else:
            indices = [min(last, int(math.ceil(s * video_fps))) for s in np.linspace(0, duration, count)]
    indices = list(dict.fromkeys(indices))
    if len(indices) % 2:
        indices.append(indices[-1])
    return indices
