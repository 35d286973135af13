# Helpers shared by scripts/demo.sh and scripts/demo_cluster.sh (sourced; expects $py).

free_port() { "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# write_gradient PATH: a 64x64 gradient PNG, the demos' input image.
write_gradient() {
  "$py" - "$1" <<'PYEOF'
import sys

from PIL import Image

size = 64
image = Image.new("RGB", (size, size))
image.putdata([(x * 255 // size, y * 255 // size, 160) for y in range(size) for x in range(size)])
image.save(sys.argv[1])
PYEOF
}

# check_mp4 PATH: decode the video with FFmpeg (PyAV) and print its frames, fps, size and codec.
check_mp4() {
  "$py" - "$1" <<'PYEOF'
import sys

import av

with av.open(sys.argv[1]) as container:
    stream = container.streams.video[0]
    frames = sum(1 for _ in container.decode(stream))
    print(f"{sys.argv[1]}: {frames} frames at {float(stream.average_rate):g} fps, "
          f"{stream.codec_context.width}x{stream.codec_context.height}, codec {stream.codec_context.name}")
PYEOF
}
