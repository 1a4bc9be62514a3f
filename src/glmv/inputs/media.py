"""Media sources: a local path, a file:// URL, a data: URL, bare base64, or an http(s) URL.

Every size a caller controls is bounded: bytes fetched or decoded, pixels, frames.
"""
from __future__ import annotations

import base64
import binascii
import io
import ipaddress
import socket
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .processor import ProcessorConfig, sample_frame_indices


class MediaError(ValueError):
    """Media that cannot be read: the message says why."""


@dataclass
class MediaLimits:
    max_image_bytes: int = 5 * 1024 * 1024
    max_video_bytes: int = 200 * 1024 * 1024
    max_image_pixels: int = 6000 * 6000
    fetch_timeout_s: float = 20.0
    allow_private_urls: bool = False


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
        return fetch_url(source, max_bytes, limits)
    if scheme == "file":
        return _read_file(Path(urllib.parse.unquote(urllib.parse.urlsplit(source).path)), max_bytes)
    if len(source) < 4096 and Path(source).exists():
        return _read_file(Path(source), max_bytes)
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


def check_public_host(host: str) -> None:
    """Refuse hosts that resolve to loopback, private, link-local (cloud metadata), multicast or reserved space."""
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        raise MediaError(f"cannot resolve {host}: {exc}") from exc
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%")[0])
        if not ip.is_global or ip.is_multicast:
            raise MediaError(f"refusing to fetch from {host} ({ip}): not a public address")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def fetch_url(url: str, max_bytes: int, limits: MediaLimits) -> bytes:
    host = urllib.parse.urlsplit(url).hostname
    if not host:
        raise MediaError(f"URL has no host: {url}")
    if not limits.allow_private_urls:
        check_public_host(host)
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers={"User-Agent": "glmv"}),
                         timeout=limits.fetch_timeout_s) as response:
            data = response.read(max_bytes + 1)
    except OSError as exc:
        raise MediaError(f"cannot fetch {url}: {exc}") from exc
    return _bounded(data, max_bytes)


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
    except Exception as exc:  # PIL raises many kinds for bad data
        raise MediaError(f"cannot decode image: {exc}") from exc


@dataclass
class Video:
    frames: np.ndarray  # uint8 [T, H, W, 3], the sampled frames only
    timestamps: list[float]  # seconds, one per sampled frame
    fps: float


def load_video(source: str, cfg: ProcessorConfig, limits: MediaLimits | None = None,
               fps: float | None = None, max_frames: int | None = None) -> Video:
    """Decode a video with PyAV, keeping only the frames that the sampling rate selects."""
    import av

    limits = limits or MediaLimits()
    data = read_source(source, limits.max_video_bytes, limits)
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise MediaError("the file has no video stream")
            stream = container.streams.video[0]
            video_fps = float(stream.average_rate or 0) or 24.0
            total = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
            if total <= 0:
                raise MediaError("the video has no frames")
            container.seek(0)
            indices = sample_frame_indices(total, video_fps, total / video_fps, cfg, fps)
            if max_frames and len(indices) > max_frames:  # evenly thinned, keeping an even count
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
