"""Where a job's frames go beside its video in the artifact store: the node writes them there, the
coordinator serves and removes them, so both derive the names the same way."""

from __future__ import annotations


def frame_uri(video_uri: str, index: int) -> str:
    """The PNG of frame `index` (0-based) beside the video at `video_uri`:
    `.../jobs/j/attempt-1.mp4` -> `.../jobs/j/attempt-1-frame-0003.png`."""
    return f"{video_uri.removesuffix('.mp4')}-frame-{index:04d}.png"
