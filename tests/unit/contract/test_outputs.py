import pytest

from i2v_contract.outputs import frame_uri


@pytest.mark.parametrize(
    ("video", "index", "want"),
    [
        pytest.param(
            "file:///s/jobs/j/attempt-1.mp4", 0, "file:///s/jobs/j/attempt-1-frame-0000.png", id="first"
        ),
        pytest.param(
            "s3://b/p/jobs/j/attempt-3.mp4", 63, "s3://b/p/jobs/j/attempt-3-frame-0063.png", id="last"
        ),
    ],
)
def test_frames_are_named_beside_their_video(video: str, index: int, want: str) -> None:
    assert frame_uri(video, index) == want
