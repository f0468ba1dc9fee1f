"""EPIC-KITCHENS-100 MIR clips: frames read from disk or decoded from videos.

Clips. Frames come from the official frame layout
(``rgb_frames/<participant>/<video>/frame_0000000001.jpg``, 1-based, the
``start_frame``..``stop_frame`` range inclusive) or are decoded from the video
files with PyAV (FFmpeg bindings, maintained, already torchvision's optional
video backend). ``n`` frames are sampled uniformly: the centres of ``n`` equal
segments of the range (the TSN test-time convention used by EPIC baselines).

Every path a clip builds from its template goes through
:func:`ctxbench.io.paths.contained` (resolve-then-contain): an id such as ``..``
or a symlink under the frames/videos folder cannot lead outside it.
"""


from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ...errors import DataNotFound, DatasetFormatError
from ...inputs import ImageRef
from ...io.paths import contained

DEFAULT_FRAME_TEMPLATE = "{participant_id}/{video_id}/frame_{frame:010d}.jpg"
DEFAULT_VIDEO_TEMPLATE = "{participant_id}/videos/{video_id}.MP4"


def sample_frame_indices(start: int, stop: int, n: int) -> list[int]:
    """``n`` frame numbers spread uniformly over ``start..stop`` (inclusive): the
    centre of each of ``n`` equal segments. Short clips repeat frames."""
    if n < 1:
        raise ValueError("n_frames must be >= 1")
    length = stop - start + 1
    return [int(start + ((2 * i + 1) * length) // (2 * n)) for i in range(n)]


def _template_fields(template: str, fields: dict[str, Any], what: str) -> str:
    try:
        return template.format(**fields)
    except (KeyError, IndexError, ValueError) as exc:
        raise DatasetFormatError(f"{what}: template {template!r} is invalid ({exc}); allowed "
                                 f"fields: {', '.join(fields)}") from None


@dataclass
class FrameDirClip:
    """A clip read from extracted frames: ``root / template.format(...)``."""

    root: Path
    template: str
    participant_id: str
    video_id: str
    start_frame: int
    stop_frame: int
    narration_id: str = ""

    def frame_path(self, frame: int) -> Path:
        fields = {"participant_id": self.participant_id, "video_id": self.video_id, "frame": frame,
                  "narration_id": self.narration_id}
        rel = _template_fields(self.template, fields, f"clip {self.narration_id}")
        return contained(self.root, rel, f"clip {self.narration_id} (template {self.template!r})")

    def frames(self, n: int) -> list[ImageRef]:
        return [ImageRef.from_path(self.frame_path(f))
                for f in sample_frame_indices(self.start_frame, self.stop_frame, n)]


def video_identity(path: Path, block: int = 1 << 16) -> str:
    """Content key of a (large) video file without reading it all: size, first
    and last 64 KiB."""
    size = path.stat().st_size
    h = hashlib.sha256(f"video\0{size}\0".encode())
    with open(path, "rb") as f:
        h.update(f.read(block))
        if size > block:
            f.seek(max(block, size - block))
            h.update(f.read(block))
    return h.hexdigest()


def decode_video_frames(path: Path, frame_numbers: Sequence[int]):
    """PIL frames at 1-based ``frame_numbers`` (frame k at time (k - 1) / fps, the
    numbering of EPIC's extracted frames). Seeks once to the first one, then decodes
    forward; a number past the end of the stream is an error naming the file."""
    try:
        import av
    except ImportError:
        raise DataNotFound("decoding EPIC videos needs PyAV: `pip install av` "
                           "(a ctxbench dependency: reinstall with `pip install -e .`), "
                           "or use extracted frames "
                           "(dataset option frames_dir)") from None
    wanted = sorted(set(int(f) for f in frame_numbers))
    got: dict[int, Any] = {}
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            if not rate:
                raise DatasetFormatError(f"{path}: the video stream has no frame rate")
            fps = float(rate)
            base = stream.start_time or 0
            first_time = (wanted[0] - 1) / fps
            container.seek(int(base + first_time / stream.time_base), stream=stream, backward=True)
            pending = list(wanted)
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                number = int(round(float((frame.pts - base) * stream.time_base) * fps)) + 1
                while pending and pending[0] <= number:
                    got[pending.pop(0)] = frame.to_image()
                if not pending:
                    break
    except (av.error.FFmpegError, OSError) as exc:
        raise DatasetFormatError(f"{path}: cannot decode video ({exc})") from exc
    if len(got) != len(wanted):
        missing = [f for f in wanted if f not in got]
        raise DatasetFormatError(f"{path}: frame(s) {missing[:5]} are past the end of the video; "
                                 f"check start_frame/stop_frame against the video's frame rate")
    return [got[int(f)] for f in frame_numbers]


class VideoFileClip:
    """A clip decoded from a video file with PyAV. The sampled frames of a clip are
    decoded together on first use (one seek) and released once all were handed out."""

    def __init__(self, root: Path, template: str, participant_id: str, video_id: str,
                 start_frame: int, stop_frame: int, narration_id: str = "",
                 identities: dict | None = None):
        self.root, self.template = Path(root), template
        self.participant_id, self.video_id, self.narration_id = participant_id, video_id, narration_id
        self.start_frame, self.stop_frame = int(start_frame), int(stop_frame)
        self._identities = identities if identities is not None else {}  # shared per dataset
        self._decoded: dict[int, Any] = {}
        self._served: set[int] = set()
        self._lock = threading.Lock()

    def path(self) -> Path:
        fields = {"participant_id": self.participant_id, "video_id": self.video_id,
                  "narration_id": self.narration_id}
        rel = _template_fields(self.template, fields, f"clip {self.narration_id}")
        return contained(self.root, rel, f"clip {self.narration_id} (template {self.template!r})")

    def _video_key(self) -> str:
        path = self.path()
        if path not in self._identities:
            try:
                self._identities[path] = video_identity(path)
            except FileNotFoundError:
                raise DatasetFormatError(f"video not found: {path} (clip {self.narration_id})") from None
        return self._identities[path]

    def _frame(self, numbers: tuple[int, ...], number: int):
        with self._lock:
            if number not in self._decoded:
                self._decoded = dict(zip(numbers, decode_video_frames(self.path(), numbers)))
                self._served = set()
            image = self._decoded[number]
            self._served.add(number)
            if self._served >= set(self._decoded):
                self._decoded = {}
            return image

    def frames(self, n: int) -> list[ImageRef]:
        numbers = tuple(sample_frame_indices(self.start_frame, self.stop_frame, n))
        return [ImageRef(lambda f=f: hashlib.sha256(f"{self._video_key()}\0{f}".encode()).hexdigest(),
                         lambda f=f: self._frame(numbers, f), label=f"{self.path()}#frame{f}")
                for f in numbers]
