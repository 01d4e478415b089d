"""TensorBoard(log_dir): the event files, read back with TensorBoard's own reader."""
import io

import numpy as np
import pytest
from PIL import Image

from tinyconv.callbacks import TensorBoard

from training_fixtures import tiny_data, tiny_model

pytestmark = pytest.mark.training
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator",
                                        reason="needs the tensorboard extra (pip install -e '.[tensorboard]')")


def read(folder):
    reader = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0,
                                                                            "images": 0})
    reader.Reload()
    return reader


def test_tensorboard_reads_the_curves_histograms_and_kernels(tmp_path):
    x, y = tiny_data()
    model = tiny_model()
    history = model.fit(x, y, epochs=3, batch_size=8, verbose=0, validation_data=(x[:8], y[:8]),
                        callbacks=[TensorBoard(tmp_path, histogram_freq=1, write_images=True, update_freq="batch")])
    train, validation = read(tmp_path / "train"), read(tmp_path / "validation")
    for tag, name in [("epoch_loss", "loss"), ("epoch_accuracy", "accuracy")]:
        events = train.Scalars(tag)
        assert [e.step for e in events] == [0, 1, 2]
        np.testing.assert_allclose([e.value for e in events], history.history[name], rtol=1e-6)
        np.testing.assert_allclose([e.value for e in validation.Scalars(tag)], history.history[f"val_{name}"],
                                   rtol=1e-6)
    steps = [e.step for e in train.Scalars("batch_loss")]
    assert steps == list(range(1, model.optimizer.iterations + 1))
    histogram = train.Histograms("conv2d/kernel/histogram")[-1].histogram_value
    kernel = model.layers[1].params["kernel"]
    assert histogram.num == kernel.size and histogram.max == pytest.approx(kernel.max())
    image = train.Images("conv2d/kernel/image")[-1]
    picture = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)))
    assert picture.shape == (2 * 4 - 1, 2 * 4 - 1)  # 4 filters of 3x3 in a 2x2 grid with 1-pixel gaps


@pytest.mark.errors
def test_tensorboard_refuses_what_it_cannot_write(tmp_path):
    with pytest.raises(ValueError, match="profiler and embedding"):
        TensorBoard(tmp_path, profile_batch=2)
    with pytest.raises(ValueError, match="update_freq must"):
        TensorBoard(tmp_path, update_freq=0)
