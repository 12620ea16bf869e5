"""RRDBNet exported to ONNX runs in onnxruntime as it does in torch."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")

from test_sr_convert import installed_x4plus  # noqa: E402

from bokehkit.sr import realesrgan  # noqa: E402
from bokehkit.sr.rrdbnet import RRDBNet  # noqa: E402


def test_export_matches_torch_at_other_sizes(tmp_path):
    torch.manual_seed(0)
    net = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4).eval()
    path = realesrgan.export_onnx(net, tmp_path / "tiny.onnx")
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.onnx"]  # nothing half-written left
    sess = realesrgan.onnx_session(path)
    for h, w in [(17, 29), (40, 12)]:  # not the export's 32×32: free height and width
        x = np.random.default_rng(h).random((1, 3, h, w), dtype=np.float32)
        got = sess.run(["output"], {"input": x})[0]
        with torch.inference_mode():
            want = net(torch.from_numpy(x)).numpy()
        assert got.shape == (1, 3, 4 * h, 4 * w)
        assert np.abs(got - want).max() < 1e-5


@pytest.fixture(scope="module")
def x4plus_store():
    return installed_x4plus()


@pytest.mark.slow
def test_real_x4plus_onnx_matches_torch(x4plus_store):
    """The exported Real-ESRGAN x4plus (the default backend) against our torch model."""
    x = np.random.default_rng(0).random((1, 3, 16, 20), dtype=np.float32)
    by_onnx = realesrgan.network(x4plus_store, "onnx")(x)
    by_torch = realesrgan.network(x4plus_store, "torch")(x)
    diff = np.abs(by_onnx - by_torch)
    print(f"x4plus onnxruntime vs torch: max |diff| {diff.max():.2e}")
    assert by_onnx.shape == (1, 3, 64, 80)
    assert diff.max() < 1e-4
    onnx_file = x4plus_store.model_dir(realesrgan.MODEL_ID) / realesrgan.ONNX
    said = []
    made = realesrgan.finish_install(x4plus_store, said.append)
    assert made == [onnx_file.with_name(realesrgan.WEIGHTS), onnx_file]
    assert said == []  # both were there already: nothing converted or exported again
