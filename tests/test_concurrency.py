"""The shared model and codec instances are safe when app sessions run at the same time:
concurrent runs give exactly what serial runs give."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image
from skimage import data

from fcmcore.pipeline import PipelineConfig, run

CONFIGS = [
    PipelineConfig(split="expanded_conv_9", codec="hevc", quality=37),
    PipelineConfig(split="expanded_conv_5", codec="jpeg", quality=60),
    PipelineConfig(split="expanded_conv_12", codec="vvc", quality=32),
    PipelineConfig(split=None, codec="webp", quality=50),
    PipelineConfig(split="Conv_1", codec="jpegxl", quality=80),
    PipelineConfig(split="expanded_conv_9", codec=None),
]


def _summary(result):
    return result.bits, [(d.category_id, round(d.score, 5), tuple(round(v, 2) for v in d.box)) for d in result.detections[:20]]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_threads_share_models_and_codecs_safely():
    images = [Image.fromarray(data.astronaut()), Image.fromarray(data.chelsea()), Image.fromarray(data.coffee())]
    jobs = [(img, cfg) for img in images for cfg in CONFIGS]
    serial = [_summary(run(img, cfg)) for img, cfg in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(lambda job: _summary(run(*job)), jobs))
    assert concurrent == serial
