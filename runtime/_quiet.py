"""Keep OpenCV's and FFmpeg's own console warnings out of our one-line errors (unless the user set them).

Imported first by the runtime package, before anything loads OpenCV.
"""

import os

os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
