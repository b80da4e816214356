"""Keep OpenCV's and FFmpeg's own console warnings out of our one-line errors (unless the user set them).

Imported first by the runtime package, before anything loads OpenCV.
"""

import os

os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
# OpenCV 4.11 (the last for numpy 1.x) has its Orbbec depth-camera backend log an ERROR line for every camera
# index it cannot open, before our own message; no camera of ours needs that backend
os.environ.setdefault("OPENCV_VIDEOIO_PRIORITY_OBSENSOR", "0")
