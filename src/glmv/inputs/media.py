"""Media sources: a local path, a file:// URL, a data: URL, bare base64, or an http(s) URL.

Every size a caller controls is bounded: bytes fetched or decoded, pixels, frames.
"""
from __future__ import annotations

import base64
import binascii
import io
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .fetch import FetchError, fetch_url
from .processor import ProcessorConfig, sample_frame_indices


class MediaError(ValueError):
    """Media that cannot be read: the message says why."""


@dataclass
class MediaLimits:
    max_image_bytes: int = 5 * 1024 * 1024
    max_video_bytes: int = 200 * 1024 * 1024
    max_image_pixels: int = 6000 * 6000
    max_images: int = 50  # per request
    max_videos: int = 1
    max_video_frames: int = 600  # sampled frames per video, whatever fps and max_frames a request asks for
    max_video_fps: float = 30.0
    max_files: int = 50
    max_file_bytes: int = 100 * 1024 * 1024
    max_file_pages: int = 50  # PDF pages rendered, per request
    file_image_tokens: int = 16384  # merged image tokens shared by all rendered pages of a request
    fetch_timeout_s: float = 20.0
    allow_private_urls: bool = False
    allow_local_files: bool = True  # paths and file:// URLs; the server turns this off


def read_source(source: str, max_bytes: int, limits: MediaLimits) -> bytes:
    """The bytes behind a media reference."""
    if not isinstance(source, str) or not source:
        raise MediaError("media reference must be a non-empty string")
    if source.startswith("data:"):
        header, _, payload = source.partition(",")
        if ";base64" not in header:
            return _bounded(urllib.parse.unquote_to_bytes(payload), max_bytes)
        return _b64(payload, max_bytes)
    scheme = urllib.parse.urlsplit(source).scheme.lower()
    if scheme in ("http", "https"):
        try:
            return fetch_url(source, max_bytes, limits.fetch_timeout_s, limits.allow_private_urls)
        except FetchError as exc:
            raise MediaError(str(exc)) from exc
    if limits.allow_local_files:
        if scheme == "file":
            return _read_file(Path(urllib.parse.unquote(urllib.parse.urlsplit(source).path)), max_bytes)
        if len(source) < 4096 and Path(source).exists():
            return _read_file(Path(source), max_bytes)
    elif scheme == "file":
        raise MediaError("local files cannot be read here: send an http(s) URL, a data: URL or base64")
    if scheme and len(scheme) < 10 and "://" in source[:16]:
        raise MediaError(f"unsupported URL scheme {scheme!r}: use http(s), file, data or base64")
    return _b64(source, max_bytes)


def _bounded(data: bytes, max_bytes: int) -> bytes:
    if len(data) > max_bytes:
        raise MediaError(f"media is {len(data)} bytes, over the {max_bytes}-byte limit")
    return data


def _b64(payload: str, max_bytes: int) -> bytes:
    if len(payload) * 3 // 4 > max_bytes + 3:
        raise MediaError(f"media is over the {max_bytes}-byte limit")
    try:
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MediaError("media is neither a readable path, a URL nor valid base64") from exc


def _read_file(path: Path, max_bytes: int) -> bytes:
    if not path.is_file():
        raise MediaError(f"no such file: {path}")
    if path.stat().st_size > max_bytes:
        raise MediaError(f"{path} is {path.stat().st_size} bytes, over the {max_bytes}-byte limit")
    return path.read_bytes()


def load_image(source: str | Image.Image, limits: MediaLimits | None = None) -> Image.Image:
    """A decoded, EXIF-upright image."""
    limits = limits or MediaLimits()
    if isinstance(source, Image.Image):
        return source
    data = read_source(source, limits.max_image_bytes, limits)
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > limits.max_image_pixels:
            raise MediaError(f"image is {image.width}x{image.height}, over the {limits.max_image_pixels}-pixel limit")
        image.load()
        return ImageOps.exif_transpose(image)
    except MediaError:
        raise
    except UnidentifiedImageError:
        raise MediaError("cannot decode image: not a known image format (jpg, png, webp, gif, bmp)") from None
    except Exception as exc:  # PIL raises many kinds for bad data
        raise MediaError(f"cannot decode image: {exc}") from exc


@dataclass
class Video:
    frames: np.ndarray  # uint8 [T, H, W, 3], the sampled frames only
    timestamps: list[float]  # seconds, one per sampled frame
    fps: float


def load_video(source: str, cfg: ProcessorConfig, limits: MediaLimits | None = None,
               fps: float | None = None, max_frames: int | None = None) -> Video:
    """Decode a video with PyAV, keeping only the frames that the sampling rate selects. `fps` and
    `max_frames` override the checkpoint's sampling for one request, within the limits. (Frames in
    between are still decoded, as inter-frame codecs need, but never converted or kept.)"""
    import av

    limits = limits or MediaLimits()
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float))
                            or not 0 < fps <= limits.max_video_fps):
        raise MediaError(f"video fps must be a number above 0 and at most {limits.max_video_fps:g}")
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int)
                                   or not 2 <= max_frames <= limits.max_video_frames):
        raise MediaError(f"video max_frames must be an integer from 2 to {limits.max_video_frames}")
    max_frames = max_frames or limits.max_video_frames
    data = read_source(source, limits.max_video_bytes, limits)
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise MediaError("the file has no video stream")
            stream = container.streams.video[0]
            if stream.width * stream.height > limits.max_image_pixels:
                raise MediaError(f"video frames are {stream.width}x{stream.height}, over the "
                                 f"{limits.max_image_pixels}-pixel limit")
            video_fps = float(stream.average_rate or 0) or 24.0
            total = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
            if total <= 0:
                raise MediaError("the video has no frames")
            container.seek(0)
            indices = sample_frame_indices(total, video_fps, total / video_fps, cfg, fps)
            if len(indices) > max_frames:  # evenly thinned, keeping an even count
                keep = np.linspace(0, len(indices) - 1, max(2, max_frames - max_frames % 2)).round().astype(int)
                indices = [indices[i] for i in keep]
            wanted = sorted(set(indices))
            frames, at = {}, 0
            for frame in container.decode(stream):
                if at in wanted:
                    frames[at] = frame.to_ndarray(format="rgb24")
                at += 1
                if at > wanted[-1]:
                    break
    except MediaError:
        raise
    except Exception as exc:  # PyAV raises many kinds for bad data
        raise MediaError(f"cannot decode video: {exc}") from exc
    missing = [i for i in wanted if i not in frames]
    if missing:
        raise MediaError(f"video ended before frame {missing[0]} of {total}")
    return Video(np.stack([frames[i] for i in indices]), [i / video_fps for i in indices], video_fps)
